#![doc = include_str!("../README.md")]

mod activity;
mod attachments;
mod conversations;
mod encryption;
mod lifecycle;
mod messages;
mod migrate;
mod prepared;
mod receipts;
mod rows;
mod schema;
mod stats;
mod tokens;
mod users;

#[cfg(feature = "testing")]
pub mod testing;

pub use activity::{table_activity, TableActivity, HOT_TABLES};
pub use migrate::{revert_all_migrations, run_migrations};

use async_trait::async_trait;
use diesel::{ConnectionError, ConnectionResult};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::ports::StoreHealth;
use domain::StorageError;
use stats::{CountingInstrumentation, StatementStats};
use std::sync::Arc;
use std::time::Duration;

/// Every connection plans each prepared statement once, for any parameters, and its plans
/// never scan a table sequentially where an index can answer.
///
/// The statements on the hot paths (`prepared.rs`) bind arrays (`unnest`), whose length a
/// plan for given values knows and a generic plan guesses (10 rows): under the default
/// `plan_cache_mode = auto` PostgreSQL therefore judged the generic plan worse and planned
/// the receipt flush, the append's lock and its conversation update again on EVERY call
/// (`pg_stat_statements`: 200 us of planning per receipt flush, 3.5 s of 20 at 500 sends a
/// second). Every statement here looks rows up by key, which a generic plan does as well
/// as a custom one.
///
/// But a generic plan is made once, from the table sizes of that moment, and kept for the
/// connection's life (until an ANALYZE happens to invalidate it). A fresh deployment's
/// tables are empty, and to the planner a sequential scan of an empty (or just analyzed,
/// tiny) table is cheaper than any index probe: the idempotency-key lookup kept such a
/// plan and read all of `messages` per key as it grew (a fresh database at 4,000 sends a
/// second: 12,004 sequential scans, 274.6 M rows read for 47,867 inserted). So:
///
/// - `enable_seqscan = off`: the planner takes an index whenever one can answer, whatever
///   the sizes, and a sequential scan only where nothing else can (no index fits). That
///   also covers the statements we do not write, the foreign-key checks PostgreSQL runs on
///   every inserted message and member row (their plans are cached per connection too).
/// - The hot statements are shaped so that no other choice is left that could degrade:
///   each table is read in a subquery of its own, parameterized by the rows before it
///   (`CROSS JOIN LATERAL` with `LIMIT`, `OFFSET 0` or `FOR NO KEY UPDATE`, which the
///   planner never pulls up into a join it could turn into a hash join or a walk of a
///   whole index), or by `= ANY` of a parameter array. See `prepared.rs` and
///   `tests/plans.rs`, which checks every plan on pooled connections that prepared their
///   statements on empty tables, after `messages` has grown to 100,000 rows.
///
/// Custom plans (`force_custom_plan`) would also adapt to growth, at the planning cost
/// above on every call; these plans are right by construction and planned once.
///
/// And every commit waits for its WAL to be flushed (`synchronous_commit = on`), whatever the
/// database or role was given: the server acknowledges a send only after its commit, and an
/// acknowledged message must survive kill -9 of PostgreSQL (group commit is what makes this
/// affordable, not a weaker commit).
const SESSION_SETUP: &str = "SET plan_cache_mode = force_generic_plan; \
    SET enable_seqscan = off; SET synchronous_commit = on";

/// How big the pool is and how long anything may wait on the database, so that a database
/// that stops answering turns into errors (`unavailable` to clients) within seconds rather
/// than sends that hang. The defaults are a few seconds: far above any healthy operation's
/// time (milliseconds), short enough that a client's retry lands on a recovered database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Connections at most.
    pub size: usize,
    /// Opening a connection (TCP, authentication, session setup) may take this long.
    pub connect_timeout: Duration,
    /// Getting a connection from the pool (waiting for a free one, or opening one) may
    /// take this long.
    pub acquire_timeout: Duration,
    /// A statement may run this long on the server (`statement_timeout`, which cancels it
    /// and keeps the connection), and an operation on the send, receipt and sync paths may
    /// take this long in all before the caller gets an error; its connection is then
    /// closed, not reused (it may be stuck mid-transaction on a database that hung).
    pub query_timeout: Duration,
}

