//! `MessageStore`: appending with gap-free seqs and idempotency keys, history, and the
//! lifecycle (edits, deletions, reactions; see `lifecycle.rs`).

use crate::attachments::{self, message_of, messages_of};
use crate::hot::{RaiseWatermarks, TakeSeq};
use crate::lifecycle::{self, Reaction};
use crate::rows::{micros, MessageRow};
use crate::schema::{conversations, messages};
use crate::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sqlite::SqliteConnection;
use domain::message::{
    AppendOutcome, AppendRejection, DeleteOutcome, Emoji, Message, MessageContent, NewMessage,
    ReactionCount, ReactionOutcome,
};
use domain::ports::MessageStore;
use domain::{ConversationId, MessageId, StorageError, UserId};

#[async_trait]
impl MessageStore for SqliteStorage {
    async fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<AppendOutcome, AppendRejection>>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.write(move |conn| batch.iter().map(|new| append(conn, new)).collect())
            .await
    }

    async fn messages_before(
        &self,
        id: ConversationId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        self.read(move |conn| {
            let mut page = messages::table
                .filter(messages::conversation_id.eq(id.to_string()))
                .select(MessageRow::as_select())
                .order(messages::seq.desc())
                .limit(i64::from(limit))
                .into_boxed();
            if let Some(before) = before_seq {
                page = page.filter(messages::seq.lt(before));
            }
            let rows = page.load(conn)?;
            messages_of(conn, rows)
        })
        .await
    }

    async fn messages_after(
        &self,
        id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        self.read(move |conn| {
            let page = messages::table
                .filter(messages::conversation_id.eq(id.to_string()))
                .filter(messages::seq.gt(after_seq))
                .select(MessageRow::as_select())
                .order(messages::seq.asc())
                .limit(i64::from(limit))
                .load(conn)?;
            messages_of(conn, page)
        })
        .await
    }

    async fn message(
        &self,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, StorageError> {
        self.read(move |conn| {
            messages::table
                .find(message.to_string())
                .filter(messages::conversation_id.eq(id.to_string()))
                .select(MessageRow::as_select())
                .first(conn)
                .optional()?
                .map(|row| message_of(conn, row))
                .transpose()
        })
        .await
    }

    async fn messages_by_ids(
        &self,
        conversation: ConversationId,
        ids: &[MessageId],
    ) -> Result<Vec<Message>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One statement: each id a probe of the primary key, then checked to be here.
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.read(move |conn| {
            let found = messages::table
                .filter(messages::id.eq_any(&ids))
                .filter(messages::conversation_id.eq(conversation.to_string()))
                .select(MessageRow::as_select())
                .load(conn)?;
            messages_of(conn, found)
        })
        .await
    }

    async fn edit_message(
        &self,
        conversation: ConversationId,
        message: MessageId,
        content: &MessageContent,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, StorageError> {
        let (conversation, message) = (conversation.to_string(), message.to_string());
        let (content, at) = (content.as_str().to_owned(), micros(at));
        self.write(move |conn| lifecycle::edit(conn, &conversation, &message, &content, at))
            .await
    }

    async fn delete_message(
        &self,
        conversation: ConversationId,
        message: MessageId,
        by: UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<DeleteOutcome>, StorageError> {
        let (conversation, message) = (conversation.to_string(), message.to_string());
        let (by, at) = (by.to_string(), micros(at));
        self.write(move |conn| lifecycle::delete(conn, &conversation, &message, &by, at))
            .await
    }

    async fn set_reaction(
        &self,
        conversation: ConversationId,
        message: MessageId,
        user: UserId,
        emoji: &Emoji,
        on: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<ReactionOutcome>, StorageError> {
        let reaction = Reaction {
            conversation: conversation.to_string(),
            message: message.to_string(),
            user: user.to_string(),
            emoji: emoji.as_str().to_owned(),
            on,
            at: micros(at),
        };
        self.write(move |conn| lifecycle::react(conn, &reaction))
            .await
    }

    async fn reactions_of(
        &self,
        conversation: ConversationId,
        messages: &[MessageId],
        viewer: UserId,
        user_bound: u32,
    ) -> Result<Vec<(MessageId, Vec<ReactionCount>)>, StorageError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let messages = messages.to_vec();
        let (conversation, viewer) = (conversation.to_string(), viewer.to_string());
        self.read(move |conn| {
            lifecycle::reactions_of(conn, &conversation, &messages, &viewer, user_bound)
        })
        .await
    }

    async fn changes_after(
        &self,
        conversation: ConversationId,
        after_change: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        let conversation = conversation.to_string();
        self.read(move |conn| {
            lifecycle::changes_after(conn, &conversation, after_change, i64::from(limit))
        })
        .await
    }
}

/// Appends one message of a batch, inside the batch's transaction. Earlier messages of
/// the batch are already written, so a key repeated within the batch is found like one
/// stored long ago.
fn append(
    conn: &mut SqliteConnection,
    new: &NewMessage,
) -> QueryResult<Result<AppendOutcome, AppendRejection>> {
    let sender = new.sender_id.to_string();
    if let Some(key) = &new.client_msg_id {
        let earlier = messages::table
            .filter(messages::sender_id.eq(&sender))
            .filter(messages::client_msg_id.eq(key.as_str()))
            .select(MessageRow::as_select())
            .first(conn)
            .optional()?;
        if let Some(earlier) = earlier {
            let earlier = message_of(conn, earlier)?;
            return Ok(if new.is_replayed_by(&earlier) {
                Ok(AppendOutcome::Replayed(earlier))
            } else {
                Err(AppendRejection::KeyReused)
            });
        }
    }
    let conversation = new.conversation_id.to_string();
    // Checked before a seq is taken: a send refused writes nothing.
    let bound = if new.attachments.is_empty() {
        Vec::new()
    } else {
        match attachments::sendable(conn, new)? {
            Some(bound) => bound,
            None => {
                let known = diesel::select(diesel::dsl::exists(
                    conversations::table.find(&conversation),
                ))
                .get_result::<bool>(conn)?;
                return Ok(Err(if known {
                    AppendRejection::AttachmentUnavailable
                } else {
                    AppendRejection::ConversationNotFound
                }));
            }
        }
    };
    let created_at = crate::rows::micros(new.created_at);
    // Taking the next seq and moving `last_seq` is one statement; under the write lock
    // no one else can take the same seq.
    let Some(seq) = TakeSeq {
        conversation: &conversation,
        at: created_at,
    }
    .get_result::<i64>(conn)
    .optional()?
    else {
        return Ok(Err(AppendRejection::ConversationNotFound));
    };
    let row = MessageRow::new(new, seq);
    diesel::insert_into(messages::table)
        .values(&row)
        .execute(conn)?;
    // The sender has, and has read, what it sent (never moving a watermark back).
    RaiseWatermarks {
        conversation: &conversation,
        user: &sender,
        delivered: seq,
        read: seq,
    }
    .execute(conn)?;
    attachments::bind(conn, &bound)?;
    let mut message = row.into_message()?;
    message.attachments = bound;
    Ok(Ok(AppendOutcome::Created(message)))
}
