//! Messages: gap-free, idempotent batch appends and history; the lifecycle (edits,
//! deletions, reactions) is in `lifecycle.rs`.

use crate::attachments::{attachments_of, message_with, messages_of};
use crate::prepared::{
    BindAttachments, ExistingKeys, InsertMessages, LockAttachments, LockConversations,
    UpdateConversations,
};
use crate::receipts::{self, Targets};
use crate::rows::{AttachmentRow, MessageRow};
use crate::schema::messages;
use crate::{bigint, db, violates, PostgresStorage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::attachment::Attachment;
use domain::message::{
    AppendOutcome, AppendRejection, DeleteOutcome, Emoji, Message, MessageContent, NewMessage,
    ReactionCount, ReactionOutcome,
};
use domain::ports::MessageStore;
use domain::{ConversationId, MessageId, StorageError, UserId};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// The unique index that makes sends idempotent.
const KEY_CONSTRAINT: &str = "messages_sender_id_client_msg_id_key";

/// How often a batch is tried when a concurrent send of the same key into another
/// conversation wins the race on [`KEY_CONSTRAINT`]. The second try finds that key, so
/// more than a couple of tries only happen under pathological contention.
const MAX_ATTEMPTS: usize = 3;

#[async_trait]
impl MessageStore for PostgresStorage {
    async fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<AppendOutcome, AppendRejection>>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Bounded by the query timeout; a database error comes out unjudged, to be judged
        // (refused or unavailable) once the connection is back in the pool.
        let outcome = self
            .timed(async |conn| {
                let mut attempt = 1;
                loop {
                    match conn
                        .transaction(async |conn| append(conn, batch).await)
                        .await
                    {
                        Err(err) if attempt < MAX_ATTEMPTS && violates(&err, KEY_CONSTRAINT) => {
                            tracing::debug!(
                                attempt,
                                "idempotency key raced in from another conversation; retrying the batch"
                            );
                            attempt += 1;
                        }
                        outcome => return Ok(outcome),
                    }
                }
            })
            .await?;
        match outcome {
            Ok(results) => Ok(results),
            Err(failure) => Err(self.judge(failure).await),
        }
    }

    async fn messages_before(
        &self,
        id: ConversationId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        let mut query = messages::table
            .filter(messages::conversation_id.eq(id.as_uuid()))
            .into_boxed();
        if let Some(before) = before_seq {
            query = query.filter(messages::seq.lt(before));
        }
        let mut conn = self.conn().await?;
        let rows = query
            .order(messages::seq.desc())
            .limit(bigint(limit))
            .select(MessageRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db)?;
        messages_of(&mut conn, rows).await.map_err(db)
    }

    async fn messages_after(
        &self,
        id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        self.timed(async |conn| {
            let rows = messages::table
                .filter(messages::conversation_id.eq(id.as_uuid()))
                .filter(messages::seq.gt(after_seq))
                .order(messages::seq.asc())
                .limit(bigint(limit))
                .select(MessageRow::as_select())
                .load(&mut **conn)
                .await
                .map_err(db)?;
            messages_of(conn, rows).await.map_err(db)
        })
        .await
    }

    async fn message(
        &self,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, StorageError> {
        // By primary key, then checked to be in the conversation (see `MessageById`).
        let mut conn = self.conn().await?;
        crate::lifecycle::stored(&mut conn, &id.as_uuid(), &message.as_uuid())
            .await
            .map_err(db)
    }

    async fn messages_by_ids(
        &self,
        conversation: ConversationId,
        ids: &[MessageId],
    ) -> Result<Vec<Message>, StorageError> {
        self.by_ids(conversation, ids).await
    }

    async fn edit_message(
        &self,
        conversation: ConversationId,
        message: MessageId,
        content: &MessageContent,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, StorageError> {
        self.edit(conversation, message, content.as_str(), at).await
    }

    async fn delete_message(
        &self,
        conversation: ConversationId,
        message: MessageId,
        by: UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<DeleteOutcome>, StorageError> {
        self.delete(conversation, message, by, at).await
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
        self.react(conversation, message, user, emoji, on, at).await
    }

    async fn reactions_of(
        &self,
        conversation: ConversationId,
        messages: &[MessageId],
        viewer: UserId,
        user_bound: u32,
    ) -> Result<Vec<(MessageId, Vec<ReactionCount>)>, StorageError> {
        self.reactions(conversation, messages, viewer, user_bound)
            .await
    }

    async fn changes_after(
        &self,
        conversation: ConversationId,
        after_change: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError> {
        self.changes(conversation, after_change, limit).await
    }
}

impl PostgresStorage {
    /// The error of a failed append. diesel names constraint violations, but reports every
    /// other error PostgreSQL sent (a data error such as a NUL byte, and also "terminating
    /// connection due to administrator command" when the server goes down) as one unknown
    /// kind, without its SQLSTATE. Such an error is a refusal of the batch's input only if
    /// the database still answers afterwards; if it does not, the database is at fault and
    /// the error says unavailable (so no message is blamed for a server going away).
    async fn judge(&self, err: DieselError) -> StorageError {
        use diesel::result::DatabaseErrorKind as Kind;
        let unknown = matches!(&err, DieselError::DatabaseError(kind, _)
            if !matches!(kind, Kind::UniqueViolation | Kind::ForeignKeyViolation
                | Kind::NotNullViolation | Kind::CheckViolation
                | Kind::RestrictViolation | Kind::ExclusionViolation));
        let judged = db(err);
        if !(unknown && judged.is_refused()) {
            return judged;
        }
        match domain::ports::StoreHealth::ping(self).await {
            Ok(()) => judged,
            Err(down) => {
                tracing::debug!(error = %down, "the database stopped answering after an append failed");
                StorageError::msg(format!("{judged} (and the database stopped answering)"))
            }
        }
    }
}

/// One attempt at appending `batch`, inside the caller's transaction. A fixed number of
/// statements whatever the batch size: lock, key lookup, then insert and updates pipelined.
async fn append(
    conn: &mut AsyncPgConnection,
    batch: &[NewMessage],
) -> QueryResult<Vec<Result<AppendOutcome, AppendRejection>>> {
    // Pipelined, in this order: PostgreSQL takes the locks before it looks the keys up.
    let shared: &AsyncPgConnection = conn;
    let (locked, existing, bindable) = tokio::join!(
        lock_conversations(shared, batch),
        existing_keys(shared, batch),
        lock_attachments(shared, batch),
    );
    let mut last_seq = locked?;
    let existing = existing?;
    let mut bindable = bindable?;
    // The replays' originals carry their attachments (a replay compares them).
    let mut attachments = attachments_of(conn, &existing).await?;
    let mut known = HashMap::with_capacity(existing.len());
    for row in existing {
        let message = message_with(row, &mut attachments)?;
        let key = (
            message.sender_id.as_uuid(),
            message.client_msg_id.clone().unwrap_or_default(),
        );
        known.insert(key, message);
    }

    let mut results = Vec::with_capacity(batch.len());
    let mut created = Vec::new();
    for new in batch {
        let Some(last) = last_seq.get_mut(&new.conversation_id.as_uuid()) else {
            results.push(Err(AppendRejection::ConversationNotFound));
            continue;
        };
        let key = new
            .client_msg_id
            .as_ref()
            .map(|k| (new.sender_id.as_uuid(), k.as_str().to_owned()));
        // Stored before, or earlier in this batch: nothing is written, no seq is used.
        if let Some(existing) = key.as_ref().and_then(|k| known.get(k)) {
            results.push(if new.is_replayed_by(existing) {
                Ok(AppendOutcome::Replayed(existing.clone()))
            } else {
                Err(AppendRejection::KeyReused)
            });
            continue;
        }
        // Its attachments as they are now, each taken from `bindable` so that no later
        // message of the batch can take it too; or nothing of it is written.
        let Some(bound) = take_attachments(&mut bindable, new) else {
            results.push(Err(AppendRejection::AttachmentUnavailable));
            continue;
        };
        *last += 1;
        let mut message = new.stored_as(*last);
        message.attachments = bound;
        if let Some(key) = key {
            known.insert(key, message.clone());
        }
        created.push(message.clone());
        results.push(Ok(AppendOutcome::Created(message)));
    }
    if !created.is_empty() {
        write_created(conn, &created).await?;
    }
    Ok(results)
}

/// Locks the batch's conversation rows, in id order so that concurrent batches touching
/// the same conversations queue instead of deadlocking; their `last_seq` by id. A missing
/// id does not exist. `FOR NO KEY UPDATE` is enough to serialise appends, and unlike
/// `FOR UPDATE` it does not block foreign-key checks (members joining, messages referring).
async fn lock_conversations(
    conn: &AsyncPgConnection,
    batch: &[NewMessage],
) -> QueryResult<HashMap<Uuid, i64>> {
    let ids: BTreeSet<Uuid> = batch.iter().map(|m| m.conversation_id.as_uuid()).collect();
    let ids: Vec<Uuid> = ids.into_iter().collect();
    let rows: Vec<(Uuid, i64)> = LockConversations { ids: &ids }.load(&mut &*conn).await?;
    Ok(rows.into_iter().collect())
}

/// Locks every attachment the batch names, in id order (see [`LockAttachments`]); the
/// sendable ones (confirmed, not sent) by id. None when the batch sends no attachment.
async fn lock_attachments(
    conn: &AsyncPgConnection,
    batch: &[NewMessage],
) -> QueryResult<HashMap<Uuid, AttachmentRow>> {
    let ids: BTreeSet<Uuid> = batch
        .iter()
        .flat_map(|m| m.attachments.iter().map(|a| a.id.as_uuid()))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = ids.into_iter().collect();
    let rows: Vec<AttachmentRow> = LockAttachments { ids: &ids }.load(&mut &*conn).await?;
    Ok(rows
        .into_iter()
        .filter(|a| a.confirmed_at.is_some() && a.message_id.is_none())
        .map(|a| (a.id, a))
        .collect())
}

/// The attachments `new` sends, bound to it in order, taken out of `bindable`; `None`
/// (and nothing taken) unless every one is there, the sender's, in its conversation.
fn take_attachments(
    bindable: &mut HashMap<Uuid, AttachmentRow>,
    new: &NewMessage,
) -> Option<Vec<Attachment>> {
    let ids: Vec<Uuid> = new.attachments.iter().map(|a| a.id.as_uuid()).collect();
    let usable = ids.iter().enumerate().all(|(i, id)| {
        !ids[..i].contains(id)
            && bindable.get(id).is_some_and(|a| {
                a.uploader_id == new.sender_id.as_uuid()
                    && a.conversation_id == new.conversation_id.as_uuid()
            })
    });
    if !usable {
        return None;
    }
    let mut bound = Vec::with_capacity(ids.len());
    for id in &ids {
        let mut attachment = Attachment::try_from(bindable.get(id)?.clone()).ok()?;
        attachment.message_id = Some(new.id);
        bound.push(attachment);
    }
    for id in &ids {
        bindable.remove(id);
    }
    Some(bound)
}

/// The stored messages under the batch's (sender, key) pairs, in one query.
async fn existing_keys(
    conn: &AsyncPgConnection,
    batch: &[NewMessage],
) -> QueryResult<Vec<MessageRow>> {
    let (senders, keys): (Vec<Uuid>, Vec<&str>) = batch
        .iter()
        .filter_map(|m| {
            m.client_msg_id
                .as_ref()
                .map(|k| (m.sender_id.as_uuid(), k.as_str()))
        })
        .unzip();
    if senders.is_empty() {
        return Ok(Vec::new());
    }
    ExistingKeys {
        senders: &senders,
        keys: &keys,
    }
    .load(&mut &*conn)
    .await
}

/// Inserts the new messages, moves their conversations' `last_seq`/`last_message_at` and
/// their senders' watermarks: three independent statements, pipelined on the connection.
async fn write_created(conn: &mut AsyncPgConnection, created: &[Message]) -> QueryResult<()> {
    let n = created.len();
    let mut columns = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    // Each sent attachment, its message and its position there.
    let mut bind: (Vec<Uuid>, Vec<Uuid>, Vec<i32>) = (Vec::new(), Vec::new(), Vec::new());
    // Per conversation: the newest seq and its time. Per (conversation, sender): the
    // sender's newest message, which it has both received and read.
    let mut newest: HashMap<Uuid, (i64, DateTime<Utc>)> = HashMap::new();
    let mut senders = Targets::new();
    for m in created {
        let conversation = m.conversation_id.as_uuid();
        columns.0.push(m.id.as_uuid());
        columns.1.push(conversation);
        columns.2.push(m.seq);
        columns.3.push(m.sender_id.as_uuid());
        columns.4.push(m.client_msg_id.as_deref());
        columns.5.push(m.content.as_str());
        columns.6.push(m.content_type.as_str());
        columns.7.push(m.reply_to.map(|r| r.as_uuid()));
        columns.8.push(m.created_at);
        columns
            .9
            .push(i32::try_from(m.attachments.len()).unwrap_or(i32::MAX));
        for (position, a) in m.attachments.iter().enumerate() {
            bind.0.push(a.id.as_uuid());
            bind.1.push(m.id.as_uuid());
            bind.2.push(i32::try_from(position).unwrap_or(i32::MAX));
        }
        let entry = newest.entry(conversation).or_insert((m.seq, m.created_at));
        if m.seq >= entry.0 {
            *entry = (m.seq, m.created_at);
        }
        let (delivered, read) = senders
            .entry((conversation, m.sender_id.as_uuid()))
            .or_default();
        *delivered = (*delivered).max(Some(m.seq));
        *read = (*read).max(Some(m.seq));
    }
    let (ids, seqs, times): (Vec<Uuid>, Vec<i64>, Vec<DateTime<Utc>>) = newest
        .into_iter()
        .map(|(id, (seq, at))| (id, seq, at))
        .collect();

    let insert = InsertMessages {
        ids: columns.0,
        conversations: columns.1,
        seqs: columns.2,
        senders: columns.3,
        keys: columns.4,
        contents: columns.5,
        content_types: columns.6,
        replies: columns.7,
        times: columns.8,
        attachment_counts: columns.9,
    };
    let update = UpdateConversations {
        ids: &ids,
        seqs: &seqs,
        times: &times,
    };

    let binding = BindAttachments {
        ids: &bind.0,
        messages: &bind.1,
        positions: &bind.2,
    };
    let to_bind = bind.0.len();

    let shared: &AsyncPgConnection = conn;
    // The binding after the insert: its foreign key needs the messages.
    let (inserted, updated, watermarks, bound) = tokio::join!(
        insert.execute(&mut &*shared),
        update.execute(&mut &*shared),
        receipts::advance(shared, &senders),
        async {
            if to_bind == 0 {
                Ok(0)
            } else {
                binding.execute(&mut &*shared).await
            }
        },
    );
    // Statement order, so a unique violation of the insert is what the caller sees
    // rather than the "transaction aborted" of the statements after it.
    let inserted = inserted?;
    updated?;
    watermarks?;
    let bound = bound?;
    if inserted != n {
        return Err(DieselError::QueryBuilderError(
            format!("inserted {inserted} of {n} messages").into(),
        ));
    }
    if bound != to_bind {
        // The rows are locked and were checked: only a broken invariant gets here.
        return Err(DieselError::QueryBuilderError(
            format!("bound {bound} of {to_bind} attachments").into(),
        ));
    }
    Ok(())
}
