//! Messages: idempotent sends, history, and the delivered/read watermarks.

use super::errors::ChatError;
use crate::conversation::{ConversationDetails, Participant};
use crate::ids::{ConversationId, MessageId, UserId};
use crate::limits::Limits;
use crate::message::{
    AppendOutcome, AppendRejection, ClientMsgId, ContentType, Message, MessageContent,
    MessageStatus, NewMessage,
};
use crate::ports::{Clock, ConversationStore, MessageStore, ReceiptStore, WatermarkUpdate};
use crate::user::InvalidField;
use std::sync::Arc;

/// A send as a client asked for it, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCommand {
    /// Author (authenticated).
    pub sender: UserId,
    /// Target conversation.
    pub conversation_id: ConversationId,
    /// Text as sent.
    pub content: String,
    /// `text` if absent.
    pub content_type: Option<String>,
    /// Idempotency key.
    pub temp_id: Option<String>,
    /// Message answered.
    pub reply_to: Option<MessageId>,
}

/// A message with the status its sender sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// The message.
    pub message: Message,
    /// Aggregate delivery status over the other participants.
    pub status: MessageStatus,
}

/// A page of history and what fetching it did to the reader's delivered watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Messages, in the order asked for.
    pub messages: Vec<MessageView>,
    /// The reader's watermarks if fetching moved its delivered watermark (a fetched
    /// message counts as delivered), for the real-time layer to announce.
    pub delivered: Option<Participant>,
}

/// What marking read did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Messages still unread by the reader.
    pub unread_count: i64,
    /// The reader's watermarks afterwards.
    pub watermarks: Participant,
    /// The message the watermark points at.
    pub message: Message,
}

