//! Errors shared by every port.

use std::error::Error as StdError;

/// The storage (or another backing service) could not do what was asked:
/// connection lost, pool exhausted, I/O error, unexpected driver error.
/// Callers answer `unavailable` (HTTP 503) and change nothing; the client may retry.
#[derive(Debug, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub struct StorageError(#[source] pub Box<dyn StdError + Send + Sync + 'static>);

impl StorageError {
    /// Wraps any driver error.
    pub fn new(err: impl StdError + Send + Sync + 'static) -> Self {
        Self(Box::new(err))
    }

    /// An error described only by a message (for invariants the driver cannot express).
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}
