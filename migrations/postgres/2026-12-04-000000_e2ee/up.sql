-- End-to-end encryption (issue 13). The server keeps public keys, wrapped keys and
-- client-encrypted backups only: nothing it can decrypt.

-- A user's devices, each with its ECDH P-256 public key (base64url of the 65-byte point).
-- A revoked device keeps its row: members unwrap keys it wrapped with its public key.
-- Registering a device locks its user's row (FOR UPDATE) to count the live ones.
CREATE TABLE devices (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    public_key text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX devices_user_id_idx ON devices (user_id);

-- One row per encrypted conversation, made when encryption is turned on and never removed.
-- key_version: the newest key version stored (0: none yet); rotation_needed: a member was
-- removed since that key was made. A key upload locks this row (FOR UPDATE), so versions
-- move one at a time.
CREATE TABLE conversation_encryption (
    conversation_id uuid        PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    key_version     bigint      NOT NULL DEFAULT 0
                                CONSTRAINT conversation_encryption_key_version_check
                                CHECK (key_version >= 0),
    rotation_needed boolean     NOT NULL DEFAULT false,
    enabled_at      timestamptz NOT NULL
);

-- A conversation key version wrapped for one device by another (ECDH + HKDF on the
-- clients). Deleted with the device it is for when that device is revoked.
CREATE TABLE conversation_keys (
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version         bigint      NOT NULL CONSTRAINT conversation_keys_version_check
                                CHECK (version >= 1),
    device_id       uuid        NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    wrapped_key     text        NOT NULL,
    from_device_id  uuid        NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, version, device_id)
);
CREATE INDEX conversation_keys_device_id_idx ON conversation_keys (device_id);

-- A user's passphrase-protected key backup, encrypted on the client.
CREATE TABLE key_backups (
    user_id    uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    version    integer     NOT NULL,
    kdf        text        NOT NULL,
    iterations integer     NOT NULL,
    salt       text        NOT NULL,
    iv         text        NOT NULL,
    ct         text        NOT NULL,
    updated_at timestamptz NOT NULL
);
