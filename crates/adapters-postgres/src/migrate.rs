//! The embedded schema migrations and the one safe way to run them.

use diesel::sql_types::BigInt;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use domain::StorageError;

/// `migrations/postgres`, compiled into the binary.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The advisory lock key every node takes while migrating ("chat-mig" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_6174_2d6d_6967;

/// The blocking harness, as it runs on its own thread.
type Harness = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies pending embedded migrations on ONE dedicated connection holding a session-level
/// `pg_advisory_lock` (so several nodes may start at once); returns how many ran.
///
/// The diesel migration harness is blocking, so it runs through diesel-async's
/// `AsyncConnectionWrapper` inside `spawn_blocking`: actix's runtime is single-threaded per
/// worker and must not be blocked in place.
pub async fn run_migrations(url: &str) -> Result<usize, StorageError> {
    under_migration_lock(url, |harness| {
        harness
            .run_pending_migrations(MIGRATIONS)
            .map(|ran| ran.len())
    })
    .await
}

/// Reverts every applied migration, newest first; returns how many were reverted.
/// For tests (the up-down-up check), public so integration tests can use it.
pub async fn revert_all_migrations(url: &str) -> Result<usize, StorageError> {
    under_migration_lock(url, |harness| {
        harness
            .revert_all_migrations(MIGRATIONS)
            .map(|reverted| reverted.len())
    })
    .await
}

/// Applies pending migrations one at a time until `version` (a migration's folder-name
/// prefix, `2026-12-02-000000`; dashes optional) is applied, and none after it; returns how
/// many ran. How a database the release of that migration left behind looks, for upgrade
/// tests.
#[cfg(feature = "testing")]
pub(crate) async fn run_migrations_to(url: &str, version: &str) -> Result<usize, StorageError> {
    let wanted = version.replace('-', "");
    under_migration_lock(url, move |harness| {
        let mut ran = 0;
        loop {
            let applied = harness.applied_migrations()?;
            if applied.iter().any(|v| v.to_string() == wanted) {
                return Ok(ran);
            }
            if !harness.has_pending_migration(MIGRATIONS)? {
                return Err(format!("no migration {wanted} to stop at").into());
            }
            harness.run_next_migration(MIGRATIONS)?;
            ran += 1;
        }
    })
    .await
}

/// Runs `work` on a fresh connection while holding the migration lock.
async fn under_migration_lock<F>(url: &str, work: F) -> Result<usize, StorageError>
where
    F: FnOnce(&mut Harness) -> diesel::migration::Result<usize> + Send + 'static,
{
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(StorageError::new)?;
    advisory(&mut conn, "SELECT pg_advisory_lock($1)").await?;
    let (mut conn, outcome) = tokio::task::spawn_blocking(move || {
        let mut harness = Harness::from(conn);
        let outcome = work(&mut harness);
        (harness.into_inner(), outcome)
    })
    .await
    .map_err(StorageError::new)?;
    // Closing the session would release the lock too, but only once the server notices.
    let unlocked = advisory(&mut conn, "SELECT pg_advisory_unlock($1)").await;
    // A failed migration is the news, even if unlocking failed too.
    let count = outcome.map_err(StorageError)?;
    unlocked.map(|()| count)
}

async fn advisory(conn: &mut AsyncPgConnection, sql: &str) -> Result<(), StorageError> {
    diesel::sql_query(sql)
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(conn)
        .await
        .map_err(StorageError::new)?;
    Ok(())
}
