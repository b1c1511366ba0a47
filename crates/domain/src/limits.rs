//! Limits the domain enforces. All configurable; defaults follow the specification (section 8).

/// Limits on what users may send and fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum message length in characters (Unicode scalar values).
    pub max_content_chars: usize,
    /// Maximum size of an `encrypted` message's envelope, in bytes (room for the envelope
    /// of `max_content_chars` characters of text).
    pub max_encrypted_bytes: usize,
    /// Maximum number of messages one history page may return.
    pub max_page_size: u32,
    /// Maximum number of members in a group, owner included.
    pub max_group_members: usize,
    /// How long after sending a message its sender may edit it, in seconds; 0 = always.
    pub edit_window_secs: u64,
    /// Most attachments one message may carry.
    pub max_attachments_per_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_chars: 4_000,
            max_encrypted_bytes: 24_576,
            max_page_size: 100,
            max_group_members: 1_000,
            edit_window_secs: 48 * 3600,
            max_attachments_per_message: 10,
        }
    }
}
