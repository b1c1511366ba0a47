//! `AttachmentStore`: the records of uploads, and how messages carry theirs.
//!
//! A send binds its attachments inside `append_messages` (see `messages.rs`), on the single
//! writer: nothing else writes between checking that they are sendable and binding them.
//! Every read that answers messages reads their attachments with ONE more statement for the
//! whole set, and only when one of them was sent with some and is not deleted
//! (`messages.attachment_count`): most pages read nothing more.

use crate::rows::{id, micros, time, MessageRow};
use crate::schema::{attachments, messages};
use crate::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sqlite::{Sqlite, SqliteConnection};
use domain::attachment::{Attachment, AttachmentConfirmation, NewAttachment};
use domain::message::{Message, NewMessage};
use domain::ports::AttachmentStore;
use domain::{AttachmentId, StorageError};
use std::collections::HashMap;

/// An `attachments` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, QueryableByName)]
#[diesel(table_name = attachments, check_for_backend(Sqlite))]
pub(crate) struct AttachmentRow {
    pub(crate) id: String,
    pub(crate) conversation_id: String,
    pub(crate) uploader_id: String,
    pub(crate) filename: String,
    pub(crate) mime_type: String,
    pub(crate) size: i64,
    pub(crate) encrypted: bool,
    pub(crate) width: Option<i32>,
    pub(crate) height: Option<i32>,
    pub(crate) has_thumbnail: bool,
    pub(crate) created_at: i64,
    pub(crate) confirmed_at: Option<i64>,
    pub(crate) message_id: Option<String>,
    pub(crate) position: Option<i32>,
}

impl AttachmentRow {
    fn new(new: &NewAttachment) -> QueryResult<Self> {
        Ok(Self {
            id: new.id.to_string(),
            conversation_id: new.conversation_id.to_string(),
            uploader_id: new.uploader_id.to_string(),
            filename: new.filename.clone(),
            mime_type: new.mime_type.clone(),
            size: out_of_range(i64::try_from(new.size), "size")?,
            encrypted: new.encrypted,
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: micros(new.created_at),
            confirmed_at: None,
            message_id: None,
            position: None,
        })
    }

    pub(crate) fn into_attachment(self) -> QueryResult<Attachment> {
        let pixels = |n: Option<i32>| {
            n.map(|n| u32::try_from(n).map_err(|_| crate::rows::corrupt(format!("{n} pixels"))))
                .transpose()
        };
        Ok(Attachment {
            id: id(&self.id)?,
            conversation_id: id(&self.conversation_id)?,
            uploader_id: id(&self.uploader_id)?,
            filename: self.filename,
            mime_type: self.mime_type,
            size: u64::try_from(self.size)
                .map_err(|_| crate::rows::corrupt(format!("{} bytes", self.size)))?,
            encrypted: self.encrypted,
            width: pixels(self.width)?,
            height: pixels(self.height)?,
            has_thumbnail: self.has_thumbnail,
            created_at: time(self.created_at)?,
            confirmed_at: self.confirmed_at.map(time).transpose()?,
            message_id: self.message_id.as_deref().map(id).transpose()?,
        })
    }
}

/// A value the domain allows that SQLite's integers cannot hold: refused as input.
fn out_of_range<T>(value: Result<T, std::num::TryFromIntError>, what: &str) -> QueryResult<T> {
    value.map_err(|e| {
        diesel::result::Error::SerializationError(format!("{what} out of range: {e}").into())
    })
}

/// The attachments of those of `rows` that show some, by message id, each message's in
/// position order: one statement, none when no row shows any.
pub(crate) fn attachments_of<'r>(
    conn: &mut SqliteConnection,
    rows: impl IntoIterator<Item = &'r MessageRow>,
) -> QueryResult<HashMap<String, Vec<Attachment>>> {
    let ids: Vec<&str> = rows
        .into_iter()
        .filter(|r| r.shows_attachments())
        .map(|r| r.id.as_str())
        .collect();
    let mut by_message: HashMap<String, Vec<Attachment>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_message);
    }
    let found: Vec<AttachmentRow> = attachments::table
        .filter(attachments::message_id.eq_any(&ids))
        .order((attachments::message_id, attachments::position))
        .select(AttachmentRow::as_select())
        .load(conn)?;
    for row in found {
        if let Some(message) = row.message_id.clone() {
            by_message
                .entry(message)
                .or_default()
                .push(row.into_attachment()?);
        }
    }
    Ok(by_message)
}

