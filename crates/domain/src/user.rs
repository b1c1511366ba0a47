//! Users and the validated values an account is made of.

use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

/// Why a value given by a client was refused. Each maps to HTTP 422 with the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The request field at fault.
    pub field: &'static str,
    /// What is wrong with it, in plain words.
    pub reason: String,
}

impl InvalidField {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Refuses text that contains U+0000. PostgreSQL's `text` cannot hold it (the whole
/// statement fails, and with it every message committed in the same transaction) while
/// SQLite stores it: refusing it here, before any storage, keeps both backends alike.
/// Invalid UTF-8 and lone surrogates never get this far (a Rust `String` cannot hold them;
/// the JSON parser refuses them).
pub fn refuse_nul(field: &'static str, raw: &str) -> Result<(), InvalidField> {
    if raw.contains('\0') {
        return Err(InvalidField::new(
            field,
            "must not contain NUL characters (U+0000)",
        ));
    }
    Ok(())
}

/// An email address, trimmed and lower-cased so uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Longest address accepted (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Accepts `local@domain` with a non-empty local part and a dotted domain.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let email = raw.trim().to_lowercase();
        let invalid = |reason: &str| InvalidField::new("email", reason);
        if email.is_empty() {
            return Err(invalid("must not be blank"));
        }
        if email.chars().count() > Self::MAX_LEN {
            return Err(invalid("is too long"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("is not an email address"));
        };
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@');
        let odd_char = |c: char| c.is_whitespace() || c.is_control();
        if local.is_empty() || !domain_ok || email.chars().any(odd_char) {
            return Err(invalid("is not an email address"));
        }
        Ok(Self(email))
    }

    /// Rebuilds an address already validated (read back from storage).
    pub fn from_trusted(email: String) -> Self {
        Self(email)
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name shown to other users: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest name accepted, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Validates and trims a display name.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidField::new("display_name", "must not be blank"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidField::new(
                "display_name",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidField::new(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// Rebuilds a name already validated (read back from storage).
    pub fn from_trusted(name: String) -> Self {
        Self(name)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plaintext password on its way to the hasher. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Shortest password accepted at registration.
    pub const MIN_CHARS: usize = 8;
    /// Longest password accepted (bounds the hashing work an attacker can ask for).
    pub const MAX_CHARS: usize = 128;

    /// Validates a new password's length.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(InvalidField::new(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(InvalidField::new(
                "password",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password offered at login: checked against a hash, never validated for shape
    /// (a different answer for a too-short password would tell an attacker something).
    pub fn for_login(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The plaintext, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A user account as other users and the owner see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Account id.
    pub id: UserId,
    /// Unique, lower-cased email.
    pub email: EmailAddress,
    /// Name shown to others.
    pub display_name: DisplayName,
    /// Optional picture.
    pub avatar_url: Option<String>,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
    /// When the user was last seen online, if ever.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// An account to insert, with its password already hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Account id, chosen by the domain.
    pub id: UserId,
    /// Unique email.
    pub email: EmailAddress,
    /// Name shown to others.
    pub display_name: DisplayName,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A user with the hash needed to check a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The account.
    pub user: User,
    /// PHC-format password hash.
    pub password_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let email = EmailAddress::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.com",
            "a\0b@example.com",
            "a@exa\u{7}mple.com",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn display_names_must_not_be_blank_or_too_long() {
        assert!(DisplayName::parse("  ").is_err());
        assert!(DisplayName::parse(&"x".repeat(65)).is_err());
        assert_eq!(DisplayName::parse(" Bob ").unwrap().as_str(), "Bob");
    }

    #[test]
    fn display_names_with_a_nul_are_refused() {
        let err = DisplayName::parse("a\0b").unwrap_err();
        assert_eq!(err.field, "display_name");
    }

    #[test]
    fn only_text_with_a_nul_is_refused_as_unstorable() {
        assert!(refuse_nul("content", "a\u{0}b").is_err());
        assert!(refuse_nul("content", "\u{0}").is_err());
        assert!(refuse_nul("content", "tabs\tand\nnewlines, \u{1} and emoji 🎉").is_ok());
    }

    #[test]
    fn passwords_are_never_printed() {
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
        assert!(Password::parse("short").is_err());
    }
}
