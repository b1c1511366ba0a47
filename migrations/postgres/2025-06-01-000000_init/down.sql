DROP TABLE messages;
DROP TABLE participants;
DROP TABLE conversations;
DROP TABLE refresh_tokens;
DROP TABLE users;
