//! Builders for the contract cases.

use crate::Store;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use domain::conversation::{
    ConversationDetails, GroupTitle, NewDirectConversation, NewGroupConversation,
};
use domain::message::{AppendOutcome, ClientMsgId, ContentType, MessageContent, NewMessage};
use domain::user::{DisplayName, EmailAddress, NewUser, User};
use domain::{ConversationId, MessageId, UserId};

/// Now, at the microsecond precision every store keeps.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A user with a unique email built from `name`.
pub async fn user(store: &Store, name: &str) -> User {
    let local: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    user_with_email(
        store,
        name,
        &format!("{local}-{}@example.com", UserId::new()),
    )
    .await
}

/// A user with exactly this email.
pub async fn user_with_email(store: &Store, name: &str, email: &str) -> User {
    store
        .insert_user(&new_user(name, email))
        .await
        .expect("insert user")
}

/// An account to insert.
pub fn new_user(name: &str, email: &str) -> NewUser {
    NewUser {
        id: UserId::new(),
        email: EmailAddress::parse(email).expect("valid email"),
        display_name: DisplayName::parse(name).expect("valid name"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        created_at: now(),
    }
}

/// The direct conversation between `a` and `b`.
pub async fn direct(store: &Store, a: &User, b: &User) -> ConversationDetails {
    let (details, _) = store
        .create_direct(&NewDirectConversation {
            id: ConversationId::new(),
            created_by: a.id,
            other: b.id,
            created_at: now(),
        })
        .await
        .expect("create direct");
    details
}

/// A group owned by `owner` with `members`.
pub async fn group(
    store: &Store,
    owner: &User,
    members: &[&User],
    title: &str,
) -> ConversationDetails {
    store
        .create_group(&NewGroupConversation {
            id: ConversationId::new(),
            created_by: owner.id,
            title: GroupTitle::parse(title).expect("valid title"),
            members: members.iter().map(|u| u.id).collect(),
            created_at: now(),
        })
        .await
        .expect("create group")
}

/// A message to append, with an idempotency key if given.
pub fn message(
    conversation: ConversationId,
    sender: UserId,
    key: Option<&str>,
    content: &str,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation_id: conversation,
        sender_id: sender,
        client_msg_id: key.map(|k| ClientMsgId::parse(k).expect("valid key")),
        content: MessageContent::parse(content, 4_000).expect("valid content"),
        content_type: ContentType::Text,
        reply_to: None,
        reply_preview: None,
        created_at: now(),
        attachments: Vec::new(),
    }
}

/// Appends one message and expects it to be created.
pub async fn send(
    store: &Store,
    conversation: ConversationId,
    sender: UserId,
    content: &str,
) -> domain::message::Message {
    let mut results = store
        .append_messages(&[message(conversation, sender, None, content)])
        .await
        .expect("append");
    match results.pop().expect("one result").expect("accepted") {
        AppendOutcome::Created(m) => m,
        AppendOutcome::Replayed(m) => panic!("expected a new message, got a replay of {m:?}"),
    }
}

/// A time `secs` seconds from now.
pub fn later(secs: i64) -> DateTime<Utc> {
    now() + Duration::seconds(secs)
}
