//! The domain's use cases, each a service generic over nothing but the ports it holds.

mod accounts;
mod attachments;
mod conversations;
mod encryption;
mod errors;
mod lifecycle;
mod lookups;
mod messages;
mod presence;
mod typing;

pub use accounts::{AccountService, AccountSettings};
#[cfg(any(test, feature = "mock"))]
pub use attachments::MockImageProcessor;
pub use attachments::{
    AttachmentService, AttachmentSettings, Download, ImageProcessor, ProcessedImage, UploadTicket,
    Variant,
};
pub use conversations::{ConversationService, CONVERSATION_PAGE_SIZE};
pub use encryption::{EnableOutcome, EncryptionService, KeyRequest, KeysStored};
pub use errors::{AuthError, ChatError};
pub use lifecycle::{EditOutcome, LifecycleService, ReactionChange, REACTION_USERS_SHOWN};
pub use messages::{HistoryPage, MessageService, MessageView, ReadOutcome, SendCommand};
pub use presence::{
    LeaseRenewal, ParticipantPresence, PresenceService, PresenceSettings,
    DEFAULT_MAX_SESSIONS_PER_USER, DEFAULT_OFFLINE_GRACE, DEFAULT_PRESENCE_LEASE_TTL,
};
pub use typing::{
    TypingService, TypingSettings, DEFAULT_TYPING_FORWARD_THROTTLE, DEFAULT_TYPING_TTL,
};

/// Fixtures the services' unit tests share.
#[cfg(test)]
mod test_support {
    use crate::encryption::EncryptionState;
    use crate::ports::MockEncryptionStore;
    use chrono::{DateTime, Utc};

    /// An encryption store under which every conversation is end-to-end encrypted (with
    /// key version 1, turned on at `at`) or none is.
    pub(super) fn encryption_where(encrypted: bool, at: DateTime<Utc>) -> MockEncryptionStore {
        let mut store = MockEncryptionStore::new();
        store.expect_encryption_state().returning(move |c| {
            Ok(encrypted.then_some(EncryptionState {
                conversation_id: c,
                key_version: 1,
                rotation_needed: false,
                enabled_at: at,
            }))
        });
        store
    }
}