/// `row` as the domain's message, with its attachments taken from `by_message`.
pub(crate) fn message_with(
    row: MessageRow,
    by_message: &mut HashMap<String, Vec<Attachment>>,
) -> QueryResult<Message> {
    let attachments = if row.shows_attachments() {
        by_message.remove(&row.id).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut message = row.into_message()?;
    message.attachments = attachments;
    Ok(message)
}

/// `rows` as the domain's messages, in their order, each with its attachments (one more
/// statement at most, see [`attachments_of`]).
pub(crate) fn messages_of(
    conn: &mut SqliteConnection,
    rows: Vec<MessageRow>,
) -> QueryResult<Vec<Message>> {
    let mut by_message = attachments_of(conn, &rows)?;
    rows.into_iter()
        .map(|row| message_with(row, &mut by_message))
        .collect()
}

/// One message row as the domain's, with its attachments.
pub(crate) fn message_of(conn: &mut SqliteConnection, row: MessageRow) -> QueryResult<Message> {
    let mut by_message = attachments_of(conn, [&row])?;
    message_with(row, &mut by_message)
}

/// The attachments `new` sends, as they are now, if every one is sendable: the sender's,
/// uploaded to its conversation, confirmed and not sent (by an earlier message of the
/// batch either: those are written already). In the order `new` lists them. Only on the
/// writer, where nobody can bind one between this read and [`bind`].
pub(crate) fn sendable(
    conn: &mut SqliteConnection,
    new: &NewMessage,
) -> QueryResult<Option<Vec<Attachment>>> {
    let ids: Vec<String> = new.attachments.iter().map(|a| a.id.to_string()).collect();
    let found: Vec<AttachmentRow> = attachments::table
        .filter(attachments::id.eq_any(&ids))
        .filter(attachments::uploader_id.eq(new.sender_id.to_string()))
        .filter(attachments::conversation_id.eq(new.conversation_id.to_string()))
        .filter(attachments::confirmed_at.is_not_null())
        .filter(attachments::message_id.is_null())
        .select(AttachmentRow::as_select())
        .load(conn)?;
    let mut by_id: HashMap<String, AttachmentRow> =
        found.into_iter().map(|a| (a.id.clone(), a)).collect();
    let mut ordered = Vec::with_capacity(ids.len());
    for (position, id) in ids.iter().enumerate() {
        // A repeated id finds its row taken: fewer rows than attachments.
        let Some(mut row) = by_id.remove(id) else {
            return Ok(None);
        };
        row.message_id = Some(new.id.to_string());
        row.position = Some(out_of_range(i32::try_from(position), "position")?);
        ordered.push(row.into_attachment()?);
    }
    Ok(Some(ordered))
}

/// Binds `attachments` (as [`sendable`] answered them) to their message, in order.
pub(crate) fn bind(conn: &mut SqliteConnection, attachments: &[Attachment]) -> QueryResult<()> {
    for (position, a) in attachments.iter().enumerate() {
        let position = out_of_range(i32::try_from(position), "position")?;
        let bound = diesel::update(
            attachments::table
                .find(a.id.to_string())
                .filter(attachments::message_id.is_null()),
        )
        .set((
            attachments::message_id.eq(a.message_id.map(|m| m.to_string())),
            attachments::position.eq(position),
        ))
        .execute(conn)?;
        if bound != 1 {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("attachment {} was not there to bind", a.id).into(),
            ));
        }
    }
    Ok(())
}

