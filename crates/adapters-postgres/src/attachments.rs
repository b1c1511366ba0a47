//! `AttachmentStore`: the records of uploads, and how messages carry theirs.
//!
//! A send binds its attachments inside `append_messages` (see `messages.rs`): the rows are
//! locked (`FOR UPDATE`), checked and bound in the send's transaction. Every read that
//! answers messages reads their attachments with ONE more statement for the whole set
//! ([`AttachmentsOfMessages`]), and only when one of them was sent with some and is not
//! deleted (`messages.attachment_count`): most pages read nothing more.
//!
//! Nothing else here is hot: a few short statements per upload, and the sweeper's.

use crate::prepared::AttachmentsOfMessages;
use crate::rows::{AttachmentRow, MessageRow};
use crate::schema::{attachments, messages};
use crate::{db, PostgresStorage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::attachment::{Attachment, AttachmentConfirmation, NewAttachment};
use domain::message::Message;
use domain::ports::AttachmentStore;
use domain::{AttachmentId, StorageError};
use std::collections::HashMap;
use uuid::Uuid;

/// A stored value as the domain's, inside a transaction (a conversion failure is the
/// database's content, not a driver error).
pub(crate) fn converted<R, T>(row: R) -> Result<T, DieselError>
where
    T: TryFrom<R, Error = StorageError>,
{
    T::try_from(row).map_err(|err| DieselError::DeserializationError(Box::new(err)))
}

/// The attachments of those of `rows` that show some, by message id, each message's in
/// position order: one statement, none when no row shows any.
pub(crate) async fn attachments_of<'r>(
    conn: &mut AsyncPgConnection,
    rows: impl IntoIterator<Item = &'r MessageRow>,
) -> Result<HashMap<Uuid, Vec<Attachment>>, DieselError> {
    let ids: Vec<Uuid> = rows
        .into_iter()
        .filter(|r| r.shows_attachments())
        .map(|r| r.id)
        .collect();
    let mut by_message: HashMap<Uuid, Vec<Attachment>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_message);
    }
    let found: Vec<AttachmentRow> = AttachmentsOfMessages { messages: &ids }.load(conn).await?;
    for row in found {
        if let Some(message) = row.message_id {
            by_message.entry(message).or_default().push(converted(row)?);
        }
    }
    Ok(by_message)
}

/// `row` as the domain's message, with its attachments taken from `by_message`.
pub(crate) fn message_with(
    row: MessageRow,
    by_message: &mut HashMap<Uuid, Vec<Attachment>>,
) -> Result<Message, DieselError> {
    let shows = row.shows_attachments();
    let id = row.id;
    let mut message: Message = converted(row)?;
    if shows {
        message.attachments = by_message.remove(&id).unwrap_or_default();
    }
    Ok(message)
}

/// `rows` as the domain's messages, in their order, each with its attachments (one more
/// statement at most, see [`attachments_of`]).
pub(crate) async fn messages_of(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
) -> Result<Vec<Message>, DieselError> {
    let mut by_message = attachments_of(conn, &rows).await?;
    rows.into_iter()
        .map(|row| message_with(row, &mut by_message))
        .collect()
}

/// One message row as the domain's, with its attachments.
pub(crate) async fn message_of(
    conn: &mut AsyncPgConnection,
    row: MessageRow,
) -> Result<Message, DieselError> {
    let mut by_message = attachments_of(conn, [&row]).await?;
    message_with(row, &mut by_message)
}

/// The sweeper's query (see `AttachmentStore::expired_attachments`): attachments never
/// sent announced before `$1`, through the partial index on unsent ones' `created_at`, and
/// those of deleted messages, through the partial index on deleted messages that still
/// have some; oldest first, at most `$2`.
const EXPIRED: &str = "\
SELECT * FROM (
    (SELECT * FROM attachments
     WHERE message_id IS NULL AND created_at < $1
     ORDER BY created_at, id LIMIT $2)
    UNION ALL
    (SELECT a.* FROM messages m
     CROSS JOIN LATERAL (SELECT * FROM attachments WHERE message_id = m.id OFFSET 0) a
     WHERE m.deleted_at IS NOT NULL AND m.attachment_count > 0)
) x
ORDER BY created_at, id
LIMIT $2";

