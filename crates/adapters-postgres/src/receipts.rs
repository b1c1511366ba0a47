//! Receipt watermarks.

use crate::prepared::AdvanceWatermarks;
use crate::rows::ParticipantRow;
use crate::{db, PostgresStorage};
use async_trait::async_trait;
use diesel::sql_types::BigInt;
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::conversation::Participant;
use domain::ports::{ReceiptStore, WatermarkUpdate};
use domain::StorageError;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// What one member's watermarks should at least become.
pub(crate) type Targets = BTreeMap<(Uuid, Uuid), (Option<i64>, Option<i64>)>;

/// Folds updates per member (the highest value wins), in lock order.
pub(crate) fn targets(updates: &[WatermarkUpdate]) -> Targets {
    let mut targets = Targets::new();
    for u in updates {
        let key = (u.conversation_id.as_uuid(), u.user_id.as_uuid());
        let (delivered, read) = targets.entry(key).or_default();
        *delivered = (*delivered).max(u.delivered_seq);
        *read = (*read).max(u.read_seq);
    }
    targets
}

/// A member's row after an update, with its watermarks from just before.
#[derive(Debug, QueryableByName)]
pub(crate) struct Advanced {
    #[diesel(embed)]
    pub after: ParticipantRow,
    #[diesel(sql_type = BigInt)]
    pub before_delivered_seq: i64,
    #[diesel(sql_type = BigInt)]
    pub before_read_seq: i64,
}

/// Applies `targets`; the members' rows afterwards (non-members are simply absent).
/// Takes the connection shared, so it can be pipelined with other statements.
pub(crate) async fn advance(
    conn: &AsyncPgConnection,
    targets: &Targets,
) -> QueryResult<Vec<Advanced>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut conversations = Vec::with_capacity(targets.len());
    let mut users = Vec::with_capacity(targets.len());
    let mut delivered = Vec::with_capacity(targets.len());
    let mut read = Vec::with_capacity(targets.len());
    for (&(conversation, user), &(d, r)) in targets {
        conversations.push(conversation);
        users.push(user);
        delivered.push(d);
        read.push(r);
    }
    AdvanceWatermarks {
        conversations: &conversations,
        users: &users,
        delivered: &delivered,
        read: &read,
    }
    .load(&mut &*conn)
    .await
}

#[async_trait]
impl ReceiptStore for PostgresStorage {
    async fn advance_watermarks(
        &self,
        updates: &[WatermarkUpdate],
    ) -> Result<Vec<Option<Participant>>, StorageError> {
        let targets = targets(updates);
        // One statement: atomic on its own, no explicit transaction needed.
        let rows = self
            .timed(async |conn| advance(conn, &targets).await.map_err(db))
            .await?;
        let mut members = HashMap::new();
        for row in rows {
            let key = (row.after.conversation_id, row.after.user_id);
            let before = (row.before_delivered_seq, row.before_read_seq);
            members.insert(key, (Participant::try_from(row.after)?, before));
        }
        // Each answer is the member's watermarks once its own update is applied, in input
        // order: replay the updates from the watermarks as they were before.
        Ok(updates
            .iter()
            .map(|u| {
                let key = (u.conversation_id.as_uuid(), u.user_id.as_uuid());
                let (member, (delivered, read)) = members.get_mut(&key)?;
                *delivered = (*delivered).max(u.delivered_seq.max(u.read_seq).unwrap_or(0));
                *read = (*read).max(u.read_seq.unwrap_or(0));
                Some(Participant {
                    delivered_seq: *delivered,
                    read_seq: *read,
                    ..member.clone()
                })
            })
            .collect())
    }
}
