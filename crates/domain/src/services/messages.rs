//! Messages: idempotent sends, history, and the delivered/read watermarks.

use super::errors::ChatError;
use super::lifecycle::REACTION_USERS_SHOWN;
use super::lookups::{require_member, require_message};
use crate::conversation::{ConversationDetails, ConversationState, Participant};
use crate::ids::{ConversationId, MessageId, UserId};
use crate::limits::Limits;
use crate::message::{
    check_send, parse_content, AppendOutcome, AppendRejection, ClientMsgId, ContentType, Message,
    MessageContent, MessageStatus, NewMessage, ReplyPreview,
};
use crate::ports::{
    AttachmentStore, Clock, ConversationStore, EncryptionStore, MessageStore, ReceiptStore,
    WatermarkUpdate,
};
use crate::user::InvalidField;
use std::collections::{HashMap, HashSet};
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
    /// Whether the conversation is end-to-end encrypted, when the caller knows it without
    /// asking storage (a live session learns it when it opens and from the
    /// `encryption_enabled` event); `None`: read it with the send's checks.
    pub encrypted: Option<bool>,
    /// Confirmed uploads of the sender to send with it (issue 14); with any, the text of a
    /// `text` message may be empty.
    pub attachment_ids: Vec<crate::ids::AttachmentId>,
}

/// A message with the status its sender sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// The message.
    pub message: Message,
    /// Aggregate delivery status over the other participants.
    pub status: MessageStatus,
    /// Its reactions as the reader sees them (`me` is the reader's); empty when none or
    /// not read (a live frame of a new message).
    pub reactions: Vec<crate::message::ReactionCount>,
    /// The message it answers, as it is now, if it is a reply and the original was read.
    pub reply: Option<crate::message::ReplyPreview>,
}

impl MessageView {
    /// `message` with `status`, no reactions read and no reply preview.
    pub fn new(message: Message, status: MessageStatus) -> Self {
        Self {
            message,
            status,
            reactions: Vec::new(),
            reply: None,
        }
    }
}

