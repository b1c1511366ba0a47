//! Signed attachment links (issue 14): `url` and `thumbnail_url` work in an `<img src>`
//! without an Authorization header, and no access token is ever put in a URL.
//!
//! A link is the attachment's path plus `?u=<reader>&e=<unix expiry>&s=<HMAC-SHA256 of
//! path, reader and expiry, hex>`. The server checks the signature and the expiry, then that
//! the reader is (still) a member of the attachment's conversation: a link handed to someone
//! else or kept after leaving gets 403. Every node of a deployment derives the same key from
//! the shared JWT secret, so a link made by one node works on all.
//!
//! Frames shared by every member (a live `message`) carry the unsigned paths; each session
//! signs them for its reader as it writes the frame ([`AttachmentLinks::sign_frame`]), so a
//! frame without attachments costs one substring search and nothing else.

use chrono::{DateTime, Utc};
use domain::attachment::Attachment;
use domain::{AttachmentId, UserId};
use hmac::{Hmac, Mac};
use protocol::rest::{AttachmentDto, MessageDto};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Where every attachment path starts.
pub const ATTACHMENTS_PATH: &str = "/api/v1/attachments/";

/// What an unsigned link in a shared frame looks like (JSON text).
const UNSIGNED_MARK: &str = "\"url\":\"/api/v1/attachments/";

/// Which path of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `GET .../{id}/file`.
    File,
    /// `GET .../{id}/thumbnail`.
    Thumbnail,
    /// `PUT .../{id}/content`: the embedded store's upload endpoint.
    Upload,
}

impl LinkKind {
    /// The path segment after the id.
    pub const fn segment(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Thumbnail => "thumbnail",
            Self::Upload => "content",
        }
    }
}

/// The unsigned path of `kind` of attachment `id`.
pub fn path(id: AttachmentId, kind: LinkKind) -> String {
    format!("{ATTACHMENTS_PATH}{id}/{}", kind.segment())
}

/// An attachment as a frame for every member carries it: the links unsigned.
pub fn attachment(a: &Attachment) -> AttachmentDto {
    AttachmentDto {
        id: a.id.as_uuid(),
        filename: a.filename.clone(),
        mime_type: a.mime_type.clone(),
        size: a.size,
        width: a.width,
        height: a.height,
        thumbnail_url: (a.has_thumbnail && !a.encrypted).then(|| path(a.id, LinkKind::Thumbnail)),
        url: Some(path(a.id, LinkKind::File)),
    }
}

/// A signed link, as its query parameters say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    /// `u`: the reader (or uploader) it was made for.
    pub user: UserId,
    /// `e`: when it stops working, Unix seconds.
    pub expires: i64,
    /// `s`: the signature, hex.
    pub signature: String,
}

/// Makes and checks signed links.
#[derive(Clone)]
pub struct AttachmentLinks {
    /// One SHA-256 block: HMAC takes it as it is.
    key: [u8; 64],
    ttl: Duration,
}

impl std::fmt::Debug for AttachmentLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentLinks")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl AttachmentLinks {
    /// Links signed with a key derived from `secret` (the JWT secret: shared by the nodes),
    /// valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let half = |n: u8| {
            let mut hasher = Sha256::new();
            hasher.update(b"chat attachment links v1\0");
            hasher.update([n]);
            hasher.update(secret);
            hasher.finalize()
        };
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&half(0));
        key[32..].copy_from_slice(&half(1));
        Self {
            key,
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// How long a link stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When a link made at `now` expires: `now + ttl`, rounded up to the minute so a page
    /// read twice within a minute gets the same links (the browser caches the images).
    pub fn expiry(&self, now: DateTime<Utc>) -> i64 {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let at = now.timestamp().saturating_add(ttl);
        at.saturating_add(59) / 60 * 60
    }

    fn mac(&self, path: &str, user: UserId, expires: i64) -> HmacSha256 {
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&self.key.into());
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(user.as_uuid().as_bytes());
        mac.update(b"\n");
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// `path` signed for `user`, valid until [`Self::expiry`] of `now`.
    pub fn sign(&self, path: &str, user: UserId, now: DateTime<Utc>) -> String {
        let expires = self.expiry(now);
        let signature = hex::encode(self.mac(path, user, expires).finalize().into_bytes());
        format!("{path}?u={}&e={expires}&s={signature}", user.as_uuid())
    }

    /// Whether `query` is a valid, unexpired signature of `path` at `now`.
    pub fn verify(&self, path: &str, query: &SignedQuery, now: DateTime<Utc>) -> bool {
        if query.expires < now.timestamp() {
            return false;
        }
        let Ok(signature) = hex::decode(&query.signature) else {
            return false;
        };
        self.mac(path, query.user, query.expires)
            .verify_slice(&signature)
            .is_ok()
    }

    /// Signs the links of `dto` (unsigned paths) for `reader`.
    pub fn sign_attachment(&self, dto: &mut AttachmentDto, reader: UserId, now: DateTime<Utc>) {
        for link in [&mut dto.url, &mut dto.thumbnail_url].into_iter().flatten() {
            if is_unsigned(link) {
                *link = self.sign(link, reader, now);
            }
        }
    }

    /// Signs every attachment link of `message` for `reader`.
    pub fn sign_message(&self, message: &mut MessageDto, reader: UserId, now: DateTime<Utc>) {
        for a in &mut message.attachments {
            self.sign_attachment(a, reader, now);
        }
    }

    /// `frame` (JSON text) with its unsigned attachment links signed for `reader`; `None`
    /// when it has none (almost every frame: one substring search).
    pub fn sign_frame(&self, frame: &str, reader: UserId, now: DateTime<Utc>) -> Option<String> {
        if !may_need_signing(frame) {
            return None;
        }
        let mut value: serde_json::Value = serde_json::from_str(frame).ok()?;
        if !self.sign_value(&mut value, reader, now) {
            return None;
        }
        serde_json::to_string(&value).ok()
    }

    /// Signs the unsigned links inside `value`; whether there was any.
    fn sign_value(
        &self,
        value: &mut serde_json::Value,
        reader: UserId,
        now: DateTime<Utc>,
    ) -> bool {
        let mut signed = false;
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    match (key.as_str(), inner) {
                        ("url" | "thumbnail_url", serde_json::Value::String(link))
                            if is_unsigned(link) =>
                        {
                            *link = self.sign(link, reader, now);
                            signed = true;
                        }
                        (_, inner) => signed |= self.sign_value(inner, reader, now),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    signed |= self.sign_value(item, reader, now);
                }
            }
            _ => {}
        }
        signed
    }
}

