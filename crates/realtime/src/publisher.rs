//! [`PubSubPublisher`]: the engine's [`EventPublisher`]. Each domain [`Event`] becomes one
//! envelope (routing header + the frame of `docs/protocol.md`), serialised once and
//! published once per topic.

use super::envelope::{self, Header, Kind};
use super::metrics::Metrics;
use crate::wire;
use async_trait::async_trait;
use domain::message::MessageStatus;
use domain::realtime::{
    ConversationChange, Event, EventPublisher, Payload, PubSub, RealtimeError, Topic,
};
use domain::services::MessageView;
use protocol::ServerFrame;
use std::sync::Arc;

/// Publishes events on the node's [`PubSub`]; counts its failures in the node's metrics.
pub(crate) struct PubSubPublisher {
    pubsub: Arc<dyn PubSub>,
    metrics: Arc<Metrics>,
}

impl PubSubPublisher {
    /// A publisher on `pubsub`.
    pub(crate) fn new(pubsub: Arc<dyn PubSub>, metrics: Arc<Metrics>) -> Self {
        Self { pubsub, metrics }
    }
}

#[async_trait]
impl EventPublisher for PubSubPublisher {
    async fn publish(&self, topic: Topic, event: Event) -> Result<(), RealtimeError> {
        let result = self.pubsub.publish(topic, envelope_of(topic, &event)).await;
        if result.is_err() {
            self.metrics.pubsub_error();
        }
        result
    }

    async fn publish_all(&self, events: Vec<(Topic, Event)>) -> Result<(), RealtimeError> {
        let items = events
            .iter()
            .map(|(topic, event)| (*topic, envelope_of(*topic, event)))
            .collect();
        let result = self.pubsub.publish_all(items).await;
        if result.is_err() {
            self.metrics.pubsub_error();
        }
        result
    }
}

/// The envelope of `event` as published on `topic`.
pub(crate) fn envelope_of(topic: Topic, event: &Event) -> Payload {
    let (header, frame) = render(topic, event);
    envelope::encode(&header, &frame)
}

