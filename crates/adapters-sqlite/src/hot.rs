//! The statements every send and every receipt flush runs, as query types diesel caches.
//!
//! Diesel never caches the prepared statement of an `UPDATE` built with its DSL (the SQL
//! can vary with the `SET` list), so each append compiled two statements and each watermark
//! update one: SQLite's parser and code generator were a visible share of the writer
//! thread's time in `perf`. These types carry fixed SQL and a static query id, so each is
//! compiled once per connection and reused.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Text};
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::rows::ParticipantRow;
    use diesel::connection::{Connection, InstrumentationEvent, SimpleConnection};
    use diesel_migrations::MigrationHarness;
    use std::sync::{Arc, Mutex};

    /// A migrated in-memory database with one conversation of one member, recording the
    /// SQL of every statement diesel puts in its cache.
    fn connection() -> (SqliteConnection, Arc<Mutex<Vec<String>>>) {
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
}
