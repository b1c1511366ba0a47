//! Domain values into the wire types of the `protocol` crate, and server frames into JSON
//! text. The server's REST handlers and WebSocket sessions and this crate's publisher all
//! come here, so a value has one wire shape whichever surface carries it. (Free functions:
//! the orphan rule forbids `From` between two foreign crates' types.)

use domain::auth::AuthSession;
use domain::conversation::{
    ConversationDetails, ConversationState, ConversationSummary, ParticipantProfile,
};
use domain::encryption::EncryptionState;
use domain::message::{AppendOutcome, Message, MessageStatus, ReactionCount, ReplyPreview};
use domain::realtime::{self, ConversationChange};
use domain::services::{MessageService, MessageView, ParticipantPresence};
use domain::user::User;
use domain::UserId;
use protocol::rest::{
    AuthResponse, ConversationDto, MessageDto, ParticipantDto, ParticipantPresenceDto, ReactionDto,
    ReplyPreviewDto, UserDto,
};
use protocol::server::{ConversationEvent, ConversationSnapshot, PresenceStatus, Watermarks};
use protocol::ServerFrame;

/// A server frame as JSON text.
pub fn encode(frame: &ServerFrame) -> String {
    // Every field serialises (string keys, no non-finite floats): failure is impossible,
    // but a frame is never worth a panic.
    serde_json::to_string(frame).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a server frame did not serialise");
        r#"{"type":"error","code":"unavailable","message":"internal error","ref":null}"#.to_owned()
    })
}

/// A user as others see them.
pub fn user(user: &User) -> UserDto {
    UserDto {
        id: user.id.as_uuid(),
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.as_str().to_owned(),
        avatar_url: user.avatar_url.clone(),
    }
}

/// A device as members see it, with its fingerprint.
pub fn device(device: &domain::encryption::Device) -> protocol::rest::DeviceDto {
    protocol::rest::DeviceDto {
        id: device.id.as_uuid(),
        user_id: device.user_id.as_uuid(),
        public_key: device.public_key.as_str().to_owned(),
        name: device.name.as_str().to_owned(),
        fingerprint: device.public_key.fingerprint(),
        created_at: device.created_at,
    }
}

/// What register, login and refresh answer.
pub fn auth(session: &AuthSession) -> AuthResponse {
    AuthResponse {
        access_token: session.access.token.clone(),
        refresh_token: session.refresh.expose().to_owned(),
        token_type: "bearer".to_owned(),
        expires_in: session.access.expires_in,
        user: user(&session.user),
    }
}

/// A message with its status as the sender sees it.
pub fn message(view: &MessageView) -> MessageDto {
    let m = &view.message;
    MessageDto {
        id: m.id.as_uuid(),
        conversation_id: m.conversation_id.as_uuid(),
        seq: m.seq,
        sender_id: m.sender_id.as_uuid(),
        content: m.content.clone(),
        content_type: m.content_type.as_str().to_owned(),
        reply_to: m.reply_to.map(|id| id.as_uuid()),
        temp_id: m.client_msg_id.clone(),
        created_at: m.created_at,
        edited_at: m.edited_at,
        deleted_at: m.deleted_at,
        status: view.status.as_str().to_owned(),
        deleted_by: m.deleted_by.map(|u| u.as_uuid()),
        change_seq: m.change_seq,
        reactions: view.reactions.iter().map(|r| reaction(r, true)).collect(),
        reply_preview: view.reply.as_ref().map(reply_preview),
        // Unsigned: whoever writes it to one reader signs the links for them.
        attachments: m.attachments.iter().map(crate::links::attachment).collect(),
    }
}

/// A message just appended: a new one is `sent` (nobody else has it yet).
pub fn appended(outcome: &AppendOutcome) -> MessageDto {
    message(&MessageView::new(
        outcome.message().clone(),
        MessageStatus::Sent,
    ))
}

/// One emoji's reactions; `me` only for a frame of one reader (history, `sync`), not for a
/// live frame every member shares.
pub fn reaction(r: &ReactionCount, for_reader: bool) -> ReactionDto {
    ReactionDto {
        emoji: r.emoji.clone(),
        count: r.count,
        user_ids: r.user_ids.iter().map(|u| u.as_uuid()).collect(),
        me: for_reader.then_some(r.me),
    }
}

/// The quote of the message a reply answers.
pub fn reply_preview(p: &ReplyPreview) -> ReplyPreviewDto {
    ReplyPreviewDto {
        id: p.message_id.as_uuid(),
        sender_id: p.sender_id.as_uuid(),
        content: p.excerpt.clone(),
        content_type: p.content_type.as_str().to_owned(),
        deleted: p.deleted,
    }
}

/// `message_updated` of `view`: for one reader (a `sync` replay: reactions with `me`), or
/// one frame for every member (live: without).
pub fn message_updated(view: &MessageView, for_reader: bool) -> ServerFrame {
    let m = &view.message;
    ServerFrame::MessageUpdated {
        conversation_id: m.conversation_id.as_uuid(),
        message: if for_reader {
            message(view)
        } else {
            shared_message(view)
        },
        change_seq: m.change_seq,
    }
}

