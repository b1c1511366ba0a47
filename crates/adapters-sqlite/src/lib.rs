#![doc = include_str!("../README.md")]

mod attachments;
mod connection;
mod conversations;
mod encryption;
mod hot;
mod lifecycle;
mod messages;
mod receipts;
mod rows;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod users;
mod writer;

pub use connection::EffectivePragmas;

use async_trait::async_trait;
use connection::{database_url, effective_pragmas, open_writer, ReaderSetup};
use diesel::connection::Connection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::result::QueryResult;
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use domain::ports::StoreHealth;
use domain::StorageError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use writer::Writer;

/// The schema, compiled into the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Read-only connections in the pool (at least one is opened whatever this says).
    pub read_connections: u32,
    /// How long a statement waits for a lock held by another connection (another process,
    /// say) before failing; also how long a read waits for a free pooled connection.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Every storage port on one SQLite file. Cheap to clone (Arc inside); the file is closed
/// when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

struct Inner {
    // Fields drop in order: the writer finishes its queue and closes first, then the
    // readers, then whatever must outlive the file (a temporary directory).
    writer: Writer,
    readers: Pool<ConnectionManager<SqliteConnection>>,
    _keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl SqliteStorage {
    /// Opens (creating file and parent dirs) the database at `path` and applies pending
    /// embedded migrations.
    pub async fn open(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StorageError> {
        Self::open_keeping(path.as_ref(), options, None).await
    }

    /// Opens like [`SqliteStorage::open`], holding `keep_alive` until the store is closed.
    async fn open_keeping(
        path: &Path,
        options: SqliteOptions,
        keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Result<Self, StorageError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, &options, keep_alive))
            .await
            .map_err(StorageError::new)?
    }

    fn open_blocking(
        path: &Path,
        options: &SqliteOptions,
        keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Result<Self, StorageError> {
        create_parent_dirs(path)?;
        let url = database_url(path)?;
        let busy_timeout = options.busy_timeout;
        let mut conn = open_writer(&url, busy_timeout)?;
        let applied = migrate(&mut conn)?;
        if applied > 0 {
            tracing::info!(applied, path = %path.display(), "applied SQLite migrations");
        }
        // Readers come after the migrations, so none of them sees a half-made schema.
        let readers = Pool::builder()
            .max_size(options.read_connections.max(1))
            .min_idle(Some(1))
            // A file connection does not go stale; checking costs a query per read.
            .test_on_check_out(false)
            .connection_timeout(busy_timeout.max(Duration::from_secs(1)))
            .connection_customizer(Box::new(ReaderSetup { busy_timeout }))
            .build(ConnectionManager::new(url.clone()))
            .map_err(StorageError::new)?;
        let writer = Writer::start(conn, Box::new(move || open_writer(&url, busy_timeout)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                readers,
                _keep_alive: keep_alive,
            }),
        })
    }

    /// The pragmas the writer connection actually runs with (WAL, `synchronous=FULL`...),
    /// for start-up logs and tests.
    pub async fn writer_pragmas(&self) -> Result<EffectivePragmas, StorageError> {
        self.write(effective_pragmas).await
    }

    /// Runs `work` on the writer in a `BEGIN IMMEDIATE` transaction (shared with other
    /// writes queued meanwhile, each in its own savepoint) and answers once it committed.
    /// `work` may run again if another write of its group failed, so it must only touch
    /// the connection.
    async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnMut(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.writer.write(work).await
    }

    /// Runs `work` on a pooled read-only connection, in one read transaction so that
    /// several queries see one snapshot.
    async fn read<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        // A free connection: read right here. Reads in WAL mode never wait for the writer
        // and take tens of microseconds; the hop to the blocking pool and back cost about as
        // much in thread switches (half of that pool's samples in the reconnect storm). Only
        // when every connection is busy does a read wait, on the blocking pool.
        if let Some(mut conn) = self.inner.readers.try_get() {
            let conn: &mut SqliteConnection = &mut conn;
            return conn.transaction(work).map_err(StorageError::new);
        }
        let readers = self.inner.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = readers.get().map_err(StorageError::new)?;
            let conn: &mut SqliteConnection = &mut conn;
            conn.transaction(work).map_err(StorageError::new)
        })
        .await
        .map_err(StorageError::new)?
    }
}

