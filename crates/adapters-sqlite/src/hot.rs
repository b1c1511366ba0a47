//! The statements every send, every receipt flush and every session open runs, as query
//! types diesel caches.
//!
//! Diesel never caches the prepared statement of an `UPDATE` built with its DSL (the SQL
//! can vary with the `SET` list), so each append compiled two statements and each watermark
//! update one: SQLite's parser and code generator were a visible share of the writer
//! thread's time in `perf`. Nor does it cache `sql_query` text. These types carry fixed SQL
//! and a static query id, so each is compiled once per connection and reused.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

/// Takes a conversation's next seq and records the activity time:
/// `UPDATE conversations SET last_seq = last_seq + 1, ... RETURNING last_seq`.
pub(crate) struct TakeSeq<'a> {
    pub(crate) conversation: &'a str,
    pub(crate) at: i64,
}

impl QueryId for TakeSeq<'_> {
    type QueryId = TakeSeq<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for TakeSeq<'_> {
    type SqlType = BigInt;
}

impl RunQueryDsl<SqliteConnection> for TakeSeq<'_> {}

impl QueryFragment<Sqlite> for TakeSeq<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("UPDATE conversations SET last_seq = last_seq + 1, last_message_at = ");
        out.push_bind_param::<BigInt, _>(&self.at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(self.conversation)?;
        out.push_sql(" RETURNING last_seq");
        Ok(())
    }
}

/// Moves a member's delivered and read watermarks up to at least the given seqs (never
/// back), answering the row as it is after: `UPDATE participants SET delivered_seq =
/// max(delivered_seq, ?), read_seq = max(read_seq, ?) WHERE ... RETURNING ...`.
pub(crate) struct RaiseWatermarks<'a> {
    pub(crate) conversation: &'a str,
    pub(crate) user: &'a str,
    pub(crate) delivered: i64,
    pub(crate) read: i64,
}

impl QueryId for RaiseWatermarks<'_> {
    type QueryId = RaiseWatermarks<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for RaiseWatermarks<'_> {
    /// The columns of `ParticipantRow`, in its field order.
    type SqlType = (Text, Text, Text, BigInt, BigInt, BigInt);
}

impl RunQueryDsl<SqliteConnection> for RaiseWatermarks<'_> {}

impl QueryFragment<Sqlite> for RaiseWatermarks<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("UPDATE participants SET delivered_seq = max(delivered_seq, ");
        out.push_bind_param::<BigInt, _>(&self.delivered)?;
        out.push_sql("), read_seq = max(read_seq, ");
        out.push_bind_param::<BigInt, _>(&self.read)?;
        out.push_sql(") WHERE conversation_id = ");
        out.push_bind_param::<Text, _>(self.conversation)?;
        out.push_sql(" AND user_id = ");
        out.push_bind_param::<Text, _>(self.user)?;
        out.push_sql(
            " RETURNING conversation_id, user_id, role, joined_at, delivered_seq, read_seq",
        );
        Ok(())
    }
}

/// A session's snapshot (`ConversationStore::session_snapshot`): the account, then one row
/// per conversation of the user with its `last_seq` and `last_change`, the user's watermarks (delivered at
/// least read), the lowest of the other members' (0 when alone) and whether it is end-to-end
/// encrypted. A user in no
/// conversation gets one row whose membership columns are NULL; an unknown user, none.
pub(crate) struct SessionSnapshot<'a> {
    pub(crate) user: &'a str,
}

/// A row of [`SessionSnapshot`], in its column order.
pub(crate) type SessionSnapshotRow = (
    crate::rows::UserRow,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    bool,
);

impl QueryId for SessionSnapshot<'_> {
    type QueryId = SessionSnapshot<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for SessionSnapshot<'_> {
    /// The columns of `UserRow` in its field order, then the conversation's id, `last_seq`
    /// and `last_change`, the user's delivered and read watermarks, the other members'
    /// lowest, and whether the conversation is end-to-end encrypted.
    type SqlType = (
        (Text, Text, Text, Nullable<Text>, BigInt, Nullable<BigInt>),
        Nullable<Text>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        BigInt,
        BigInt,
        diesel::sql_types::Bool,
    );
}

impl RunQueryDsl<SqliteConnection> for SessionSnapshot<'_> {}

