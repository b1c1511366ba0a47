-- Attachments (issue 14): the records of uploaded files; their bytes are the blob store's.
-- An attachment is announced (created_at), confirmed once its bytes are checked
-- (confirmed_at) and sent at most once, bound to its message (message_id, position) in the
-- send's transaction, which locks the rows it binds (FOR UPDATE) so that two sends of one
-- attachment cannot both take it.
CREATE TABLE attachments (
    id              uuid        PRIMARY KEY,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    uploader_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename        text        NOT NULL,
    mime_type       text        NOT NULL,
    size            bigint      NOT NULL CONSTRAINT attachments_size_check CHECK (size >= 0),
    encrypted       boolean     NOT NULL,
    width           integer,
    height          integer,
    has_thumbnail   boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    message_id      uuid        REFERENCES messages (id) ON DELETE SET NULL,
    -- Its index among its message's attachments (NULL while not sent).
    position        integer,
    CONSTRAINT attachments_sent_check CHECK ((message_id IS NULL) = (position IS NULL))
);
-- A page's attachments (`message_id = ANY(...)`) in order.
CREATE INDEX attachments_message_id_position_idx ON attachments (message_id, position);
-- The sweeper's unsent ones, oldest first. Partial: a sent attachment leaves it.
CREATE INDEX attachments_unsent_created_at_idx ON attachments (created_at)
    WHERE message_id IS NULL;

-- How many attachments a message was sent with, so a page of history reads `attachments`
-- only when one of its messages has some. A constant default: adding it rewrites nothing.
ALTER TABLE messages
    ADD COLUMN attachment_count integer NOT NULL DEFAULT 0
        CONSTRAINT messages_attachment_count_check CHECK (attachment_count >= 0);
-- The sweeper's deleted messages whose attachments are still there (deleting those resets
-- the count to 0, so the index holds only what is left to sweep).
CREATE INDEX messages_deleted_with_attachments_idx ON messages (id)
    WHERE deleted_at IS NOT NULL AND attachment_count > 0;
