//! Opening connections: the writer's durability settings, the readers' read-only ones,
//! and the SQL functions queries rely on.

use diesel::connection::{Connection, SimpleConnection};
use diesel::expression::functions::declare_sql_function;
use diesel::r2d2::{CustomizeConnection, Error as PoolError};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;
use domain::StorageError;
use std::path::Path;
use std::time::Duration;

#[declare_sql_function]
extern "SQL" {
    /// Unicode lower-casing (SQLite's own `lower()` only knows ASCII), registered on every
    /// connection by [`register_functions`].
    fn unicode_lower(text: Text) -> Text;

    /// SQLite's two-argument scalar `max`.
    #[sql_name = "max"]
    fn greatest(a: BigInt, b: BigInt) -> BigInt;

    /// The first of its arguments that is not NULL.
    fn coalesce(a: Nullable<BigInt>, b: BigInt) -> BigInt;
}

/// The connection string for the database file at `path`.
pub(crate) fn database_url(path: &Path) -> Result<String, StorageError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| StorageError::msg(format!("database path {} is not UTF-8", path.display())))
}

/// Opens the read-write connection: WAL so readers never wait for it, `synchronous=FULL`
/// so a commit that returned survives power loss, foreign keys enforced, and a busy
/// timeout for the rare other process (a `migrate` run) holding the write lock.
pub(crate) fn open_writer(
    url: &str,
    busy_timeout: Duration,
) -> Result<SqliteConnection, StorageError> {
    let mut conn = SqliteConnection::establish(url).map_err(StorageError::new)?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
        busy_timeout.as_millis()
    ))
    .map_err(StorageError::new)?;
    let mode = journal_mode(&mut conn).map_err(StorageError::new)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::msg(format!(
            "the database at {url} refused WAL journaling (journal_mode is {mode})"
        )));
    }
    register_functions(&mut conn).map_err(StorageError::new)?;
    Ok(conn)
}

/// Makes each pooled connection a reader: `query_only` so nothing can write around the
/// one writer, and the same busy timeout and functions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderSetup {
    pub(crate) busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, PoolError> for ReaderSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), PoolError> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {};
             PRAGMA query_only = ON;",
            self.busy_timeout.as_millis()
        ))
        .map_err(PoolError::QueryError)?;
        register_functions(conn).map_err(PoolError::QueryError)
    }
}

/// Registers the crate's SQL functions on `conn`.
fn register_functions(conn: &mut SqliteConnection) -> QueryResult<()> {
    unicode_lower_utils::register_impl(conn, |text: String| text.to_lowercase())
}

/// The settings a connection actually runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePragmas {
    /// `wal` for the store.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 0 off, 1 normal, 2 full, 3 extra.
    pub synchronous: i32,
    /// Whether foreign keys are enforced.
    pub foreign_keys: bool,
    /// How long a statement waits for a lock before failing.
    pub busy_timeout: Duration,
}

#[derive(diesel::QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

#[derive(diesel::QueryableByName)]
struct Synchronous {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    synchronous: i32,
}

#[derive(diesel::QueryableByName)]
struct ForeignKeys {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    foreign_keys: i32,
}

#[derive(diesel::QueryableByName)]
struct BusyTimeout {
    #[diesel(sql_type = BigInt)]
    timeout: i64,
}

fn journal_mode(conn: &mut SqliteConnection) -> QueryResult<String> {
    Ok(diesel::sql_query("PRAGMA journal_mode")
        .get_result::<JournalMode>(conn)?
        .journal_mode)
}

/// Reads back the pragmas in force on `conn`.
pub(crate) fn effective_pragmas(conn: &mut SqliteConnection) -> QueryResult<EffectivePragmas> {
    let journal_mode = journal_mode(conn)?;
    let synchronous = diesel::sql_query("PRAGMA synchronous")
        .get_result::<Synchronous>(conn)?
        .synchronous;
    let foreign_keys = diesel::sql_query("PRAGMA foreign_keys")
        .get_result::<ForeignKeys>(conn)?
        .foreign_keys
        != 0;
    let busy_timeout = diesel::sql_query("PRAGMA busy_timeout")
        .get_result::<BusyTimeout>(conn)?
        .timeout;
    Ok(EffectivePragmas {
        journal_mode,
        synchronous,
        foreign_keys,
        busy_timeout: Duration::from_millis(u64::try_from(busy_timeout).unwrap_or(0)),
    })
}
