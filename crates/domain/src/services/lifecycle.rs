//! A message's life after it was sent: edits, deletions and reactions (issue 12), and the
//! change counter that recovery replays them by.
//!
//! The rules are here; the stores only write what the rules allowed, each change in one
//! transaction that takes the conversation's next change number (see
//! [`crate::conversation::Conversation::last_change`]).

use super::errors::ChatError;
use super::lookups::{require_member, require_message};
use super::messages::{attach_reactions, attach_replies, decorate, MessageService, MessageView};
use crate::conversation::{Participant, Role};
use crate::ids::{ConversationId, MessageId, UserId};
use crate::limits::Limits;
use crate::message::{check_edit, parse_content, DeleteOutcome, Emoji, Message, ReactionCount};
use crate::ports::{Clock, ConversationStore, EncryptionStore, MessageStore};
use std::collections::HashMap;
use std::sync::Arc;

/// How many user ids a message's reaction carries per emoji (the count is always exact).
pub const REACTION_USERS_SHOWN: u32 = 10;

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    /// The content changed: the message as stored, with its new change number. Announce it.
    Edited(Message),
    /// The same content again: nothing was written and nothing is to be announced.
    Unchanged(Message),
}

impl EditOutcome {
    /// The message, edited or as it was.
    pub fn message(&self) -> &Message {
        match self {
            Self::Edited(m) | Self::Unchanged(m) => m,
        }
    }
}

/// What toggling a reaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionChange {
    /// The message, with its change number (a new one when `changed`).
    pub message: Message,
    /// The message's reactions afterwards, as the reacting user sees them.
    pub reactions: Vec<ReactionCount>,
    /// Whether anything changed; when not, nothing is to be announced.
    pub changed: bool,
}

/// Edit, delete, react; read reactions and changes for history and recovery.
#[derive(Clone)]
pub struct LifecycleService {
    messages: Arc<dyn MessageStore>,
    conversations: Arc<dyn ConversationStore>,
    encryption: Arc<dyn EncryptionStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Deletes a deleted message's attachments; `None`: nothing to delete (no store).
    attachments: Option<super::AttachmentService>,
}

impl LifecycleService {
    /// Deleting a message also deletes its attachments' blobs and records through
    /// `attachments` (what the sweeper would otherwise do on its next round).
    pub fn with_attachments(mut self, attachments: super::AttachmentService) -> Self {
        self.attachments = Some(attachments);
        self
    }

