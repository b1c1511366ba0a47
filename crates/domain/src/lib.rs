//! The chat domain: accounts, conversations, messages and receipt watermarks, the rules
//! that govern them, and the ports (traits) through which they reach storage and the
//! outside world. No I/O, no web or database crate: adapters implement the ports.
//!
//! - [`services::AccountService`]: register, login, rotating refresh tokens.
//! - [`services::ConversationService`]: direct and group conversations, membership rules.
//! - [`services::MessageService`]: idempotent sends, history, read and delivered watermarks.
//! - [`attachment`]: which uploaded files are accepted, checked on their bytes.

pub mod attachment;
pub mod auth;
pub mod blob;
pub mod conversation;
pub mod delivery;
pub mod encryption;
pub mod error;
pub mod ids;
pub mod limits;
pub mod message;
pub mod ports;
pub mod realtime;
pub mod services;
pub mod user;

pub use error::StorageError;
pub use ids::{AttachmentId, ConversationId, DeviceId, MessageId, TokenFamilyId, UserId};
pub use limits::Limits;
