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

/// The migration before the attachments' (end-to-end encryption): what the release before
/// issue 14 left behind. [`PREVIOUS_RELEASE_ROWS`] insert into it as they are.
pub const BEFORE_ATTACHMENTS: &str = "2026-12-04-000000";

/// The migration before end-to-end encryption's (the message lifecycle): what the release
/// before issue 13 left behind. [`PREVIOUS_RELEASE_ROWS`] insert into it as they are.
pub const BEFORE_E2EE: &str = "2026-12-03-000000";

/// The migration before the message lifecycle's: what the previous release left behind.
pub const BEFORE_LIFECYCLE: &str = "2026-12-02-000000";

/// Rows as the release before the message lifecycle stored them (times in microseconds):
/// two accounts, their direct conversation with three messages (one keyed, one a reply)
/// and its watermarks.
pub const PREVIOUS_RELEASE_ROWS: &str = "
INSERT INTO users (id, email, display_name, password_hash, created_at) VALUES
    ('018f0000-0000-7000-8000-00000000000a', 'ada@example.com', 'Ada', 'x', 1796029200000001),
    ('018f0000-0000-7000-8000-00000000000b', 'bob@example.com', 'Bob', 'x', 1796029200000002);
INSERT INTO conversations
    (id, kind, created_by, created_at, last_seq, last_message_at, direct_key) VALUES
    ('018f0000-0000-7000-8000-0000000000c0', 'direct', '018f0000-0000-7000-8000-00000000000a',
        1796029260000000, 3, 1796029440000003,
        '018f0000-0000-7000-8000-00000000000a:018f0000-0000-7000-8000-00000000000b');
INSERT INTO participants
    (conversation_id, user_id, role, joined_at, delivered_seq, read_seq) VALUES
    ('018f0000-0000-7000-8000-0000000000c0', '018f0000-0000-7000-8000-00000000000a', 'member',
        1796029260000000, 3, 3),
    ('018f0000-0000-7000-8000-0000000000c0', '018f0000-0000-7000-8000-00000000000b', 'member',
        1796029260000000, 2, 1);
INSERT INTO messages
    (id, conversation_id, seq, sender_id, client_msg_id, content, content_type, reply_to,
     created_at) VALUES
    ('018f0000-0000-7000-8000-000000000001', '018f0000-0000-7000-8000-0000000000c0', 1,
        '018f0000-0000-7000-8000-00000000000a', 'key-1', 'hello', 'text', NULL,
        1796029320000001),
    ('018f0000-0000-7000-8000-000000000002', '018f0000-0000-7000-8000-0000000000c0', 2,
        '018f0000-0000-7000-8000-00000000000b', NULL, 'hi Ada', 'text',
        '018f0000-0000-7000-8000-000000000001', 1796029380000002),
    ('018f0000-0000-7000-8000-000000000003', '018f0000-0000-7000-8000-0000000000c0', 3,
        '018f0000-0000-7000-8000-00000000000a', NULL, '  multi
line ünïcødé 🎉 ', 'text', NULL, 1796029440000003);";

/// Makes `path` the database the release before the message lifecycle left behind: migrated
/// to [`BEFORE_LIFECYCLE`], holding [`PREVIOUS_RELEASE_ROWS`].
pub fn previous_release_database(path: &Path) -> Result<(), StorageError> {
    use diesel::connection::SimpleConnection;
    migrate_to(path, BEFORE_LIFECYCLE)?;
    let url = crate::connection::database_url(path)?;
    let mut conn = SqliteConnection::establish(&url).map_err(StorageError::new)?;
    conn.batch_execute(PREVIOUS_RELEASE_ROWS)
        .map_err(StorageError::new)
}
