DROP TABLE reactions;
DROP INDEX messages_conversation_id_change_seq_idx;
ALTER TABLE messages DROP COLUMN deleted_by, DROP COLUMN change_seq;
ALTER TABLE conversations DROP COLUMN last_change;
