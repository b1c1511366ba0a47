//! The blob-store contract: every case runs against [`LocalBlobStore`] (a temporary
//! directory) and [`S3BlobStore`] on a real S3-compatible server, moto's standalone server,
//! which this test binary starts on a free loopback port (one for the binary, a new bucket
//! per test). Without moto the S3 cases fail and say how to install it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_blobs::{LocalBlobStore, S3BlobStore};
use domain::blob::{BlobError, ByteRange};
use domain::ports::BlobStore;
use std::time::Duration;

/// A store under test, with what it can do, and what keeps it alive.
struct Subject {
    store: Box<dyn BlobStore>,
    presigns: bool,
    keeps_content_type: bool,
    _dir: Option<tempfile::TempDir>,
}

fn local() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path().join("blobs")).unwrap();
    Subject {
        store: Box::new(store),
        presigns: false,
        keeps_content_type: false,
        _dir: Some(dir),
    }
}

async fn s3() -> Subject {
    let config = adapters_blobs::testing::fresh_bucket().await;
    let bucket = config
        .url
        .as_deref()
        .and_then(|u| u.strip_prefix("s3://"))
        .unwrap()
        .to_owned();
    Subject {
        store: Box::new(S3BlobStore::open(&bucket, &config).unwrap()),
        presigns: true,
        keeps_content_type: true,
        _dir: None,
    }
}

// ---- the cases ----------------------------------------------------------------------

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn round_trip_is_byte_exact(s: Subject) {
    for (key, bytes) in [
        ("attachments/binary", (0..=255u8).collect::<Vec<_>>()),
        ("attachments/empty", Vec::new()),
        ("attachments/large", pattern(3 * 1024 * 1024 + 17)),
    ] {
        s.store.put(key, bytes.clone(), None).await.unwrap();
        let got = s.store.get(key, None).await.unwrap();
        assert_eq!(got.bytes.len(), bytes.len(), "{key}");
        assert!(got.bytes == bytes, "{key}: bytes differ");
        assert_eq!(got.total_size, bytes.len() as u64);
        assert_eq!(got.offset, 0);
    }
}

async fn content_type_is_kept_where_the_store_keeps_it(s: Subject) {
    s.store
        .put("a/typed", b"png?".to_vec(), Some("image/png".into()))
        .await
        .unwrap();
    let got = s.store.get("a/typed", None).await.unwrap();
    let expected = s.keeps_content_type.then(|| "image/png".to_owned());
    assert_eq!(got.content_type, expected);
    assert_eq!(got.bytes, b"png?");
}

async fn range_reads(s: Subject) {
    let bytes = pattern(1000);
    s.store.put("a/r", bytes.clone(), None).await.unwrap();
    let read = |range| {
        let store = &s.store;
        async move { store.get("a/r", Some(range)).await }
    };
    let first = read(ByteRange::Bounded { start: 0, end: 10 })
        .await
        .unwrap();
    assert_eq!(first.bytes, bytes[..10]);
    assert_eq!((first.offset, first.total_size), (0, 1000));
    let middle = read(ByteRange::Bounded {
        start: 400,
        end: 450,
    })
    .await
    .unwrap();
    assert_eq!(middle.bytes, bytes[400..450]);
    assert_eq!((middle.offset, middle.total_size), (400, 1000));
    let past_end = read(ByteRange::Bounded {
        start: 990,
        end: 5000,
    })
    .await
    .unwrap();
    assert_eq!(past_end.bytes, bytes[990..]);
    let from = read(ByteRange::From(900)).await.unwrap();
    assert_eq!(from.bytes, bytes[900..]);
    assert_eq!(from.offset, 900);
    let suffix = read(ByteRange::Suffix(100)).await.unwrap();
    assert_eq!(suffix.bytes, bytes[900..]);
    assert_eq!((suffix.offset, suffix.total_size), (900, 1000));
    let longer_suffix = read(ByteRange::Suffix(5000)).await.unwrap();
    assert_eq!(longer_suffix.bytes, bytes);
    assert_eq!(longer_suffix.offset, 0);
    for range in [
        ByteRange::Bounded {
            start: 1000,
            end: 1010,
        },
        ByteRange::Bounded { start: 5, end: 5 },
        ByteRange::From(1000),
        ByteRange::Suffix(0),
    ] {
        match read(range).await {
            Err(BlobError::RangeNotSatisfiable { size: 1000 }) => {}
            other => panic!("{range:?}: {other:?}"),
        }
    }
}

async fn head_tells_size_or_none(s: Subject) {
    assert!(s.store.head("a/none").await.unwrap().is_none());
    s.store.put("a/h", pattern(123), None).await.unwrap();
    let meta = s.store.head("a/h").await.unwrap().unwrap();
    assert_eq!((meta.key.as_str(), meta.size), ("a/h", 123));
}

async fn delete_is_idempotent_then_not_found(s: Subject) {
    s.store.put("a/d", b"x".to_vec(), None).await.unwrap();
    s.store.delete("a/d").await.unwrap();
    s.store.delete("a/d").await.unwrap();
    s.store.delete("a/never").await.unwrap();
    assert!(s.store.head("a/d").await.unwrap().is_none());
    assert!(matches!(
        s.store.get("a/d", None).await,
        Err(BlobError::NotFound(key)) if key == "a/d"
    ));
    assert!(matches!(
        s.store.get("a/d", Some(ByteRange::From(0))).await,
        Err(BlobError::NotFound(_))
    ));
}

