-- Kept alike with PostgreSQL's schema: attachments (issue 14), the records of uploaded
-- files (their bytes are the blob store's), each sent at most once, bound to its message
-- (message_id, position) in the send's transaction on the single writer.
CREATE TABLE attachments (
    id              TEXT    PRIMARY KEY NOT NULL,
    conversation_id TEXT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    uploader_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename        TEXT    NOT NULL,
    mime_type       TEXT    NOT NULL,
    size            BIGINT  NOT NULL CHECK (size >= 0),
    encrypted       INTEGER NOT NULL CHECK (encrypted IN (0, 1)),
    width           INTEGER,
    height          INTEGER,
    has_thumbnail   INTEGER NOT NULL DEFAULT 0 CHECK (has_thumbnail IN (0, 1)),
    created_at      BIGINT  NOT NULL,
    confirmed_at    BIGINT,
    message_id      TEXT    REFERENCES messages (id) ON DELETE SET NULL,
    -- Its index among its message's attachments (NULL while not sent).
    position        INTEGER,
    CHECK ((message_id IS NULL) = (position IS NULL))
);
-- A page's attachments in order.
CREATE INDEX attachments_message_id_position ON attachments (message_id, position);
-- The sweeper's unsent ones, oldest first.
CREATE INDEX attachments_unsent_created_at ON attachments (created_at)
    WHERE message_id IS NULL;

-- How many attachments a message was sent with: a page reads `attachments` only when one
-- of its messages has some.
ALTER TABLE messages ADD COLUMN attachment_count INTEGER NOT NULL DEFAULT 0;
-- The sweeper's deleted messages whose attachments are still there.
CREATE INDEX messages_deleted_with_attachments ON messages (id)
    WHERE deleted_at IS NOT NULL AND attachment_count > 0;
