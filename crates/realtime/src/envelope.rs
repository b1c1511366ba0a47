//! The envelope of a published event: a small routing header, a newline, then the frame
//! clients get, already serialised. A node parses the header once per event (not once per
//! recipient) and hands the same frame text to every session it routes the event to.
//!
//! Compact JSON never holds a raw newline (it escapes them inside strings), so the first
//! `\n` always ends the header.

use domain::realtime::Payload;
use domain::{ConversationId, MessageId, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// What kind of event the frame is (decides who among a topic's sessions gets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A committed message: not to its origin session; orders by `seq`.
    Message,
    /// A delivered watermark moved.
    Delivered,
    /// A read watermark moved.
    Read,
    /// Someone is (not) typing: not to that user's sessions.
    Typing,
    /// Someone's presence changed: not to that user's sessions.
    Presence,
    /// A conversation was created or changed: may change who is routed to it.
    Conversation,
    /// Unread counts of the user changed.
    Unread,
    /// A message was edited, deleted or reacted to: for every session; orders by `change`.
    Change,
    /// A key was requested or shared (end-to-end encryption): for every session.
    Key,
}

/// The routing header. Short field names: it travels with every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The kind.
    #[serde(rename = "k")]
    pub kind: Kind,
    /// The conversation the event is about.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    /// A message's seq.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// A message's id.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// Who the event is by: a message's sender, the typing user, the user whose presence changed.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// The session a message was sent from (it gets `message_sent` instead).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<Uuid>,
    /// A user who joined the conversation (or for whom it was created).
    #[serde(rename = "j", default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<UserId>,
    /// A user who left or was removed.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub left: Option<UserId>,
    /// A receipt: a lower bound of where the watermark was before it moved to `seq`. Only
    /// sessions of a user who sent a message after it need the receipt.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<i64>,
    /// A change: its change number (the conversation's `last_change` after it). A conversation
    /// event a member joins by: the conversation's `last_change` then, where the joining
    /// member's change feed starts.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub change: Option<i64>,
    /// A message: when its send reached the server (its `created_at`), Unix microseconds.
    /// For the end-to-end latency metric.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<i64>,
    /// A message: when it was published after its commit, Unix microseconds. For the fan-out
    /// latency metric.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<i64>,
    /// A conversation event: the conversation is end-to-end encrypted (what a following
    /// session checks its sends against; never turns back to `false`).
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

impl Header {
    /// A header of `kind` about `conversation`, every other field empty.
    pub(crate) fn new(kind: Kind, conversation: Option<ConversationId>) -> Self {
        Self {
            kind,
            conversation,
            seq: None,
            message_id: None,
            user: None,
            origin: None,
            joined: None,
            left: None,
            since: None,
            change: None,
            sent_at: None,
            committed_at: None,
            encrypted: false,
        }
    }
}

/// The payload is not an envelope (another version of the server, or garbage).
#[derive(Debug, thiserror::Error)]
#[error("malformed event envelope: {0}")]
pub(crate) struct MalformedEnvelope(String);

/// Header and frame in one payload.
pub(crate) fn encode(header: &Header, frame: &str) -> Payload {
    let header = serde_json::to_string(header).unwrap_or_else(|_| String::from("{}"));
    let mut text = String::with_capacity(header.len() + 1 + frame.len());
    text.push_str(&header);
    text.push('\n');
    text.push_str(frame);
    Arc::from(text)
}

/// The header and the frame text of a payload.
pub(crate) fn decode(payload: &str) -> Result<(Header, &str), MalformedEnvelope> {
    let (header, frame) = payload
        .split_once('\n')
        .ok_or_else(|| MalformedEnvelope("no header line".to_owned()))?;
    let header = serde_json::from_str(header).map_err(|e| MalformedEnvelope(e.to_string()))?;
    Ok((header, frame))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_payload_decodes_to_the_header_and_frame_it_was_encoded_from() {
        let mut header = Header::new(Kind::Message, Some(ConversationId::new()));
        header.seq = Some(42);
        header.user = Some(UserId::new());
        header.origin = Some(Uuid::new_v4());
        header.sent_at = Some(1_700_000_000_000_000);
        header.committed_at = Some(1_700_000_000_001_500);
        let frame = r#"{"type":"message","message":{"content":"two\nlines"}}"#;
        let payload = encode(&header, frame);
        let (decoded, text) = decode(&payload).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(text, frame);
    }

    #[test]
    fn the_header_leaves_out_empty_fields() {
        let payload = encode(&Header::new(Kind::Unread, None), "{}");
        assert_eq!(&*payload, "{\"k\":\"unread\"}\n{}");
    }

    #[test]
    fn a_payload_without_a_header_line_is_malformed() {
        assert!(decode(r#"{"type":"pong"}"#).is_err());
        assert!(decode("{\"k\":\"nonsense\"}\n{}").is_err());
    }
}
