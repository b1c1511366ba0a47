//! Blobs: the bytes of attachments, kept outside the database behind the
//! [`BlobStore`](crate::ports::BlobStore) port.
//!
//! Keys are opaque strings the domain makes (e.g. `attachments/<id>`): segments of ASCII
//! letters, digits, `-`, `_` and `.` separated by `/`. The adapters refuse any other key
//! ([`BlobError::InvalidKey`]), so none can name a file outside a local store's root.

use chrono::{DateTime, Utc};
use std::error::Error as StdError;

/// Which bytes of an object a read wants (HTTP `Range` semantics, end exclusive here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end`; an `end` past the object's end is cut to it. `start < end`.
    Bounded { start: u64, end: u64 },
    /// Every byte from `start` on.
    From(u64),
    /// The last `n` bytes (all of them if the object is shorter). `n > 0`.
    Suffix(u64),
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobData {
    /// The bytes asked for (all of them, or the range).
    pub bytes: Vec<u8>,
    /// Where `bytes` start in the object.
    pub offset: u64,
    /// The object's whole size, whatever the range.
    pub total_size: u64,
    /// The content type given at `put`, if the store keeps it (S3 does, a local file
    /// system does not: the database is the reference for it).
    pub content_type: Option<String>,
}

/// An object as a listing or `head` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: String,
    pub size: u64,
    /// When it was last written; what the expiry of never-confirmed uploads compares.
    pub last_modified: DateTime<Utc>,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No object has this key.
    #[error("blob not found: {0}")]
    NotFound(String),
    /// The key is not one the domain makes (empty segment, `..`, absolute path, other
    /// characters). Nothing was read or written.
    #[error("invalid blob key: {0:?}")]
    InvalidKey(String),
    /// The range asked for starts at or past the end of the object (HTTP 416).
    #[error("range not satisfiable (object is {size} bytes)")]
    RangeNotSatisfiable { size: u64 },
    /// The store failed (I/O, network, credentials): answer `unavailable` and retry later.
    #[error("blob store unavailable: {0}")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
}

impl BlobError {
    /// Wraps any store error as [`BlobError::Unavailable`].
    pub fn unavailable(err: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(err))
    }
}

/// Whether `key` is one the domain makes: non-empty `/`-separated segments of ASCII
/// letters, digits, `-`, `_`, `.`, none of them `.` or `..`, at most 512 bytes.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

#[cfg(test)]
mod tests {
    use super::is_valid_key;

    #[test]
    fn keys_the_domain_makes_are_valid() {
        assert!(is_valid_key(
            "attachments/0190f3e2-7b1c-7abc-9def-0123456789ab"
        ));
        assert!(is_valid_key("a/b.c_d-e"));
    }

    #[test]
    fn keys_that_could_escape_or_confuse_are_refused() {
        for key in [
            "", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a/.", "a\\b", "a b", "é", "a\0b",
            "C:x",
        ] {
            assert!(!is_valid_key(key), "{key:?} accepted");
        }
        assert!(!is_valid_key(&"a".repeat(513)));
    }
}
