//! Test support: a brand-new, migrated database per test, so tests run in parallel
//! against one PostgreSQL server without seeing each other's rows.
//!
//! The schema is migrated once into a template database named after a hash of the
//! migrations; each test database is a `CREATE DATABASE ... TEMPLATE` copy of it, which is
//! much faster than migrating every time.

use crate::migrate::run_migrations;
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// The server used when `CHAT_TEST_POSTGRES_URL` is not set.
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Taken (on the server's maintenance database) while a template is built, so concurrent
/// test processes build it once ("chat-tpl" in ASCII).
const TEMPLATE_LOCK: i64 = 0x6368_6174_2d74_706c;

/// Test databases older than this are dropped (best effort) when a process first builds or
/// finds its template: their tests are long over (and one still connected to is refused).
const STALE_AFTER: Duration = Duration::from_secs(600);

/// The template of this build's schema, once per process.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A brand-new database (`chat_test_<uuid>`) on the server named by `CHAT_TEST_POSTGRES_URL`
/// (default `postgres://postgres@127.0.0.1:5432/postgres`), migrated; its URL.
///
/// # Panics
///
/// When the server is not reachable (with how to start it) or refuses to create the database.
pub async fn fresh_database() -> String {
    let server = server_url();
    let template = TEMPLATE.get_or_init(|| prepare_template(&server)).await;
    // UUIDv7: the name tells when it was made, which is how stale ones are found.
    let name = format!("chat_test_{}", Uuid::now_v7().simple());
    let mut admin = admin(&server).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .unwrap_or_else(|err| panic!("could not create test database {name}: {err}"));
    with_database(&server, &name)
}

/// A brand-new database (`chat_test_<uuid>`, like [`fresh_database`]'s) migrated only up
/// to `version`, a migration's folder-name prefix (`2026-12-02-000000`): the schema an
/// older release left behind, for tests of what a newer migration does to its data. Made
/// from scratch, not from the template.
///
/// # Panics
///
/// When the server is not reachable, or there is no such migration.
pub async fn database_migrated_to(version: &str) -> String {
    let server = server_url();
    let name = format!("chat_test_{}", Uuid::now_v7().simple());
    let mut admin = admin(&server).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|err| panic!("could not create test database {name}: {err}"));
    let url = with_database(&server, &name);
    crate::migrate::run_migrations_to(&url, version)
        .await
        .unwrap_or_else(|err| panic!("could not migrate {name} to {version}: {err}"));
    url
}

/// `CHAT_TEST_POSTGRES_URL`, or the default server.
fn server_url() -> String {
    std::env::var("CHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// A connection to the server's maintenance database; panics with how to start the server.
async fn admin(server: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(server)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "PostgreSQL is not reachable at {server} ({err}); start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
             (or point CHAT_TEST_POSTGRES_URL at a running server)"
            )
        })
}

/// Makes sure the migrated template of this schema exists; its name.
async fn prepare_template(server: &str) -> String {
    let template = format!("chat_tmpl_{}", env!("CHAT_POSTGRES_MIGRATIONS_HASH"));
    let building = format!("{template}_building");
    let mut admin = admin(server).await;
    let fail = |what: &str, err: &dyn std::fmt::Display| -> ! {
        panic!("could not {what} the test template database {template}: {err}")
    };
    execute_bigint(&mut admin, "SELECT pg_advisory_lock($1)", TEMPLATE_LOCK)
        .await
        .unwrap_or_else(|err| fail("lock", &err));
    if !database_exists(&mut admin, &template)
        .await
        .unwrap_or_else(|err| fail("look up", &err))
    {
        // Built under another name and renamed once complete, so a process that died
        // half-way never leaves a half-migrated template behind under the real name.
        let steps = [
            format!("DROP DATABASE IF EXISTS {building}"),
            format!("CREATE DATABASE {building}"),
        ];
        for step in &steps {
            admin
                .batch_execute(step)
                .await
                .unwrap_or_else(|err| fail("create", &err));
        }
        run_migrations(&with_database(server, &building))
            .await
            .unwrap_or_else(|err| fail("migrate", &err));
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .unwrap_or_else(|err| fail("rename", &err));
    }
    sweep_in_background(server.to_owned());
    execute_bigint(&mut admin, "SELECT pg_advisory_unlock($1)", TEMPLATE_LOCK)
        .await
        .unwrap_or_else(|err| fail("unlock", &err));
    template
}

/// Drops stale test databases on a thread of its own: each `DROP DATABASE` waits for a
/// checkpoint, and a backlog of them must not hold up the tests. Whatever is left when the
/// test process exits is swept by a later one.
fn sweep_in_background(server: String) {
    let spawned = std::thread::Builder::new()
        .name("drop-stale-test-databases".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = AsyncPgConnection::establish(&server).await {
                    drop_stale_databases(&mut admin).await;
                }
            });
        });
    if let Err(err) = spawned {
        tracing::debug!(%err, "stale test databases left in place");
    }
}

