//! The message lifecycle of `MessageStore`: edits, deletions (tombstones), reactions, and
//! the reads recovery and history make of them.
//!
//! Every change is one transaction that first takes the conversation's next change number
//! ([`TakeChange`]: `UPDATE conversations SET last_change = last_change + 1 ... RETURNING`),
//! which locks the conversation's row until it ends. Every later statement of the
//! transaction (READ COMMITTED: each with a snapshot taken after the lock was granted) sees
//! the message as the last change committed it, and no other change of the conversation
//! can run until this one ends: two changes never share a number, and a message's state
//! cannot move between being checked and being changed. A transaction that then changes
//! nothing rolls back, giving its number back, so numbers stay consecutive.

use crate::attachments::{message_of, messages_of};
use crate::prepared::{
    ChangesAfter, EditMessage, EraseMessage, MessageById, MessagesByIds, ReactOff, ReactOn,
    ReactionsOf, TakeChange,
};
use crate::rows::MessageRow;
use crate::{bigint, db, PostgresStorage};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, BigInt, Bool, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::message::{DeleteOutcome, Emoji, Message, ReactionCount, ReactionOutcome};
use domain::{ConversationId, MessageId, StorageError, UserId};
use std::collections::HashMap;
use uuid::Uuid;

/// How a change's transaction ends other than by committing: with an answer (it changed
/// nothing, so it rolls back), or with the database's error.
enum Undo<T> {
    /// Roll back and answer this.
    Answer(T),
    /// Roll back: the database failed.
    Failed(DieselError),
}

impl<T> From<DieselError> for Undo<T> {
    fn from(err: DieselError) -> Self {
        Self::Failed(err)
    }
}

/// The answer of a change's transaction: what it committed, or what it answered when it
/// rolled back.
fn settle<T>(outcome: Result<T, Undo<T>>) -> Result<T, StorageError> {
    match outcome {
        Ok(committed) => Ok(committed),
        Err(Undo::Answer(answer)) => Ok(answer),
        Err(Undo::Failed(err)) => Err(db(err)),
    }
}

/// Takes the conversation's next change number, locking its row; `None` for an unknown
/// conversation.
async fn take_change(
    conn: &mut AsyncPgConnection,
    conversation: &Uuid,
) -> Result<Option<i64>, DieselError> {
    TakeChange { id: conversation }
        .get_result::<i64>(conn)
        .await
        .optional()
}

/// The message `message` of `conversation` as it is now, deleted or not.
pub(crate) async fn stored(
    conn: &mut AsyncPgConnection,
    conversation: &Uuid,
    message: &Uuid,
) -> Result<Option<Message>, DieselError> {
    let row = MessageById {
        id: message,
        conversation,
    }
    .get_result::<MessageRow>(conn)
    .await
    .optional()?;
    match row {
        Some(row) => message_of(conn, row).await.map(Some),
        None => Ok(None),
    }
}

/// A row of [`ReactionsOf`].
#[derive(QueryableByName)]
pub(crate) struct ReactionRow {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = BigInt)]
    reactors: i64,
    #[diesel(sql_type = Array<SqlUuid>)]
    user_ids: Vec<Uuid>,
    #[diesel(sql_type = Bool)]
    me: bool,
}

