//! Provisioning: users written straight into the server's store (one fixed argon2 hash, so
//! no hashing per user), access tokens minted with the server's signing key, and
//! conversations created over REST as a client would (or, for `persist`, which has no
//! server, straight in the store).

use crate::cli::Args;
use chrono::Utc;
use domain::conversation::NewDirectConversation;
use domain::ports::{AccessTokenIssuer, InsertUserError, Storage};
use domain::user::{DisplayName, EmailAddress, NewUser};
use domain::{ConversationId, UserId};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use protocol::rest::{ConversationDto, CreateConversationRequest};
use server::auth::JwtIssuer;
use server::config::{DatabaseTarget, Secret, Settings};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The password of every provisioned user (so one can log in by hand to look around).
pub const PASSWORD: &str = "loadgen-password";

/// argon2id (19 MiB, 2 passes, 1 lane: the server's defaults) of [`PASSWORD`], computed once.
pub const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$nCeM0dW/+6jY1fbTBtFTOQ$yXkV2ZEBoVzgl6F2Aln8UrfvtbIZrG9afK9WNH5yvfw";

/// Email domain of provisioned users (`.test` is reserved: never a real address).
pub const EMAIL_DOMAIN: &str = "loadgen.test";

/// Provisioning failed; nothing was measured.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The store could not be opened or written.
    #[error("storage: {0}")]
    Storage(String),
    /// No signing key to mint tokens with.
    #[error("{0}")]
    Secret(String),
    /// A REST call failed.
    #[error("REST {what}: {detail}")]
    Rest {
        /// Which call.
        what: &'static str,
        /// Status and body, or the transport error.
        detail: String,
    },
}

/// A user of the run, with a minted access token.
#[derive(Debug, Clone)]
pub struct ProvisionedUser {
    /// The account id.
    pub id: Uuid,
    /// Its email.
    pub email: String,
    /// A valid access token for it.
    pub token: String,
}

/// The store the server uses, as the server itself would choose it.
pub fn database_target(args: &Args) -> Result<DatabaseTarget, ProvisionError> {
    let mut settings = Settings::default();
    settings.data.dir = args.data_dir.clone();
    settings.database.url = args.database_url.as_deref().map(Secret::new);
    settings
        .database_target()
        .map_err(|e| ProvisionError::Storage(e.to_string()))
}

/// Opens the store (migrated, as the server would; SQLite in WAL mode takes a second writer
/// process, PostgreSQL any number of clients).
pub async fn open_store(
    target: &DatabaseTarget,
    pool_size: u32,
) -> Result<Arc<dyn Storage>, ProvisionError> {
    let settings = server::config::DatabaseSettings {
        pool_size: server::config::nonzero::u32(pool_size),
        ..server::config::DatabaseSettings::default()
    };
    server::storage::open(target, &settings)
        .await
        .map_err(|e| ProvisionError::Storage(e.to_string()))
}

/// The server's signing key: `--jwt-secret` (or `CHAT_AUTH__JWT_SECRET`); else, in embedded
/// mode, the key the server generated into `<data-dir>/jwt_secret`.
pub fn jwt_secret(args: &Args, target: &DatabaseTarget) -> Result<String, ProvisionError> {
    if let Some(secret) = &args.jwt_secret {
        return Ok(secret.clone());
    }
    match target {
        DatabaseTarget::Postgres(_) => Err(ProvisionError::Secret(
            "--jwt-secret (or CHAT_AUTH__JWT_SECRET) is required with PostgreSQL".into(),
        )),
        DatabaseTarget::Sqlite(_) => read_secret_file(&args.data_dir),
    }
}

fn read_secret_file(data_dir: &Path) -> Result<String, ProvisionError> {
    let path = data_dir.join(server::auth::signing_key::SECRET_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ProvisionError::Secret(format!(
            "cannot read {} ({e}): start the server on this data dir first, or pass --jwt-secret",
            path.display()
        ))
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ProvisionError::Secret(format!(
            "{} is empty",
            path.display()
        )));
    }
    Ok(secret.to_owned())
}

