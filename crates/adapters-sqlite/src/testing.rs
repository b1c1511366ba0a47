//! Throw-away stores for tests (feature `testing`).

use crate::{SqliteOptions, SqliteStorage};
use domain::StorageError;

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
