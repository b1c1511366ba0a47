//! Errors shared by every port.

use std::error::Error as StdError;

/// The storage (or another backing service) could not do what was asked:
/// connection lost, pool exhausted, I/O error, unexpected driver error.
/// Callers answer `unavailable` (HTTP 503) and change nothing; the client may retry.
///
/// An adapter marks the errors the database itself reported about the statement it was sent
/// (a constraint or data error, anything but "could not talk to it") with
/// [`StorageError::refused`]: retrying the same input fails the same way, while a
/// transaction without that input may well pass. That is how one message the database
/// refuses is told from a database that is down (see `MessageService::append`).
#[derive(Debug, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub struct StorageError(#[source] pub Box<dyn StdError + Send + Sync + 'static>);

/// The cause inside a [`StorageError`] made with [`StorageError::refused`]: the database
/// answered, and refused what it was given.
#[derive(Debug, thiserror::Error)]
#[error("refused by the database: {0}")]
pub struct Refused(#[source] pub Box<dyn StdError + Send + Sync + 'static>);

impl StorageError {
    /// Wraps any driver error.
    pub fn new(err: impl StdError + Send + Sync + 'static) -> Self {
        Self(Box::new(err))
    }

    /// An error described only by a message (for invariants the driver cannot express).
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }

    /// Wraps an error the database reported about the statement it was given (it is up
    /// and answering): the input, not the connection, may be at fault.
    pub fn refused(err: impl StdError + Send + Sync + 'static) -> Self {
        Self(Box::new(Refused(Box::new(err))))
    }

    /// Whether the database answered and refused the statement ([`StorageError::refused`]),
    /// rather than being unreachable.
    pub fn is_refused(&self) -> bool {
        self.0.downcast_ref::<Refused>().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_made_refused_say_so() {
        let io = std::io::Error::other("connection reset");
        assert!(!StorageError::new(io).is_refused());
        assert!(!StorageError::msg("pool timed out").is_refused());
        let refused = StorageError::refused(std::io::Error::other("0x00"));
        assert!(refused.is_refused());
        assert!(refused.to_string().contains("0x00"), "{refused}");
    }
}
