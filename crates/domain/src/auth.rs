//! Values of the account and token flow.

use crate::ids::{TokenFamilyId, UserId};
use crate::user::User;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;

/// A signed, short-lived access token and how long it lives.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(<redacted>, expires_in={})", self.expires_in)
    }
}

/// An opaque refresh token as handed to the client. Only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshSecret(String);

impl RefreshSecret {
    /// A new secret with 244 bits of OS randomness (two UUIDv4s).
    pub fn generate() -> Self {
        Self(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// A secret presented by a client.
    pub fn from_client(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The SHA-256 of the secret, hex: what storage keeps and looks up by.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The secret, to send to the client once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}

/// A refresh token row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// SHA-256 of the secret, hex.
    pub token_hash: String,
    /// Family: every token rotated from one login.
    pub family_id: TokenFamilyId,
    /// Owner.
    pub user_id: UserId,
    /// Issue time.
    pub created_at: DateTime<Utc>,
    /// Past this the token is refused.
    pub expires_at: DateTime<Utc>,
}

/// What consuming a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// The token was live and is now used; rotate to a new one in the same family.
    Consumed {
        /// Owner.
        user_id: UserId,
        /// Family to continue.
        family_id: TokenFamilyId,
    },
    /// The token had been used or revoked before: a sign of theft. Revoke the family.
    AlreadyUsed {
        /// Family to revoke.
        family_id: TokenFamilyId,
    },
    /// The token is past its expiry.
    Expired,
    /// No such token.
    Unknown,
}

/// What a successful register, login or refresh hands the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSession {
    /// The account.
    pub user: User,
    /// Short-lived bearer token.
    pub access: AccessToken,
    /// Single-use refresh token.
    pub refresh: RefreshSecret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_secrets_are_unique_and_hash_stably() {
        let a = RefreshSecret::generate();
        let b = RefreshSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert_eq!(a.hash(), RefreshSecret::from_client(a.expose()).hash());
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
