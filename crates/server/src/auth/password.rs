//! Argon2id password hashing, off the request threads.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use domain::ports::PasswordHasher;
use domain::user::Password;
use domain::StorageError;

/// Hashes with argon2id and the configured cost; verifies any argon2 PHC hash (its own
/// parameters are in the string, so hashes made under older settings keep working).
///
/// Hashing takes tens of milliseconds of CPU on purpose, so it runs on tokio's blocking
/// pool: an actix worker runs one single-threaded runtime and would stall every request
/// it serves.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
}

/// The argon2 cost parameters are out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid argon2 parameters: {0}")]
pub struct InvalidArgon2Params(String);

impl Argon2Hasher {
    /// A hasher with `memory_kib` KiB, `iterations` passes and `parallelism` lanes.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<Self, InvalidArgon2Params> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| InvalidArgon2Params(e.to_string()))?;
        Ok(Self { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("memory_kib", &self.params.m_cost())
            .field("iterations", &self.params.t_cost())
            .field("parallelism", &self.params.p_cost())
            .finish()
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, StorageError> {
        let argon2 = self.argon2();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
                .map_err(|e| StorageError::msg(format!("salt encoding failed: {e}")))?;
            argon2
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| StorageError::msg(format!("password hashing failed: {e}")))
        })
        .await
        .map_err(StorageError::new)?
    }

    async fn verify(&self, password: &Password, hash: &str) -> bool {
        let argon2 = self.argon2();
        let password = password.clone();
        let hash = hash.to_owned();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    argon2
                        .verify_password(password.expose().as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(64, 1, 1).unwrap()
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_different_one_does_not() {
        let hasher = cheap();
        let password = Password::parse("correct horse battery").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(hasher.verify(&password, &hash).await);
        assert!(
            !hasher
                .verify(&Password::for_login("correct horse battery!"), &hash)
                .await
        );
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = cheap();
        let password = Password::parse("correct horse battery").unwrap();
        assert_ne!(
            hasher.hash(&password).await.unwrap(),
            hasher.hash(&password).await.unwrap()
        );
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_still_verifies() {
        let password = Password::parse("correct horse battery").unwrap();
        let old = Argon2Hasher::new(128, 2, 1)
            .unwrap()
            .hash(&password)
            .await
            .unwrap();
        assert!(cheap().verify(&password, &old).await);
    }

    #[tokio::test]
    async fn a_malformed_hash_never_verifies() {
        assert!(
            !cheap()
                .verify(&Password::for_login("x"), "not a hash")
                .await
        );
        assert!(!cheap().verify(&Password::for_login("x"), "").await);
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        assert!(Argon2Hasher::new(1, 1, 1).is_err());
        assert!(Argon2Hasher::new(64, 0, 1).is_err());
    }
}