/// Applies pending migrations to the database at `path` (for `chat-server migrate`);
/// returns how many ran.
pub async fn run_migrations(path: impl AsRef<Path>) -> Result<usize, StorageError> {
    let path = path.as_ref().to_path_buf();
    tokio::task::spawn_blocking(move || {
        create_parent_dirs(&path)?;
        let mut conn = open_writer(&database_url(&path)?, SqliteOptions::default().busy_timeout)?;
        migrate(&mut conn)
    })
    .await
    .map_err(StorageError::new)?
}

fn create_parent_dirs(path: &Path) -> Result<(), StorageError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(StorageError::new)
        }
        _ => Ok(()),
    }
}

/// Applies what is pending, all in one `BEGIN IMMEDIATE` transaction: the write lock keeps
/// two processes starting at once from both migrating, and a failure leaves the schema as it was.
fn migrate(conn: &mut SqliteConnection) -> Result<usize, StorageError> {
    conn.immediate_transaction(|conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|applied| applied.len())
    })
    .map_err(StorageError)
}

#[async_trait]
impl StoreHealth for SqliteStorage {
    async fn ping(&self) -> Result<(), StorageError> {
        // Both paths: a reader, and the writer thread taking the write lock.
        self.read(|conn| diesel::sql_query("SELECT 1").execute(conn))
            .await?;
        self.write(|conn| diesel::sql_query("SELECT 1").execute(conn))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use diesel_migrations::MigrationHarness;

    #[test]
    fn every_migration_runs_up_down_and_up_again() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let applied = conn.run_pending_migrations(MIGRATIONS).unwrap().len();
        assert!(applied > 0);
        conn.revert_all_migrations(MIGRATIONS).unwrap();
        assert!(conn.has_pending_migration(MIGRATIONS).unwrap());
        assert_eq!(
            conn.run_pending_migrations(MIGRATIONS).unwrap().len(),
            applied
        );
    }

    /// `.cargo/config.toml` builds the bundled SQLite with the query planner stability
    /// guarantee; without it, statements binding a LIMIT are re-prepared on every use.
    #[test]
    fn sqlite_is_built_with_the_query_planner_stability_guarantee() {
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let options: Vec<CompileOption> = diesel::sql_query("PRAGMA compile_options")
            .load(&mut conn)
            .unwrap();
        assert!(
            options.iter().any(|o| o.compile_options == "ENABLE_QPSG"),
            "ENABLE_QPSG missing from {:?}",
            options
                .iter()
                .map(|o| &o.compile_options)
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn pooled_connections_cannot_write() {
        let store = testing::temporary_store().await.unwrap();
        let attempt = store
            .read(|conn| diesel::sql_query("CREATE TABLE sneaky (id INTEGER)").execute(conn))
            .await;
        let message = attempt.unwrap_err().to_string();
        assert!(message.contains("readonly"), "unexpected error: {message}");
    }
}

#[cfg(test)]
mod read_path_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::time::Duration;

    async fn storage(read_connections: u32) -> (SqliteStorage, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            read_connections,
            busy_timeout: Duration::from_secs(5),
        };
        let storage = SqliteStorage::open(dir.path().join("chat.db"), options)
            .await
            .unwrap();
        (storage, dir)
    }

    fn one(conn: &mut SqliteConnection) -> QueryResult<usize> {
        diesel::sql_query("SELECT 1").execute(conn)
    }

    /// A free connection is used on the calling thread: the read completes on a runtime
    /// that has no blocking pool to hop to.
    #[test]
    fn a_read_with_a_free_connection_runs_on_the_calling_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (storage, _dir) = storage(1).await;
            let caller = std::thread::current().id();
            let ran_on = storage
                .read(|_| Ok(std::thread::current().id()))
                .await
                .unwrap();
            assert_eq!(ran_on, caller);
        });
    }

    /// When every connection is taken, the read waits for one on the blocking pool, and
    /// gets it once it is given back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_on_the_blocking_pool_while_every_connection_is_busy() {
        let (storage, _dir) = storage(1).await;
        let held = storage.inner.readers.get().unwrap();
        let reading = {
            let storage = storage.clone();
            tokio::spawn(async move { storage.read(one).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reading.is_finished(), "no connection is free yet");
        drop(held);
        assert!(
            reading.await.unwrap().is_ok(),
            "the read got the connection back"
        );
    }
}
