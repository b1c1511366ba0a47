//! `[blobs]`: where the bytes of attachments live. Read and checked at load; no route uses
//! the store yet (attachments, issue 14, build on the `adapters-blobs` crate).

use super::Secret;
use serde::Deserialize;

/// `[blobs]`: the blob store of attachments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlobSettings {
    /// Unset, empty or `file://`: files under `<data.dir>/blobs` (embedded mode).
    /// `s3://bucket`: that S3 bucket, or one on any S3-compatible server (scale-out).
    pub url: Option<String>,
    /// S3: the endpoint of an S3-compatible server; unset: AWS's for the region.
    pub endpoint: Option<String>,
    /// S3: the region; unset: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// S3: the credentials; unset: the `AWS_*` environment variables.
    pub access_key_id: Option<String>,
    /// S3: the secret key, never printed.
    pub secret_access_key: Option<Secret>,
    /// S3: allow a plain-HTTP endpoint (a local S3 server only).
    pub allow_http: bool,
}

impl BlobSettings {
    /// Refuses a `url` that names neither the local store nor an S3 bucket.
    pub(super) fn check_url(&self) -> Result<(), String> {
        let url = self.url.as_deref().unwrap_or("").trim();
        if url.is_empty() || url == "file://" {
            return Ok(());
        }
        match url.strip_prefix("s3://") {
            Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => Ok(()),
            _ => Err("must be empty, file:// or s3://<bucket>".to_owned()),
        }
    }
}
