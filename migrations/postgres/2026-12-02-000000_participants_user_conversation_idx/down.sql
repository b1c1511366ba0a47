CREATE INDEX participants_user_id_idx ON participants (user_id);
DROP INDEX participants_user_id_conversation_id_idx;
