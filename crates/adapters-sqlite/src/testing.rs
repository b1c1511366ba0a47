//! Throw-away stores for tests (feature `testing`).

use crate::{SqliteOptions, SqliteStorage, MIGRATIONS};
use diesel::connection::Connection;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::MigrationHarness;
use domain::StorageError;
use std::path::Path;

/// A fresh, migrated store in a new temporary directory, which is deleted once the last
/// clone of the store is dropped.
pub async fn temporary_store() -> Result<SqliteStorage, StorageError> {
    let dir = tempfile::Builder::new()
        .prefix("chat-sqlite-")
        .tempdir()
        .map_err(StorageError::new)?;
    let path = dir.path().join("chat.db");
    SqliteStorage::open_keeping(&path, SqliteOptions::default(), Some(Box::new(dir))).await
}

/// Creates the database at `path` with the migrations up to `version` only (a migration's
/// folder-name prefix, `2026-12-02-000000`; dashes optional), one at a time: the schema an
/// older release left behind, for tests of what opening it with this one does to its data.
/// Returns how many ran (none when `version` is applied already).
pub fn migrate_to(path: &Path, version: &str) -> Result<usize, StorageError> {
    let url = crate::connection::database_url(path)?;
    let mut conn = SqliteConnection::establish(&url).map_err(StorageError::new)?;
    let wanted = version.replace('-', "");
    let mut ran = 0;
    loop {
        let applied = conn.applied_migrations().map_err(StorageError)?;
        if applied.iter().any(|v| v.to_string() == wanted) {
            return Ok(ran);
        }
        if !conn
            .has_pending_migration(MIGRATIONS)
            .map_err(StorageError)?
        {
            return Err(StorageError::msg(format!(
                "no migration {wanted} to stop at"
            )));
        }
        conn.run_next_migration(MIGRATIONS).map_err(StorageError)?;
        ran += 1;
    }
}
