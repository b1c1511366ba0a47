-- The whole chat schema for PostgreSQL. Timestamps are timestamptz (UTC, microseconds);
-- ids are UUIDs chosen by the application (UUIDv7, so they sort by creation time).

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    -- Lower-cased by the application, so this unique index is case-insensitive.
    email         text        NOT NULL CONSTRAINT users_email_key UNIQUE,
    display_name  text        NOT NULL,
    password_hash text        NOT NULL,
    avatar_url    text,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz
);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the secret, hex: the secret itself is never stored.
    token_hash text        PRIMARY KEY,
    family_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);

-- Revoking a family (reuse detection, logout) finds its tokens by family.
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

CREATE TABLE conversations (
    id              uuid        PRIMARY KEY,
    kind            text        NOT NULL CONSTRAINT conversations_kind_check
                                CHECK (kind IN ('direct', 'group')),
    title           text,
    created_by      uuid        NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL,
    -- Seq of the newest message: appends lock this row and take last_seq + 1.
    last_seq        bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_message_at timestamptz,
    -- "lo:hi" of the two members of a direct conversation, NULL for groups: at most one
    -- direct conversation per pair, also when A->B and B->A are created at once.
    direct_key      text        CONSTRAINT conversations_direct_key_key UNIQUE,
    CONSTRAINT conversations_direct_key_check CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE participants (
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text        NOT NULL CONSTRAINT participants_role_check
                                CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       timestamptz NOT NULL,
    -- Receipt watermarks: only ever moved forward (GREATEST).
    delivered_seq   bigint      NOT NULL DEFAULT 0,
    read_seq        bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);

-- A user's conversation list and unread counts start from the user.
CREATE INDEX participants_user_id_idx ON participants (user_id);

CREATE TABLE messages (
    id              uuid        PRIMARY KEY,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL CHECK (seq > 0),
    -- No foreign key on sender_id or reply_to, on purpose: each would make every insert
    -- lock the parent row (FOR KEY SHARE), and a busy sender's user row, locked by many
    -- concurrent batches, turns into a contention point (multixacts). The application only
    -- appends for members (participants.user_id references users) and replies within the
    -- conversation, and neither users nor messages are ever hard-deleted.
    sender_id       uuid        NOT NULL,
    -- The sender's idempotency key; NULLs never collide in the unique index below.
    client_msg_id   text,
    content         text        NOT NULL,
    content_type    text        NOT NULL,
    reply_to        uuid,
    created_at      timestamptz NOT NULL,
    edited_at       timestamptz,
    deleted_at      timestamptz,
    -- Serves history and sync (seq ranges) as well as gap-free numbering.
    CONSTRAINT messages_conversation_id_seq_key UNIQUE (conversation_id, seq),
    -- Idempotent sends: one message per (sender, key).
    CONSTRAINT messages_sender_id_client_msg_id_key UNIQUE (sender_id, client_msg_id)
);