/// Send messages, page history, move receipt watermarks.
#[derive(Clone)]
pub struct MessageService {
    messages: Arc<dyn MessageStore>,
    conversations: Arc<dyn ConversationStore>,
    receipts: Arc<dyn ReceiptStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl MessageService {
    /// Wires the service to its ports.
    pub fn new(
        messages: Arc<dyn MessageStore>,
        conversations: Arc<dyn ConversationStore>,
        receipts: Arc<dyn ReceiptStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            messages,
            conversations,
            receipts,
            clock,
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Validates a send and checks the sender may post, without writing anything: the
    /// message ready to append (alone, or in a batch with others).
    pub async fn prepare_send(&self, cmd: SendCommand) -> Result<NewMessage, ChatError> {
        let content = MessageContent::parse(&cmd.content, self.limits.max_content_chars)?;
        let content_type = match cmd.content_type.as_deref() {
            None => ContentType::Text,
            Some(raw) => raw.parse()?,
        };
        let client_msg_id = cmd.temp_id.as_deref().map(ClientMsgId::parse).transpose()?;
        self.require_member(cmd.conversation_id, cmd.sender).await?;
        if let Some(reply_to) = cmd.reply_to {
            if self
                .messages
                .message(cmd.conversation_id, reply_to)
                .await?
                .is_none()
            {
                return Err(ChatError::MessageNotFound);
            }
        }
        Ok(NewMessage {
            id: MessageId::new(),
            conversation_id: cmd.conversation_id,
            sender_id: cmd.sender,
            client_msg_id,
            content,
            content_type,
            reply_to: cmd.reply_to,
            created_at: self.clock.now(),
        })
    }

    /// Persists prepared messages in one transaction; one result per message, in order.
    pub async fn append(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<AppendOutcome, ChatError>>, ChatError> {
        let results = self.messages.append_messages(batch).await?;
        if results.len() != batch.len() {
            return Err(ChatError::Storage(crate::StorageError::msg(
                "storage answered a different number of results than messages appended",
            )));
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.map_err(|rejection| match rejection {
                    AppendRejection::KeyReused => ChatError::TempIdReused,
                    AppendRejection::ConversationNotFound => ChatError::NotParticipant,
                })
            })
            .collect())
    }

    /// Validates and persists one message. A retry with the same `temp_id` gets the
    /// original message back as [`AppendOutcome::Replayed`].
    pub async fn send(&self, cmd: SendCommand) -> Result<AppendOutcome, ChatError> {
        let new = self.prepare_send(cmd).await?;
        self.append(std::slice::from_ref(&new))
            .await?
            .pop()
            .unwrap_or(Err(ChatError::Storage(crate::StorageError::msg(
                "storage answered no result",
            ))))
    }

    /// History older than `before` (a message id in this conversation; newest when
    /// `None`), newest first. Fetching counts as delivery.
    pub async fn history_before(
        &self,
        me: UserId,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<HistoryPage, ChatError> {
        let details = self.member_details(conversation, me).await?;
        let before_seq = match before {
            None => None,
            Some(id) => Some(
                self.messages
                    .message(conversation, id)
                    .await?
                    .ok_or(ChatError::MessageNotFound)?
                    .seq,
            ),
        };
        let limit = self.page_size(limit)?;
        let messages = self
            .messages
            .messages_before(conversation, before_seq, limit)
            .await?;
        self.page(me, &details, messages).await
    }

    /// History after `after_seq`, oldest first (the sync cursor). Fetching counts as delivery.
    pub async fn history_after(
        &self,
        me: UserId,
        conversation: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<HistoryPage, ChatError> {
        if after_seq < 0 {
            return Err(InvalidField::new("after_seq", "must not be negative").into());
        }
        let details = self.member_details(conversation, me).await?;
        let limit = self.page_size(limit)?;
        let messages = self
            .messages
            .messages_after(conversation, after_seq, limit)
            .await?;
        self.page(me, &details, messages).await
    }

    /// Marks everything up to and including `message` read by `me`. The watermark never
    /// moves back: marking an older message read changes nothing.
    pub async fn mark_read(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<ReadOutcome, ChatError> {
        let details = self.member_details(conversation, me).await?;
        let message = self
            .messages
            .message(conversation, message)
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        let watermarks = self
            .advance(WatermarkUpdate {
                conversation_id: conversation,
                user_id: me,
                delivered_seq: None,
                read_seq: Some(message.seq),
            })
            .await?;
        let last_seq = details.conversation.last_seq.max(message.seq);
        Ok(ReadOutcome {
            unread_count: (last_seq - watermarks.read_seq).max(0),
            watermarks,
            message,
        })
    }

    /// Marks everything up to and including `message` delivered to `me` (an explicit ack).
    pub async fn mark_delivered(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<(Participant, Message), ChatError> {
        self.require_member(conversation, me).await?;
        let message = self
            .messages
            .message(conversation, message)
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        let watermarks = self
            .advance(WatermarkUpdate {
                conversation_id: conversation,
                user_id: me,
                delivered_seq: Some(message.seq),
                read_seq: None,
            })
            .await?;
        Ok((watermarks, message))
    }

    /// The status each message of `messages` has for its sender, given the members' watermarks.
    pub fn views(details: &ConversationDetails, messages: Vec<Message>) -> Vec<MessageView> {
        let participants: Vec<Participant> = details
            .participants
            .iter()
            .map(|p| p.participant.clone())
            .collect();
        messages
            .into_iter()
            .map(|message| MessageView {
                status: MessageStatus::aggregate(message.seq, message.sender_id, &participants),
                message,
            })
            .collect()
    }

    async fn page(
        &self,
        me: UserId,
        details: &ConversationDetails,
        messages: Vec<Message>,
    ) -> Result<HistoryPage, ChatError> {
        let newest = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        let mine = details.participant(me).ok_or(ChatError::NotParticipant)?;
        let delivered = if newest > mine.delivered_seq.max(mine.read_seq) {
            Some(
                self.advance(WatermarkUpdate {
                    conversation_id: details.conversation.id,
                    user_id: me,
                    delivered_seq: Some(newest),
                    read_seq: None,
                })
                .await?,
            )
        } else {
            None
        };
        Ok(HistoryPage {
            messages: Self::views(details, messages),
            delivered,
        })
    }

    async fn advance(&self, update: WatermarkUpdate) -> Result<Participant, ChatError> {
        self.receipts
            .advance_watermarks(&[update])
            .await?
            .pop()
            .flatten()
            .ok_or(ChatError::NotParticipant)
    }

    fn page_size(&self, limit: u32) -> Result<u32, ChatError> {
        if limit == 0 || limit > self.limits.max_page_size {
            return Err(InvalidField::new(
                "limit",
                format!("must be 1 to {}", self.limits.max_page_size),
            )
            .into());
        }
        Ok(limit)
    }

    async fn require_member(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Participant, ChatError> {
        self.conversations
            .participant(conversation, user)
            .await?
            .ok_or(ChatError::NotParticipant)
    }

    async fn member_details(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<ConversationDetails, ChatError> {
        let details = self
            .conversations
            .conversation(conversation)
            .await?
            .ok_or(ChatError::NotParticipant)?;
        if details.participant(user).is_none() {
            return Err(ChatError::NotParticipant);
        }
        Ok(details)
    }
}