impl PoolOptions {
    /// `size` connections and the default timeouts (5 s each).
    pub fn with_size(size: usize) -> Self {
        Self {
            size,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// Why an operation failed without an answer from the database.
#[derive(Debug, thiserror::Error)]
enum Timeout {
    #[error("no connection to PostgreSQL within {0:?}")]
    Connect(Duration),
    #[error("no pooled PostgreSQL connection free or opened within {0:?}")]
    Acquire(Duration),
    #[error("PostgreSQL did not answer within {0:?}")]
    Query(Duration),
}

/// A pooled connection.
pub type Conn = Object<AsyncPgConnection>;

/// Every storage port on one PostgreSQL database. Cheap to clone (pool inside).
#[derive(Clone)]
pub struct PostgresStorage {
    pool: Pool<AsyncPgConnection>,
    stats: Arc<StatementStats>,
    acquire_timeout: Duration,
    query_timeout: Duration,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PostgresStorage")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStorage {
    /// A pool of at most `pool_size` connections to `url` with the default timeouts. Does
    /// NOT migrate.
    ///
    /// Opens one connection at once, so a wrong URL or a database that is down fails here
    /// rather than on the first request.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StorageError> {
        Self::connect_with(url, PoolOptions::with_size(pool_size)).await
    }

    /// A pool as `options` say to `url`. Does NOT migrate. Opens one connection at once.
    pub async fn connect_with(url: &str, options: PoolOptions) -> Result<Self, StorageError> {
        let mut config = ManagerConfig::default();
        // A closed connection is already detected on checkout (`is_broken`); a test query
        // on every checkout would add a round trip to every operation.
        config.recycling_method = RecyclingMethod::Fast;
        let stats = Arc::new(StatementStats::default());
        let counted = Arc::clone(&stats);
        let connect_timeout = options.connect_timeout;
        let setup = format!(
            "{SESSION_SETUP}; SET statement_timeout = {}",
            options.query_timeout.as_millis().max(1)
        );
        config.custom_setup = Box::new(move |url| {
            let counted = Arc::clone(&counted);
            let url = url.to_owned();
            let setup = setup.clone();
            Box::pin(async move {
                let opening = async {
                    let mut conn = AsyncPgConnection::establish(&url).await?;
                    conn.batch_execute(&setup)
                        .await
                        .map_err(ConnectionError::CouldntSetupConfiguration)?;
                    ConnectionResult::Ok(conn)
                };
                // A server that accepts and never answers would otherwise hold the
                // caller (and the pool slot) for as long as TCP lets it.
                let mut conn = tokio::time::timeout(connect_timeout, opening)
                    .await
                    .map_err(|_| {
                        ConnectionError::BadConnection(
                            Timeout::Connect(connect_timeout).to_string(),
                        )
                    })??;
                // Counted from here: the setup is not any operation's cost.
                conn.set_instrumentation(CountingInstrumentation(counted));
                ConnectionResult::Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(options.size.max(1))
            .build()
            .map_err(StorageError::new)?;
        let storage = Self {
            pool,
            stats,
            acquire_timeout: options.acquire_timeout,
            query_timeout: options.query_timeout,
        };
        drop(storage.conn().await?);
        Ok(storage)
    }

    /// Statements sent so far on this pool's connections (`BEGIN` and `COMMIT` included),
    /// shared by every clone. For tests that pin an operation's cost in statements.
    pub fn statements_executed(&self) -> u64 {
        self.stats.statements()
    }

    /// Transactions committed so far on this pool's connections (outermost only).
    pub fn transactions_committed(&self) -> u64 {
        self.stats.commits()
    }

    /// Statements prepared into a connection's cache so far (each is then reused by that
    /// connection), shared by every clone. A statement diesel does not cache is prepared,
    /// used once and closed on every call, and never counted here.
    pub fn statements_cached(&self) -> u64 {
        self.stats.cached()
    }

    /// Every connection the pool holds now, checked out together (so none is left idle),
    /// for tests that inspect the pooled connections themselves: their prepared statements
    /// and the plans those keep. Drop them to give them back.
    #[cfg(feature = "testing")]
    pub async fn pooled_connections(&self) -> Result<Vec<Conn>, StorageError> {
        let held = self.pool.status().size;
        let mut all = Vec::with_capacity(held);
        for _ in 0..held {
            all.push(self.conn().await?);
        }
        Ok(all)
    }

    /// A connection from the pool, within the acquire timeout (waiting for a free one or
    /// opening one: a database that hangs must not queue every caller behind it).
    async fn conn(&self) -> Result<Conn, StorageError> {
        match tokio::time::timeout(self.acquire_timeout, self.pool.get()).await {
            Ok(conn) => conn.map_err(StorageError::new),
            Err(_) => Err(StorageError::new(Timeout::Acquire(self.acquire_timeout))),
        }
    }

    /// Runs `op` on a pooled connection within the query timeout. The server's
    /// `statement_timeout` ends a slow statement and keeps the connection; this is for a
    /// database that does not answer at all (hung, stopped, network gone), where nothing
    /// would ever come back. The connection is then closed rather than returned: it may be
    /// mid-transaction, and a reply may still arrive on it.
    async fn timed<T>(
        &self,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.query_timeout, op(&mut conn)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                drop(Object::take(conn));
                Err(StorageError::new(Timeout::Query(self.query_timeout)))
            }
        }
    }
}

/// Wraps a driver error; one PostgreSQL reported about the statement (a constraint or data
/// error: an error with a SQLSTATE, the connection alive) is [`StorageError::refused`], so
/// one bad message is told from a database that is down. Serialization failures and
/// read-only transactions are the database's state, not the input's: unavailable.
fn db(err: diesel::result::Error) -> StorageError {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match &err {
        Error::DatabaseError(
            Kind::UnableToSendCommand
            | Kind::ClosedConnection
            | Kind::SerializationFailure
            | Kind::ReadOnlyTransaction,
            _,
        ) => StorageError::new(err),
        Error::DatabaseError(_, _) => StorageError::refused(err),
        _ => StorageError::new(err),
    }
}

/// Whether `err` is a violation of the named unique constraint.
fn violates(err: &diesel::result::Error, constraint: &str) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(err, Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
        if info.constraint_name() == Some(constraint))
}

/// A `u32` count or offset as SQL's `bigint`.
fn bigint(n: u32) -> i64 {
    i64::from(n)
}

#[async_trait]
impl StoreHealth for PostgresStorage {
    async fn ping(&self) -> Result<(), StorageError> {
        self.timed(async |conn| {
            diesel::sql_query("SELECT 1")
                .execute(&mut **conn)
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use diesel::sql_types::Text;
    use diesel::QueryableByName;

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        setting: String,
    }

    async fn show(conn: &mut Conn, name: &str) -> String {
        diesel::sql_query(format!("SELECT current_setting('{name}') AS setting"))
            .get_result::<Setting>(conn)
            .await
            .unwrap()
            .setting
    }

    #[tokio::test]
    async fn pooled_connections_plan_generically_and_their_setup_is_not_counted() {
        let url = testing::fresh_database().await;
        let store = PostgresStorage::connect(&url, 2).await.unwrap();
        assert_eq!(store.statements_executed(), 0, "connect's setup");
        let mut conn = store.conn().await.unwrap();
        assert_eq!(
            show(&mut conn, "plan_cache_mode").await,
            "force_generic_plan"
        );
        assert_eq!(show(&mut conn, "enable_seqscan").await, "off");
        // The default query timeout, enforced by the server too.
        assert_eq!(show(&mut conn, "statement_timeout").await, "5s");
    }

    #[tokio::test]
    async fn pooled_connections_commit_durably_even_when_the_database_says_otherwise() {
        let url = testing::fresh_database().await;
        let db = url.rsplit('/').next().unwrap().to_owned();
        {
            let admin = PostgresStorage::connect(&url, 1).await.unwrap();
            let mut conn = admin.conn().await.unwrap();
            conn.batch_execute(&format!(
                "ALTER DATABASE \"{db}\" SET synchronous_commit = off"
            ))
            .await
            .unwrap();
        }
        // A new pool: its connections start with the database's default (off)...
        let store = PostgresStorage::connect(&url, 1).await.unwrap();
        let mut conn = store.conn().await.unwrap();
        // ...and the setup puts it back.
        assert_eq!(show(&mut conn, "synchronous_commit").await, "on");
    }

    #[tokio::test]
    async fn a_nul_byte_postgresql_refuses_is_a_refusal_and_a_dead_server_is_not() {
        let url = testing::fresh_database().await;
        let store = PostgresStorage::connect(&url, 1).await.unwrap();
        let mut conn = store.conn().await.unwrap();
        // What a send with a NUL did to its whole batch before validation refused it.
        let err = diesel::sql_query("SELECT $1 AS setting")
            .bind::<Text, _>("a\u{0}b")
            .get_result::<Setting>(&mut conn)
            .await
            .map(|_| ())
            .unwrap_err();
        let err = db(err);
        assert!(err.is_refused(), "{err}");

        let lost = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        assert!(!db(lost).is_refused());
        let Err(unreachable) =
            PostgresStorage::connect("postgres://postgres@127.0.0.1:1/none", 1).await
        else {
            panic!("nothing listens on port 1");
        };
        assert!(!unreachable.is_refused(), "{unreachable}");
    }
}
