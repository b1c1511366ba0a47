-- Message lifecycle: edits, deletions (tombstones) and reactions, each numbered by its
-- conversation's change counter so that recovery can replay the changes after a cursor
-- as it replays the messages after a seq.

-- The conversation's change counter: every edit, deletion or reaction takes
-- last_change + 1 under this row's lock (UPDATE ... RETURNING) and stamps it on the
-- message. A constant default: adding the column rewrites nothing.
ALTER TABLE conversations
    ADD COLUMN last_change bigint NOT NULL DEFAULT 0
        CONSTRAINT conversations_last_change_check CHECK (last_change >= 0);

-- The change number of the message's latest change (0: never changed), and who deleted
-- it. A new message never names a deleter, so deleted_by's foreign key takes no lock on
-- append (PostgreSQL checks nothing for a NULL key); only a deletion locks the deleter's
-- account row (FOR KEY SHARE), unlike sender_id (see the first migration).
ALTER TABLE messages
    ADD COLUMN change_seq bigint NOT NULL DEFAULT 0
        CONSTRAINT messages_change_seq_check CHECK (change_seq >= 0),
    ADD COLUMN deleted_by uuid CONSTRAINT messages_deleted_by_fkey REFERENCES users (id);

-- changes_after: a conversation's changed messages in change order. Partial, so appends
-- (change_seq 0) never touch it and it holds only messages that changed; a query uses it
-- only when it says `change_seq > 0` itself (a generic plan cannot prove that from a
-- parameter).
CREATE INDEX messages_conversation_id_change_seq_idx
    ON messages (conversation_id, change_seq) WHERE change_seq > 0;

-- One row per (message, user, emoji). The primary key's prefix serves reactions_of (every
-- reaction of a page of messages, `message_id = ANY(...)`) and the deletion of a
-- message's reactions. change_seq is the change number that added the reaction: the
-- order reactions were made in, which orders a message's emoji by first use and each
-- emoji's users earliest first, whatever the nodes' clocks say.
CREATE TABLE reactions (
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id      uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji           text        NOT NULL,
    change_seq      bigint      NOT NULL CONSTRAINT reactions_change_seq_check
                                CHECK (change_seq > 0),
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);