/// Whether `frame` (JSON text) may carry an unsigned attachment link: one substring
/// search, what a writer asks before it reads the clock for [`AttachmentLinks::sign_frame`].
pub fn may_need_signing(frame: &str) -> bool {
    frame.contains(UNSIGNED_MARK)
}

/// An attachment path with no query yet.
fn is_unsigned(link: &str) -> bool {
    link.starts_with(ATTACHMENTS_PATH) && !link.contains('?')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
    }

    fn query(link: &str) -> (String, SignedQuery) {
        let (path, q) = link.split_once('?').unwrap();
        let mut user = None;
        let mut expires = 0;
        let mut signature = String::new();
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                "u" => user = Some(UserId::from_uuid(v.parse().unwrap())),
                "e" => expires = v.parse().unwrap(),
                "s" => signature = v.to_owned(),
                _ => {}
            }
        }
        (
            path.to_owned(),
            SignedQuery {
                user: user.unwrap(),
                expires,
                signature,
            },
        )
    }

    #[test]
    fn a_link_verifies_for_its_reader_and_path_until_it_expires() {
        let links = AttachmentLinks::new(b"secret", Duration::from_secs(600));
        let reader = UserId::new();
        let p = path(AttachmentId::new(), LinkKind::File);
        let (signed_path, q) = query(&links.sign(&p, reader, now()));
        assert_eq!(signed_path, p);
        assert!(links.verify(&p, &q, now()));
        assert!(links.verify(&p, &q, now() + chrono::Duration::seconds(600)));
        assert!(!links.verify(&p, &q, now() + chrono::Duration::seconds(700)));
        // Another reader, another path, another key: refused.
        let other = SignedQuery {
            user: UserId::new(),
            ..q.clone()
        };
        assert!(!links.verify(&p, &other, now()));
        let thumb = p.replace("/file", "/thumbnail");
        assert!(!links.verify(&thumb, &q, now()));
        let elsewhere = AttachmentLinks::new(b"other", Duration::from_secs(600));
        assert!(!elsewhere.verify(&p, &q, now()));
        let tampered = SignedQuery {
            expires: q.expires + 60,
            ..q
        };
        assert!(!links.verify(&p, &tampered, now()));
    }

    #[test]
    fn a_shared_frame_is_signed_for_each_reader_and_one_without_links_is_left_alone() {
        let links = AttachmentLinks::new(b"secret", Duration::from_secs(600));
        let id = AttachmentId::new();
        let frame = format!(
            r#"{{"type":"message","message":{{"id":"x","attachments":[{{"id":"{id}","url":"{}","thumbnail_url":"{}"}}]}}}}"#,
            path(id, LinkKind::File),
            path(id, LinkKind::Thumbnail)
        );
        let (a, b) = (UserId::new(), UserId::new());
        let for_a = links.sign_frame(&frame, a, now()).unwrap();
        let for_b = links.sign_frame(&frame, b, now()).unwrap();
        assert_ne!(for_a, for_b);
        let v: serde_json::Value = serde_json::from_str(&for_a).unwrap();
        let url = v["message"]["attachments"][0]["url"].as_str().unwrap();
        let (p, q) = query(url);
        assert_eq!(q.user, a);
        assert!(links.verify(&p, &q, now()));
        assert!(v["message"]["attachments"][0]["thumbnail_url"]
            .as_str()
            .unwrap()
            .contains("&s="));
        assert!(links
            .sign_frame(
                r#"{"type":"typing","content":"/api/v1/attachments/"}"#,
                a,
                now()
            )
            .is_none());
        // Already signed: unchanged.
        assert!(links.sign_frame(&for_a, b, now()).is_none());
    }
}
