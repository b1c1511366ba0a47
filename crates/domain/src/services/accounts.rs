//! Accounts: registration, login, and rotating refresh tokens with reuse detection.

use super::errors::AuthError;
use crate::auth::{AuthSession, ConsumeOutcome, NewRefreshToken, RefreshSecret};
use crate::ids::{TokenFamilyId, UserId};
use crate::ports::{
    AccessTokenIssuer, Clock, InsertUserError, PasswordHasher, RefreshTokenStore, UserStore,
};
use crate::user::{refuse_nul, DisplayName, EmailAddress, InvalidField, NewUser, Password, User};
use chrono::Duration;
use std::sync::Arc;

/// Settings of the account flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// How long a refresh token lives.
    pub refresh_ttl: Duration,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::days(30),
        }
    }
}

/// Register, log in, refresh, log out, look users up.
#[derive(Clone)]
pub struct AccountService {
    users: Arc<dyn UserStore>,
    tokens: Arc<dyn RefreshTokenStore>,
    hasher: Arc<dyn PasswordHasher>,
    issuer: Arc<dyn AccessTokenIssuer>,
    clock: Arc<dyn Clock>,
    settings: AccountSettings,
}

impl AccountService {
    /// Wires the service to its ports.
    pub fn new(
        users: Arc<dyn UserStore>,
        tokens: Arc<dyn RefreshTokenStore>,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn AccessTokenIssuer>,
        clock: Arc<dyn Clock>,
        settings: AccountSettings,
    ) -> Self {
        Self {
            users,
            tokens,
            hasher,
            issuer,
            clock,
            settings,
        }
    }