/// Drops test databases made more than [`STALE_AFTER`] ago. Best effort: one still in use
/// (or already dropped by another process) is left alone.
async fn drop_stale_databases(admin: &mut AsyncPgConnection) {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let Ok(names) =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'chat\\_test\\_%'")
            .load::<Name>(admin)
            .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for Name { datname } in names {
        let made = datname
            .strip_prefix("chat_test_")
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| id.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                Duration::new(secs, nanos)
            });
        if made.is_some_and(|made| now.saturating_sub(made) > STALE_AFTER) {
            if let Err(err) = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {datname}"))
                .await
            {
                tracing::debug!(%datname, %err, "left a stale test database in place");
            }
        }
    }
}

async fn database_exists(admin: &mut AsyncPgConnection, name: &str) -> diesel::QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(name)
            .get_result(admin)
            .await?;
    Ok(count.n > 0)
}

async fn execute_bigint(
    conn: &mut AsyncPgConnection,
    sql: &str,
    value: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(sql)
        .bind::<BigInt, _>(value)
        .execute(conn)
        .await
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The migration before the attachments' (end-to-end encryption): what the release before
/// issue 14 left behind. [`PREVIOUS_RELEASE_ROWS`] insert into it as they are.
pub const BEFORE_ATTACHMENTS: &str = "2026-12-04-000000";

/// The migration before end-to-end encryption's (the message lifecycle): what the release
/// before issue 13 left behind. [`PREVIOUS_RELEASE_ROWS`] insert into it as they are.
pub const BEFORE_E2EE: &str = "2026-12-03-000000";

/// The migration before the message lifecycle's: what the previous release left behind.
pub const BEFORE_LIFECYCLE: &str = "2026-12-02-000000";

/// Rows as the release before the message lifecycle stored them: two accounts, their direct
/// conversation with three messages (one keyed, one a reply) and its watermarks.
pub const PREVIOUS_RELEASE_ROWS: &str = "
INSERT INTO users (id, email, display_name, password_hash, created_at) VALUES
    ('018f0000-0000-7000-8000-00000000000a', 'ada@example.com', 'Ada', 'x',
        '2026-11-30 09:00:00.000001+00'),
    ('018f0000-0000-7000-8000-00000000000b', 'bob@example.com', 'Bob', 'x',
        '2026-11-30 09:00:00.000002+00');
INSERT INTO conversations
    (id, kind, created_by, created_at, last_seq, last_message_at, direct_key) VALUES
    ('018f0000-0000-7000-8000-0000000000c0', 'direct', '018f0000-0000-7000-8000-00000000000a',
        '2026-11-30 09:01:00+00', 3, '2026-11-30 09:04:00.000003+00',
        '018f0000-0000-7000-8000-00000000000a:018f0000-0000-7000-8000-00000000000b');
INSERT INTO participants
    (conversation_id, user_id, role, joined_at, delivered_seq, read_seq) VALUES
    ('018f0000-0000-7000-8000-0000000000c0', '018f0000-0000-7000-8000-00000000000a', 'member',
        '2026-11-30 09:01:00+00', 3, 3),
    ('018f0000-0000-7000-8000-0000000000c0', '018f0000-0000-7000-8000-00000000000b', 'member',
        '2026-11-30 09:01:00+00', 2, 1);
INSERT INTO messages
    (id, conversation_id, seq, sender_id, client_msg_id, content, content_type, reply_to,
     created_at) VALUES
    ('018f0000-0000-7000-8000-000000000001', '018f0000-0000-7000-8000-0000000000c0', 1,
        '018f0000-0000-7000-8000-00000000000a', 'key-1', 'hello', 'text', NULL,
        '2026-11-30 09:02:00.000001+00'),
    ('018f0000-0000-7000-8000-000000000002', '018f0000-0000-7000-8000-0000000000c0', 2,
        '018f0000-0000-7000-8000-00000000000b', NULL, 'hi Ada', 'text',
        '018f0000-0000-7000-8000-000000000001', '2026-11-30 09:03:00.000002+00'),
    ('018f0000-0000-7000-8000-000000000003', '018f0000-0000-7000-8000-0000000000c0', 3,
        '018f0000-0000-7000-8000-00000000000a', NULL, '  multi\nline ünïcødé 🎉 ', 'text', NULL,
        '2026-11-30 09:04:00.000003+00');";

/// A brand-new database as the release before the message lifecycle left it: migrated to
/// [`BEFORE_LIFECYCLE`], holding [`PREVIOUS_RELEASE_ROWS`]. Its URL.
///
/// # Panics
///
/// When the server is not reachable or the rows do not insert.
pub async fn previous_release_database() -> String {
    let url = database_migrated_to(BEFORE_LIFECYCLE).await;
    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|err| panic!("could not connect to {url}: {err}"));
    conn.batch_execute(PREVIOUS_RELEASE_ROWS)
        .await
        .unwrap_or_else(|err| panic!("the previous release's rows did not insert: {err}"));
    url
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_parameters_are_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
