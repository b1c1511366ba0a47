//! Edits, deletions and reactions (issue 12), the same over REST and the WebSocket: charge
//! the user's change rate, let the domain decide and write, then announce what changed on
//! the conversation's topic (after the commit; a lost announcement is recovered by `sync`,
//! which replays changes from storage by their change number).

use crate::send::RetryAfter;
use crate::Realtime;
use domain::message::{DeleteOutcome, Message};
use domain::realtime::{Event, Topic};
use domain::services::{ChatError, EditOutcome, LifecycleService, MessageView, ReactionChange};
use domain::{ConversationId, MessageId, UserId};

/// Why a change was not made; nothing changed.
#[derive(Debug)]
pub enum ChangeRefused {
    /// The user's change rate limit (`realtime.changes_per_second`).
    RateLimited(RetryAfter),
    /// Validation, authorization or storage.
    Chat(ChatError),
}

impl From<ChatError> for ChangeRefused {
    fn from(e: ChatError) -> Self {
        Self::Chat(e)
    }
}

impl Realtime {
    fn charge_change(&self, user: UserId) -> Result<(), ChangeRefused> {
        self.throttles
            .check_change(user)
            .map_err(ChangeRefused::RateLimited)
    }

    /// `user` edits their message: the message as they now read it. An edit to the same
    /// content answers the message and announces nothing.
    pub async fn edit(
        &self,
        lifecycle: &LifecycleService,
        user: UserId,
        conversation: ConversationId,
        message: MessageId,
        content: &str,
    ) -> Result<MessageView, ChangeRefused> {
        self.charge_change(user)?;
        let outcome = lifecycle.edit(user, conversation, message, content).await?;
        let changed = matches!(outcome, EditOutcome::Edited(_));
        let message = match outcome {
            EditOutcome::Edited(m) | EditOutcome::Unchanged(m) => m,
        };
        let view = lifecycle.view(user, message).await?;
        if changed {
            let event = Event::MessageUpdated { view: view.clone() };
            self.announce(Topic::Conversation(conversation), event)
                .await;
        }
        Ok(view)
    }

    /// `by` deletes a message: its tombstone. Deleting it again answers the tombstone and
    /// announces nothing.
    pub async fn delete(
        &self,
        lifecycle: &LifecycleService,
        by: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<Message, ChangeRefused> {
        self.charge_change(by)?;
        match lifecycle.delete(by, conversation, message).await? {
            DeleteOutcome::Deleted(tombstone) => {
                let event = Event::MessageDeleted {
                    message: tombstone.clone(),
                };
                self.announce(Topic::Conversation(conversation), event)
                    .await;
                Ok(tombstone)
            }
            DeleteOutcome::AlreadyDeleted(tombstone) => Ok(tombstone),
        }
    }

    /// `user` adds (`add`) or removes their reaction `emoji`: the message's reactions as
    /// they see them. One that changes nothing announces nothing.
    pub async fn react(
        &self,
        lifecycle: &LifecycleService,
        user: UserId,
        conversation: ConversationId,
        message: MessageId,
        emoji: &str,
        add: bool,
    ) -> Result<ReactionChange, ChangeRefused> {
        self.charge_change(user)?;
        let change = lifecycle
            .react(user, conversation, message, emoji, add)
            .await?;
        if change.changed {
            let view = lifecycle
                .view_with(user, change.message.clone(), Some(change.reactions.clone()))
                .await?;
            let event = Event::Reaction {
                view,
                user_id: user,
                emoji: emoji.to_owned(),
                added: add,
            };
            self.announce(Topic::Conversation(conversation), event)
                .await;
        }
        Ok(change)
    }
}