/// The sweeper's query (see `AttachmentStore::expired_attachments`): attachments never
/// sent announced before the first bind, through the partial index on unsent ones'
/// `created_at`, and those of deleted messages, through the partial index on deleted
/// messages that still have some; oldest first, at most the second bind.
const EXPIRED: &str = "\
SELECT * FROM (
    SELECT * FROM (
        SELECT * FROM attachments
        WHERE message_id IS NULL AND created_at < ?1
        ORDER BY created_at, id LIMIT ?2
    )
    UNION ALL
    SELECT a.* FROM messages m JOIN attachments a ON a.message_id = m.id
    WHERE m.deleted_at IS NOT NULL AND m.attachment_count > 0
)
ORDER BY created_at, id
LIMIT ?2";

#[async_trait]
impl AttachmentStore for SqliteStorage {
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, StorageError> {
        let row = AttachmentRow::new(new).map_err(StorageError::refused)?;
        self.write(move |conn| {
            diesel::insert_into(attachments::table)
                .values(&row)
                .returning(AttachmentRow::as_returning())
                .get_result(conn)?
                .into_attachment()
        })
        .await
    }

    async fn attachment(&self, id: AttachmentId) -> Result<Option<Attachment>, StorageError> {
        self.read(move |conn| {
            attachments::table
                .find(id.to_string())
                .select(AttachmentRow::as_select())
                .first(conn)
                .optional()?
                .map(AttachmentRow::into_attachment)
                .transpose()
        })
        .await
    }

    async fn attachments_by_ids(
        &self,
        ids: &[AttachmentId],
    ) -> Result<Vec<Attachment>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.read(move |conn| {
            let rows = attachments::table
                .filter(attachments::id.eq_any(&ids))
                .select(AttachmentRow::as_select())
                .load(conn)?;
            crate::rows::convert(rows, AttachmentRow::into_attachment)
        })
        .await
    }

    async fn confirm_attachment(
        &self,
        id: AttachmentId,
        confirmation: &AttachmentConfirmation,
    ) -> Result<Option<Attachment>, StorageError> {
        let size = out_of_range(i64::try_from(confirmation.size), "size")
            .map_err(StorageError::refused)?;
        let pixels = |n: Option<u32>| {
            n.map(|n| out_of_range(i32::try_from(n), "pixels"))
                .transpose()
                .map_err(StorageError::refused)
        };
        let (width, height) = (pixels(confirmation.width)?, pixels(confirmation.height)?);
        let mime_type = confirmation.mime_type.clone();
        let has_thumbnail = confirmation.has_thumbnail;
        let confirmed_at = micros(confirmation.confirmed_at);
        let id = id.to_string();
        self.write(move |conn| {
            diesel::update(
                attachments::table
                    .find(&id)
                    .filter(attachments::confirmed_at.is_null()),
            )
            .set((
                attachments::mime_type.eq(&mime_type),
                attachments::size.eq(size),
                attachments::width.eq(width),
                attachments::height.eq(height),
                attachments::has_thumbnail.eq(has_thumbnail),
                attachments::confirmed_at.eq(confirmed_at),
            ))
            .returning(AttachmentRow::as_returning())
            .get_result(conn)
            .optional()?
            .map(AttachmentRow::into_attachment)
            .transpose()
        })
        .await
    }

    async fn expired_attachments(
        &self,
        unsent_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Attachment>, StorageError> {
        let before = micros(unsent_before);
        self.read(move |conn| {
            let rows: Vec<AttachmentRow> = diesel::sql_query(EXPIRED)
                .bind::<diesel::sql_types::BigInt, _>(before)
                .bind::<diesel::sql_types::BigInt, _>(i64::from(limit))
                .load(conn)?;
            crate::rows::convert(rows, AttachmentRow::into_attachment)
        })
        .await
    }

    async fn delete_attachments(&self, ids: &[AttachmentId]) -> Result<u64, StorageError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.write(move |conn| {
            let sent: Vec<Option<String>> =
                diesel::delete(attachments::table.filter(attachments::id.eq_any(&ids)))
                    .returning(attachments::message_id)
                    .get_results(conn)?;
            let deleted = sent.len() as u64;
            let mut of_messages: Vec<String> = sent.into_iter().flatten().collect();
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
                .execute(conn)?;
            }
            Ok(deleted)
        })
        .await
    }
}
