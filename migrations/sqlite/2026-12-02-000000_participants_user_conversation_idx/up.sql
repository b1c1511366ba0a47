-- Kept alike with PostgreSQL's schema: a user's memberships by (user_id, conversation_id),
-- so a member looked up by both columns finds exactly its row in either index.
CREATE INDEX participants_user_id_conversation_id ON participants (user_id, conversation_id);
DROP INDEX participants_user_id;
