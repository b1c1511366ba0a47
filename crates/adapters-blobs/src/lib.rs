//! Adapters of the [`BlobStore`] port on the `object_store` crate:
//!
//! - [`LocalBlobStore`]: files under `<data.dir>/blobs` (embedded mode). It cannot presign
//!   (clients go through the server's own endpoints) and keeps no content type.
//! - [`S3BlobStore`]: an S3 bucket or any S3-compatible server (scale-out mode), with
//!   presigned PUT and GET URLs.
//!
//! [`open`] picks one from the `[blobs]` settings. Both pass the contract suite in
//! `tests/contract.rs`.

#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
use domain::blob::{is_valid_key, BlobData, BlobError, BlobMeta, ByteRange};
use domain::ports::BlobStore;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutOptions, PutPayload,
};
use std::sync::Arc;
use std::time::Duration;

/// Where the blobs live: the `[blobs]` section of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobConfig {
    /// Unset, empty or `file://`: [`LocalBlobStore`] under `<data.dir>/blobs`.
    /// `s3://bucket`: [`S3BlobStore`] on that bucket.
    pub url: Option<String>,
    /// S3 endpoint (an S3-compatible server); unset: AWS's for the region.
    pub endpoint: Option<String>,
    /// S3 region; unset: `AWS_REGION` or `us-east-1`.
    pub region: Option<String>,
    /// S3 credentials; unset: the `AWS_*` environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (a local S3 server only).
    pub allow_http: bool,
}

/// Why the configured store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("blobs.url {0:?}: expected empty, file:// or s3://<bucket>")]
    Url(String),
    #[error("cannot create the blob directory {path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the blob store: {0}")]
    Store(#[from] object_store::Error),
}

/// The store the settings name: local under `data_dir` or S3.
pub fn open(
    config: &BlobConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn BlobStore>, OpenError> {
    let url = config.url.as_deref().unwrap_or("").trim();
    if url.is_empty() || url == "file://" {
        return Ok(Arc::new(LocalBlobStore::open(data_dir.join("blobs"))?));
    }
    match url.strip_prefix("s3://") {
        Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => {
            Ok(Arc::new(S3BlobStore::open(bucket, config)?))
        }
        _ => Err(OpenError::Url(url.to_owned())),
    }
}

/// Blobs as files under a root directory (embedded mode).
#[derive(Debug)]
pub struct LocalBlobStore {
    store: LocalFileSystem,
}

impl LocalBlobStore {
    /// The store rooted at `root`, which is created if missing.
    pub fn open(root: impl Into<std::path::PathBuf>) -> Result<Self, OpenError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| OpenError::Dir {
            path: root.clone(),
            source,
        })?;
        // Removes the directories a delete leaves empty.
        let store = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(Self { store })
    }
}

/// Blobs in an S3 bucket (scale-out mode).
#[derive(Debug)]
pub struct S3BlobStore {
    store: AmazonS3,
}

impl S3BlobStore {
    /// The store on `bucket`, with endpoint, region and credentials from `config` (else
    /// from the `AWS_*` environment variables). Nothing is contacted yet.
    pub fn open(bucket: &str, config: &BlobConfig) -> Result<Self, OpenError> {
        // An unreachable store must fail a request within seconds, not the crate's default
        // of 10 retries over 3 minutes: the chat answers 503 and the client retries.
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(5),
            ..object_store::RetryConfig::default()
        };
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(30));
        // Client options first: they replace the whole set, `allow_http` included.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client)
            .with_allow_http(config.allow_http)
            .with_retry(retry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(Self {
            store: builder.build()?,
        })
    }
}

fn path(key: &str) -> Result<Path, BlobError> {
    if !is_valid_key(key) {
        return Err(BlobError::InvalidKey(key.to_owned()));
    }
    Path::parse(key).map_err(|_| BlobError::InvalidKey(key.to_owned()))
}

fn map_err(key: &str, err: object_store::Error) -> BlobError {
    match err {
        object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_owned()),
        other => BlobError::unavailable(other),
    }
}

fn meta(m: ObjectMeta) -> BlobMeta {
    BlobMeta {
        key: m.location.to_string(),
        size: m.size,
        last_modified: m.last_modified,
    }
}

/// Whether `range` has bytes in an object of `size` bytes.
fn satisfiable(range: ByteRange, size: u64) -> bool {
    match range {
        ByteRange::Bounded { start, end } => start < end && start < size,
        ByteRange::From(start) => start < size,
        ByteRange::Suffix(n) => n > 0 && size > 0,
    }
}

async fn put(
    store: &dyn ObjectStore,
    key: &str,
    bytes: Vec<u8>,
    content_type: Option<String>,
    keeps_attributes: bool,
) -> Result<(), BlobError> {
    let location = path(key)?;
    let mut attributes = Attributes::new();
    if let (true, Some(content_type)) = (keeps_attributes, content_type) {
        attributes.insert(Attribute::ContentType, content_type.into());
    }
    store
        .put_opts(
            &location,
            PutPayload::from(bytes),
            PutOptions::from(attributes),
        )
        .await
        .map(|_| ())
        .map_err(|err| map_err(key, err))
}