impl QueryFragment<Sqlite> for SessionSnapshot<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // Two-argument max() is SQLite's scalar maximum; one-argument min() the aggregate.
        out.push_sql(
            "SELECT u.id, u.email, u.display_name, u.avatar_url, u.created_at, u.last_seen_at, \
             me.conversation_id, c.last_seq, c.last_change, max(me.delivered_seq, me.read_seq), me.read_seq, \
             coalesce(min(max(o.delivered_seq, o.read_seq)), 0), coalesce(min(o.read_seq), 0), \
             EXISTS (SELECT 1 FROM conversation_encryption e WHERE e.conversation_id = me.conversation_id) \
             FROM users u \
             LEFT JOIN participants me ON me.user_id = u.id \
             LEFT JOIN conversations c ON c.id = me.conversation_id \
             LEFT JOIN participants o \
             ON o.conversation_id = me.conversation_id AND o.user_id <> me.user_id \
             WHERE u.id = ",
        );
        out.push_bind_param::<Text, _>(self.user)?;
        out.push_sql(" GROUP BY me.conversation_id");
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::rows::ParticipantRow;
    use diesel::connection::{Connection, InstrumentationEvent, SimpleConnection};
    use diesel_migrations::MigrationHarness;
    use std::sync::{Arc, Mutex};

    /// A migrated in-memory database with one conversation of one member, recording the
    /// SQL of every statement diesel puts in its cache.
    pub(crate) fn connection() -> (SqliteConnection, Arc<Mutex<Vec<String>>>) {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.run_pending_migrations(crate::MIGRATIONS).unwrap();
        conn.batch_execute(
            "INSERT INTO users VALUES ('u', 'u@x', 'U', 'h', NULL, 0, NULL);
             INSERT INTO conversations (id, kind, created_by, created_at, direct_key)
                 VALUES ('c', 'direct', 'u', 0, 'k');
             INSERT INTO participants (conversation_id, user_id, role, joined_at)
                 VALUES ('c', 'u', 'owner', 0);",
        )
        .unwrap();
        let cached = Arc::new(Mutex::new(Vec::new()));
        let log = cached.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                log.lock().unwrap().push(sql.to_owned());
            }
        });
        (conn, cached)
    }

    #[test]
    fn seqs_are_taken_one_after_another_with_one_compiled_statement() {
        let (mut conn, cached) = connection();
        let take = |conn: &mut SqliteConnection, at| {
            TakeSeq {
                conversation: "c",
                at,
            }
            .get_result::<i64>(conn)
        };
        assert_eq!(take(&mut conn, 10).unwrap(), 1);
        assert_eq!(take(&mut conn, 20).unwrap(), 2);
        let missing = TakeSeq {
            conversation: "nope",
            at: 0,
        }
        .get_result::<i64>(&mut conn);
        assert!(matches!(missing, Err(diesel::result::Error::NotFound)));
        let cached = cached.lock().unwrap();
        assert_eq!(cached.len(), 1, "{cached:?}");
        assert!(cached[0].starts_with("UPDATE conversations"), "{cached:?}");
    }

    #[test]
    fn watermarks_only_move_forward_with_one_compiled_statement() {
        let (mut conn, cached) = connection();
        let raise = |conn: &mut SqliteConnection, delivered, read| {
            RaiseWatermarks {
                conversation: "c",
                user: "u",
                delivered,
                read,
            }
            .get_result::<ParticipantRow>(conn)
            .unwrap()
        };
        let row = raise(&mut conn, 5, 3);
        assert_eq!((row.delivered_seq, row.read_seq), (5, 3));
        let row = raise(&mut conn, 4, 4);
        assert_eq!((row.delivered_seq, row.read_seq), (5, 4), "never back");
        assert_eq!(row.role, "owner");
        assert_eq!(cached.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_session_snapshot_is_one_row_per_membership_with_one_compiled_statement() {
        let (mut conn, cached) = connection();
        conn.batch_execute(
            "INSERT INTO users VALUES ('v', 'v@x', 'V', 'h', NULL, 0, NULL);
             INSERT INTO users VALUES ('w', 'w@x', 'W', 'h', NULL, 0, NULL);
             UPDATE conversations SET last_seq = 9, last_change = 4 WHERE id = 'c';
             UPDATE participants SET delivered_seq = 9, read_seq = 8 WHERE user_id = 'u';
             INSERT INTO participants VALUES ('c', 'v', 'member', 0, 5, 6);",
        )
        .unwrap();
        let snapshot = |conn: &mut SqliteConnection, user| {
            SessionSnapshot { user }
                .load::<SessionSnapshotRow>(conn)
                .unwrap()
        };
        let rows = snapshot(&mut conn, "u");
        assert_eq!(rows.len(), 1);
        let (
            user,
            conversation,
            last_seq,
            last_change,
            delivered,
            read,
            peer_delivered,
            peer_read,
            encrypted,
        ) = &rows[0];
        assert!(!encrypted);
        assert_eq!(user.id, "u");
        assert_eq!(conversation.as_deref(), Some("c"));
        assert_eq!((*last_seq, *last_change), (Some(9), Some(4)));
        assert_eq!((*delivered, *read), (Some(9), Some(8)));
        // v read past its delivered watermark: read implies delivered.
        assert_eq!((*peer_delivered, *peer_read), (6, 6));
        let rows = snapshot(&mut conn, "w");
        assert_eq!(rows.len(), 1, "a user in no conversation: one row");
        assert_eq!((rows[0].0.id.as_str(), &rows[0].1), ("w", &None));
        assert!(snapshot(&mut conn, "nobody").is_empty());
        assert_eq!(cached.lock().unwrap().len(), 1);
    }
}