    /// Makes an account and logs it in.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
    ) -> Result<AuthSession, AuthError> {
        let email = EmailAddress::parse(email)?;
        let display_name = DisplayName::parse(display_name)?;
        let password = Password::parse(password)?;
        let password_hash = self.hasher.hash(&password).await?;
        let new = NewUser {
            id: UserId::new(),
            email,
            display_name,
            password_hash,
            created_at: self.clock.now(),
        };
        let user = self.users.insert_user(&new).await.map_err(|e| match e {
            InsertUserError::DuplicateEmail => AuthError::DuplicateEmail,
            InsertUserError::Storage(e) => AuthError::Storage(e),
        })?;
        self.start_session(user, TokenFamilyId::new()).await
    }

    /// Checks a password and logs in. Unknown email and wrong password give the same
    /// error, after the same hashing work, so neither answer nor timing tells them apart.
    pub async fn login(&self, email: &str, password: &str) -> Result<AuthSession, AuthError> {
        let password = Password::for_login(password);
        let found = match EmailAddress::parse(email) {
            Ok(email) => self.users.credentials_by_email(&email).await?,
            Err(_) => None,
        };
        let Some(credentials) = found else {
            // Burn the same work as a real check, at the configured cost.
            self.hasher.verify_dummy(&password).await?;
            return Err(AuthError::InvalidCredentials);
        };
        if !self
            .hasher
            .verify(&password, &credentials.password_hash)
            .await?
        {
            return Err(AuthError::InvalidCredentials);
        }
        self.start_session(credentials.user, TokenFamilyId::new())
            .await
    }

    /// Exchanges a live refresh token for a new pair. A token presented twice means it
    /// leaked: its whole family is revoked and the caller must log in again.
    pub async fn refresh(&self, refresh_token: &str) -> Result<AuthSession, AuthError> {
        let secret = RefreshSecret::from_client(refresh_token);
        let now = self.clock.now();
        match self
            .tokens
            .consume_refresh_token(&secret.hash(), now)
            .await?
        {
            ConsumeOutcome::Consumed { user_id, family_id } => {
                let user = self
                    .users
                    .user_by_id(user_id)
                    .await?
                    .ok_or(AuthError::UnknownUser)?;
                self.start_session(user, family_id).await
            }
            ConsumeOutcome::AlreadyUsed { family_id } => {
                self.tokens.revoke_token_family(family_id, now).await?;
                Err(AuthError::InvalidRefreshToken)
            }
            ConsumeOutcome::Expired | ConsumeOutcome::Unknown => {
                Err(AuthError::InvalidRefreshToken)
            }
        }
    }

    /// Ends the login the refresh token belongs to: its family is revoked. Access tokens
    /// already issued stay valid until their short expiry. Unknown tokens are ignored, so
    /// logging out twice is harmless.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        let secret = RefreshSecret::from_client(refresh_token);
        let now = self.clock.now();
        match self
            .tokens
            .consume_refresh_token(&secret.hash(), now)
            .await?
        {
            ConsumeOutcome::Consumed { family_id, .. }
            | ConsumeOutcome::AlreadyUsed { family_id } => {
                self.tokens.revoke_token_family(family_id, now).await?;
            }
            ConsumeOutcome::Expired | ConsumeOutcome::Unknown => {}
        }
        Ok(())
    }

    /// The account behind an authenticated request.
    pub async fn me(&self, user: UserId) -> Result<User, AuthError> {
        self.users
            .user_by_id(user)
            .await?
            .ok_or(AuthError::UnknownUser)
    }

    /// Another account, by id.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, AuthError> {
        Ok(self.users.user_by_id(id).await?)
    }

    /// Longest search query, in characters: the longest email. A longer one cannot match,
    /// and SQLite refuses `LIKE` patterns over 50,000 bytes.
    pub const MAX_SEARCH_CHARS: usize = EmailAddress::MAX_LEN;

    /// Finds users to start a conversation with: never the caller; blank query finds nobody.
    /// A query with U+0000 (which PostgreSQL cannot take) or over
    /// [`Self::MAX_SEARCH_CHARS`] is refused (`q`).
    pub async fn search(
        &self,
        me: UserId,
        query: &str,
        limit: u32,
    ) -> Result<Vec<User>, AuthError> {
        let query = query.trim();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        refuse_nul("q", query)?;
        if query.chars().count() > Self::MAX_SEARCH_CHARS {
            return Err(InvalidField::new(
                "q",
                format!("must be at most {} characters", Self::MAX_SEARCH_CHARS),
            )
            .into());
        }
        Ok(self
            .users
            .search_users(query, limit.clamp(1, 50), me)
            .await?)
    }

    async fn start_session(
        &self,
        user: User,
        family_id: TokenFamilyId,
    ) -> Result<AuthSession, AuthError> {
        let now = self.clock.now();
        let access = self.issuer.issue(user.id, now)?;
        let refresh = RefreshSecret::generate();
        self.tokens
            .insert_refresh_token(&NewRefreshToken {
                token_hash: refresh.hash(),
                family_id,
                user_id: user.id,
                created_at: now,
                expires_at: now + self.settings.refresh_ttl,
            })
            .await?;
        Ok(AuthSession {
            user,
            access,
            refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccessToken;
    use crate::ports::{
        HashingError, MockAccessTokenIssuer, MockClock, MockPasswordHasher, MockRefreshTokenStore,
        MockUserStore,
    };
    use crate::user::UserCredentials;
    use chrono::{TimeZone, Utc};
    use mockall::predicate::{always, eq};

    fn alice() -> User {
        User {
            id: UserId::new(),
            email: EmailAddress::parse("alice@example.com").unwrap(),
            display_name: DisplayName::parse("Alice").unwrap(),
            avatar_url: None,
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            last_seen_at: None,
        }
    }

    struct Ports {
        users: MockUserStore,
        tokens: MockRefreshTokenStore,
        hasher: MockPasswordHasher,
    }

    impl Ports {
        fn new() -> Self {
            Self {
                users: MockUserStore::new(),
                tokens: MockRefreshTokenStore::new(),
                hasher: MockPasswordHasher::new(),
            }
        }

        fn service(self) -> AccountService {
            let mut issuer = MockAccessTokenIssuer::new();
            issuer.expect_issue().returning(|_, _| {
                Ok(AccessToken {
                    token: "jwt".into(),
                    expires_in: 900,
                })
            });
            let mut clock = MockClock::new();
            clock
                .expect_now()
                .returning(|| Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap());
            AccountService::new(
                Arc::new(self.users),
                Arc::new(self.tokens),
                Arc::new(self.hasher),
                Arc::new(issuer),
                Arc::new(clock),
                AccountSettings::default(),
            )
        }
    }

    #[tokio::test]
    async fn registering_hashes_the_password_and_issues_a_refresh_token() {
        let mut ports = Ports::new();
        ports
            .hasher
            .expect_hash()
            .returning(|_| Ok("$argon2id$hash".into()));
        ports
            .users
            .expect_insert_user()
            .withf(|u| u.password_hash == "$argon2id$hash" && u.email.as_str() == "bob@example.com")
            .returning(|u| {
                Ok(User {
                    id: u.id,
                    email: u.email.clone(),
                    display_name: u.display_name.clone(),
                    avatar_url: None,
                    created_at: u.created_at,
                    last_seen_at: None,
                })
            });
        ports
            .tokens
            .expect_insert_refresh_token()
            .withf(|t| {
                t.expires_at - t.created_at == Duration::days(30) && t.token_hash.len() == 64
            })
            .times(1)
            .returning(|_| Ok(()));
        let session = ports
            .service()
            .register("Bob@Example.com", "long enough", "Bob")
            .await
            .unwrap();
        assert_eq!(session.user.display_name.as_str(), "Bob");
        assert_eq!(session.access.token, "jwt");
    }

    #[tokio::test]
    async fn registering_a_taken_email_is_a_conflict_and_issues_nothing() {
        let mut ports = Ports::new();
        ports.hasher.expect_hash().returning(|_| Ok("h".into()));
        ports
            .users
            .expect_insert_user()
            .returning(|_| Err(InsertUserError::DuplicateEmail));
        ports.tokens.expect_insert_refresh_token().never();
        let err = ports
            .service()
            .register("a@example.com", "long enough", "A")
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::DuplicateEmail));
    }

    #[tokio::test]
    async fn a_too_short_password_is_refused_before_hashing() {
        let mut ports = Ports::new();
        ports.hasher.expect_hash().never();
        let err = ports
            .service()
            .register("a@example.com", "short", "A")
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Invalid(f) if f.field == "password"));
    }

    #[tokio::test]
    async fn unknown_email_and_wrong_password_fail_alike_after_hashing_work() {
        let mut ports = Ports::new();
        let user = alice();
        ports
            .users
            .expect_credentials_by_email()
            .returning(move |email| {
                Ok(
                    (email.as_str() == "alice@example.com").then(|| UserCredentials {
                        user: user.clone(),
                        password_hash: "real".into(),
                    }),
                )
            });
        // One verify per attempt: the real hash when the email exists, the dummy (at the
        // configured cost) when it does not.
        ports
            .hasher
            .expect_verify()
            .withf(|_, hash| hash == "real")
            .times(1)
            .returning(|_, _| Ok(false));
        ports
            .hasher
            .expect_verify_dummy()
            .times(1)
            .returning(|_| Ok(()));
        let service = ports.service();
        let unknown = service.login("nobody@example.com", "whatever1").await;
        let wrong = service.login("alice@example.com", "whatever1").await;
        assert!(matches!(unknown, Err(AuthError::InvalidCredentials)));
        assert!(matches!(wrong, Err(AuthError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn a_malformed_email_at_login_costs_the_dummy_verify_too() {
        let mut ports = Ports::new();
        ports.users.expect_credentials_by_email().never();
        ports
            .hasher
            .expect_verify_dummy()
            .times(1)
            .returning(|_| Ok(()));
        let err = ports
            .service()
            .login("not an email", "whatever1")
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidCredentials));
    }

    fn saturated() -> HashingError {
        HashingError::Saturated {
            retry_after: std::time::Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn saturated_hashing_refuses_a_registration_and_stores_nothing() {
        let mut ports = Ports::new();
        ports.hasher.expect_hash().returning(|_| Err(saturated()));
        ports.users.expect_insert_user().never();
        ports.tokens.expect_insert_refresh_token().never();
        let err = ports
            .service()
            .register("a@example.com", "long enough", "A")
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::HashingSaturated { retry_after } if retry_after.as_secs() == 2),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn saturated_hashing_refuses_a_login_alike_for_known_and_unknown_emails() {
        let mut ports = Ports::new();
        let user = alice();
        ports
            .users
            .expect_credentials_by_email()
            .returning(move |email| {
                Ok(
                    (email.as_str() == "alice@example.com").then(|| UserCredentials {
                        user: user.clone(),
                        password_hash: "real".into(),
                    }),
                )
            });
        ports
            .hasher
            .expect_verify()
            .returning(|_, _| Err(saturated()));
        ports
            .hasher
            .expect_verify_dummy()
            .returning(|_| Err(saturated()));
        ports.tokens.expect_insert_refresh_token().never();
        let service = ports.service();
        for email in ["alice@example.com", "nobody@example.com"] {
            let err = service.login(email, "whatever1").await.unwrap_err();
            assert!(
                matches!(err, AuthError::HashingSaturated { .. }),
                "{email}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_refresh_token_rotates_within_its_family() {
        let mut ports = Ports::new();
        let user = alice();
        let family = TokenFamilyId::new();
        let uid = user.id;
        ports
            .tokens
            .expect_consume_refresh_token()
            .with(eq(RefreshSecret::from_client("old").hash()), always())
            .returning(move |_, _| {
                Ok(ConsumeOutcome::Consumed {
                    user_id: uid,
                    family_id: family,
                })
            });
        ports
            .users
            .expect_user_by_id()
            .returning(move |_| Ok(Some(user.clone())));
        ports
            .tokens
            .expect_insert_refresh_token()
            .withf(move |t| t.family_id == family)
            .times(1)
            .returning(|_| Ok(()));
        let session = ports.service().refresh("old").await.unwrap();
        assert_ne!(session.refresh.expose(), "old");
    }

    #[tokio::test]
    async fn reusing_a_rotated_refresh_token_revokes_its_family() {
        let mut ports = Ports::new();
        let family = TokenFamilyId::new();
        ports
            .tokens
            .expect_consume_refresh_token()
            .returning(move |_, _| Ok(ConsumeOutcome::AlreadyUsed { family_id: family }));
        ports
            .tokens
            .expect_revoke_token_family()
            .with(eq(family), always())
            .times(1)
            .returning(|_, _| Ok(()));
        ports.tokens.expect_insert_refresh_token().never();
        let err = ports.service().refresh("stolen").await.unwrap_err();
        assert!(matches!(err, AuthError::InvalidRefreshToken));
    }

    #[tokio::test]
    async fn expired_and_unknown_refresh_tokens_are_refused_without_revoking() {
        for outcome in [ConsumeOutcome::Expired, ConsumeOutcome::Unknown] {
            let mut ports = Ports::new();
            ports
                .tokens
                .expect_consume_refresh_token()
                .returning(move |_, _| Ok(outcome.clone()));
            ports.tokens.expect_revoke_token_family().never();
            let err = ports.service().refresh("x").await.unwrap_err();
            assert!(matches!(err, AuthError::InvalidRefreshToken));
        }
    }

    #[tokio::test]
    async fn logout_revokes_the_family() {
        let mut ports = Ports::new();
        let family = TokenFamilyId::new();
        let uid = UserId::new();
        ports
            .tokens
            .expect_consume_refresh_token()
            .returning(move |_, _| {
                Ok(ConsumeOutcome::Consumed {
                    user_id: uid,
                    family_id: family,
                })
            });
        ports
            .tokens
            .expect_revoke_token_family()
            .with(eq(family), always())
            .times(1)
            .returning(|_, _| Ok(()));
        ports.service().logout("tok").await.unwrap();
    }

    #[tokio::test]
    async fn a_blank_search_finds_nobody_without_asking_storage() {
        let mut ports = Ports::new();
        ports.users.expect_search_users().never();
        let found = ports
            .service()
            .search(UserId::new(), "  ", 10)
            .await
            .unwrap();
        assert!(found.is_empty());
    }

    #[tokio::test]
    async fn a_search_with_a_nul_or_over_long_is_refused_without_asking_storage() {
        let mut ports = Ports::new();
        ports.users.expect_search_users().never();
        let service = ports.service();
        let long = "a".repeat(AccountService::MAX_SEARCH_CHARS + 1);
        for bad in ["al\u{0}ice", long.as_str()] {
            let err = service.search(UserId::new(), bad, 10).await.unwrap_err();
            assert!(
                matches!(&err, AuthError::Invalid(f) if f.field == "q"),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_login_with_a_nul_in_the_email_is_refused_like_an_unknown_email() {
        let mut ports = Ports::new();
        ports.users.expect_credentials_by_email().never();
        ports
            .hasher
            .expect_verify_dummy()
            .times(1)
            .returning(|_| Ok(()));
        let err = ports
            .service()
            .login("alice\u{0}@example.com", "correct horse battery")
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    }
}
