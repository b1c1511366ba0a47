//! `[attachments]`: what files the server takes, how long links live, when unsent uploads go.

use super::nonzero;
use domain::attachment::{AttachmentLimits, MediaType};
use domain::services::AttachmentSettings as ServiceSettings;
use serde::Deserialize;
use std::num::NonZeroU32;
use std::time::Duration;

/// `[attachments]`: files and images (issue 14).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AttachmentSettings {
    /// The largest file accepted, in bytes (checked on `upload-url`, on the upload, and on
    /// the stored bytes at `confirm`).
    pub max_size_bytes: u64,
    /// The MIME types accepted in plain conversations (a list, or comma-separated in the
    /// environment); each must be one the server can recognise by its bytes.
    #[serde(deserialize_with = "super::list_or_comma_separated")]
    pub allowed_types: Vec<String>,
    /// The most pixels an image may have (against decompression bombs).
    pub max_image_pixels: u64,
    /// The most attachments one message may carry.
    pub max_per_message: usize,
    /// The long side of a thumbnail, in pixels.
    pub thumbnail_px: u32,
    /// How long an upload URL and a download link stay valid.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub url_ttl: Duration,
    /// How long after `upload-url` an attachment never sent is deleted.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub expire_after: Duration,
    /// How often the sweeper looks for what to delete.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub sweep_interval: Duration,
    /// `upload-url` requests per user per minute (on each node).
    pub uploads_per_minute: NonZeroU32,
    /// Requests a user may make at once before the per-minute rate applies.
    pub upload_burst: NonZeroU32,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        let limits = AttachmentLimits::default();
        let service = ServiceSettings::default();
        Self {
            max_size_bytes: limits.max_bytes,
            allowed_types: limits.allowed_mime_types,
            max_image_pixels: limits.max_image_pixels,
            max_per_message: domain::Limits::default().max_attachments_per_message,
            thumbnail_px: service.thumbnail_px,
            url_ttl: service.url_ttl,
            expire_after: service.expire_after,
            sweep_interval: Duration::from_secs(60),
            uploads_per_minute: nonzero::u32(30),
            upload_burst: nonzero::u32(10),
        }
    }
}

impl AttachmentSettings {
    /// What the attachment service runs with.
    pub fn service(&self) -> ServiceSettings {
        ServiceSettings {
            limits: AttachmentLimits {
                max_bytes: self.max_size_bytes,
                allowed_mime_types: self.allowed_types.clone(),
                max_image_pixels: self.max_image_pixels,
            },
            url_ttl: self.url_ttl,
            expire_after: self.expire_after,
            thumbnail_px: self.thumbnail_px,
        }
    }

    /// Refuses a type the server cannot recognise, and zero sizes and timings.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        for mime in &self.allowed_types {
            if MediaType::from_mime(mime).is_none() {
                let known: Vec<&str> = MediaType::ALL.iter().map(|t| t.mime()).collect();
                return Err((
                    "attachments.allowed_types",
                    format!("{mime:?} is not one of {}", known.join(", ")),
                ));
            }
        }
        if self.max_size_bytes == 0 {
            return Err(("attachments.max_size_bytes", "must be above 0".to_owned()));
        }
        if self.max_per_message == 0 {
            return Err(("attachments.max_per_message", "must be above 0".to_owned()));
        }
        if self.thumbnail_px == 0 {
            return Err(("attachments.thumbnail_px", "must be above 0".to_owned()));
        }
        for (key, value) in [
            ("attachments.url_ttl", self.url_ttl),
            ("attachments.expire_after", self.expire_after),
            ("attachments.sweep_interval", self.sweep_interval),
        ] {
            if value.is_zero() {
                return Err((key, "must be longer than 0s".to_owned()));
            }
        }
        Ok(())
    }
}
