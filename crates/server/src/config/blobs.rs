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
    /// The origins browsers PUT uploads to in scale-out mode (the presigned URLs' own): the
    /// S3 endpoint's, or AWS's for the region (path- and virtual-hosted style). Empty for
    /// the local store, whose uploads go to this server. What the web client's
    /// `Content-Security-Policy` must allow in `connect-src`.
    pub fn upload_origins(&self) -> Vec<String> {
        let url = self.url.as_deref().unwrap_or("").trim();
        let Some(bucket) = url.strip_prefix("s3://") else {
            return Vec::new();
        };
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(endpoint) = endpoint {
            return origin_of(&endpoint).into_iter().collect();
        }
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        vec![
            format!("https://s3.{region}.amazonaws.com"),
            format!("https://{bucket}.s3.{region}.amazonaws.com"),
        ]
    }

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

/// `scheme://host[:port]` of a URL, if it has one.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    (matches!(scheme, "http" | "https") && valid).then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_go_to_the_endpoints_origin_or_aws_and_nowhere_for_local_files() {
        let local = BlobSettings::default();
        assert!(local.upload_origins().is_empty());
        let s3 = BlobSettings {
            url: Some("s3://chat".into()),
            endpoint: Some("http://127.0.0.1:9000/some/path".into()),
            ..BlobSettings::default()
        };
        assert_eq!(s3.upload_origins(), ["http://127.0.0.1:9000"]);
        let aws = BlobSettings {
            url: Some("s3://chat".into()),
            region: Some("eu-west-1".into()),
            ..BlobSettings::default()
        };
        assert_eq!(
            aws.upload_origins(),
            [
                "https://s3.eu-west-1.amazonaws.com",
                "https://chat.s3.eu-west-1.amazonaws.com"
            ]
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a b.example"), None);
    }
}
