DROP TABLE key_backups;
DROP TABLE conversation_keys;
DROP TABLE conversation_encryption;
DROP TABLE devices;