/// The routing header and the client frame of an event.
pub(crate) fn render(topic: Topic, event: &Event) -> (Header, String) {
    match event {
        Event::Message {
            message,
            origin,
            reply_preview,
        } => {
            let mut header = Header::new(Kind::Message, Some(message.conversation_id));
            header.seq = Some(message.seq);
            header.message_id = Some(message.id);
            header.user = Some(message.sender_id);
            header.origin = origin.map(|s| s.0);
            // Rendered right after the commit: the start of fan-out, for its latency metric.
            header.sent_at = Some(message.created_at.timestamp_micros());
            header.committed_at = Some(super::metrics::unix_micros_now());
            // Nobody else has it yet: live messages go out as `sent`.
            let message = wire::message(&MessageView {
                reply: reply_preview.clone(),
                ..MessageView::new(message.clone(), MessageStatus::Sent)
            });
            (header, wire::encode(&ServerFrame::Message { message }))
        }
        Event::Delivered {
            conversation_id,
            message_id,
            seq,
            since_seq,
            user_id,
        } => {
            let mut header = Header::new(Kind::Delivered, Some(*conversation_id));
            header.user = Some(*user_id);
            header.seq = Some(*seq);
            header.since = Some(*since_seq);
            let frame = ServerFrame::Delivered {
                conversation_id: conversation_id.as_uuid(),
                message_id: message_id.as_uuid(),
                seq: *seq,
                user_id: user_id.as_uuid(),
            };
            (header, wire::encode(&frame))
        }
        Event::Read {
            conversation_id,
            message_id,
            seq,
            since_seq,
            read_by,
            read_at,
        } => {
            let mut header = Header::new(Kind::Read, Some(*conversation_id));
            header.user = Some(*read_by);
            header.seq = Some(*seq);
            header.since = Some(*since_seq);
            let frame = ServerFrame::ReadReceipt {
                conversation_id: conversation_id.as_uuid(),
                message_id: message_id.as_uuid(),
                seq: *seq,
                read_by: read_by.as_uuid(),
                read_at: *read_at,
            };
            (header, wire::encode(&frame))
        }
        Event::Typing {
            conversation_id,
            user_id,
            is_typing,
        } => {
            let mut header = Header::new(Kind::Typing, Some(*conversation_id));
            header.user = Some(*user_id);
            let frame = ServerFrame::Typing {
                conversation_id: conversation_id.as_uuid(),
                user_id: user_id.as_uuid(),
                is_typing: *is_typing,
            };
            (header, wire::encode(&frame))
        }
        Event::Presence {
            user_id,
            status,
            last_seen,
        } => {
            let conversation = match topic {
                Topic::Conversation(id) => Some(id),
                Topic::User(_) => None,
            };
            let mut header = Header::new(Kind::Presence, conversation);
            header.user = Some(*user_id);
            let frame = ServerFrame::Presence {
                user_id: user_id.as_uuid(),
                status: wire::presence_status(*status),
                last_seen: *last_seen,
            };
            (header, wire::encode(&frame))
        }
        Event::Conversation {
            change,
            conversation,
            user_id,
            encryption,
        } => {
            let id = conversation.conversation.id;
            let mut header = Header::new(Kind::Conversation, Some(id));
            header.encrypted = encryption.is_some();
            // Where a joining member's sessions start following the conversation.
            header.seq = Some(conversation.conversation.last_seq);
            header.change = Some(conversation.conversation.last_change);
            match change {
                ConversationChange::MemberAdded => header.joined = *user_id,
                ConversationChange::MemberRemoved => header.left = *user_id,
                // A new conversation is published on each member's own topic: that member
                // joins it.
                ConversationChange::Created => {
                    if let Topic::User(member) = topic {
                        header.joined = Some(member);
                    }
                }
                ConversationChange::Renamed | ConversationChange::EncryptionEnabled => {}
            }
            // `unread_count` is per viewer; a broadcast shows the one of the member it is
            // about (the joining or leaving one), else the creator's.
            let viewer = header
                .joined
                .or(header.left)
                .unwrap_or(conversation.conversation.created_by);
            let frame = ServerFrame::Conversation {
                event: wire::conversation_event(*change),
                user_id: user_id.map(|u| u.as_uuid()),
                conversation: wire::conversation(conversation, viewer, encryption.as_ref()),
            };
            (header, wire::encode(&frame))
        }
        Event::KeyRequest(request) => {
            let header = Header::new(Kind::Key, Some(request.conversation_id));
            let frame = ServerFrame::KeyRequest {
                conversation_id: request.conversation_id.as_uuid(),
                user_id: request.user_id.as_uuid(),
                device_id: request.device_id.as_uuid(),
                key_version: request.key_version,
            };
            (header, wire::encode(&frame))
        }
        Event::KeyShared {
            conversation_id,
            key_version,
            rotated,
            from_user_id,
            from_device_id,
            device_ids,
        } => {
            let header = Header::new(Kind::Key, Some(*conversation_id));
            let frame = ServerFrame::KeyShared {
                conversation_id: conversation_id.as_uuid(),
                key_version: *key_version,
                rotated: *rotated,
                from_user_id: from_user_id.as_uuid(),
                from_device_id: from_device_id.as_uuid(),
                device_ids: device_ids.iter().map(|d| d.as_uuid()).collect(),
            };
            (header, wire::encode(&frame))
        }
        Event::MessageUpdated { view } => (
            change_header(&view.message),
            wire::encode(&wire::message_updated(view, false)),
        ),
        Event::MessageDeleted { message: m } => {
            (change_header(m), wire::encode(&wire::message_deleted(m)))
        }
        Event::Reaction {
            view,
            user_id,
            emoji,
            added,
        } => {
            let m = &view.message;
            let message = wire::shared_message(view);
            let frame = ServerFrame::Reaction {
                conversation_id: m.conversation_id.as_uuid(),
                message_id: m.id.as_uuid(),
                user_id: user_id.as_uuid(),
                emoji: emoji.clone(),
                added: *added,
                reactions: message.reactions.clone(),
                message,
                change_seq: m.change_seq,
            };
            (change_header(m), wire::encode(&frame))
        }
        Event::Unread {
            conversation_id,
            unread_count,
            total,
        } => {
            let header = Header::new(Kind::Unread, Some(*conversation_id));
            let frame = ServerFrame::Unread {
                conversation_id: conversation_id.as_uuid(),
                unread_count: *unread_count,
                total: *total,
            };
            (header, wire::encode(&frame))
        }
    }
}