/// `message_deleted` of the tombstone `m`.
pub fn message_deleted(m: &Message) -> ServerFrame {
    ServerFrame::MessageDeleted {
        conversation_id: m.conversation_id.as_uuid(),
        message_id: m.id.as_uuid(),
        seq: m.seq,
        deleted_at: m.deleted_at.unwrap_or(m.created_at),
        deleted_by: m.deleted_by.unwrap_or(m.sender_id).as_uuid(),
        change_seq: m.change_seq,
    }
}

/// A message as one frame for every member (live `message_updated`): reactions without `me`.
pub fn shared_message(view: &MessageView) -> MessageDto {
    MessageDto {
        reactions: view.reactions.iter().map(|r| reaction(r, false)).collect(),
        ..message(view)
    }
}

/// A member of a conversation.
pub(crate) fn participant(p: &ParticipantProfile) -> ParticipantDto {
    ParticipantDto {
        user_id: p.participant.user_id.as_uuid(),
        display_name: p.display_name.clone(),
        email: p.email.clone(),
        avatar_url: p.avatar_url.clone(),
        role: p.participant.role.as_str().to_owned(),
        joined_at: p.participant.joined_at,
        delivered_seq: p.participant.delivered_seq.max(p.participant.read_seq),
        read_seq: p.participant.read_seq,
        last_seen: p.last_seen_at,
    }
}

/// The conversation as `me` sees it, without its last message, with its end-to-end
/// encryption (`None`: not encrypted).
pub fn conversation(
    details: &ConversationDetails,
    me: UserId,
    encryption: Option<&EncryptionState>,
) -> ConversationDto {
    let c = &details.conversation;
    ConversationDto {
        id: c.id.as_uuid(),
        kind: c.kind.as_str().to_owned(),
        title: c.title.clone(),
        created_by: c.created_by.as_uuid(),
        created_at: c.created_at,
        last_seq: c.last_seq,
        last_message_at: c.last_message_at,
        unread_count: details.unread_count(me),
        last_message: None,
        participants: details.participants.iter().map(participant).collect(),
        encrypted: encryption.is_some(),
        key_version: encryption.map_or(0, |e| e.key_version),
        rotation_needed: encryption.is_some_and(|e| e.rotation_needed),
    }
}

/// A list entry: the conversation with its newest message and that message's status.
pub fn conversation_entry(
    summary: &ConversationSummary,
    me: UserId,
    encryption: Option<&EncryptionState>,
) -> ConversationDto {
    let last = summary.last_message.clone().map(|m| {
        MessageService::views(&summary.details, vec![m])
            .first()
            .map(message)
    });
    ConversationDto {
        last_message: Some(last.flatten()),
        ..conversation(&summary.details, me, encryption)
    }
}

/// One member's presence (REST).
pub fn participant_presence(p: &ParticipantPresence) -> ParticipantPresenceDto {
    ParticipantPresenceDto {
        user_id: p.user_id.as_uuid(),
        status: p.status.as_str().to_owned(),
        last_seen: p.last_seen,
    }
}

/// A member's receipt watermarks and the others' lowest.
pub fn watermarks(state: &ConversationState) -> Watermarks {
    Watermarks {
        delivered_seq: state.delivered_seq,
        read_seq: state.read_seq,
        peer_delivered_seq: state.peer_delivered_seq,
        peer_read_seq: state.peer_read_seq,
    }
}

/// A conversation of the `hello` snapshot.
pub fn snapshot(state: &ConversationState) -> ConversationSnapshot {
    ConversationSnapshot {
        conversation_id: state.conversation_id.as_uuid(),
        last_seq: state.last_seq,
        unread_count: state.unread_count(),
        last_change: state.last_change,
        watermarks: watermarks(state),
    }
}

/// Someone's presence in a `presence` frame.
pub(crate) fn presence_status(status: realtime::PresenceStatus) -> PresenceStatus {
    match status {
        realtime::PresenceStatus::Online => PresenceStatus::Online,
        realtime::PresenceStatus::Away => PresenceStatus::Away,
        realtime::PresenceStatus::Offline => PresenceStatus::Offline,
    }
}

/// The `event` of a `conversation` frame.
pub(crate) fn conversation_event(change: ConversationChange) -> ConversationEvent {
    match change {
        ConversationChange::Created => ConversationEvent::Created,
        ConversationChange::Renamed => ConversationEvent::Renamed,
        ConversationChange::MemberAdded => ConversationEvent::MemberAdded,
        ConversationChange::MemberRemoved => ConversationEvent::MemberRemoved,
        ConversationChange::EncryptionEnabled => ConversationEvent::EncryptionEnabled,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use domain::realtime::PresenceStatus as Domain;

    #[test]
    fn presence_and_conversation_events_keep_the_domains_wire_names() {
        for status in [Domain::Online, Domain::Away, Domain::Offline] {
            let json = serde_json::to_string(&presence_status(status)).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        for change in [
            ConversationChange::Created,
            ConversationChange::Renamed,
            ConversationChange::MemberAdded,
            ConversationChange::MemberRemoved,
            ConversationChange::EncryptionEnabled,
        ] {
            let json = serde_json::to_string(&conversation_event(change)).unwrap();
            assert_eq!(json, format!("\"{}\"", change.as_str()));
        }
    }
}