#[async_trait]
impl AttachmentStore for PostgresStorage {
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, StorageError> {
        let size = i64::try_from(new.size).map_err(StorageError::refused)?;
        let row = AttachmentRow {
            id: new.id.as_uuid(),
            conversation_id: new.conversation_id.as_uuid(),
            uploader_id: new.uploader_id.as_uuid(),
            filename: new.filename.clone(),
            mime_type: new.mime_type.clone(),
            size,
            encrypted: new.encrypted,
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: new.created_at,
            confirmed_at: None,
            message_id: None,
            position: None,
        };
        let stored: AttachmentRow = self
            .timed(async |conn| {
                diesel::insert_into(attachments::table)
                    .values(&row)
                    .returning(AttachmentRow::as_returning())
                    .get_result(&mut **conn)
                    .await
                    .map_err(db)
            })
            .await?;
        Attachment::try_from(stored)
    }

    async fn attachment(&self, id: AttachmentId) -> Result<Option<Attachment>, StorageError> {
        let row: Option<AttachmentRow> = self
            .timed(async |conn| {
                attachments::table
                    .find(id.as_uuid())
                    .select(AttachmentRow::as_select())
                    .first(&mut **conn)
                    .await
                    .optional()
                    .map_err(db)
            })
            .await?;
        row.map(Attachment::try_from).transpose()
    }

    async fn attachments_by_ids(
        &self,
        ids: &[AttachmentId],
    ) -> Result<Vec<Attachment>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        let rows: Vec<AttachmentRow> = self
            .timed(async |conn| {
                attachments::table
                    .filter(attachments::id.eq_any(&ids))
                    .select(AttachmentRow::as_select())
                    .load(&mut **conn)
                    .await
                    .map_err(db)
            })
            .await?;
        rows.into_iter().map(Attachment::try_from).collect()
    }

    async fn confirm_attachment(
        &self,
        id: AttachmentId,
        confirmation: &AttachmentConfirmation,
    ) -> Result<Option<Attachment>, StorageError> {
        let size = i64::try_from(confirmation.size).map_err(StorageError::refused)?;
        let pixels = |n: Option<u32>| {
            n.map(|n| i32::try_from(n).map_err(StorageError::refused))
                .transpose()
        };
        let (width, height) = (pixels(confirmation.width)?, pixels(confirmation.height)?);
        let row: Option<AttachmentRow> = self
            .timed(async |conn| {
                diesel::update(
                    attachments::table
                        .find(id.as_uuid())
                        .filter(attachments::confirmed_at.is_null()),
                )
                .set((
                    attachments::mime_type.eq(&confirmation.mime_type),
                    attachments::size.eq(size),
                    attachments::width.eq(width),
                    attachments::height.eq(height),
                    attachments::has_thumbnail.eq(confirmation.has_thumbnail),
                    attachments::confirmed_at.eq(confirmation.confirmed_at),
                ))
                .returning(AttachmentRow::as_returning())
                .get_result(&mut **conn)
                .await
                .optional()
                .map_err(db)
            })
            .await?;
        row.map(Attachment::try_from).transpose()
    }

    async fn expired_attachments(
        &self,
        unsent_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Attachment>, StorageError> {
        let rows: Vec<AttachmentRow> = self
            .timed(async |conn| {
                diesel::sql_query(EXPIRED)
                    .bind::<Timestamptz, _>(unsent_before)
                    .bind::<BigInt, _>(crate::bigint(limit))
                    .load(&mut **conn)
                    .await
                    .map_err(db)
            })
            .await?;
        rows.into_iter().map(Attachment::try_from).collect()
    }

    async fn delete_attachments(&self, ids: &[AttachmentId]) -> Result<u64, StorageError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        self.timed(async |conn| {
            conn.transaction(async |conn| {
                let sent: Vec<Option<Uuid>> =
                    diesel::delete(attachments::table.filter(attachments::id.eq_any(&ids)))
                        .returning(attachments::message_id)
                        .get_results(conn)
                        .await?;
                let deleted = sent.len() as u64;
                let mut of_messages: Vec<Uuid> = sent.into_iter().flatten().collect();
                of_messages.sort_unstable();
                of_messages.dedup();
                if !of_messages.is_empty() {
                    // A deleted message whose attachments are all gone leaves the sweeper's
                    // index: nothing of it is left to sweep.
                    let left = attachments::table
                        .filter(attachments::message_id.eq(messages::id.nullable()))
                        .select(attachments::id);
                    diesel::update(
                        messages::table
                            .filter(messages::id.eq_any(&of_messages))
                            .filter(messages::deleted_at.is_not_null())
                            .filter(diesel::dsl::not(diesel::dsl::exists(left))),
                    )
                    .set(messages::attachment_count.eq(0))
                    .execute(conn)
                    .await?;
                }
                Ok::<_, DieselError>(deleted)
            })
            .await
            .map_err(db)
        })
        .await
    }
}