/// The header of a change to `m` (an edit, a deletion, a reaction): ordered by its change
/// number, for every session of every member.
fn change_header(m: &domain::message::Message) -> Header {
    let mut header = Header::new(Kind::Change, Some(m.conversation_id));
    header.change = Some(m.change_seq);
    header.message_id = Some(m.id);
    header
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::Utc;
    use domain::conversation::{Conversation, ConversationDetails, ConversationKind};
    use domain::message::{ContentType, Message};
    use domain::realtime::{MockPubSub, SessionId};
    use domain::{ConversationId, MessageId, UserId};
    use mockall::predicate::eq;
    use serde_json::Value;

    fn message(conversation: ConversationId, seq: i64, sender: UserId) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: conversation,
            seq,
            sender_id: sender,
            client_msg_id: Some("t-1".into()),
            content: "hi".into(),
            content_type: ContentType::Text,
            reply_to: None,
            created_at: Utc::now(),
            edited_at: None,
            deleted_at: None,
            change_seq: 0,
            deleted_by: None,
            attachments: Vec::new(),
        }
    }

    fn details(id: ConversationId, creator: UserId) -> ConversationDetails {
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Group,
                title: Some("Team".into()),
                created_by: creator,
                created_at: Utc::now(),
                last_seq: 0,
                last_message_at: None,
                last_change: 0,
            },
            participants: vec![],
        }
    }

    #[test]
    fn a_message_event_carries_its_seq_sender_and_origin_in_the_header() {
        let (c, sender, origin) = (ConversationId::new(), UserId::new(), SessionId::new());
        let m = message(c, 7, sender);
        let (header, frame) = render(
            Topic::Conversation(c),
            &Event::Message {
                message: m.clone(),
                origin: Some(origin),
                reply_preview: None,
            },
        );
        assert_eq!(header.kind, Kind::Message);
        assert_eq!(
            (header.conversation, header.seq, header.user, header.origin),
            (Some(c), Some(7), Some(sender), Some(origin.0))
        );
        assert_eq!(header.message_id, Some(m.id));
        assert_eq!(header.sent_at, Some(m.created_at.timestamp_micros()));
        let stamped = header.committed_at.expect("a commit stamp");
        assert!(
            (stamped - Utc::now().timestamp_micros()).abs() < 60_000_000,
            "stamped with the time of rendering: {stamped}"
        );
        let frame: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(frame["type"], "message");
        assert_eq!(frame["message"]["seq"], 7);
        assert_eq!(frame["message"]["status"], "sent");
        assert_eq!(frame["message"]["temp_id"], "t-1");
    }

    #[test]
    fn a_reply_goes_out_with_the_preview_of_its_original_and_a_plain_message_without() {
        let (c, sender) = (ConversationId::new(), UserId::new());
        let original = message(c, 3, sender);
        let mut reply = message(c, 4, sender);
        reply.reply_to = Some(original.id);
        let (_, frame) = render(
            Topic::Conversation(c),
            &Event::Message {
                message: reply,
                origin: None,
                reply_preview: Some(domain::message::ReplyPreview::of(&original)),
            },
        );
        let frame: Value = serde_json::from_str(&frame).unwrap();
        let preview = &frame["message"]["reply_preview"];
        assert_eq!(preview["id"], original.id.to_string());
        assert_eq!(preview["sender_id"], sender.to_string());
        assert_eq!(preview["content"], original.content);
        assert_eq!(preview["content_type"], "text");
        assert_eq!(preview["deleted"], false);
        let (_, plain) = render(
            Topic::Conversation(c),
            &Event::Message {
                message: original,
                origin: None,
                reply_preview: None,
            },
        );
        let plain: Value = serde_json::from_str(&plain).unwrap();
        assert!(plain["message"]["reply_preview"].is_null(), "{plain}");
    }

    #[test]
    fn a_created_conversation_is_joined_by_the_member_whose_topic_carries_it() {
        let (c, creator, member) = (ConversationId::new(), UserId::new(), UserId::new());
        let event = Event::Conversation {
            change: ConversationChange::Created,
            conversation: details(c, creator),
            user_id: None,
            encryption: None,
        };
        let (header, frame) = render(Topic::User(member), &event);
        assert_eq!(header.joined, Some(member));
        let frame: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(frame["event"], "created");
        assert_eq!(frame["conversation"]["id"], c.to_string());
    }

    #[test]
    fn a_removal_names_who_left_and_an_addition_who_joined() {
        let (c, creator, member) = (ConversationId::new(), UserId::new(), UserId::new());
        for (change, joined, left) in [
            (ConversationChange::MemberAdded, Some(member), None),
            (ConversationChange::MemberRemoved, None, Some(member)),
        ] {
            let event = Event::Conversation {
                change,
                conversation: details(c, creator),
                user_id: Some(member),
                encryption: None,
            };
            let (header, frame) = render(Topic::Conversation(c), &event);
            assert_eq!((header.joined, header.left), (joined, left));
            let frame: Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(frame["user_id"], member.to_string());
        }
    }

    #[test]
    fn an_encrypted_conversations_events_say_so_in_header_and_frame() {
        let (c, creator) = (ConversationId::new(), UserId::new());
        let state = domain::encryption::EncryptionState {
            conversation_id: c,
            key_version: 3,
            rotation_needed: true,
            enabled_at: Utc::now(),
        };
        let event = Event::Conversation {
            change: ConversationChange::EncryptionEnabled,
            conversation: details(c, creator),
            user_id: None,
            encryption: Some(state),
        };
        let (header, frame) = render(Topic::Conversation(c), &event);
        assert!(header.encrypted);
        let frame: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(frame["event"], "encryption_enabled");
        assert_eq!(frame["conversation"]["encrypted"], true);
        assert_eq!(frame["conversation"]["key_version"], 3);
        assert_eq!(frame["conversation"]["rotation_needed"], true);
        let plain = Event::Conversation {
            change: ConversationChange::Renamed,
            conversation: details(c, creator),
            user_id: None,
            encryption: None,
        };
        let (header, frame) = render(Topic::Conversation(c), &plain);
        assert!(!header.encrypted);
        let frame: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            (
                &frame["conversation"]["encrypted"],
                &frame["conversation"]["key_version"]
            ),
            (&Value::Bool(false), &Value::from(0))
        );
    }

    #[test]
    fn key_requests_and_shares_are_key_events_of_their_conversation() {
        let (c, user) = (ConversationId::new(), UserId::new());
        let (d1, d2) = (domain::DeviceId::new(), domain::DeviceId::new());
        let (header, frame) = render(
            Topic::Conversation(c),
            &Event::KeyRequest(domain::services::KeyRequest {
                conversation_id: c,
                user_id: user,
                device_id: d1,
                key_version: 2,
            }),
        );
        assert_eq!((header.kind, header.conversation), (Kind::Key, Some(c)));
        assert_eq!(
            frame,
            format!(
                r#"{{"type":"key_request","conversation_id":"{c}","user_id":"{user}","device_id":"{d1}","key_version":2}}"#
            )
        );
        let (header, frame) = render(
            Topic::Conversation(c),
            &Event::KeyShared {
                conversation_id: c,
                key_version: 3,
                rotated: true,
                from_user_id: user,
                from_device_id: d1,
                device_ids: vec![d1, d2],
            },
        );
        assert_eq!((header.kind, header.conversation), (Kind::Key, Some(c)));
        assert_eq!(
            frame,
            format!(
                r#"{{"type":"key_shared","conversation_id":"{c}","key_version":3,"rotated":true,"from_user_id":"{user}","from_device_id":"{d1}","device_ids":["{d1}","{d2}"]}}"#
            )
        );
    }

    #[tokio::test]
    async fn an_event_is_published_once_on_its_topic_as_an_envelope() {
        let c = ConversationId::new();
        let mut pubsub = MockPubSub::new();
        pubsub
            .expect_publish()
            .with(eq(Topic::Conversation(c)), mockall::predicate::always())
            .times(1)
            .returning(|_, payload| {
                let (header, frame) = envelope::decode(&payload).unwrap();
                assert_eq!(header.kind, Kind::Typing);
                assert!(frame.contains("\"is_typing\":true"));
                Ok(())
            });
        let publisher = PubSubPublisher::new(Arc::new(pubsub), Arc::default());
        publisher
            .publish(
                Topic::Conversation(c),
                Event::Typing {
                    conversation_id: c,
                    user_id: UserId::new(),
                    is_typing: true,
                },
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_publish_is_returned_and_counted_as_a_pubsub_error() {
        let mut pubsub = MockPubSub::new();
        pubsub
            .expect_publish()
            .returning(|_, _| Err(RealtimeError::msg("redis is down")));
        let metrics = Arc::new(Metrics::default());
        let publisher = PubSubPublisher::new(Arc::new(pubsub), metrics.clone());
        let c = ConversationId::new();
        let event = Event::Typing {
            conversation_id: c,
            user_id: UserId::new(),
            is_typing: true,
        };
        assert!(publisher
            .publish(Topic::Conversation(c), event)
            .await
            .is_err());
        let text = metrics.render(Default::default());
        assert!(text.contains("\nchat_pubsub_errors_total 1\n"), "{text}");
    }
}
