//! Fixtures shared by the PostgreSQL adapter's test binaries: a user row and a new message.
#![allow(clippy::unwrap_used, dead_code)]

use adapters_postgres::PostgresStorage;
use chrono::{SubsecRound, Utc};
use domain::message::{ClientMsgId, ContentType, MessageContent, NewMessage};
use domain::ports::UserStore;
use domain::user::{DisplayName, EmailAddress, NewUser};
use domain::{ConversationId, MessageId, UserId};

pub async fn user(store: &PostgresStorage) -> UserId {
    let id = UserId::new();
    store
        .insert_user(&NewUser {
            id,
            email: EmailAddress::parse(&format!("user-{id}@example.com")).unwrap(),
            display_name: DisplayName::parse("someone").unwrap(),
            password_hash: "$argon2id$fake".into(),
            created_at: Utc::now().trunc_subsecs(6),
        })
        .await
        .unwrap();
    id
}

pub fn message(conversation: ConversationId, sender: UserId, key: &str) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation_id: conversation,
        sender_id: sender,
        client_msg_id: Some(ClientMsgId::parse(key).unwrap()),
        content: MessageContent::parse("hello", 4000).unwrap(),
        content_type: ContentType::Text,
        reply_to: None,
        reply_preview: None,
        created_at: Utc::now().trunc_subsecs(6),
        attachments: Vec::new(),
    }
}
