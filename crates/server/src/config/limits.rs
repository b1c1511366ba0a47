//! `[limits]`: what users may send and fetch.

use super::nonzero;
use serde::Deserialize;
use std::num::NonZeroU32;

/// `[limits]`: what users may send and fetch.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Longest message, in characters.
    pub max_content_chars: usize,
    /// Largest `encrypted` message (its envelope), in bytes.
    pub max_encrypted_bytes: usize,
    /// Most messages one history page may return.
    pub max_page_size: NonZeroU32,
    /// Most members of a group, owner included.
    pub max_group_members: usize,
    /// How long after sending a message its sender may edit it, in seconds; 0 = always.
    pub edit_window_secs: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let limits = domain::Limits::default();
        Self {
            max_content_chars: limits.max_content_chars,
            max_encrypted_bytes: limits.max_encrypted_bytes,
            max_page_size: nonzero::u32(limits.max_page_size),
            max_group_members: limits.max_group_members,
            edit_window_secs: limits.edit_window_secs,
        }
    }
}

impl From<&LimitSettings> for domain::Limits {
    fn from(s: &LimitSettings) -> Self {
        Self {
            max_content_chars: s.max_content_chars,
            max_encrypted_bytes: s.max_encrypted_bytes,
            max_page_size: s.max_page_size.get(),
            max_group_members: s.max_group_members,
            edit_window_secs: s.edit_window_secs,
            max_attachments_per_message: domain::Limits::default().max_attachments_per_message,
        }
    }
}
