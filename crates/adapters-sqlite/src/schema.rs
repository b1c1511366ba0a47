//! Diesel's view of `migrations/sqlite`. Private to the crate: the domain never sees it.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        avatar_url -> Nullable<Text>,
        created_at -> BigInt,
        last_seen_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        family_id -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    conversations (id) {
        id -> Text,
        kind -> Text,
        title -> Nullable<Text>,
        created_by -> Text,
        created_at -> BigInt,
        last_seq -> BigInt,
        last_message_at -> Nullable<BigInt>,
        direct_key -> Nullable<Text>,
        last_change -> BigInt,
    }
}

diesel::table! {
    participants (conversation_id, user_id) {
        // SQLite's implicit row id: insertion order, which breaks ties between members
        // who joined in the same microsecond (a group's creator comes first).
        rowid -> BigInt,
        conversation_id -> Text,
        user_id -> Text,
        role -> Text,
        joined_at -> BigInt,
        delivered_seq -> BigInt,
        read_seq -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
        sender_id -> Text,
        client_msg_id -> Nullable<Text>,
        content -> Text,
        content_type -> Text,
        reply_to -> Nullable<Text>,
        created_at -> BigInt,
        edited_at -> Nullable<BigInt>,
        deleted_at -> Nullable<BigInt>,
        change_seq -> BigInt,
        deleted_by -> Nullable<Text>,
        attachment_count -> Integer,
    }
}

diesel::table! {
    reactions (message_id, user_id, emoji) {
        conversation_id -> Text,
        message_id -> Text,
        user_id -> Text,
        emoji -> Text,
        change_seq -> BigInt,
        created_at -> BigInt,
    }
}

diesel::joinable!(participants -> conversations (conversation_id));
diesel::joinable!(participants -> users (user_id));
diesel::joinable!(messages -> conversations (conversation_id));
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
        id -> Text,
        user_id -> Text,
        public_key -> Text,
        name -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    conversation_encryption (conversation_id) {
        conversation_id -> Text,
        key_version -> BigInt,
        rotation_needed -> Bool,
        enabled_at -> BigInt,
    }
}

diesel::table! {
    conversation_keys (conversation_id, version, device_id) {
        conversation_id -> Text,
        version -> BigInt,
        device_id -> Text,
        wrapped_key -> Text,
        from_device_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    key_backups (user_id) {
        user_id -> Text,
        version -> Integer,
        kdf -> Text,
        iterations -> Integer,
        salt -> Text,
        iv -> Text,
        ct -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    attachments (id) {
        id -> Text,
        conversation_id -> Text,
        uploader_id -> Text,
        filename -> Text,
        mime_type -> Text,
        size -> BigInt,
        encrypted -> Bool,
        width -> Nullable<Integer>,
        height -> Nullable<Integer>,
        has_thumbnail -> Bool,
        created_at -> BigInt,
        confirmed_at -> Nullable<BigInt>,
        message_id -> Nullable<Text>,
        position -> Nullable<Integer>,
    }
}