async fn head(store: &dyn ObjectStore, key: &str) -> Result<Option<BlobMeta>, BlobError> {
    let location = path(key)?;
    let options = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match store.get_opts(&location, options).await {
        Ok(result) => Ok(Some(meta(result.meta))),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(BlobError::unavailable(err)),
    }
}

async fn get(
    store: &dyn ObjectStore,
    key: &str,
    range: Option<ByteRange>,
) -> Result<BlobData, BlobError> {
    let location = path(key)?;
    // A range with no bytes in it is refused before asking: stores disagree on it.
    let empty = match range {
        Some(ByteRange::Bounded { start, end }) => start >= end,
        Some(ByteRange::Suffix(n)) => n == 0,
        Some(ByteRange::From(_)) | None => false,
    };
    if empty {
        return match head(store, key).await? {
            Some(m) => Err(BlobError::RangeNotSatisfiable { size: m.size }),
            None => Err(BlobError::NotFound(key.to_owned())),
        };
    }
    let options = GetOptions {
        range: range.map(|range| match range {
            ByteRange::Bounded { start, end } => GetRange::Bounded(start..end),
            ByteRange::From(start) => GetRange::Offset(start),
            ByteRange::Suffix(n) => GetRange::Suffix(n),
        }),
        ..GetOptions::default()
    };
    let result = match store.get_opts(&location, options).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(BlobError::NotFound(key.to_owned()))
        }
        // Stores word an unsatisfiable range differently (a local error, HTTP 416): look
        // at the object to tell that from a failure.
        Err(err) => {
            return match (range, head(store, key).await?) {
                (_, None) => Err(BlobError::NotFound(key.to_owned())),
                (Some(range), Some(m)) if !satisfiable(range, m.size) => {
                    Err(BlobError::RangeNotSatisfiable { size: m.size })
                }
                _ => Err(BlobError::unavailable(err)),
            }
        }
    };
    let content_type = result
        .attributes
        .get(&Attribute::ContentType)
        .map(|value| value.as_ref().to_owned());
    let total_size = result.meta.size;
    let offset = result.range.start;
    let bytes = result.bytes().await.map_err(|err| map_err(key, err))?;
    Ok(BlobData {
        bytes: bytes.to_vec(),
        offset,
        total_size,
        content_type,
    })
}

async fn delete(store: &dyn ObjectStore, key: &str) -> Result<(), BlobError> {
    let location = path(key)?;
    match store.delete(&location).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(BlobError::unavailable(err)),
    }
}

async fn copy(store: &dyn ObjectStore, from: &str, to: &str) -> Result<(), BlobError> {
    let (source, target) = (path(from)?, path(to)?);
    match store.copy(&source, &target).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(from.to_owned())),
        Err(err) => Err(BlobError::unavailable(err)),
    }
}

async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
    let location = path(prefix)?;
    match store.list(Some(&location)).try_collect::<Vec<_>>().await {
        Ok(objects) => Ok(objects.into_iter().map(meta).collect()),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(err) => Err(BlobError::unavailable(err)),
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<(), BlobError> {
        put(&self.store, key, bytes, content_type, false).await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobData, BlobError> {
        get(&self.store, key, range).await
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        head(&self.store, key).await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        delete(&self.store, key).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        copy(&self.store, from, to).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        list(&self.store, prefix).await
    }

    async fn presign_put(
        &self,
        key: &str,
        _expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        path(key)?;
        Ok(None)
    }

    async fn presign_get(
        &self,
        key: &str,
        _expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        path(key)?;
        Ok(None)
    }
}

impl S3BlobStore {
    async fn presign(
        &self,
        method: Method,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        let location = path(key)?;
        self.store
            .signed_url(method, &location, expires_in)
            .await
            .map(|url| Some(url.to_string()))
            .map_err(BlobError::unavailable)
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<(), BlobError> {
        put(&self.store, key, bytes, content_type, true).await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobData, BlobError> {
        get(&self.store, key, range).await
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        head(&self.store, key).await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        delete(&self.store, key).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        copy(&self.store, from, to).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        list(&self.store, prefix).await
    }

    async fn presign_put(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        self.presign(Method::PUT, key, expires_in).await
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        self.presign(Method::GET, key, expires_in).await
    }
}

#[cfg(test)]
mod tests {
    use super::{open, BlobConfig, OpenError};

    fn config(url: &str) -> BlobConfig {
        BlobConfig {
            url: Some(url.into()),
            region: Some("us-east-1".into()),
            ..BlobConfig::default()
        }
    }

    #[test]
    fn empty_or_file_url_is_local_under_the_data_dir() {
        for url in ["", "file://"] {
            let dir = tempfile::tempdir().unwrap();
            open(&config(url), dir.path()).unwrap();
            assert!(dir.path().join("blobs").is_dir(), "{url:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        open(&BlobConfig::default(), dir.path()).unwrap();
        assert!(dir.path().join("blobs").is_dir());
    }

    #[test]
    fn s3_url_names_a_bucket() {
        let dir = tempfile::tempdir().unwrap();
        open(&config("s3://bucket"), dir.path()).unwrap();
        assert!(!dir.path().join("blobs").exists());
        for url in ["s3://", "s3://a/b", "ftp://x", "/var/blobs"] {
            assert!(
                matches!(open(&config(url), dir.path()), Err(OpenError::Url(_))),
                "{url:?}"
            );
        }
    }
}