    /// Wires the service to its ports.
    pub fn new(
        messages: Arc<dyn MessageStore>,
        conversations: Arc<dyn ConversationStore>,
        encryption: Arc<dyn EncryptionStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            messages,
            conversations,
            encryption,
            clock,
            limits,
            attachments: None,
        }
    }

    /// `editor` sets the content of their own text message `message`. Refused: not a member
    /// (`NotParticipant`), no such message here (`MessageNotFound`), someone else's
    /// (`NotSender`), deleted (`MessageDeleted`), older than `limits.edit_window_secs`
    /// (`EditWindowClosed`), blank or too long (`Invalid`). The same content again changes
    /// nothing ([`EditOutcome::Unchanged`]). Nothing is written on any refusal.
    pub async fn edit(
        &self,
        editor: UserId,
        conversation: ConversationId,
        message: MessageId,
        content: &str,
    ) -> Result<EditOutcome, ChatError> {
        require_member(&*self.conversations, conversation, editor).await?;
        let current = require_message(&*self.messages, conversation, message).await?;
        if current.sender_id != editor {
            return Err(ChatError::NotSender);
        }
        if current.deleted_at.is_some() {
            return Err(ChatError::MessageDeleted);
        }
        // In an encrypted conversation only envelopes are edited, into envelopes.
        let encrypted = self
            .encryption
            .encryption_state(conversation)
            .await?
            .is_some();
        let content_type = check_edit(encrypted, current.content_type)?;
        let content = parse_content(
            content,
            content_type,
            self.limits.max_content_chars,
            self.limits.max_encrypted_bytes,
        )?;
        let now = self.clock.now();
        if self.limits.edit_window_secs > 0 {
            let window = i64::try_from(self.limits.edit_window_secs).unwrap_or(i64::MAX);
            if (now - current.created_at).num_seconds() >= window {
                return Err(ChatError::EditWindowClosed);
            }
        }
        if current.content == content.as_str() {
            return Ok(EditOutcome::Unchanged(current));
        }
        match self
            .messages
            .edit_message(conversation, message, &content, now)
            .await?
        {
            Some(edited) => Ok(EditOutcome::Edited(edited)),
            // Deleted between the read and the write.
            None => Err(ChatError::MessageDeleted),
        }
    }

    /// `by` deletes `message`: their own, or anyone's in a group where they are an owner or
    /// admin. Its content and reactions are erased; the tombstone stays. Deleting it again
    /// changes nothing ([`DeleteOutcome::AlreadyDeleted`]). Refused: not a member, no such
    /// message here, someone else's without the role (`NotSender`).
    pub async fn delete(
        &self,
        by: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<DeleteOutcome, ChatError> {
        let member = require_member(&*self.conversations, conversation, by).await?;
        let current = require_message(&*self.messages, conversation, message).await?;
        if current.deleted_at.is_some() {
            return Ok(DeleteOutcome::AlreadyDeleted(current));
        }
        if current.sender_id != by && !moderates(&member) {
            return Err(ChatError::NotSender);
        }
        let outcome = self
            .messages
            .delete_message(conversation, message, by, self.clock.now())
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        if let (Some(service), DeleteOutcome::Deleted(_)) = (&self.attachments, &outcome) {
            // The tombstone shows none of them any more. Should the blob store fail now,
            // the sweeper deletes them later (attachments of deleted messages expire).
            let _ = service.delete(&current.attachments).await;
        }
        Ok(outcome)
    }

    /// `user` adds (`on`) or removes their reaction `emoji` on `message`. Refused: not a
    /// member, no such message here, deleted (`MessageDeleted`), not one emoji (`Invalid`).
    /// Adding what is there or removing what is not changes nothing (`changed: false`).
    pub async fn react(
        &self,
        user: UserId,
        conversation: ConversationId,
        message: MessageId,
        emoji: &str,
        on: bool,
    ) -> Result<ReactionChange, ChatError> {
        require_member(&*self.conversations, conversation, user).await?;
        let emoji = Emoji::parse(emoji)?;
        let current = require_message(&*self.messages, conversation, message).await?;
        if current.deleted_at.is_some() {
            return Err(ChatError::MessageDeleted);
        }
        let outcome = self
            .messages
            .set_reaction(conversation, message, user, &emoji, on, self.clock.now())
            .await?
            .ok_or(ChatError::MessageDeleted)?;
        let reactions = self
            .reactions(conversation, &[message], user)
            .await?
            .remove(&message)
            .unwrap_or_default();
        Ok(ReactionChange {
            message: outcome.message,
            reactions,
            changed: outcome.changed,
        })
    }

    /// The reactions to `messages` as `viewer` sees them, by message (messages without any
    /// are absent). One store call for the whole page.
    pub async fn reactions(
        &self,
        conversation: ConversationId,
        messages: &[MessageId],
        viewer: UserId,
    ) -> Result<HashMap<MessageId, Vec<ReactionCount>>, ChatError> {
        if messages.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self
            .messages
            .reactions_of(conversation, messages, viewer, REACTION_USERS_SHOWN)
            .await?
            .into_iter()
            .collect())
    }

    /// For member `me`: the messages of `conversation` changed after change `after`, in
    /// change order, at most `limit`, as `me` reads them (status, reactions with `me`,
    /// reply previews): what recovery writes as `message_updated` / `message_deleted`.
    /// A bounded number of statements whatever the page's size.
    pub async fn changed_views(
        &self,
        me: UserId,
        conversation: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MessageView>, ChatError> {
        let details = self
            .conversations
            .conversation(conversation)
            .await?
            .filter(|d| d.participant(me).is_some())
            .ok_or(ChatError::NotParticipant)?;
        let limit = limit.clamp(1, self.limits.max_page_size);
        let changed = self
            .messages
            .changes_after(conversation, after.max(0), limit)
            .await?;
        let mut views = MessageService::views(&details, changed);
        decorate(&*self.messages, me, conversation, &mut views).await?;
        Ok(views)
    }

    /// `message` as `viewer` reads it: its status over the members' watermarks, its
    /// reactions (`me` the viewer's) and, for a reply, the original's preview as it is now.
    pub async fn view(&self, viewer: UserId, message: Message) -> Result<MessageView, ChatError> {
        self.view_with(viewer, message, None).await
    }

    /// [`Self::view`] with the message's reactions already read (`Some`), as a reaction
    /// change reads them.
    pub async fn view_with(
        &self,
        viewer: UserId,
        message: Message,
        reactions: Option<Vec<ReactionCount>>,
    ) -> Result<MessageView, ChatError> {
        let c = message.conversation_id;
        let details = self
            .conversations
            .conversation(c)
            .await?
            .ok_or(ChatError::NotParticipant)?;
        let mut views = MessageService::views(&details, vec![message]);
        match (reactions, views.first_mut()) {
            (Some(reactions), Some(view)) => view.reactions = reactions,
            _ => attach_reactions(&*self.messages, viewer, c, &mut views).await?,
        }
        attach_replies(&*self.messages, c, &mut views).await?;
        views.pop().ok_or(ChatError::MessageNotFound)
    }
}

