//! Diesel's view of the tables in `migrations/postgres` (private to this crate).

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        avatar_url -> Nullable<Text>,
        created_at -> Timestamptz,
        last_seen_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        family_id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    conversations (id) {
        id -> Uuid,
        kind -> Text,
        title -> Nullable<Text>,
        created_by -> Uuid,
        created_at -> Timestamptz,
        last_seq -> Int8,
        last_message_at -> Nullable<Timestamptz>,
        direct_key -> Nullable<Text>,
        last_change -> Int8,
    }
}

diesel::table! {
    participants (conversation_id, user_id) {
        conversation_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        joined_at -> Timestamptz,
        delivered_seq -> Int8,
        read_seq -> Int8,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        seq -> Int8,
        sender_id -> Uuid,
        client_msg_id -> Nullable<Text>,
        content -> Text,
        content_type -> Text,
        reply_to -> Nullable<Uuid>,
        created_at -> Timestamptz,
        edited_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        change_seq -> Int8,
        deleted_by -> Nullable<Uuid>,
        attachment_count -> Integer,
    }
}

diesel::table! {
    reactions (message_id, user_id, emoji) {
        conversation_id -> Uuid,
        message_id -> Uuid,
        user_id -> Uuid,
        emoji -> Text,
        change_seq -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(participants -> conversations (conversation_id));
diesel::joinable!(participants -> users (user_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(reactions -> messages (message_id));
diesel::joinable!(attachments -> messages (message_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    refresh_tokens,
    conversations,
    participants,
    messages,
    reactions,
    devices,
    conversation_encryption,
    conversation_keys,
    key_backups,
    attachments
);

diesel::table! {
    devices (id) {
        id -> Uuid,
        user_id -> Uuid,
        public_key -> Text,
        name -> Text,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    conversation_encryption (conversation_id) {
        conversation_id -> Uuid,
        key_version -> Int8,
        rotation_needed -> Bool,
        enabled_at -> Timestamptz,
    }
}

diesel::table! {
    conversation_keys (conversation_id, version, device_id) {
        conversation_id -> Uuid,
        version -> Int8,
        device_id -> Uuid,
        wrapped_key -> Text,
        from_device_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    key_backups (user_id) {
        user_id -> Uuid,
        version -> Int4,
        kdf -> Text,
        iterations -> Int4,
        salt -> Text,
        iv -> Text,
        ct -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    attachments (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        uploader_id -> Uuid,
        filename -> Text,
        mime_type -> Text,
        size -> Int8,
        encrypted -> Bool,
        width -> Nullable<Integer>,
        height -> Nullable<Integer>,
        has_thumbnail -> Bool,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
        message_id -> Nullable<Uuid>,
        position -> Nullable<Integer>,
    }
}
