//! Choosing and opening the store the settings name: embedded SQLite or PostgreSQL.

use crate::config::{DatabaseSettings, DatabaseTarget};
use adapters_postgres::{PoolOptions, PostgresStorage};
use adapters_sqlite::{SqliteOptions, SqliteStorage};
use domain::ports::Storage;
use domain::StorageError;
use std::path::Path;
use std::sync::Arc;

/// Opens the store, migrated: SQLite migrates as it opens; on Postgres the migrations run
/// first (under an advisory lock, so several nodes may start at once), then the pool connects.
pub async fn open(
    target: &DatabaseTarget,
    settings: &DatabaseSettings,
) -> Result<Arc<dyn Storage>, StorageError> {
    let pool_size = settings.pool_size.get();
    match target {
        DatabaseTarget::Sqlite(path) => {
            ensure_parent_dir(path)?;
            let options = SqliteOptions {
                read_connections: pool_size,
                ..SqliteOptions::default()
            };
            Ok(Arc::new(SqliteStorage::open(path, options).await?))
        }
        DatabaseTarget::Postgres(url) => {
            let applied = adapters_postgres::run_migrations(url.expose()).await?;
            log_applied(applied);
            let options = PoolOptions {
                size: usize::try_from(pool_size).unwrap_or(usize::MAX),
                connect_timeout: settings.connect_timeout,
                acquire_timeout: settings.acquire_timeout,
                query_timeout: settings.query_timeout,
            };
            Ok(Arc::new(
                PostgresStorage::connect_with(url.expose(), options).await?,
            ))
        }
    }
}

/// Runs the pending migrations and answers how many ran.
pub async fn migrate(target: &DatabaseTarget) -> Result<usize, StorageError> {
    let applied = match target {
        DatabaseTarget::Sqlite(path) => {
            ensure_parent_dir(path)?;
            adapters_sqlite::run_migrations(path).await?
        }
        DatabaseTarget::Postgres(url) => adapters_postgres::run_migrations(url.expose()).await?,
    };
    log_applied(applied);
    Ok(applied)
}

/// Where the store is, for the start-up log: the SQLite path, or only that it is Postgres
/// (its URL may hold a password).
pub fn describe(target: &DatabaseTarget) -> String {
    match target {
        DatabaseTarget::Sqlite(path) => format!("sqlite {}", path.display()),
        DatabaseTarget::Postgres(_) => "postgres".to_owned(),
    }
}

fn ensure_parent_dir(path: &Path) -> Result<(), StorageError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(StorageError::new)
        }
        _ => Ok(()),
    }
}

fn log_applied(applied: usize) {
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    } else {
        tracing::debug!("database schema up to date");
    }
}
