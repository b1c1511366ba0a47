-- The embedded schema. UUIDs are hyphenated lower-case TEXT (so text order is UUID order);
-- timestamps are INTEGER microseconds since the Unix epoch, the precision the domain keeps,
-- so a time written reads back equal.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    -- Lower-cased by the domain before it gets here, so uniqueness is case-insensitive.
    email         TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    avatar_url    TEXT,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT
);

CREATE TABLE refresh_tokens (
    token_hash TEXT   PRIMARY KEY NOT NULL,
    family_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);

CREATE TABLE conversations (
    id              TEXT   PRIMARY KEY NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('direct', 'group')),
    title           TEXT,
    created_by      TEXT   NOT NULL REFERENCES users (id),
    created_at      BIGINT NOT NULL,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    last_message_at BIGINT,
    -- One direct conversation per unordered pair of users; NULL (never equal) for groups.
    direct_key      TEXT   UNIQUE,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE participants (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       BIGINT NOT NULL,
    delivered_seq   BIGINT NOT NULL DEFAULT 0,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_user_id ON participants (user_id);

CREATE TABLE messages (
    id              TEXT   PRIMARY KEY NOT NULL,
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    sender_id       TEXT   NOT NULL REFERENCES users (id),
    client_msg_id   TEXT,
    content         TEXT   NOT NULL,
    content_type    TEXT   NOT NULL,
    reply_to        TEXT,
    created_at      BIGINT NOT NULL,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    -- History pages by seq; also makes a duplicate seq impossible.
    UNIQUE (conversation_id, seq),
    -- The idempotency key: NULL keys never collide.
    UNIQUE (sender_id, client_msg_id)
);