/// A fresh id naming the run's users (`lg<run>-<n>@loadgen.test`).
pub fn new_run_id() -> String {
    Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// The email of user `index` of run `run_id`.
pub fn email_of(run_id: &str, index: usize) -> String {
    format!("lg{run_id}-{index}@{EMAIL_DOMAIN}")
}

/// Inserts `count` users, `concurrency` at a time (the SQLite writer commits them in
/// groups; PostgreSQL spreads them over its pool), all with [`PASSWORD_HASH`].
pub async fn insert_users(
    store: Arc<dyn Storage>,
    run_id: &str,
    count: usize,
    concurrency: usize,
) -> Result<Vec<(Uuid, String)>, ProvisionError> {
    let users: Vec<(usize, Uuid, String)> = stream::iter(0..count)
        .map(|index| {
            let store = store.clone();
            let email = email_of(run_id, index);
            async move {
                let new = NewUser {
                    id: UserId::new(),
                    email: EmailAddress::parse(&email)
                        .map_err(|e| ProvisionError::Storage(e.to_string()))?,
                    display_name: DisplayName::parse(&format!("Load {index}"))
                        .map_err(|e| ProvisionError::Storage(e.to_string()))?,
                    password_hash: PASSWORD_HASH.to_owned(),
                    created_at: Utc::now(),
                };
                let user = store.insert_user(&new).await.map_err(|e| match e {
                    InsertUserError::DuplicateEmail => {
                        ProvisionError::Storage(format!("{email} already exists"))
                    }
                    InsertUserError::Storage(e) => ProvisionError::Storage(e.to_string()),
                })?;
                Ok::<_, ProvisionError>((index, user.id.as_uuid(), email))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut users = users;
    users.sort_by_key(|(index, _, _)| *index);
    Ok(users
        .into_iter()
        .map(|(_, id, email)| (id, email))
        .collect())
}

/// Signs access tokens exactly as the server's `JwtIssuer` does (HS256; sub, exp, iat, iss,
/// aud, jti), living `ttl`.
pub fn mint_tokens(
    secret: &str,
    issuer: &str,
    audience: &str,
    ttl: Duration,
    users: &[(Uuid, String)],
) -> Result<Vec<ProvisionedUser>, ProvisionError> {
    let jwt = JwtIssuer::new(secret.as_bytes(), issuer, audience, ttl.as_secs().max(60));
    let now = Utc::now();
    users
        .iter()
        .map(|(id, email)| {
            let token = jwt
                .issue(UserId::from_uuid(*id), now)
                .map_err(|e| ProvisionError::Secret(e.to_string()))?;
            Ok(ProvisionedUser {
                id: *id,
                email: email.clone(),
                token: token.token,
            })
        })
        .collect()
}

/// Creates one direct conversation per pair of `plan` straight in the store (`persist` has
/// no server to ask), `concurrency` at a time; the first member creates it, as over REST.
/// Answers the ids, in plan order.
pub async fn create_pairs_in_store(
    store: Arc<dyn Storage>,
    users: &[(Uuid, String)],
    plan: &[Vec<usize>],
    concurrency: usize,
) -> Result<Vec<Uuid>, ProvisionError> {
    let mut ids: Vec<(usize, Uuid)> = stream::iter(plan.iter().enumerate())
        .map(|(n, members)| {
            let store = store.clone();
            let user = |i: Option<&usize>| {
                i.and_then(|&i| users.get(i))
                    .map(|(id, _)| UserId::from_uuid(*id))
                    .ok_or_else(|| ProvisionError::Storage(format!("pair {n} is not two users")))
            };
            let pair = user(members.first()).and_then(|a| Ok((a, user(members.get(1))?)));
            async move {
                let (created_by, other) = pair?;
                let new = NewDirectConversation {
                    id: ConversationId::new(),
                    created_by,
                    other,
                    created_at: Utc::now(),
                };
                let (details, _) = store
                    .create_direct(&new)
                    .await
                    .map_err(|e| ProvisionError::Storage(e.to_string()))?;
                Ok::<_, ProvisionError>((n, details.conversation.id.as_uuid()))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    ids.sort_by_key(|(n, _)| *n);
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// The members (client indexes) of each conversation of a scenario: pairs `(2i, 2i+1)`.
pub fn plan_pairs(clients: usize) -> Vec<Vec<usize>> {
    (0..clients / 2).map(|i| vec![2 * i, 2 * i + 1]).collect()
}

/// Groups of `size` consecutive clients (the last one smaller if `clients` is not a multiple).
pub fn plan_groups(clients: usize, size: usize) -> Vec<Vec<usize>> {
    let size = size.max(2);
    (0..clients)
        .collect::<Vec<_>>()
        .chunks(size)
        .filter(|c| c.len() >= 2)
        .map(<[usize]>::to_vec)
        .collect()
}

/// A REST client of the server under test (loopback only: `base` comes from a checked target).
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    /// A client of `http://{target}`, never through a proxy.
    pub fn new(target: std::net::SocketAddr) -> Result<Self, ProvisionError> {
        crate::cli::ensure_loopback_target(target).map_err(|e| ProvisionError::Rest {
            what: "client",
            detail: e.0,
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ProvisionError::Rest {
                what: "client",
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: format!("http://{target}"),
        })
    }

    /// `GET {path}`: the body of a 2xx answer, `None` for a 404.
    pub async fn get_text(&self, path: &str) -> Result<Option<String>, ProvisionError> {
        let err = |e: reqwest::Error| ProvisionError::Rest {
            what: "GET",
            detail: e.to_string(),
        };
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(err)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        let text = resp.text().await.map_err(err)?;
        if !status.is_success() {
            return Err(ProvisionError::Rest {
                what: "GET",
                detail: format!("{path}: {status}"),
            });
        }
        Ok(Some(text))
    }

    /// Creates one conversation per plan entry, `concurrency` at a time; the first member
    /// creates it (direct for two members, group otherwise). Answers the ids, in plan order.
    pub async fn create_conversations(
        &self,
        users: &[ProvisionedUser],
        plan: &[Vec<usize>],
        group: bool,
        concurrency: usize,
    ) -> Result<Vec<Uuid>, ProvisionError> {
        let mut ids: Vec<(usize, Uuid)> = stream::iter(plan.iter().enumerate())
            .map(|(n, members)| async move {
                let (Some(&first), others) = (members.first(), members.get(1..).unwrap_or(&[]))
                else {
                    return Err(ProvisionError::Rest {
                        what: "POST /conversations",
                        detail: "empty plan entry".into(),
                    });
                };
                let creator = users.get(first).ok_or_else(|| ProvisionError::Rest {
                    what: "POST /conversations",
                    detail: format!("no user {first}"),
                })?;
                let participant_ids: Vec<Uuid> = others
                    .iter()
                    .filter_map(|&i| users.get(i).map(|u| u.id))
                    .collect();
                let body = CreateConversationRequest {
                    kind: if group { "group" } else { "direct" }.to_owned(),
                    participant_ids,
                    title: group.then(|| format!("Load group {n}")),
                    encrypted: false,
                };
                Ok((n, self.post_conversation(&creator.token, &body).await?))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        ids.sort_by_key(|(n, _)| *n);
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    async fn post_conversation(
        &self,
        token: &str,
        body: &CreateConversationRequest,
    ) -> Result<Uuid, ProvisionError> {
        let what = "POST /api/v1/conversations";
        let err = |e: reqwest::Error| ProvisionError::Rest {
            what,
            detail: e.to_string(),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let resp = self
                .http
                .post(format!("{}/api/v1/conversations", self.base))
                .bearer_auth(token)
                .json(body)
                .send()
                .await;
            let resp = match resp {
                Ok(resp) => resp,
                // A loaded server may reset a connection; a few retries keep provisioning going.
                Err(e) if attempt < 5 => {
                    tracing_free_sleep(attempt).await;
                    let _ = e;
                    continue;
                }
                Err(e) => return Err(err(e)),
            };
            let status = resp.status();
            if status.is_success() {
                return resp
                    .json::<ConversationDto>()
                    .await
                    .map(|c| c.id)
                    .map_err(err);
            }
            let text = resp.text().await.unwrap_or_default();
            if (status.is_server_error() || status.as_u16() == 429) && attempt < 5 {
                tracing_free_sleep(attempt).await;
                continue;
            }
            return Err(ProvisionError::Rest {
                what,
                detail: format!("{status}: {}", text.chars().take(300).collect::<String>()),
            });
        }
    }
}

async fn tracing_free_sleep(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::Parser;
    use domain::ports::PasswordHasher;
    use domain::user::Password;
    use server::auth::{Argon2Hasher, TokenVerifier};

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["chat-loadgen", "--scenario", "direct"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[tokio::test]
    async fn the_fixed_hash_is_the_password_under_the_servers_default_cost() {
        let hasher = Argon2Hasher::new(19_456, 2, 1, 1, Duration::from_secs(30)).unwrap();
        assert!(hasher
            .verify(&Password::for_login(PASSWORD), PASSWORD_HASH)
            .await
            .unwrap());
        assert!(!hasher
            .verify(&Password::for_login("other"), PASSWORD_HASH)
            .await
            .unwrap());
    }

    #[test]
    fn minted_tokens_pass_the_servers_verifier() {
        let secret = "test-secret-test-secret-test-secret!";
        let users = vec![(Uuid::new_v4(), "a@loadgen.test".to_owned())];
        let minted = mint_tokens(
            secret,
            "chat-server",
            "chat",
            Duration::from_secs(600),
            &users,
        )
        .unwrap();
        let claims = TokenVerifier::new(secret.as_bytes(), "chat-server", "chat")
            .verify(&minted[0].token)
            .unwrap();
        assert_eq!(claims.user_id().as_uuid(), users[0].0);
        assert!(claims.exp - claims.iat >= 600);
        assert!(!claims.jti.is_empty());
        assert!(
            TokenVerifier::new(b"another-secret-another-secret-!!", "chat-server", "chat")
                .verify(&minted[0].token)
                .is_err()
        );
    }

    #[test]
    fn the_store_and_key_are_chosen_like_the_server_does() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let a = args(&["--data-dir", data]);
        let target = database_target(&a).unwrap();
        assert_eq!(target, DatabaseTarget::Sqlite(dir.path().join("chat.db")));
        let err = jwt_secret(&a, &target).unwrap_err().to_string();
        assert!(err.contains("jwt_secret"), "{err}");
        std::fs::write(dir.path().join("jwt_secret"), "k".repeat(64) + "\n").unwrap();
        assert_eq!(jwt_secret(&a, &target).unwrap(), "k".repeat(64));

        let pg = args(&["--database-url", "postgres://postgres@127.0.0.1:5432/x"]);
        let target = database_target(&pg).unwrap();
        assert!(matches!(target, DatabaseTarget::Postgres(_)));
        assert!(jwt_secret(&pg, &target).is_err(), "required with Postgres");
        let pg = args(&[
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/x",
            "--jwt-secret",
            "s3cr3t",
        ]);
        assert_eq!(
            jwt_secret(&pg, &database_target(&pg).unwrap()).unwrap(),
            "s3cr3t"
        );
    }

    #[test]
    fn plans_pair_and_group_clients() {
        assert_eq!(plan_pairs(6), vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert_eq!(plan_groups(6, 3), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(plan_groups(7, 3), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(plan_groups(8, 3).last().unwrap(), &vec![6, 7]);
    }

    #[tokio::test]
    async fn users_are_inserted_into_a_real_sqlite_store_quickly_and_can_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let target = DatabaseTarget::Sqlite(dir.path().join("chat.db"));
        let store = open_store(&target, 2).await.unwrap();
        let started = std::time::Instant::now();
        let users = insert_users(store.clone(), "t1", 500, 64).await.unwrap();
        let took = started.elapsed();
        assert_eq!(users.len(), 500);
        assert_eq!(users[7].1, "lgt1-7@loadgen.test");
        // Not a benchmark: only that no per-user hashing or per-user fsync dominates.
        assert!(took < Duration::from_secs(30), "{took:?}");
        let creds = store
            .credentials_by_email(&EmailAddress::parse(&users[7].1).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(creds.user.id.as_uuid(), users[7].0);
        assert_eq!(creds.password_hash, PASSWORD_HASH);
        // A second run with the same id collides: runs use fresh ids.
        assert!(insert_users(store.clone(), "t1", 1, 1).await.is_err());

        // Pairs made straight in the store (persist has no server): both are members.
        let plan = plan_pairs(6);
        let ids = create_pairs_in_store(store.clone(), &users[..6], &plan, 4)
            .await
            .unwrap();
        assert_eq!(ids.len(), 3);
        for (members, id) in plan.iter().zip(&ids) {
            let details = store
                .conversation(ConversationId::from_uuid(*id))
                .await
                .unwrap()
                .unwrap();
            for &m in members {
                assert!(details.participant(UserId::from_uuid(users[m].0)).is_some());
            }
        }
    }
}
