-- Kept alike with PostgreSQL's schema: message lifecycle (edits, tombstones, reactions),
-- each change numbered by its conversation's counter. The single writer takes the numbers.

-- The conversation's change counter (0: nothing changed yet).
ALTER TABLE conversations ADD COLUMN last_change BIGINT NOT NULL DEFAULT 0;

-- The change number of the message's latest change (0: never changed), and who deleted it.
ALTER TABLE messages ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN deleted_by TEXT REFERENCES users (id);

-- changes_after, in change order. Partial: appends never touch it, and only a query that
-- says `change_seq > 0` itself may use it.
CREATE INDEX messages_conversation_id_change_seq
    ON messages (conversation_id, change_seq) WHERE change_seq > 0;

-- One row per (message, user, emoji); the primary key's prefix serves reactions_of and a
-- deletion's erasing. change_seq is the change number that added the reaction: the order
-- reactions were made in (emoji by first use, users earliest first).
CREATE TABLE reactions (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id      TEXT   NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id         TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji           TEXT   NOT NULL,
    change_seq      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);
