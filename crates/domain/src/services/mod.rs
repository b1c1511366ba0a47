//! The domain's use cases, each a service generic over nothing but the ports it holds.

mod accounts;
mod conversations;
mod errors;
mod messages;

pub use accounts::{AccountService, AccountSettings};
pub use conversations::{ConversationService, CONVERSATION_PAGE_SIZE};
pub use errors::{AuthError, ChatError};
pub use messages::{HistoryPage, MessageService, MessageView, ReadOutcome, SendCommand};
