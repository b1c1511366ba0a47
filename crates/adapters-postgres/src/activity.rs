//! What PostgreSQL's own statistics say about the tables every send touches: for a
//! benchmark that must start on a brand-new database (nothing stored, never analyzed,
//! so every plan the server makes is made on empty tables) and that reports how those
//! tables were then read (sequential scans of `messages` were the signature of plans gone
//! bad).

use crate::db;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::StorageError;

/// The tables on the send, receipt and sync paths.
pub const HOT_TABLES: [&str; 4] = ["conversations", "messages", "participants", "users"];

/// One table's cumulative statistics (`pg_stat_user_tables`) and size.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct TableActivity {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table: String,
    /// Rows it holds (counted, not estimated).
    #[diesel(sql_type = BigInt)]
    pub rows: i64,
    /// Sequential scans of it so far.
    #[diesel(sql_type = BigInt)]
    pub seq_scan: i64,
    /// Rows those sequential scans read.
    #[diesel(sql_type = BigInt)]
    pub seq_tup_read: i64,
    /// Index scans of it so far.
    #[diesel(sql_type = BigInt)]
    pub idx_scan: i64,
    /// Rows inserted so far.
    #[diesel(sql_type = BigInt)]
    pub inserted: i64,
    /// Whether the planner has statistics of it: ANALYZE, VACUUM or autovacuum has run
    /// on it (a table never looked at has `reltuples = -1`).
    #[diesel(sql_type = Bool)]
    pub analyzed: bool,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// [`TableActivity`] of each of [`HOT_TABLES`] in the database at `url`, on a connection
/// of its own. Other backends report their counters with a delay (at most about a second
/// when they go idle, up to ten seconds otherwise), so figures read right after traffic
/// may lag slightly.
pub async fn table_activity(url: &str) -> Result<Vec<TableActivity>, StorageError> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(StorageError::new)?;
    // Counting is a scan of its own, which must not show up among the sequential scans
    // reported: by index here (one index scan per table and call, noise beside the
    // traffic's), and flushed (PostgreSQL 15+) before the statistics are read.
    conn.batch_execute("SET enable_seqscan = off")
        .await
        .map_err(db)?;
    let mut rows = Vec::with_capacity(HOT_TABLES.len());
    for table in HOT_TABLES {
        // The name is one of the constants above, never input.
        let count: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result(&mut conn)
            .await
            .map_err(db)?;
        rows.push(count.n);
    }
    // Older servers lack it; the counts' index scans then show up a little later.
    let _ = diesel::sql_query("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await;
    let mut all = Vec::with_capacity(HOT_TABLES.len());
    for (table, rows) in HOT_TABLES.into_iter().zip(rows) {
        let sql = format!(
            "SELECT s.relname::text AS table, {rows}::int8 AS rows, \
             s.seq_scan, s.seq_tup_read, COALESCE(s.idx_scan, 0) AS idx_scan, \
             s.n_tup_ins AS inserted, \
             (c.reltuples >= 0 OR s.last_analyze IS NOT NULL \
              OR s.last_autoanalyze IS NOT NULL) AS analyzed \
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.relid = '{table}'::regclass"
        );
        let row: TableActivity = diesel::sql_query(sql)
            .get_result(&mut conn)
            .await
            .map_err(db)?;
        all.push(row);
    }
    Ok(all)
}
