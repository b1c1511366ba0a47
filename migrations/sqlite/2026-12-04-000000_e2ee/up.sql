-- Kept alike with PostgreSQL's schema: end-to-end encryption (issue 13). The server keeps
-- public keys, wrapped keys and client-encrypted backups only: nothing it can decrypt.

-- A user's devices, each with its ECDH P-256 public key (base64url of the 65-byte point).
-- A revoked device keeps its row: members unwrap keys it wrapped with its public key.
CREATE TABLE devices (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    public_key TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX devices_user_id ON devices (user_id);

-- One row per encrypted conversation, made when encryption is turned on and never removed.
-- key_version: the newest key version stored (0: none yet); rotation_needed: a member was
-- removed since that key was made.
CREATE TABLE conversation_encryption (
    conversation_id TEXT    PRIMARY KEY NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    key_version     BIGINT  NOT NULL DEFAULT 0 CHECK (key_version >= 0),
    rotation_needed INTEGER NOT NULL DEFAULT 0 CHECK (rotation_needed IN (0, 1)),
    enabled_at      BIGINT  NOT NULL
);

-- A conversation key version wrapped for one device by another (ECDH + HKDF on the
-- clients). Deleted with the device it is for when that device is revoked.
CREATE TABLE conversation_keys (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version         BIGINT NOT NULL CHECK (version >= 1),
    device_id       TEXT   NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    wrapped_key     TEXT   NOT NULL,
    from_device_id  TEXT   NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, version, device_id)
);
CREATE INDEX conversation_keys_device_id ON conversation_keys (device_id);

-- A user's passphrase-protected key backup, encrypted on the client.
CREATE TABLE key_backups (
    user_id    TEXT    PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    kdf        TEXT    NOT NULL,
    iterations INTEGER NOT NULL,
    salt       TEXT    NOT NULL,
    iv         TEXT    NOT NULL,
    ct         TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);
