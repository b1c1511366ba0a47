-- A user's memberships by (user_id, conversation_id) instead of user_id alone: a member
-- looked up by both columns (receipts, membership checks) then finds exactly its row in
-- either index. With the user_id-only index, a generic plan made while participants was
-- small could take that index for such a lookup and read all of the user's memberships
-- (their rows too) to find one.
CREATE INDEX participants_user_id_conversation_id_idx ON participants (user_id, conversation_id);
DROP INDEX participants_user_id_idx;