impl PostgresStorage {
    /// `MessageStore::edit_message`.
    pub(crate) async fn edit(
        &self,
        conversation: ConversationId,
        message: MessageId,
        content: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, StorageError> {
        let (conversation, message) = (conversation.as_uuid(), message.as_uuid());
        self.timed(async |conn| {
            settle(
                conn.transaction(async |conn| {
                    let Some(change) = take_change(conn, &conversation).await? else {
                        return Err(Undo::Answer(None));
                    };
                    let edited = EditMessage {
                        content,
                        at: &at,
                        change: &change,
                        id: &message,
                        conversation: &conversation,
                    }
                    .get_result::<MessageRow>(conn)
                    .await
                    .optional()?;
                    match edited {
                        Some(row) => Ok(Some(message_of(conn, row).await?)),
                        // Unknown, or deleted: nothing changes.
                        None => Err(Undo::Answer(None)),
                    }
                })
                .await,
            )
        })
        .await
    }

    /// `MessageStore::delete_message`.
    pub(crate) async fn delete(
        &self,
        conversation: ConversationId,
        message: MessageId,
        by: UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<DeleteOutcome>, StorageError> {
        let (conversation, message, by) = (conversation.as_uuid(), message.as_uuid(), by.as_uuid());
        self.timed(async |conn| {
            settle(
                conn.transaction(async |conn| {
                    let Some(change) = take_change(conn, &conversation).await? else {
                        return Err(Undo::Answer(None));
                    };
                    let erased = EraseMessage {
                        at: &at,
                        by: &by,
                        change: &change,
                        id: &message,
                        conversation: &conversation,
                    }
                    .get_result::<MessageRow>(conn)
                    .await
                    .optional()?;
                    if let Some(row) = erased {
                        return Ok(Some(DeleteOutcome::Deleted(message_of(conn, row).await?)));
                    }
                    // Deleted before (returned as it is), or unknown: nothing changes.
                    let before = stored(conn, &conversation, &message).await?;
                    Err(Undo::Answer(before.map(DeleteOutcome::AlreadyDeleted)))
                })
                .await,
            )
        })
        .await
    }

    /// `MessageStore::set_reaction`.
    pub(crate) async fn react(
        &self,
        conversation: ConversationId,
        message: MessageId,
        user: UserId,
        emoji: &Emoji,
        on: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<ReactionOutcome>, StorageError> {
        let (conversation, message, user) =
            (conversation.as_uuid(), message.as_uuid(), user.as_uuid());
        let emoji = emoji.as_str();
        self.timed(async |conn| {
            settle(
                conn.transaction(async |conn| {
                    let Some(change) = take_change(conn, &conversation).await? else {
                        return Err(Undo::Answer(None));
                    };
                    let changed = if on {
                        ReactOn {
                            user: &user,
                            emoji,
                            change: &change,
                            at: &at,
                            id: &message,
                            conversation: &conversation,
                        }
                        .get_result::<MessageRow>(conn)
                        .await
                        .optional()?
                    } else {
                        ReactOff {
                            id: &message,
                            user: &user,
                            emoji,
                            conversation: &conversation,
                            change: &change,
                        }
                        .get_result::<MessageRow>(conn)
                        .await
                        .optional()?
                    };
                    if let Some(row) = changed {
                        return Ok(Some(ReactionOutcome {
                            message: message_of(conn, row).await?,
                            changed: true,
                        }));
                    }
                    // Nothing to add or remove (the message as it is), or no live message.
                    let now = stored(conn, &conversation, &message).await?;
                    Err(Undo::Answer(now.filter(|m| m.deleted_at.is_none()).map(
                        |message| ReactionOutcome {
                            message,
                            changed: false,
                        },
                    )))
                })
                .await,
            )
        })
        .await
    }

    /// `MessageStore::reactions_of`: per message in the order of `messages` (each once,
    /// only those with reactions), in one statement.
    pub(crate) async fn reactions(
        &self,
        conversation: ConversationId,
        messages: &[MessageId],
        viewer: UserId,
        user_bound: u32,
    ) -> Result<Vec<(MessageId, Vec<ReactionCount>)>, StorageError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = messages.iter().map(|m| m.as_uuid()).collect();
        let bound = i32::try_from(user_bound).unwrap_or(i32::MAX);
        let rows: Vec<ReactionRow> = self
            .timed(async |conn| {
                ReactionsOf {
                    bound: &bound,
                    viewer: &viewer.as_uuid(),
                    messages: &ids,
                    conversation: &conversation.as_uuid(),
                }
                .load(&mut **conn)
                .await
                .map_err(db)
            })
            .await?;
        let mut by_message: HashMap<Uuid, Vec<ReactionCount>> = HashMap::new();
        for row in rows {
            let count = u32::try_from(row.reactors)
                .map_err(|_| StorageError::msg(format!("{} reactions", row.reactors)))?;
            by_message
                .entry(row.message_id)
                .or_default()
                .push(ReactionCount {
                    emoji: row.emoji,
                    count,
                    user_ids: row.user_ids.into_iter().map(UserId::from_uuid).collect(),
                    me: row.me,
                });
        }
        Ok(ids
            .iter()
            .filter_map(|id| {
                by_message
                    .remove(id)
                    .map(|r| (MessageId::from_uuid(*id), r))
            })
            .collect())
    }

    /// `MessageStore::messages_by_ids`, in one statement.
    pub(crate) async fn by_ids(
        &self,
        conversation: ConversationId,
        ids: &[MessageId],
    ) -> Result<Vec<Message>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|m| m.as_uuid()).collect();
        self.timed(async |conn| {
            let rows: Vec<MessageRow> = MessagesByIds {
                ids: &ids,
                conversation: &conversation.as_uuid(),
            }
            .load(&mut **conn)
            .await
            .map_err(db)?;
            messages_of(conn, rows).await.map_err(db)
        })
        .await
    }

    /// `MessageStore::changes_after`.
    pub(crate) async fn changes(
        &self,
        conversation: ConversationId,
        after_change: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        self.timed(async |conn| {
            let rows: Vec<MessageRow> = ChangesAfter {
                conversation: &conversation.as_uuid(),
                after: &after_change,
                limit: &bigint(limit),
            }
            .load(&mut **conn)
            .await
            .map_err(db)?;
            messages_of(conn, rows).await.map_err(db)
        })
        .await
    }
}