async fn keys_that_could_escape_are_refused(s: Subject) {
    for key in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a//b",
        "",
        "a/./b",
        "a\\..\\b",
    ] {
        let refused = |r: Result<(), BlobError>| matches!(r, Err(BlobError::InvalidKey(_)));
        assert!(
            refused(s.store.put(key, b"x".to_vec(), None).await),
            "put {key:?}"
        );
        assert!(
            refused(s.store.get(key, None).await.map(|_| ())),
            "get {key:?}"
        );
        assert!(refused(s.store.head(key).await.map(|_| ())), "head {key:?}");
        assert!(refused(s.store.delete(key).await), "delete {key:?}");
        assert!(refused(s.store.list(key).await.map(|_| ())), "list {key:?}");
        let ttl = Duration::from_secs(60);
        assert!(refused(s.store.presign_put(key, ttl).await.map(|_| ())));
        assert!(refused(s.store.presign_get(key, ttl).await.map(|_| ())));
    }
}

async fn presigned_put_then_get_over_plain_http(s: Subject) {
    let ttl = Duration::from_secs(300);
    let put = s.store.presign_put("attachments/p", ttl).await.unwrap();
    let get = s.store.presign_get("attachments/p", ttl).await.unwrap();
    if !s.presigns {
        assert_eq!((put, get), (None, None));
        return;
    }
    let (put, get) = (put.unwrap(), get.unwrap());
    let http = reqwest::Client::new();
    let bytes = pattern(4096);
    let response = http.put(&put).body(bytes.clone()).send().await.unwrap();
    assert!(response.status().is_success(), "PUT {}", response.status());
    let response = http.get(&get).send().await.unwrap();
    assert!(response.status().is_success(), "GET {}", response.status());
    assert!(response.bytes().await.unwrap() == bytes);
    let response = http
        .get(&get)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert!(response.bytes().await.unwrap() == bytes[10..20]);
    // What the client uploaded is the store's object.
    assert_eq!(
        s.store.head("attachments/p").await.unwrap().unwrap().size,
        4096
    );
    // Without its signature the URL is refused.
    let mut unsigned = url::Url::parse(&get).unwrap();
    unsigned.set_query(None);
    let response = http.get(unsigned).send().await.unwrap();
    assert!(
        !response.status().is_success(),
        "unsigned GET {}",
        response.status()
    );
}

async fn list_by_prefix_for_expiry(s: Subject) {
    assert!(s.store.list("uploads").await.unwrap().is_empty());
    let before = chrono::Utc::now() - chrono::Duration::seconds(60);
    s.store.put("uploads/one", pattern(3), None).await.unwrap();
    s.store.put("uploads/two", pattern(5), None).await.unwrap();
    s.store
        .put("uploadsX/other", pattern(1), None)
        .await
        .unwrap();
    s.store
        .put("attachments/kept", pattern(1), None)
        .await
        .unwrap();
    let mut listed = s.store.list("uploads").await.unwrap();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<_> = listed.iter().map(|m| (m.key.as_str(), m.size)).collect();
    assert_eq!(keys, [("uploads/one", 3), ("uploads/two", 5)]);
    let after = chrono::Utc::now() + chrono::Duration::seconds(60);
    assert!(listed
        .iter()
        .all(|m| before < m.last_modified && m.last_modified < after));
}

async fn copy_duplicates_within_the_store(s: Subject) {
    let bytes = pattern(70_000);
    s.store
        .put("uploads/source", bytes.clone(), None)
        .await
        .unwrap();
    s.store
        .put("attachments/x/file", b"old".to_vec(), None)
        .await
        .unwrap();
    s.store
        .copy("uploads/source", "attachments/x/file")
        .await
        .unwrap();
    assert!(s.store.get("attachments/x/file", None).await.unwrap().bytes == bytes);
    // The source stays until deleted; deleting it leaves the copy.
    s.store.delete("uploads/source").await.unwrap();
    assert_eq!(
        s.store
            .head("attachments/x/file")
            .await
            .unwrap()
            .map(|m| m.size),
        Some(70_000)
    );
    assert!(matches!(
        s.store.copy("uploads/none", "attachments/y").await,
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(
        s.store.copy("../escape", "attachments/y").await,
        Err(BlobError::InvalidKey(_))
    ));
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod local_store {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::local()).await;
            })*
        }
        mod s3_store {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::s3().await).await;
            })*
        }
    };
}

contract!(
    round_trip_is_byte_exact,
    content_type_is_kept_where_the_store_keeps_it,
    range_reads,
    head_tells_size_or_none,
    delete_is_idempotent_then_not_found,
    keys_that_could_escape_are_refused,
    presigned_put_then_get_over_plain_http,
    list_by_prefix_for_expiry,
    copy_duplicates_within_the_store,
);

/// An S3 store that cannot be reached answers `Unavailable` within seconds (two quick
/// retries), not after the crate's default minutes of retrying: the chat answers 503.
#[tokio::test]
async fn an_unreachable_s3_fails_fast() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = adapters_blobs::BlobConfig {
        url: Some("s3://gone".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    };
    let store = S3BlobStore::open("gone", &config).unwrap();
    let started = std::time::Instant::now();
    let outcome = store.head("attachments/x").await;
    assert!(
        matches!(outcome, Err(BlobError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
