//! Row counts straight from the database, to prove a refused request changed nothing.

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use std::collections::BTreeMap;
use std::path::Path;

/// Rows per table.
pub type RowCounts = BTreeMap<&'static str, i64>;

/// Every table the product writes.
pub const TABLES: [&str; 5] = [
    "users",
    "refresh_tokens",
    "conversations",
    "participants",
    "messages",
];

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count_sql(table: &str) -> String {
    format!("SELECT COUNT(*) AS n FROM {table}")
}

/// Counts in an SQLite file (read while the server runs: WAL allows it).
pub async fn sqlite(path: &Path) -> RowCounts {
    use diesel::{Connection, RunQueryDsl};
    let path = path.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::SqliteConnection::establish(&path).expect("open sqlite");
        TABLES
            .iter()
            .map(|t| {
                let c: Count = diesel::sql_query(count_sql(t))
                    .get_result(&mut conn)
                    .expect("count");
                (*t, c.n)
            })
            .collect()
    })
    .await
    .expect("join")
}

/// Counts in a PostgreSQL database.
pub async fn postgres(url: &str) -> RowCounts {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .expect("connect postgres");
    let mut out = RowCounts::new();
    for t in TABLES {
        let c: Count = diesel::sql_query(count_sql(t))
            .get_result(&mut conn)
            .await
            .expect("count");
        out.insert(t, c.n);
    }
    out
}