/// A page of history and what fetching it did to the reader's delivered watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Messages, in the order asked for.
    pub messages: Vec<MessageView>,
    /// The reader's watermarks if fetching moved its delivered watermark (a fetched
    /// message counts as delivered), for the real-time layer to announce.
    pub delivered: Option<Participant>,
    /// The reader's state in the conversation as the page was read: the members'
    /// watermarks read with it, the reader's own after this fetch's delivery, `last_seq`
    /// at least the newest message of the page. What a `sync_done` reports.
    pub state: ConversationState,
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
    encryption: Arc<dyn EncryptionStore>,
    attachments: Arc<dyn AttachmentStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl MessageService {
    /// Wires the service to its ports.
    pub fn new(
        messages: Arc<dyn MessageStore>,
        conversations: Arc<dyn ConversationStore>,
        receipts: Arc<dyn ReceiptStore>,
        encryption: Arc<dyn EncryptionStore>,
        attachments: Arc<dyn AttachmentStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            messages,
            conversations,
            receipts,
            encryption,
            attachments,
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
        self.prepare(cmd, true).await
    }

    /// As [`Self::prepare_send`], for a caller that already knows the sender is a member: a
    /// live session following the conversation, which membership changes reach on the
    /// conversation's own topic before any later event. Skips the membership read (one
    /// storage round trip per send); a send racing the sender's removal is ordered before it.
    pub async fn prepare_member_send(&self, cmd: SendCommand) -> Result<NewMessage, ChatError> {
        self.prepare(cmd, false).await
    }

    async fn prepare(&self, cmd: SendCommand, check_member: bool) -> Result<NewMessage, ChatError> {
        let content_type = match cmd.content_type.as_deref() {
            None => ContentType::Text,
            Some(raw) => raw.parse()?,
        };
        let content = if !cmd.attachment_ids.is_empty()
            && content_type == ContentType::Text
            && cmd.content.trim().is_empty()
        {
            // Files alone: no caption.
            MessageContent::from_trusted(String::new())
        } else {
            parse_content(
                &cmd.content,
                content_type,
                self.limits.max_content_chars,
                self.limits.max_encrypted_bytes,
            )?
        };
        let client_msg_id = cmd.temp_id.as_deref().map(ClientMsgId::parse).transpose()?;
        if check_member {
            require_member(&*self.conversations, cmd.conversation_id, cmd.sender).await?;
        }
        // After the membership check: a non-member learns nothing of the conversation.
        let encrypted = match cmd.encrypted {
            Some(known) => known,
            None => self.is_encrypted(cmd.conversation_id).await?,
        };
        check_send(encrypted, content_type).map_err(ChatError::from)?;
        // Only a reply reads anything more: the original, whose preview its frames carry.
        let reply_preview = match cmd.reply_to {
            None => None,
            Some(reply_to) => Some(ReplyPreview::of(
                &require_message(&*self.messages, cmd.conversation_id, reply_to).await?,
            )),
        };
        let attachments = super::attachments::for_send(
            &*self.attachments,
            cmd.sender,
            cmd.conversation_id,
            &cmd.attachment_ids,
            self.limits.max_attachments_per_message,
            client_msg_id.is_some(),
        )
        .await?;
        if encrypted && attachments.iter().any(|a| !a.encrypted) {
            // Uploaded in the clear before encryption was turned on: sent now, it would sit
            // among ciphertext as if it were protected.
            return Err(ChatError::EncryptionRequired(
                "an attachment uploaded before end-to-end encryption was turned on cannot be sent: upload it again",
            ));
        }
        Ok(NewMessage {
            id: MessageId::new(),
            conversation_id: cmd.conversation_id,
            sender_id: cmd.sender,
            client_msg_id,
            content,
            content_type,
            reply_to: cmd.reply_to,
            reply_preview,
            created_at: self.clock.now(),
            attachments,
        })
    }

    /// Whether `conversation` is end-to-end encrypted (one read).
    pub async fn is_encrypted(&self, conversation: ConversationId) -> Result<bool, ChatError> {
        Ok(self
            .encryption
            .encryption_state(conversation)
            .await?
            .is_some())
    }

    /// Persists prepared messages in one transaction; one result per message, in order.
    ///
    /// One message must not fail the others. When the database refuses the transaction
    /// ([`StorageError::is_refused`]: it answered, with a constraint or data error) rather
    /// than being unreachable, the batch is split in halves and each half appended in turn,
    /// again and again, until every refused message is alone: it gets
    /// [`ChatError::Unstorable`], every other message its own outcome. Halves are appended
    /// in order, so seqs keep the batch's order; one bad message among `n` costs about
    /// `2 log2 n` more transactions. When the database cannot be reached, nothing more is
    /// tried: `Err` if that was the first attempt, else `Storage` for every message not yet
    /// committed (those committed by earlier halves keep their outcome, they must be acked).
    ///
    /// [`StorageError::is_refused`]: crate::StorageError::is_refused
    pub async fn append(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<AppendOutcome, ChatError>>, ChatError> {
        match self.append_once(batch).await {
            Ok(results) => Ok(results),
            Err(e) if e.is_refused() => Ok(self.isolate(batch, e).await),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends `batch`, the first attempt of which the database refused with `refused`,
    /// in ever smaller groups (see [`Self::append`]).
    async fn isolate(
        &self,
        batch: &[NewMessage],
        refused: crate::StorageError,
    ) -> Vec<Result<AppendOutcome, ChatError>> {
        let mut results: Vec<Option<Result<AppendOutcome, ChatError>>> =
            batch.iter().map(|_| None).collect();
        // Ranges still to append, the next one on top; `Err` is the refusal of a range of
        // one, already known.
        let mut todo: Vec<(usize, usize, Option<crate::StorageError>)> = Vec::new();
        let mid = batch.len() / 2;
        if batch.len() > 1 {
            todo.push((mid, batch.len(), None));
            todo.push((0, mid, None));
        } else {
            todo.push((0, batch.len(), Some(refused)));
        }
        while let Some((lo, hi, known)) = todo.pop() {
            let outcome = match known {
                Some(refused) => Err(refused),
                None => self.append_once(&batch[lo..hi]).await,
            };
            match outcome {
                Ok(appended) => {
                    for (slot, result) in results[lo..hi].iter_mut().zip(appended) {
                        *slot = Some(result);
                    }
                }
                Err(e) if e.is_refused() && hi - lo > 1 => {
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi, None));
                    todo.push((lo, mid, None));
                }
                Err(e) if e.is_refused() => results[lo] = Some(Err(ChatError::Unstorable(e))),
                Err(e) => {
                    // Unreachable now: this range and every one still to do (all after it)
                    // are not committed.
                    let cause = e.to_string();
                    for slot in results[lo..].iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err(ChatError::Storage(crate::StorageError::msg(
                            cause.clone(),
                        ))));
                    }
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ChatError::Storage(crate::StorageError::msg(
                        "a message of the batch was never appended",
                    )))
                })
            })
            .collect()
    }

    /// One `append_messages` call, its rejections mapped.
    async fn append_once(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<AppendOutcome, ChatError>>, crate::StorageError> {
        let results = self.messages.append_messages(batch).await?;
        if results.len() != batch.len() {
            return Err(crate::StorageError::msg(
                "storage answered a different number of results than messages appended",
            ));
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.map_err(|rejection| match rejection {
                    AppendRejection::KeyReused => ChatError::TempIdReused,
                    AppendRejection::ConversationNotFound => ChatError::NotParticipant,
                    AppendRejection::AttachmentUnavailable => ChatError::AttachmentAlreadySent,
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
                require_message(&*self.messages, conversation, id)
                    .await?
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

    /// History around `target` (a message id in this conversation), newest first as
    /// [`Self::history_before`]: the target, up to `(limit - 1) / 2` older messages and the
    /// rest of `limit` newer ones (more older ones when there are fewer newer, and the other
    /// way round). Where a client jumps to a quoted message. Fetching counts as delivery.
    pub async fn history_around(
        &self,
        me: UserId,
        conversation: ConversationId,
        target: MessageId,
        limit: u32,
    ) -> Result<HistoryPage, ChatError> {
        let details = self.member_details(conversation, me).await?;
        let limit = self.page_size(limit)?;
        let target = require_message(&*self.messages, conversation, target).await?;
        let rest = limit - 1;
        let newer_half = rest - rest / 2;
        let count = |v: &[Message]| u32::try_from(v.len()).unwrap_or(u32::MAX);
        let mut newer = if newer_half == 0 {
            Vec::new()
        } else {
            self.messages
                .messages_after(conversation, target.seq, newer_half)
                .await?
        };
        let older_room = rest.saturating_sub(count(&newer));
        let older = if older_room == 0 {
            Vec::new()
        } else {
            self.messages
                .messages_before(conversation, Some(target.seq), older_room)
                .await?
        };
        // Fewer older ones than their half: newer ones fill the page instead.
        let room = rest.saturating_sub(count(&newer) + count(&older));
        if room > 0 && count(&newer) == newer_half {
            if let Some(from) = newer.last().map(|m| m.seq) {
                newer.extend(
                    self.messages
                        .messages_after(conversation, from, room)
                        .await?,
                );
            }
        }
        let mut messages: Vec<Message> = newer.into_iter().rev().collect();
        messages.push(target);
        messages.extend(older);
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
        let message = require_message(&*self.messages, conversation, message).await?;
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
        require_member(&*self.conversations, conversation, me).await?;
        let message = require_message(&*self.messages, conversation, message).await?;
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

    /// The message `message` of `conversation`, for a member `me`: validates a receipt
    /// before it is queued for a batched watermark write.
    pub async fn message_of(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<Message, ChatError> {
        require_member(&*self.conversations, conversation, me).await?;
        require_message(&*self.messages, conversation, message).await
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
                reactions: Vec::new(),
                reply: None,
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
        let mut state = details.state_of(me).ok_or(ChatError::NotParticipant)?;
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
        state.last_seq = state.last_seq.max(newest);
        if let Some(now) = &delivered {
            state.delivered_seq = now.delivered_seq.max(now.read_seq);
            state.read_seq = now.read_seq;
        }
        let mut views = Self::views(details, messages);
        self.decorate(me, details.conversation.id, &mut views)
            .await?;
        Ok(HistoryPage {
            messages: views,
            delivered,
            state,
        })
    }

    async fn decorate(
        &self,
        me: UserId,
        conversation: ConversationId,
        views: &mut [MessageView],
    ) -> Result<(), ChatError> {
        decorate(&*self.messages, me, conversation, views).await
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

/// Fills in a page's reactions (as `me` sees them) and its replies' previews (the
/// originals as they are now): at most one `reactions_of` and one `messages_by_ids`
/// call for the whole page, whatever its size. Only messages that ever changed can have
/// reactions (each reaction takes a change number) and a deleted one has none, so a page
/// of messages never changed nor replying reads nothing more than before issue 12.
pub(super) async fn decorate(
    messages: &dyn MessageStore,
    me: UserId,
    conversation: ConversationId,
    views: &mut [MessageView],
) -> Result<(), ChatError> {
    attach_reactions(messages, me, conversation, views).await?;
    attach_replies(messages, conversation, views).await
}

/// The reactions half of [`decorate`]: at most one `reactions_of`, for the messages that
/// ever changed and are not deleted.
pub(super) async fn attach_reactions(
    messages: &dyn MessageStore,
    me: UserId,
    conversation: ConversationId,
    views: &mut [MessageView],
) -> Result<(), ChatError> {
    let live: Vec<MessageId> = views
        .iter()
        .filter(|v| v.message.deleted_at.is_none() && v.message.change_seq > 0)
        .map(|v| v.message.id)
        .collect();
    if !live.is_empty() {
        let mut reactions: HashMap<MessageId, Vec<crate::message::ReactionCount>> = messages
            .reactions_of(conversation, &live, me, REACTION_USERS_SHOWN)
            .await?
            .into_iter()
            .collect();
        for view in views.iter_mut() {
            if let Some(r) = reactions.remove(&view.message.id) {
                view.reactions = r;
            }
        }
    }
    Ok(())
}

/// The reply previews half of [`decorate`]: at most one `messages_by_ids`, for originals
/// not among `views` themselves.
pub(super) async fn attach_replies(
    messages: &dyn MessageStore,
    conversation: ConversationId,
    views: &mut [MessageView],
) -> Result<(), ChatError> {
    let mut wanted: Vec<MessageId> = Vec::new();
    let mut seen = HashSet::new();
    for original in views.iter().filter_map(|v| v.message.reply_to) {
        if seen.insert(original) {
            wanted.push(original);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    // Originals on the page itself are read from it, the others in one statement.
    let mut originals: HashMap<MessageId, ReplyPreview> = views
        .iter()
        .filter(|v| seen.contains(&v.message.id))
        .map(|v| (v.message.id, ReplyPreview::of(&v.message)))
        .collect();
    wanted.retain(|id| !originals.contains_key(id));
    if !wanted.is_empty() {
        for original in messages.messages_by_ids(conversation, &wanted).await? {
            originals.insert(original.id, ReplyPreview::of(&original));
        }
    }
    for view in views.iter_mut() {
        if let Some(original) = view.message.reply_to {
            view.reply = originals.get(&original).cloned();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Conversation, ConversationKind, ParticipantProfile, Role};
    use crate::message::MessageContent;
    use crate::ports::{
        MockAttachmentStore, MockClock, MockConversationStore, MockEncryptionStore,
        MockMessageStore, MockReceiptStore,
    };
    use chrono::{DateTime, TimeZone, Utc};
    use mockall::predicate::eq;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn member(
        conversation_id: ConversationId,
        user_id: UserId,
        delivered: i64,
        read: i64,
    ) -> Participant {
        Participant {
            conversation_id,
            user_id,
            role: Role::Member,
            joined_at: t0(),
            delivered_seq: delivered,
            read_seq: read,
        }
    }

    fn details(
        id: ConversationId,
        last_seq: i64,
        members: Vec<Participant>,
    ) -> ConversationDetails {
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Direct,
                title: None,
                created_by: members[0].user_id,
                created_at: t0(),
                last_seq,
                last_message_at: None,
                last_change: 0,
            },
            participants: members
                .into_iter()
                .map(|participant| ParticipantProfile {
                    participant,
                    display_name: "U".into(),
                    email: "u@example.com".into(),
                    avatar_url: None,
                    last_seen_at: None,
                })
                .collect(),
        }
    }

    fn stored(id: ConversationId, seq: i64, sender: UserId) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: id,
            seq,
            sender_id: sender,
            client_msg_id: None,
            content: format!("m{seq}"),
            content_type: ContentType::Text,
            reply_to: None,
            created_at: t0(),
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            change_seq: 0,
            attachments: Vec::new(),
        }
    }

    struct Ports {
        messages: MockMessageStore,
        conversations: MockConversationStore,
        receipts: MockReceiptStore,
        attachments: MockAttachmentStore,
        /// What the encryption store answers for every conversation.
        encrypted: bool,
    }

    impl Ports {
        fn new() -> Self {
            Self {
                messages: MockMessageStore::new(),
                conversations: MockConversationStore::new(),
                receipts: MockReceiptStore::new(),
                attachments: MockAttachmentStore::new(),
                encrypted: false,
            }
        }

        fn encrypted(mut self) -> Self {
            self.encrypted = true;
            self
        }

        fn member_of(mut self, id: ConversationId, user: UserId) -> Self {
            self.conversations
                .expect_participant()
                .with(eq(id), eq(user))
                .returning(move |id, user| Ok(Some(member(id, user, 0, 0))));
            self
        }

        fn service(self) -> MessageService {
            let mut clock = MockClock::new();
            clock.expect_now().returning(t0);
            let encryption = crate::services::test_support::encryption_where(self.encrypted, t0());
            MessageService::new(
                Arc::new(self.messages),
                Arc::new(self.conversations),
                Arc::new(self.receipts),
                Arc::new(encryption),
                Arc::new(self.attachments),
                Arc::new(clock),
                Limits {
                    max_content_chars: 10,
                    max_page_size: 100,
                    max_group_members: 10,
                    ..Limits::default()
                },
            )
        }
    }

    fn cmd(sender: UserId, conversation_id: ConversationId, content: &str) -> SendCommand {
        SendCommand {
            sender,
            conversation_id,
            content: content.into(),
            content_type: None,
            temp_id: Some("t-1".into()),
            reply_to: None,
            encrypted: None,
            attachment_ids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn invalid_content_is_refused_before_touching_storage() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports.messages.expect_append_messages().never();
        ports.conversations.expect_participant().never();
        let svc = ports.service();
        for (content, field) in [("   ", "content"), ("eleven chars", "content")] {
            let err = svc.send(cmd(me, id, content)).await.unwrap_err();
            assert!(matches!(err, ChatError::Invalid(f) if f.field == field));
        }
        let mut bad_type = cmd(me, id, "hi");
        bad_type.content_type = Some("image".into());
        assert!(
            matches!(svc.send(bad_type).await, Err(ChatError::Invalid(f)) if f.field == "content_type")
        );
        let mut bad_key = cmd(me, id, "hi");
        bad_key.temp_id = Some("x".repeat(65));
        assert!(
            matches!(svc.send(bad_key).await, Err(ChatError::Invalid(f)) if f.field == "temp_id")
        );
    }

    #[tokio::test]
    async fn a_non_member_cannot_send() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_participant()
            .returning(|_, _| Ok(None));
        ports.messages.expect_append_messages().never();
        let err = ports.service().send(cmd(me, id, "hi")).await.unwrap_err();
        assert!(matches!(err, ChatError::NotParticipant));
    }

    const ENVELOPE: &str =
        r#"{"v":1,"kid":1,"iv":"AAAAAAAAAAAAAAAA","ct":"AAAAAAAAAAAAAAAAAAAAAA"}"#;

    fn encrypted_cmd(sender: UserId, conversation_id: ConversationId) -> SendCommand {
        SendCommand {
            content_type: Some("encrypted".into()),
            ..cmd(sender, conversation_id, ENVELOPE)
        }
    }

    #[tokio::test]
    async fn an_encrypted_conversation_refuses_text_and_takes_envelopes() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let svc = Ports::new().member_of(id, me).encrypted().service();
        assert!(matches!(
            svc.prepare_send(cmd(me, id, "hi")).await,
            Err(ChatError::EncryptionRequired(_))
        ));
        let new = svc.prepare_send(encrypted_cmd(me, id)).await.unwrap();
        assert_eq!(new.content_type, ContentType::Encrypted);
        assert_eq!(new.content.as_str(), ENVELOPE);
        let mut malformed = encrypted_cmd(me, id);
        malformed.content = ENVELOPE.replace("\"kid\":1", "\"kid\":0");
        assert!(matches!(
            svc.prepare_send(malformed).await,
            Err(ChatError::Invalid(f)) if f.field == "content.kid"
        ));
    }

    #[tokio::test]
    async fn a_plain_conversation_refuses_envelopes() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let svc = Ports::new().member_of(id, me).service();
        assert!(matches!(
            svc.prepare_send(encrypted_cmd(me, id)).await,
            Err(ChatError::NotEncrypted)
        ));
        assert!(svc.prepare_send(cmd(me, id, "hi")).await.is_ok());
    }

    #[tokio::test]
    async fn a_session_that_knows_the_encryption_passes_it_and_nothing_is_read() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports.conversations.expect_participant().never();
        let mut encryption = MockEncryptionStore::new();
        encryption.expect_encryption_state().never();
        let mut clock = MockClock::new();
        clock.expect_now().returning(t0);
        let svc = MessageService::new(
            Arc::new(ports.messages),
            Arc::new(ports.conversations),
            Arc::new(ports.receipts),
            Arc::new(encryption),
            Arc::new(MockAttachmentStore::new()),
            Arc::new(clock),
            Limits::default(),
        );
        let known = |c: SendCommand, encrypted| SendCommand {
            encrypted: Some(encrypted),
            ..c
        };
        assert!(matches!(
            svc.prepare_member_send(known(cmd(me, id, "hi"), true))
                .await,
            Err(ChatError::EncryptionRequired(_))
        ));
        assert!(svc
            .prepare_member_send(known(encrypted_cmd(me, id), true))
            .await
            .is_ok());
        assert!(matches!(
            svc.prepare_member_send(known(encrypted_cmd(me, id), false))
                .await,
            Err(ChatError::NotEncrypted)
        ));
    }

    #[tokio::test]
    async fn a_non_member_learns_nothing_of_the_encryption() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().encrypted();
        ports
            .conversations
            .expect_participant()
            .returning(|_, _| Ok(None));
        let svc = ports.service();
        assert!(matches!(
            svc.prepare_send(cmd(me, id, "hi")).await,
            Err(ChatError::NotParticipant)
        ));
    }

    #[tokio::test]
    async fn a_known_members_send_is_prepared_without_reading_membership_but_still_validated() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports.conversations.expect_participant().never();
        let svc = ports.service();
        let new = svc.prepare_member_send(cmd(me, id, "hi")).await.unwrap();
        assert_eq!((new.sender_id, new.conversation_id), (me, id));
        assert_eq!(new.content.as_str(), "hi");
        assert!(matches!(
            svc.prepare_member_send(cmd(me, id, "   ")).await,
            Err(ChatError::Invalid(f)) if f.field == "content"
        ));
    }

    #[tokio::test]
    async fn a_reply_to_a_message_outside_the_conversation_is_not_found() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member_of(id, me);
        ports.messages.expect_message().returning(|_, _| Ok(None));
        ports.messages.expect_append_messages().never();
        let mut c = cmd(me, id, "hi");
        c.reply_to = Some(MessageId::new());
        assert!(matches!(
            ports.service().send(c).await,
            Err(ChatError::MessageNotFound)
        ));
    }

    #[tokio::test]
    async fn a_valid_send_is_appended_with_its_key_and_the_outcome_returned() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member_of(id, me);
        ports
            .messages
            .expect_append_messages()
            .withf(move |batch| {
                batch.len() == 1
                    && batch[0].sender_id == me
                    && batch[0].client_msg_id.as_ref().map(|k| k.as_str()) == Some("t-1")
                    && batch[0].content.as_str() == "hi"
            })
            .times(1)
            .returning(move |batch| {
                let mut m = stored(batch[0].conversation_id, 7, batch[0].sender_id);
                m.id = batch[0].id;
                Ok(vec![Ok(AppendOutcome::Created(m))])
            });
        let outcome = ports.service().send(cmd(me, id, "hi")).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Created(m) if m.seq == 7));
    }

    fn confirmed_upload(
        conversation_id: ConversationId,
        uploader_id: UserId,
    ) -> crate::attachment::Attachment {
        crate::attachment::Attachment {
            id: crate::ids::AttachmentId::new(),
            conversation_id,
            uploader_id,
            filename: "cat.png".into(),
            mime_type: "image/png".into(),
            size: 10,
            encrypted: false,
            width: Some(1),
            height: Some(1),
            has_thumbnail: true,
            created_at: t0(),
            confirmed_at: Some(t0()),
            message_id: None,
        }
    }

    #[tokio::test]
    async fn files_alone_are_sent_without_text_and_text_alone_must_not_be_empty() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let files = [confirmed_upload(id, me), confirmed_upload(id, me)];
        let mut ports = Ports::new().member_of(id, me);
        let found = files.to_vec();
        ports
            .attachments
            .expect_attachments_by_ids()
            .times(1)
            .returning(move |_| Ok(found.iter().rev().cloned().collect()));
        let service = ports.service();
        let with_files = SendCommand {
            attachment_ids: vec![files[1].id, files[0].id],
            ..cmd(me, id, " ")
        };
        let new = service.prepare_send(with_files).await.unwrap();
        assert_eq!(new.content.as_str(), "");
        assert_eq!(
            new.attachments.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![files[1].id, files[0].id]
        );
        let err = service.prepare_send(cmd(me, id, " ")).await;
        assert!(matches!(err, Err(ChatError::Invalid(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_send_with_an_unavailable_attachment_is_refused_before_appending() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let theirs = confirmed_upload(id, UserId::new());
        let mut ports = Ports::new().member_of(id, me);
        let found = theirs.clone();
        ports
            .attachments
            .expect_attachments_by_ids()
            .returning(move |_| Ok(vec![found.clone()]));
        ports.messages.expect_append_messages().never();
        let send = SendCommand {
            attachment_ids: vec![theirs.id],
            ..cmd(me, id, "look")
        };
        let err = ports.service().send(send).await;
        assert!(
            matches!(err, Err(ChatError::AttachmentUnavailable(_))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_attachment_another_send_took_first_is_already_sent() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let file = confirmed_upload(id, me);
        let mut ports = Ports::new().member_of(id, me);
        let found = file.clone();
        ports
            .attachments
            .expect_attachments_by_ids()
            .returning(move |_| Ok(vec![found.clone()]));
        ports
            .messages
            .expect_append_messages()
            .returning(|_| Ok(vec![Err(AppendRejection::AttachmentUnavailable)]));
        let send = SendCommand {
            attachment_ids: vec![file.id],
            ..cmd(me, id, "")
        };
        let err = ports.service().send(send).await;
        assert!(
            matches!(err, Err(ChatError::AttachmentAlreadySent)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_encrypted_conversation_takes_encrypted_attachments_only() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let clear = confirmed_upload(id, me);
        let sealed = crate::attachment::Attachment {
            encrypted: true,
            ..confirmed_upload(id, me)
        };
        let mut ports = Ports::new().member_of(id, me).encrypted();
        let found = [clear.clone(), sealed.clone()];
        ports
            .attachments
            .expect_attachments_by_ids()
            .returning(move |ids| {
                Ok(found
                    .iter()
                    .filter(|a| ids.contains(&a.id))
                    .cloned()
                    .collect())
            });
        let service = ports.service();
        let send = |ids| SendCommand {
            attachment_ids: ids,
            ..encrypted_cmd(me, id)
        };
        let err = service.prepare_send(send(vec![sealed.id, clear.id])).await;
        assert!(
            matches!(err, Err(ChatError::EncryptionRequired(_))),
            "{err:?}"
        );
        let new = service.prepare_send(send(vec![sealed.id])).await.unwrap();
        assert_eq!(new.attachments, [sealed]);
    }

    #[tokio::test]
    async fn a_reused_key_is_a_conflict() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member_of(id, me);
        ports
            .messages
            .expect_append_messages()
            .returning(|_| Ok(vec![Err(AppendRejection::KeyReused)]));
        let err = ports.service().send(cmd(me, id, "hi")).await.unwrap_err();
        assert!(matches!(err, ChatError::TempIdReused));
    }

    #[tokio::test]
    async fn storage_failure_on_send_is_unavailable() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member_of(id, me);
        ports
            .messages
            .expect_append_messages()
            .returning(|_| Err(crate::StorageError::msg("down")));
        let err = ports.service().send(cmd(me, id, "hi")).await.unwrap_err();
        assert!(matches!(err, ChatError::Storage(_)));
    }

    #[tokio::test]
    async fn fetching_history_marks_it_delivered_and_reports_status() {
        let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| {
                Ok(Some(details(
                    id,
                    3,
                    vec![member(id, me, 1, 1), member(id, other, 3, 2)],
                )))
            });
        ports
            .messages
            .expect_messages_before()
            .with(eq(id), eq(None), eq(50))
            .returning(move |id, _, _| {
                Ok(vec![
                    stored(id, 3, other),
                    stored(id, 2, me),
                    stored(id, 1, me),
                ])
            });
        ports
            .receipts
            .expect_advance_watermarks()
            .withf(move |u| {
                u.len() == 1
                    && u[0].user_id == me
                    && u[0].delivered_seq == Some(3)
                    && u[0].read_seq.is_none()
            })
            .times(1)
            .returning(move |u| Ok(vec![Some(member(u[0].conversation_id, me, 3, 1))]));
        // Never changed: no reaction to read.
        ports.messages.expect_reactions_of().never();
        let page = ports
            .service()
            .history_before(me, id, None, 50)
            .await
            .unwrap();
        let statuses: Vec<MessageStatus> = page.messages.iter().map(|v| v.status).collect();
        // seq 3 is other's: I (the only recipient) have delivered_seq 1 in the snapshot -> sent.
        // seq 2 is mine: other read up to 2 -> read. seq 1 likewise.
        assert_eq!(
            statuses,
            vec![
                MessageStatus::Sent,
                MessageStatus::Read,
                MessageStatus::Read
            ]
        );
        assert_eq!(page.delivered.unwrap().delivered_seq, 3);
        // The reader's state: its own watermarks after the fetch, the other's as read.
        assert_eq!(
            page.state,
            ConversationState {
                conversation_id: id,
                last_seq: 3,
                delivered_seq: 3,
                read_seq: 1,
                peer_delivered_seq: 3,
                peer_read_seq: 2,
                last_change: 0,
            }
        );
    }

    #[tokio::test]
    async fn fetching_what_was_already_delivered_writes_nothing() {
        let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| {
                Ok(Some(details(
                    id,
                    2,
                    vec![member(id, me, 2, 2), member(id, other, 2, 2)],
                )))
            });
        ports
            .messages
            .expect_messages_after()
            .returning(move |id, _, _| Ok(vec![stored(id, 2, other)]));
        ports.receipts.expect_advance_watermarks().never();
        let page = ports.service().history_after(me, id, 1, 10).await.unwrap();
        assert!(page.delivered.is_none());
        assert_eq!(page.messages.len(), 1);
        assert_eq!(
            (
                page.state.delivered_seq,
                page.state.read_seq,
                page.state.peer_read_seq
            ),
            (2, 2, 2)
        );
    }

    /// A page of 50: every 5th message a reply (to one on the page, to two older ones off
    /// it, one of them deleted), two messages with reactions, one deleted.
    #[tokio::test]
    async fn a_page_reads_its_reactions_and_reply_originals_in_one_call_each() {
        let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut old_live = stored(id, 1, other);
        old_live.content = "an old one".into();
        let mut old_gone = stored(id, 2, other);
        old_gone.content.clear();
        old_gone.deleted_at = Some(t0());
        let mut page: Vec<Message> = (3..=52).rev().map(|seq| stored(id, seq, me)).collect();
        let on_page = page[49].clone();
        for (i, m) in page.iter_mut().enumerate() {
            // Changed once (a reaction may be there), but the last one never.
            m.change_seq = if i == 48 { 0 } else { m.seq };
            m.reply_to = match i % 15 {
                0 => Some(old_live.id),
                5 => Some(old_gone.id),
                10 => Some(on_page.id),
                _ => None,
            };
        }
        page[3].deleted_at = Some(t0());
        page[3].content.clear();
        let (liked, deleted, never_changed) = (page[1].id, page[3].id, page[48].id);
        let (live_id, gone_id) = (old_live.id, old_gone.id);
        let originals = vec![old_live.clone(), old_gone.clone()];
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| {
                Ok(Some(details(
                    id,
                    52,
                    vec![member(id, me, 52, 52), member(id, other, 52, 52)],
                )))
            });
        let rows = page.clone();
        ports
            .messages
            .expect_messages_before()
            .returning(move |_, _, _| Ok(rows.clone()));
        ports
            .messages
            .expect_reactions_of()
            .withf(move |_, ids, viewer, bound| {
                ids.len() == 48
                    && !ids.contains(&deleted)
                    && !ids.contains(&never_changed)
                    && *viewer == me
                    && *bound == REACTION_USERS_SHOWN
            })
            .times(1)
            .returning(move |_, _, _, _| {
                Ok(vec![(
                    liked,
                    vec![crate::message::ReactionCount {
                        emoji: "\u{1F44D}".into(),
                        count: 2,
                        user_ids: vec![me, other],
                        me: true,
                    }],
                )])
            });
        ports
            .messages
            .expect_messages_by_ids()
            .withf(move |_, ids| {
                let mut ids = ids.to_vec();
                ids.sort();
                let mut want = vec![live_id, gone_id];
                want.sort();
                ids == want
            })
            .times(1)
            .returning(move |_, _| Ok(originals.clone()));
        ports.messages.expect_message().never();

        let page = ports
            .service()
            .history_before(me, id, None, 50)
            .await
            .unwrap();

        assert_eq!(page.messages.len(), 50);
        assert_eq!(page.messages[1].reactions[0].count, 2);
        assert!(page
            .messages
            .iter()
            .filter(|v| v.message.id != liked)
            .all(|v| v.reactions.is_empty()));
        let reply = |i: usize| page.messages[i].reply.clone().unwrap();
        assert_eq!(
            (
                reply(0).message_id,
                reply(0).excerpt.as_str(),
                reply(0).deleted
            ),
            (live_id, "an old one", false)
        );
        assert_eq!(
            (
                reply(5).message_id,
                reply(5).excerpt.as_str(),
                reply(5).deleted
            ),
            (gone_id, "", true)
        );
        assert_eq!(reply(10).message_id, on_page.id);
        assert_eq!(reply(10).excerpt, on_page.content);
        assert!(page.messages[1].reply.is_none());
    }

    #[tokio::test]
    async fn a_page_of_messages_never_changed_nor_replying_reads_nothing_more() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, 2, vec![member(id, me, 2, 2)]))));
        ports
            .messages
            .expect_messages_before()
            .returning(move |id, _, _| Ok(vec![stored(id, 2, me), stored(id, 1, me)]));
        ports.messages.expect_reactions_of().never();
        ports.messages.expect_messages_by_ids().never();
        let page = ports
            .service()
            .history_before(me, id, None, 10)
            .await
            .unwrap();
        assert!(page.messages.iter().all(|v| v.reply.is_none()));
    }

    /// History around the message at seq 10 of a conversation of `last` messages, with
    /// page size `limit`: the seqs of the page, newest first.
    async fn around(last: i64, limit: u32) -> Vec<i64> {
        let (me, id) = (UserId::new(), ConversationId::new());
        let target = stored(id, 10, me);
        let target_id = target.id;
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, last, vec![member(id, me, last, last)]))));
        ports
            .messages
            .expect_message()
            .with(eq(id), eq(target_id))
            .returning(move |_, _| Ok(Some(target.clone())));
        ports
            .messages
            .expect_messages_after()
            .returning(move |id, after, limit| {
                Ok(((after + 1)..=last)
                    .take(limit as usize)
                    .map(|seq| stored(id, seq, me))
                    .collect())
            });
        ports
            .messages
            .expect_messages_before()
            .returning(move |id, before, limit| {
                Ok((1..before.unwrap())
                    .rev()
                    .take(limit as usize)
                    .map(|seq| stored(id, seq, me))
                    .collect())
            });
        let page = ports
            .service()
            .history_around(me, id, target_id, limit)
            .await
            .unwrap();
        page.messages.iter().map(|v| v.message.seq).collect()
    }

    #[tokio::test]
    async fn history_around_a_message_holds_it_with_older_and_newer_ones_newest_first() {
        // Room both ways: 4 older, the target, 5 newer.
        assert_eq!(around(100, 10).await, (6..=15).rev().collect::<Vec<_>>());
        // Only 2 newer: older ones fill the page.
        assert_eq!(around(12, 10).await, (3..=12).rev().collect::<Vec<_>>());
        // Only 9 older at most and a small page: the target alone, or with its neighbours.
        assert_eq!(around(100, 1).await, vec![10]);
        assert_eq!(around(100, 3).await, vec![11, 10, 9]);
        // Only 9 older, a page of 30: newer ones fill the page.
        assert_eq!(around(100, 30).await, (1..=30).rev().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn history_around_an_unknown_message_is_not_found_and_reads_no_page() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, 0, vec![member(id, me, 0, 0)]))));
        ports.messages.expect_message().returning(|_, _| Ok(None));
        ports.messages.expect_messages_before().never();
        ports.messages.expect_messages_after().never();
        let err = ports
            .service()
            .history_around(me, id, MessageId::new(), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::MessageNotFound));
    }

    #[tokio::test]
    async fn a_reply_carries_the_preview_of_its_original_and_a_plain_send_reads_nothing_more() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut original = stored(id, 1, me);
        original.content = "the question".into();
        let original_id = original.id;
        let mut ports = Ports::new().member_of(id, me);
        ports
            .messages
            .expect_message()
            .with(eq(id), eq(original_id))
            .times(1)
            .returning(move |_, _| Ok(Some(original.clone())));
        let svc = ports.service();
        let reply = svc
            .prepare_send(SendCommand {
                reply_to: Some(original_id),
                ..cmd(me, id, "answer")
            })
            .await
            .unwrap();
        let preview = reply.reply_preview.unwrap();
        assert_eq!(
            (
                preview.message_id,
                preview.excerpt.as_str(),
                preview.deleted
            ),
            (original_id, "the question", false)
        );
        // `expect_message` is called once: by the reply only.
        let plain = svc.prepare_send(cmd(me, id, "plain")).await.unwrap();
        assert!(plain.reply_preview.is_none());
    }

    #[tokio::test]
    async fn history_limits_outside_one_to_the_maximum_are_invalid() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, 0, vec![member(id, me, 0, 0)]))));
        ports.messages.expect_messages_before().never();
        let svc = ports.service();
        for limit in [0, 101] {
            assert!(
                matches!(svc.history_before(me, id, None, limit).await, Err(ChatError::Invalid(f)) if f.field == "limit")
            );
        }
    }

    #[tokio::test]
    async fn history_before_an_unknown_message_is_not_found() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, 0, vec![member(id, me, 0, 0)]))));
        ports.messages.expect_message().returning(|_, _| Ok(None));
        let err = ports
            .service()
            .history_before(me, id, Some(MessageId::new()), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::MessageNotFound));
    }

    #[tokio::test]
    async fn outsiders_cannot_read_history() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, 0, vec![member(id, UserId::new(), 0, 0)]))));
        ports.messages.expect_messages_before().never();
        let err = ports
            .service()
            .history_before(me, id, None, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::NotParticipant));
    }

    #[tokio::test]
    async fn marking_read_moves_the_read_watermark_and_answers_what_is_left() {
        let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
        let target = stored(id, 4, other);
        let target_id = target.id;
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| {
                Ok(Some(details(
                    id,
                    6,
                    vec![member(id, me, 2, 1), member(id, other, 6, 6)],
                )))
            });
        ports
            .messages
            .expect_message()
            .with(eq(id), eq(target_id))
            .returning(move |_, _| Ok(Some(target.clone())));
        ports
            .receipts
            .expect_advance_watermarks()
            .withf(move |u| u[0].read_seq == Some(4) && u[0].user_id == me)
            .times(1)
            .returning(move |u| Ok(vec![Some(member(u[0].conversation_id, me, 4, 4))]));
        let outcome = ports.service().mark_read(me, id, target_id).await.unwrap();
        assert_eq!(outcome.unread_count, 2);
        assert_eq!(outcome.watermarks.read_seq, 4);
    }

    #[tokio::test]
    async fn a_receipt_target_must_be_a_message_of_a_conversation_of_the_member() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member_of(id, me);
        ports
            .conversations
            .expect_participant()
            .returning(|_, _| Ok(None));
        ports.messages.expect_message().returning(|_, _| Ok(None));
        ports.receipts.expect_advance_watermarks().never();
        let svc = ports.service();
        assert!(matches!(
            svc.message_of(me, id, MessageId::new()).await,
            Err(ChatError::MessageNotFound)
        ));
        assert!(matches!(
            svc.message_of(UserId::new(), id, MessageId::new()).await,
            Err(ChatError::NotParticipant)
        ));
    }

    #[tokio::test]
    async fn marking_an_unknown_message_read_changes_nothing() {
        let (me, id) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, 1, vec![member(id, me, 0, 0)]))));
        ports.messages.expect_message().returning(|_, _| Ok(None));
        ports.receipts.expect_advance_watermarks().never();
        let err = ports
            .service()
            .mark_read(me, id, MessageId::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::MessageNotFound));
    }

    /// A prepared message of `sender` in `c` with `content`.
    fn prepared(c: ConversationId, sender: UserId, content: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            conversation_id: c,
            sender_id: sender,
            client_msg_id: None,
            content: MessageContent::parse(content, 100).unwrap(),
            content_type: ContentType::Text,
            reply_to: None,
            reply_preview: None,
            created_at: t0(),
            attachments: Vec::new(),
        }
    }

    /// A store that refuses (as a database refuses a constraint or data error) every
    /// transaction holding a message whose content is `poison`, commits the others, and
    /// records what it committed and how many transactions it was asked for.
    fn poisoned_store(
        poison: &'static str,
        committed: Arc<std::sync::Mutex<Vec<String>>>,
        calls: Arc<std::sync::atomic::AtomicUsize>,
    ) -> MockMessageStore {
        let mut store = MockMessageStore::new();
        store.expect_append_messages().returning(move |batch| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if batch.iter().any(|m| m.content.as_str() == poison) {
                return Err(crate::StorageError::refused(std::io::Error::other(
                    "invalid byte sequence",
                )));
            }
            let mut committed = committed.lock().unwrap();
            Ok(batch
                .iter()
                .map(|m| {
                    committed.push(m.content.as_str().to_owned());
                    Ok(AppendOutcome::Created(m.stored_as(committed.len() as i64)))
                })
                .collect())
        });
        store
    }

    #[tokio::test]
    async fn a_message_the_database_refuses_fails_alone_and_the_rest_of_its_batch_commits_in_order()
    {
        let c = ConversationId::new();
        let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut ports = Ports::new();
        ports.messages = poisoned_store("bad", committed.clone(), calls.clone());
        let batch: Vec<NewMessage> = ["m0", "m1", "m2", "bad", "m4", "m5", "m6", "bad", "m8"]
            .iter()
            .map(|content| prepared(c, UserId::new(), content))
            .collect();

        let results = ports.service().append(&batch).await.unwrap();

        assert_eq!(results.len(), batch.len());
        for (i, result) in results.iter().enumerate() {
            if batch[i].content.as_str() == "bad" {
                assert!(
                    matches!(result, Err(ChatError::Unstorable(_))),
                    "{i}: {result:?}"
                );
            } else {
                let created = matches!(result, Ok(AppendOutcome::Created(m)) if m.content == batch[i].content.as_str());
                assert!(created, "{i}: {result:?}");
            }
        }
        assert_eq!(
            *committed.lock().unwrap(),
            vec!["m0", "m1", "m2", "m4", "m5", "m6", "m8"],
            "every good message committed once, in the batch's order"
        );
        let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
        // At most the first try plus two per level of halving (4 for 9) per refused message.
        assert!(
            calls <= 1 + 2 * 2 * 4,
            "{calls} transactions for 9 messages, 2 refused"
        );
    }

    #[tokio::test]
    async fn a_lone_message_the_database_refuses_is_unstorable_not_unavailable() {
        let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut ports = Ports::new();
        ports.messages = poisoned_store("bad", committed, calls.clone());
        let batch = [prepared(ConversationId::new(), UserId::new(), "bad")];
        let results = ports.service().append(&batch).await.unwrap();
        assert!(
            matches!(results[..], [Err(ChatError::Unstorable(_))]),
            "{results:?}"
        );
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "no retry"
        );
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_reached_fails_the_whole_batch_once_without_retries() {
        let mut ports = Ports::new();
        ports
            .messages
            .expect_append_messages()
            .times(1)
            .returning(|_| Err(crate::StorageError::msg("connection refused")));
        let c = ConversationId::new();
        let batch: Vec<NewMessage> = (0..8)
            .map(|i| prepared(c, UserId::new(), &format!("m{i}")))
            .collect();
        let err = ports.service().append(&batch).await.unwrap_err();
        assert!(matches!(err, ChatError::Storage(_)), "{err:?}");
    }

    #[tokio::test]
    async fn losing_the_database_while_isolating_keeps_what_committed_and_fails_the_rest() {
        let c = ConversationId::new();
        let batch: Vec<NewMessage> = (0..4)
            .map(|i| prepared(c, UserId::new(), &format!("m{i}")))
            .collect();
        let mut ports = Ports::new();
        let mut sequence = mockall::Sequence::new();
        // The whole batch is refused, its first half commits, then the database is gone.
        ports
            .messages
            .expect_append_messages()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Err(crate::StorageError::refused(std::io::Error::other("22021"))));
        ports
            .messages
            .expect_append_messages()
            .times(1)
            .in_sequence(&mut sequence)
            .withf(|half| half.len() == 2)
            .returning(|half| {
                Ok(half
                    .iter()
                    .zip(1..)
                    .map(|(m, seq)| Ok(AppendOutcome::Created(m.stored_as(seq))))
                    .collect())
            });
        ports
            .messages
            .expect_append_messages()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Err(crate::StorageError::msg("connection reset")));

        let results = ports.service().append(&batch).await.unwrap();

        assert!(matches!(results[0], Ok(AppendOutcome::Created(_))));
        assert!(matches!(results[1], Ok(AppendOutcome::Created(_))));
        assert!(matches!(results[2], Err(ChatError::Storage(_))));
        assert!(matches!(results[3], Err(ChatError::Storage(_))));
    }
}