/// Owners and admins delete anyone's message in a group (a direct conversation has two
/// plain members, so there only one's own).
fn moderates(member: &Participant) -> bool {
    matches!(member.role, Role::Owner | Role::Admin)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::message::{ContentType, ReactionOutcome};
    use crate::ports::{MockClock, MockConversationStore, MockMessageStore};
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use mockall::predicate::{always, eq};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0).unwrap()
    }

    const WINDOW: u64 = 3600;

    fn message(conversation: ConversationId, sender: UserId, age: Duration) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: conversation,
            seq: 1,
            sender_id: sender,
            client_msg_id: None,
            content: "hello".into(),
            content_type: ContentType::Text,
            reply_to: None,
            created_at: t0() - age,
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            change_seq: 0,
            attachments: Vec::new(),
        }
    }

    struct World {
        messages: MockMessageStore,
        conversations: MockConversationStore,
        conversation: ConversationId,
        /// What the encryption store answers for the conversation.
        encrypted: bool,
    }

    impl World {
        fn new() -> Self {
            Self {
                messages: MockMessageStore::new(),
                conversations: MockConversationStore::new(),
                conversation: ConversationId::new(),
                encrypted: false,
            }
        }

        fn encrypted(mut self) -> Self {
            self.encrypted = true;
            self
        }

        fn member(mut self, user: UserId, role: Role) -> Self {
            self.conversations
                .expect_participant()
                .with(eq(self.conversation), eq(user))
                .returning(move |conversation_id, user_id| {
                    Ok(Some(Participant {
                        conversation_id,
                        user_id,
                        role,
                        joined_at: t0(),
                        delivered_seq: 0,
                        read_seq: 0,
                    }))
                });
            self
        }

        fn outsider(mut self, user: UserId) -> Self {
            self.conversations
                .expect_participant()
                .with(eq(self.conversation), eq(user))
                .returning(|_, _| Ok(None));
            self
        }

        fn holding(mut self, m: &Message) -> Self {
            let m = m.clone();
            self.messages
                .expect_message()
                .with(eq(self.conversation), eq(m.id))
                .returning(move |_, _| Ok(Some(m.clone())));
            self
        }

        fn without(mut self, id: MessageId) -> Self {
            self.messages
                .expect_message()
                .with(eq(self.conversation), eq(id))
                .returning(|_, _| Ok(None));
            self
        }

        fn service(self) -> (LifecycleService, ConversationId) {
            self.service_with(WINDOW)
        }

        fn service_with(self, edit_window_secs: u64) -> (LifecycleService, ConversationId) {
            let mut clock = MockClock::new();
            clock.expect_now().returning(t0);
            let encryption = crate::services::test_support::encryption_where(self.encrypted, t0());
            (
                LifecycleService::new(
                    Arc::new(self.messages),
                    Arc::new(self.conversations),
                    Arc::new(encryption),
                    Arc::new(clock),
                    Limits {
                        max_content_chars: 20,
                        edit_window_secs,
                        ..Limits::default()
                    },
                ),
                self.conversation,
            )
        }
    }

    #[tokio::test]
    async fn the_sender_edits_within_the_window_and_the_store_writes_it_once() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let m = message(w.conversation, me, Duration::seconds(60));
        w = w.holding(&m);
        let id = m.id;
        w.messages
            .expect_edit_message()
            .withf(move |_, mid, content, at| {
                *mid == id && content.as_str() == "fixed" && *at == t0()
            })
            .times(1)
            .returning(move |_, _, content, at| {
                let mut edited = m.clone();
                edited.content = content.as_str().to_owned();
                edited.edited_at = Some(at);
                edited.change_seq = 1;
                Ok(Some(edited))
            });
        let (svc, c) = w.service();
        let EditOutcome::Edited(edited) = svc.edit(me, c, id, "fixed").await.unwrap() else {
            panic!("not edited");
        };
        assert_eq!((edited.content.as_str(), edited.change_seq), ("fixed", 1));
    }

    #[tokio::test]
    async fn the_same_content_again_writes_nothing() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let m = message(w.conversation, me, Duration::seconds(1));
        w = w.holding(&m);
        w.messages.expect_edit_message().never();
        let (svc, c) = w.service();
        assert_eq!(
            svc.edit(me, c, m.id, "hello").await.unwrap(),
            EditOutcome::Unchanged(m)
        );
    }

    const ENVELOPE: &str =
        r#"{"v":1,"kid":1,"iv":"AAAAAAAAAAAAAAAA","ct":"AAAAAAAAAAAAAAAAAAAAAA"}"#;

    #[tokio::test]
    async fn in_an_encrypted_conversation_only_envelopes_are_edited_into_envelopes() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member).encrypted();
        let plain = message(w.conversation, me, Duration::seconds(1));
        let mut sealed = message(w.conversation, me, Duration::seconds(1));
        sealed.content_type = ContentType::Encrypted;
        sealed.content = ENVELOPE.to_owned();
        w = w.holding(&plain).holding(&sealed);
        let new_envelope = ENVELOPE.replace("\"kid\":1", "\"kid\":2");
        let expected = new_envelope.clone();
        w.messages
            .expect_edit_message()
            .withf(move |_, _, content, _| content.as_str() == expected)
            .times(1)
            .returning(|_, _, _, _| Ok(None));
        let (svc, c) = w.service();
        assert!(matches!(
            svc.edit(me, c, plain.id, "fixed").await,
            Err(ChatError::EncryptionRequired(_))
        ));
        assert!(matches!(
            svc.edit(me, c, sealed.id, "fixed").await,
            Err(ChatError::Invalid(f)) if f.field == "content"
        ));
        // Stored (the mock then says it was deleted meanwhile).
        assert!(matches!(
            svc.edit(me, c, sealed.id, &new_envelope).await,
            Err(ChatError::MessageDeleted)
        ));
    }

    #[tokio::test]
    async fn in_a_plain_conversation_text_is_edited_as_before_and_never_into_an_envelope() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let plain = message(w.conversation, me, Duration::seconds(1));
        w = w.holding(&plain);
        w.messages.expect_edit_message().never();
        let (svc, c) = w.service();
        assert!(matches!(
            svc.edit(me, c, plain.id, ENVELOPE).await,
            Err(ChatError::Invalid(f)) if f.field == "content"
        ));
    }

    #[tokio::test]
    async fn edits_that_the_rules_refuse_write_nothing() {
        let (me, other, outsider) = (UserId::new(), UserId::new(), UserId::new());
        let conversation = ConversationId::new();
        let theirs = message(conversation, other, Duration::seconds(1));
        let old = message(conversation, me, Duration::seconds(WINDOW as i64));
        let mut deleted = message(conversation, me, Duration::seconds(1));
        deleted.deleted_at = Some(t0());
        let mine = message(conversation, me, Duration::seconds(1));
        let missing = MessageId::new();
        let mut w = World::new();
        w.conversation = conversation;
        let mut w = w
            .member(me, Role::Owner)
            .outsider(outsider)
            .holding(&theirs)
            .holding(&old)
            .holding(&deleted)
            .holding(&mine)
            .without(missing);
        w.messages.expect_edit_message().never();
        let (svc, c) = w.service();
        assert!(matches!(
            svc.edit(me, c, theirs.id, "x").await,
            Err(ChatError::NotSender)
        ));
        assert!(matches!(
            svc.edit(me, c, old.id, "x").await,
            Err(ChatError::EditWindowClosed)
        ));
        assert!(matches!(
            svc.edit(me, c, deleted.id, "x").await,
            Err(ChatError::MessageDeleted)
        ));
        assert!(matches!(
            svc.edit(me, c, missing, "x").await,
            Err(ChatError::MessageNotFound)
        ));
        assert!(matches!(
            svc.edit(me, c, mine.id, "  ").await,
            Err(ChatError::Invalid(_))
        ));
        assert!(matches!(
            svc.edit(me, c, mine.id, &"x".repeat(21)).await,
            Err(ChatError::Invalid(_))
        ));
        assert!(matches!(
            svc.edit(outsider, c, mine.id, "x").await,
            Err(ChatError::NotParticipant)
        ));
    }

    #[tokio::test]
    async fn a_window_of_zero_never_closes() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let m = message(w.conversation, me, Duration::days(400));
        w = w.holding(&m);
        let edited = m.clone();
        w.messages
            .expect_edit_message()
            .times(1)
            .returning(move |_, _, _, _| Ok(Some(edited.clone())));
        let (svc, c) = w.service_with(0);
        assert!(matches!(
            svc.edit(me, c, m.id, "new").await,
            Ok(EditOutcome::Edited(_))
        ));
    }

    #[tokio::test]
    async fn a_concurrent_deletion_between_the_read_and_the_write_is_a_conflict() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let m = message(w.conversation, me, Duration::seconds(1));
        w = w.holding(&m);
        w.messages
            .expect_edit_message()
            .returning(|_, _, _, _| Ok(None));
        let (svc, c) = w.service();
        assert!(matches!(
            svc.edit(me, c, m.id, "x").await,
            Err(ChatError::MessageDeleted)
        ));
    }

    #[tokio::test]
    async fn the_sender_deletes_their_own_and_a_group_admin_anyones_but_a_member_not() {
        let (me, admin, member) = (UserId::new(), UserId::new(), UserId::new());
        let mut w = World::new()
            .member(me, Role::Member)
            .member(admin, Role::Admin)
            .member(member, Role::Member);
        let mine = message(w.conversation, me, Duration::seconds(1));
        w = w.holding(&mine);
        let id = mine.id;
        let tomb = |by: UserId, m: &Message| {
            let mut t = m.clone();
            t.content.clear();
            t.deleted_at = Some(t0());
            t.deleted_by = Some(by);
            t.change_seq = 1;
            t
        };
        let (by_me, by_admin) = (tomb(me, &mine), tomb(admin, &mine));
        w.messages
            .expect_delete_message()
            .with(always(), eq(id), eq(me), eq(t0()))
            .times(1)
            .returning(move |_, _, _, _| Ok(Some(DeleteOutcome::Deleted(by_me.clone()))));
        w.messages
            .expect_delete_message()
            .with(always(), eq(id), eq(admin), eq(t0()))
            .times(1)
            .returning(move |_, _, _, _| Ok(Some(DeleteOutcome::Deleted(by_admin.clone()))));
        w.messages
            .expect_delete_message()
            .with(always(), always(), eq(member), always())
            .never();
        let (svc, c) = w.service();
        assert!(matches!(
            svc.delete(member, c, id).await,
            Err(ChatError::NotSender)
        ));
        assert!(
            matches!(svc.delete(me, c, id).await.unwrap(), DeleteOutcome::Deleted(t) if t.deleted_by == Some(me))
        );
        assert!(
            matches!(svc.delete(admin, c, id).await.unwrap(), DeleteOutcome::Deleted(t) if t.deleted_by == Some(admin))
        );
    }

    #[tokio::test]
    async fn deleting_a_message_deletes_its_attachments_blobs_and_records_once() {
        use crate::attachment::Attachment;
        use crate::ports::{MockAttachmentStore, MockBlobStore, MockEncryptionStore};
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let mut with_files = message(w.conversation, me, Duration::seconds(1));
        let file = Attachment {
            id: crate::AttachmentId::new(),
            conversation_id: w.conversation,
            uploader_id: me,
            filename: "a.pdf".into(),
            mime_type: "application/pdf".into(),
            size: 10,
            encrypted: false,
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: t0(),
            confirmed_at: Some(t0()),
            message_id: Some(with_files.id),
        };
        with_files.attachments = vec![file.clone()];
        w = w.holding(&with_files);
        let mut tomb = with_files.clone();
        tomb.deleted_at = Some(t0());
        tomb.attachments.clear();
        let (first, again) = (tomb.clone(), tomb);
        let mut calls = 0;
        w.messages
            .expect_delete_message()
            .times(2)
            .returning(move |_, _, _, _| {
                calls += 1;
                Ok(Some(if calls == 1 {
                    DeleteOutcome::Deleted(first.clone())
                } else {
                    DeleteOutcome::AlreadyDeleted(again.clone())
                }))
            });
        let mut blobs = MockBlobStore::new();
        let id = file.id;
        blobs
            .expect_delete()
            .withf(move |key| {
                [
                    Attachment::upload_key(id),
                    Attachment::file_key(id),
                    Attachment::thumbnail_key(id),
                ]
                .contains(&key.to_owned())
            })
            .times(3)
            .returning(|_| Ok(()));
        let mut records = MockAttachmentStore::new();
        records
            .expect_delete_attachments()
            .withf(move |ids| ids == [id])
            .times(1)
            .returning(|_| Ok(1));
        let mut clock = MockClock::new();
        clock.expect_now().returning(t0);
        let clock = Arc::new(clock);
        let attachments = crate::services::AttachmentService::new(
            Arc::new(records),
            Arc::new(blobs),
            Arc::new(MockConversationStore::new()),
            Arc::new(MockEncryptionStore::new()),
            Arc::new(crate::services::MockImageProcessor::new()),
            clock,
            crate::services::AttachmentSettings::default(),
        );
        let (svc, c) = w.service();
        let svc = svc.with_attachments(attachments);
        assert!(matches!(
            svc.delete(me, c, with_files.id).await.unwrap(),
            DeleteOutcome::Deleted(t) if t.attachments.is_empty()
        ));
        // The store's own answer for a second deletion: nothing more is deleted.
        assert!(matches!(
            svc.delete(me, c, with_files.id).await.unwrap(),
            DeleteOutcome::AlreadyDeleted(_)
        ));
    }

    #[tokio::test]
    async fn deleting_a_deleted_message_again_changes_nothing() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let mut m = message(w.conversation, me, Duration::seconds(1));
        m.deleted_at = Some(t0());
        w = w.holding(&m);
        w.messages.expect_delete_message().never();
        let (svc, c) = w.service();
        assert_eq!(
            svc.delete(me, c, m.id).await.unwrap(),
            DeleteOutcome::AlreadyDeleted(m)
        );
    }

    #[tokio::test]
    async fn a_reaction_is_one_validated_emoji_on_a_live_message() {
        let me = UserId::new();
        let mut w = World::new().member(me, Role::Member);
        let live = message(w.conversation, me, Duration::seconds(1));
        let mut gone = message(w.conversation, me, Duration::seconds(1));
        gone.deleted_at = Some(t0());
        w = w.holding(&live).holding(&gone);
        let id = live.id;
        let after = live.clone();
        w.messages
            .expect_set_reaction()
            .withf(move |_, mid, user, emoji, on, _| {
                *mid == id && *user == me && emoji.as_str() == "\u{1F44D}" && *on
            })
            .times(1)
            .returning(move |_, _, _, _, _, _| {
                Ok(Some(ReactionOutcome {
                    message: after.clone(),
                    changed: true,
                }))
            });
        w.messages
            .expect_reactions_of()
            .withf(move |_, ids, viewer, bound| {
                ids == [id] && *viewer == me && *bound == REACTION_USERS_SHOWN
            })
            .times(1)
            .returning(move |_, _, _, _| {
                Ok(vec![(
                    id,
                    vec![ReactionCount {
                        emoji: "\u{1F44D}".into(),
                        count: 1,
                        user_ids: vec![me],
                        me: true,
                    }],
                )])
            });
        let (svc, c) = w.service();
        let change = svc.react(me, c, id, "\u{1F44D}", true).await.unwrap();
        assert!(change.changed);
        assert_eq!(change.reactions[0].count, 1);
        assert!(matches!(
            svc.react(me, c, id, "lol", true).await,
            Err(ChatError::Invalid(_))
        ));
        assert!(matches!(
            svc.react(me, c, gone.id, "\u{1F44D}", true).await,
            Err(ChatError::MessageDeleted)
        ));
    }

    /// The conversation `w` is about, with `members` in it.
    fn details_of(w: &World, members: &[UserId]) -> crate::conversation::ConversationDetails {
        use crate::conversation::ParticipantProfile;
        use crate::conversation::{Conversation, ConversationDetails, ConversationKind};
        ConversationDetails {
            conversation: Conversation {
                id: w.conversation,
                kind: ConversationKind::Group,
                title: Some("Team".into()),
                created_by: members[0],
                created_at: t0(),
                last_seq: 2,
                last_message_at: Some(t0()),
                last_change: 5,
            },
            participants: members
                .iter()
                .map(|user_id| ParticipantProfile {
                    participant: Participant {
                        conversation_id: w.conversation,
                        user_id: *user_id,
                        role: Role::Member,
                        joined_at: t0(),
                        delivered_seq: 0,
                        read_seq: 0,
                    },
                    display_name: "Member".into(),
                    email: "member@example.com".into(),
                    avatar_url: None,
                    last_seen_at: None,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn changes_are_read_for_members_only_with_a_bounded_page_and_their_reactions() {
        let (me, outsider) = (UserId::new(), UserId::new());
        let mut w = World::new();
        let details = details_of(&w, &[me]);
        w.conversations
            .expect_conversation()
            .returning(move |_| Ok(Some(details.clone())));
        let mut edited = message(w.conversation, me, Duration::seconds(5));
        edited.change_seq = 4;
        let mut gone = message(w.conversation, me, Duration::seconds(5));
        (gone.seq, gone.change_seq, gone.deleted_at) = (2, 5, Some(t0()));
        let (edited_id, page) = (edited.id, vec![edited, gone]);
        w.messages
            .expect_changes_after()
            .with(always(), eq(4), eq(100))
            .times(1)
            .returning(move |_, _, _| Ok(page.clone()));
        // One read of reactions for the page, the tombstone left out.
        w.messages
            .expect_reactions_of()
            .withf(move |_, ids, viewer, bound| {
                ids == [edited_id] && *viewer == me && *bound == REACTION_USERS_SHOWN
            })
            .times(1)
            .returning(move |_, _, _, _| {
                Ok(vec![(
                    edited_id,
                    vec![ReactionCount {
                        emoji: "\u{1F44D}".into(),
                        count: 1,
                        user_ids: vec![me],
                        me: true,
                    }],
                )])
            });
        let (svc, c) = w.service();
        let views = svc.changed_views(me, c, 4, 10_000).await.unwrap();
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].reactions.len(), 1);
        assert!(views[1].reactions.is_empty());
        assert!(matches!(
            svc.changed_views(outsider, c, 0, 10).await,
            Err(ChatError::NotParticipant)
        ));
    }
}
