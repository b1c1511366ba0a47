//! Lookups every conversation and message service begins with, and their one answer when
//! what was named is not there.

use super::errors::ChatError;
use crate::conversation::Participant;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::message::Message;
use crate::ports::{ConversationStore, MessageStore};

/// `user`'s membership of `conversation`; `NotParticipant` when not a member or when there
/// is no such conversation (one answer for both, so ids are never revealed).
pub(super) async fn require_member(
    conversations: &dyn ConversationStore,
    conversation: ConversationId,
    user: UserId,
) -> Result<Participant, ChatError> {
    conversations
        .participant(conversation, user)
        .await?
        .ok_or(ChatError::NotParticipant)
}

/// Message `message` of `conversation`; `MessageNotFound` when it is not in that
/// conversation.
pub(super) async fn require_message(
    messages: &dyn MessageStore,
    conversation: ConversationId,
    message: MessageId,
) -> Result<Message, ChatError> {
    messages
        .message(conversation, message)
        .await?
        .ok_or(ChatError::MessageNotFound)
}
