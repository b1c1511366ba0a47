//! Attachments (issue 14): announce an upload, take its bytes, confirm them, hand them to a
//! send, serve them to members, and delete what no message shows.
//!
//! The bytes go to [`Attachment::upload_key`] first (a presigned PUT of the object store in
//! scale-out mode, the server's own endpoint in embedded mode). Confirming copies them to
//! [`Attachment::file_key`], which only the server writes, and checks that copy (size, then
//! magic numbers against the declared type; images: pixel count before decoding), keeps it
//! (an image with its metadata stripped, plus [`Attachment::thumbnail_key`]) and deletes
//! the upload, so a PUT to a still-valid upload URL, during confirmation or after, can
//! change nothing anyone sees. In an end-to-end
//! encrypted conversation the bytes are ciphertext: only the size is checked.

use super::lookups::require_member;
use super::ChatError;
use crate::attachment::{
    self, Attachment, AttachmentConfirmation, AttachmentLimits, AttachmentRefusal, MediaType,
    NewAttachment, SNIFF_PREFIX_LEN,
};
use crate::blob::{BlobData, BlobError, ByteRange};
use crate::ids::{AttachmentId, ConversationId, UserId};
use crate::ports::{AttachmentStore, BlobStore, Clock, ConversationStore, EncryptionStore};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// What the attachment service is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSettings {
    /// Size, type and pixel limits.
    pub limits: AttachmentLimits,
    /// How long an upload URL (and a download URL) stays valid.
    pub url_ttl: Duration,
    /// How long after `upload-url` an attachment never sent is deleted.
    pub expire_after: Duration,
    /// The long side of a thumbnail, in pixels.
    pub thumbnail_px: u32,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            limits: AttachmentLimits::default(),
            url_ttl: Duration::from_secs(15 * 60),
            expire_after: Duration::from_secs(24 * 3600),
            thumbnail_px: 320,
        }
    }
}

/// An image as confirmation keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedImage {
    /// The image with its metadata (EXIF, location) stripped: what others download.
    pub file: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The thumbnail's bytes.
    pub thumbnail: Vec<u8>,
    /// The thumbnail's MIME type.
    pub thumbnail_mime: String,
}

/// Image work: CPU-bound, so an implementation runs it off the async workers.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ImageProcessor: Send + Sync + 'static {
    /// Refuses an image over `max_pixels` from its header alone (before decoding), then
    /// strips its metadata and makes a thumbnail `thumbnail_px` on its long side.
    async fn process(
        &self,
        bytes: Vec<u8>,
        max_pixels: u64,
        thumbnail_px: u32,
    ) -> Result<ProcessedImage, AttachmentRefusal>;
}

/// Which bytes of an attachment a download wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The file.
    File,
    /// An image's thumbnail.
    Thumbnail,
}

impl Variant {
    /// The blob key of this variant of attachment `id`.
    fn key(self, id: AttachmentId) -> String {
        match self {
            Variant::File => Attachment::file_key(id),
            Variant::Thumbnail => Attachment::thumbnail_key(id),
        }
    }
}

/// A failed read of a download, as its answer: the file gone (404), a range past its end
/// (416), or the store down (503).
fn download_error(e: BlobError) -> ChatError {
    match e {
        BlobError::NotFound(_) => ChatError::NotFound("attachment not found"),
        BlobError::RangeNotSatisfiable { size } => ChatError::RangeNotSatisfiable(size),
        other => ChatError::BlobsUnavailable(other.to_string()),
    }
}

/// What `upload-url` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTicket {
    /// The announced attachment.
    pub attachment: Attachment,
    /// The object store's presigned PUT URL; `None`: the server's own endpoint takes it.
    pub presigned_url: Option<String>,
}

/// A download: the attachment and the bytes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub attachment: Attachment,
    pub data: BlobData,
    /// The MIME type to serve.
    pub content_type: String,
}

/// The attachments service.
#[derive(Clone)]
pub struct AttachmentService {
    store: Arc<dyn AttachmentStore>,
    blobs: Arc<dyn BlobStore>,
    conversations: Arc<dyn ConversationStore>,
    encryption: Arc<dyn EncryptionStore>,
    images: Arc<dyn ImageProcessor>,
    clock: Arc<dyn Clock>,
    settings: AttachmentSettings,
}

fn blob_error(e: BlobError) -> ChatError {
    match e {
        BlobError::NotFound(_) => ChatError::UploadMissing,
        other => ChatError::BlobsUnavailable(other.to_string()),
    }
}

impl AttachmentService {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn AttachmentStore>,
        blobs: Arc<dyn BlobStore>,
        conversations: Arc<dyn ConversationStore>,
        encryption: Arc<dyn EncryptionStore>,
        images: Arc<dyn ImageProcessor>,
        clock: Arc<dyn Clock>,
        settings: AttachmentSettings,
    ) -> Self {
        Self {
            store,
            blobs,
            conversations,
            encryption,
            images,
            clock,
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &AttachmentSettings {
        &self.settings
    }

    /// `upload-url`: a member announces a file of `size` bytes. Refused before anything is
    /// stored: too large (413); malformed MIME type or filename, empty (422); a type not
    /// allowed (415) unless the conversation is end-to-end encrypted (the server will only
    /// ever see ciphertext).
    pub async fn announce(
        &self,
        user: UserId,
        conversation: ConversationId,
        filename: &str,
        mime_type: &str,
        size: u64,
    ) -> Result<UploadTicket, ChatError> {
        require_member(&*self.conversations, conversation, user).await?;
        let encrypted = self
            .encryption
            .encryption_state(conversation)
            .await?
            .is_some();
        let limits = &self.settings.limits;
        if size == 0 {
            return Err(AttachmentRefusal::Empty.into());
        }
        if size > limits.max_bytes {
            return Err(AttachmentRefusal::TooLarge {
                size,
                max: limits.max_bytes,
            }
            .into());
        }
        let essence =
            attachment::mime_essence(mime_type).ok_or(AttachmentRefusal::MalformedMimeType)?;
        let filename = attachment::sanitize_filename(filename)?;
        if !encrypted {
            MediaType::from_mime(&essence)
                .filter(|t| limits.allows(*t))
                .ok_or_else(|| AttachmentRefusal::TypeNotAllowed(essence.clone()))?;
        }
        let new = NewAttachment {
            id: AttachmentId::new(),
            conversation_id: conversation,
            uploader_id: user,
            filename,
            mime_type: essence,
            size,
            encrypted,
            created_at: self.clock.now(),
        };
        let attachment = self.store.insert_attachment(&new).await?;
        let presigned_url = self
            .blobs
            .presign_put(
                &Attachment::upload_key(attachment.id),
                self.settings.url_ttl,
            )
            .await
            .map_err(blob_error)?;
        Ok(UploadTicket {
            attachment,
            presigned_url,
        })
    }

    /// The uploader's own attachment, not yet confirmed: what an upload may write to.
    async fn pending_of(&self, user: UserId, id: AttachmentId) -> Result<Attachment, ChatError> {
        let found = self
            .store
            .attachment(id)
            .await?
            .filter(|a| a.uploader_id == user)
            .ok_or(ChatError::NotFound("attachment not found"))?;
        if found.confirmed_at.is_some() {
            return Err(ChatError::AttachmentUnavailable(
                "the attachment is confirmed already: its bytes cannot change",
            ));
        }
        Ok(found)
    }

    /// The embedded store's upload endpoint: `bytes` as the uploader PUT them. More bytes
    /// than announced are refused (413 past the limit, else 422), and nothing is stored.
    pub async fn receive_upload(
        &self,
        user: UserId,
        id: AttachmentId,
        bytes: Vec<u8>,
    ) -> Result<(), ChatError> {
        let pending = self.pending_of(user, id).await?;
        let size = bytes.len() as u64;
        let max = self.settings.limits.max_bytes;
        if size > max {
            return Err(AttachmentRefusal::TooLarge { size, max }.into());
        }
        if size != pending.size {
            return Err(ChatError::Invalid(crate::user::InvalidField::new(
                "size",
                format!("{size} bytes were sent; {} were announced", pending.size),
            )));
        }
        self.blobs
            .put(&Attachment::upload_key(id), bytes, None)
            .await
            .map_err(blob_error)
    }

    /// `confirm`: checks the uploaded bytes and makes the attachment sendable. Refusals:
    /// nothing uploaded (422 `upload_missing`), too large (413), not the announced size
    /// (422), bytes not of the declared type (415), an image with too many pixels or
    /// unreadable (422). A refused upload is deleted (the attachment stays unconfirmed: a
    /// new PUT and confirm may follow). Confirming twice answers the attachment again.
    pub async fn confirm(&self, user: UserId, id: AttachmentId) -> Result<Attachment, ChatError> {
        let found = self
            .store
            .attachment(id)
            .await?
            .filter(|a| a.uploader_id == user)
            .ok_or(ChatError::NotFound("attachment not found"))?;
        if found.confirmed_at.is_some() {
            return Ok(found);
        }
        require_member(&*self.conversations, found.conversation_id, user).await?;
        let upload = Attachment::upload_key(id);
        let meta = self
            .blobs
            .head(&upload)
            .await
            .map_err(blob_error)?
            .ok_or(ChatError::UploadMissing)?;
        match self.check_and_store(&found, meta.size).await {
            Ok(confirmation) => {
                self.blobs.delete(&upload).await.map_err(blob_error)?;
                match self.store.confirm_attachment(id, &confirmation).await? {
                    Some(confirmed) => Ok(confirmed),
                    // Confirmed meanwhile by a concurrent call: that one's answer stands.
                    None => self
                        .store
                        .attachment(id)
                        .await?
                        .ok_or(ChatError::NotFound("attachment not found")),
                }
            }
            Err(e) => {
                if matches!(e, ChatError::AttachmentRefused(_) | ChatError::Invalid(_)) {
                    // What was refused must not linger, nor be confirmed by a retry; nor
                    // its copy, which no one may download.
                    self.blobs.delete(&upload).await.map_err(blob_error)?;
                    self.blobs
                        .delete(&Attachment::file_key(id))
                        .await
                        .map_err(blob_error)?;
                }
                Err(e)
            }
        }
    }

    /// Refuses `size` bytes stored for `found`: over the limit (413), none (422), not the
    /// announced size (422).
    fn check_size(&self, found: &Attachment, size: u64) -> Result<(), ChatError> {
        let max = self.settings.limits.max_bytes;
        if size > max {
            return Err(AttachmentRefusal::TooLarge { size, max }.into());
        }
        if size == 0 {
            return Err(AttachmentRefusal::Empty.into());
        }
        if size != found.size {
            return Err(ChatError::Invalid(crate::user::InvalidField::new(
                "size",
                format!("{size} bytes were uploaded; {} were announced", found.size),
            )));
        }
        Ok(())
    }

    /// Checks the upload of `found` (`size` bytes stored) and writes the file (and an
    /// image's thumbnail) under their final keys.
    ///
    /// The upload URL stays valid while this runs: a PUT may replace the upload between
    /// any two reads of it. So the upload is copied to [`Attachment::file_key`] (which only
    /// the server writes) first, and what is checked, and kept, is that copy.
    async fn check_and_store(
        &self,
        found: &Attachment,
        size: u64,
    ) -> Result<AttachmentConfirmation, ChatError> {
        let limits = &self.settings.limits;
        // Refused from the upload's size alone, before anything is copied.
        self.check_size(found, size)?;
        let upload = Attachment::upload_key(found.id);
        let file_key = Attachment::file_key(found.id);
        self.blobs
            .copy(&upload, &file_key)
            .await
            .map_err(blob_error)?;
        let size = self
            .blobs
            .head(&file_key)
            .await
            .map_err(blob_error)?
            .ok_or(ChatError::UploadMissing)?
            .size;
        self.check_size(found, size)?;
        let now = self.clock.now();
        if found.encrypted {
            return Ok(AttachmentConfirmation {
                mime_type: found.mime_type.clone(),
                size,
                width: None,
                height: None,
                has_thumbnail: false,
                confirmed_at: now,
            });
        }
        // An image declared is read whole once (the processor needs every byte); anything
        // else only as far as sniffing looks.
        let declared_image =
            MediaType::from_mime(&found.mime_type).is_some_and(MediaType::is_image);
        let range = (!declared_image).then_some(ByteRange::Bounded {
            start: 0,
            end: SNIFF_PREFIX_LEN as u64,
        });
        let read = self.blobs.get(&file_key, range).await.map_err(blob_error)?;
        if declared_image {
            self.check_size(found, read.bytes.len() as u64)?;
        }
        let prefix = &read.bytes[..read.bytes.len().min(SNIFF_PREFIX_LEN)];
        let verified = attachment::verify(&found.mime_type, &found.filename, prefix, size, limits)?;
        let mime = verified.media_type.mime().to_owned();
        if !verified.media_type.is_image() {
            return Ok(AttachmentConfirmation {
                mime_type: mime,
                size,
                width: None,
                height: None,
                has_thumbnail: false,
                confirmed_at: now,
            });
        }
        let image = self
            .images
            .process(
                read.bytes,
                limits.max_image_pixels,
                self.settings.thumbnail_px,
            )
            .await?;
        let stored_size = image.file.len() as u64;
        self.blobs
            .put(
                &Attachment::thumbnail_key(found.id),
                image.thumbnail,
                Some(image.thumbnail_mime),
            )
            .await
            .map_err(blob_error)?;
        self.blobs
            .put(&file_key, image.file, Some(mime.clone()))
            .await
            .map_err(blob_error)?;
        Ok(AttachmentConfirmation {
            mime_type: mime,
            size: stored_size,
            width: Some(image.width),
            height: Some(image.height),
            has_thumbnail: true,
            confirmed_at: now,
        })
    }

    /// The attachment as `user` may see it: a member of its conversation, and it is sent
    /// (with a message not deleted) or `user` uploaded it. Anything else is 403 for a
    /// non-member, 404 otherwise.
    pub async fn visible(&self, user: UserId, id: AttachmentId) -> Result<Attachment, ChatError> {
        let found = self
            .store
            .attachment(id)
            .await?
            .ok_or(ChatError::NotFound("attachment not found"))?;
        require_member(&*self.conversations, found.conversation_id, user).await?;
        if found.confirmed_at.is_none() || (found.message_id.is_none() && found.uploader_id != user)
        {
            return Err(ChatError::NotFound("attachment not found"));
        }
        Ok(found)
    }

    /// The bytes of `id` for `user` (see [`Self::visible`]), all or `range` of them.
    pub async fn download(
        &self,
        user: UserId,
        id: AttachmentId,
        variant: Variant,
        range: Option<ByteRange>,
    ) -> Result<Download, ChatError> {
        let attachment = self.visible(user, id).await?;
        let content_type = match variant {
            Variant::File if attachment.encrypted => "application/octet-stream".to_owned(),
            Variant::File => attachment.mime_type.clone(),
            Variant::Thumbnail if attachment.has_thumbnail => String::new(),
            Variant::Thumbnail => return Err(ChatError::NotFound("no thumbnail")),
        };
        let data = self
            .blobs
            .get(&variant.key(id), range)
            .await
            .map_err(download_error)?;
        let content_type = if content_type.is_empty() {
            thumbnail_type(&attachment, &data)
        } else {
            content_type
        };
        Ok(Download {
            attachment,
            data,
            content_type,
        })
    }

    /// More bytes of a download already allowed by [`Self::download`] (the same attachment
    /// and variant): `range` of them, for a caller that streams a large file in bounded
    /// pieces instead of holding it whole. No membership read: the caller checked it for
    /// this response.
    pub async fn read_more(
        &self,
        allowed: &Download,
        variant: Variant,
        range: ByteRange,
    ) -> Result<BlobData, ChatError> {
        self.blobs
            .get(&variant.key(allowed.attachment.id), Some(range))
            .await
            .map_err(download_error)
    }

    /// Deletes the blobs and records of `attachments` (of a deleted message, or expired).
    /// Blobs first: a record without its blobs is never left showing anything; a failure
    /// leaves the record for the next sweep.
    pub async fn delete(&self, attachments: &[Attachment]) -> Result<u64, ChatError> {
        if attachments.is_empty() {
            return Ok(0);
        }
        for a in attachments {
            for key in [
                Attachment::upload_key(a.id),
                Attachment::file_key(a.id),
                Attachment::thumbnail_key(a.id),
            ] {
                self.blobs.delete(&key).await.map_err(blob_error)?;
            }
        }
        let ids: Vec<AttachmentId> = attachments.iter().map(|a| a.id).collect();
        Ok(self.store.delete_attachments(&ids).await?)
    }

    /// One sweep: deletes up to `batch` attachments never sent within
    /// [`AttachmentSettings::expire_after`], and those of deleted messages. How many went.
    pub async fn sweep(&self, batch: u32) -> Result<u64, ChatError> {
        let expire_after =
            chrono::Duration::from_std(self.settings.expire_after).unwrap_or(chrono::Duration::MAX);
        let cutoff = self
            .clock
            .now()
            .checked_sub_signed(expire_after)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let expired = self.store.expired_attachments(cutoff, batch).await?;
        self.delete(&expired).await
    }
}

/// A thumbnail's MIME type: as put, where the store keeps it; else what its bytes say (a
/// local store keeps none, and a PNG's thumbnail is a PNG); else, for a range that does
/// not start at the beginning, a JPEG's is a JPEG and any other's a PNG.
fn thumbnail_type(attachment: &Attachment, data: &BlobData) -> String {
    if let Some(known) = &data.content_type {
        return known.clone();
    }
    let sniffed = (data.offset == 0)
        .then(|| attachment::sniff(&data.bytes))
        .flatten()
        .filter(|t| t.is_image());
    let fallback = if MediaType::from_mime(&attachment.mime_type) == Some(MediaType::Jpeg) {
        MediaType::Jpeg
    } else {
        MediaType::Png
    };
    sniffed.unwrap_or(fallback).mime().to_owned()
}

/// The attachments of a send, checked: at most `max`, no repeats, each a confirmed upload
/// of `sender` to `conversation`, in the order given. One already sent is refused (409)
/// unless the send may be a retry (`replayable`: it has a `temp_id`); storage then tells a
/// replay from a second use. One `attachments_by_ids` read; none when `ids` is empty.
pub(super) async fn for_send(
    store: &dyn AttachmentStore,
    sender: UserId,
    conversation: ConversationId,
    ids: &[AttachmentId],
    max: usize,
    replayable: bool,
) -> Result<Vec<Attachment>, ChatError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if ids.len() > max {
        return Err(ChatError::Invalid(crate::user::InvalidField::new(
            "attachment_ids",
            format!("at most {max} attachments per message"),
        )));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(ChatError::Invalid(crate::user::InvalidField::new(
                "attachment_ids",
                "an attachment is listed twice",
            )));
        }
    }
    let found = store.attachments_by_ids(ids).await?;
    let mut ordered = Vec::with_capacity(ids.len());
    for id in ids {
        let a = found
            .iter()
            .find(|a| a.id == *id)
            .filter(|a| a.uploader_id == sender && a.conversation_id == conversation)
            .ok_or(ChatError::AttachmentUnavailable(
                "no such attachment of yours in this conversation",
            ))?;
        if a.confirmed_at.is_none() {
            return Err(ChatError::AttachmentUnavailable(
                "the attachment is not confirmed: upload and confirm it first",
            ));
        }
        if a.message_id.is_some() && !replayable {
            return Err(ChatError::AttachmentAlreadySent);
        }
        ordered.push(a.clone());
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobMeta;
    use crate::conversation::{Participant, Role};
    use crate::ids::MessageId;
    use crate::ports::MockEncryptionStore;
    use crate::ports::{MockAttachmentStore, MockBlobStore, MockClock, MockConversationStore};
    use chrono::{DateTime, TimeZone, Utc};
    use mockall::predicate::eq;
    use std::sync::Mutex;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x02\0\0\0\x02";
    const EXE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj";

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn t1() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0).unwrap()
    }

    fn pending(
        conversation: ConversationId,
        uploader: UserId,
        mime: &str,
        size: u64,
    ) -> Attachment {
        Attachment {
            id: AttachmentId::new(),
            conversation_id: conversation,
            uploader_id: uploader,
            filename: "f.bin".into(),
            mime_type: mime.into(),
            size,
            encrypted: false,
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: t0(),
            confirmed_at: None,
            message_id: None,
        }
    }

    fn confirmed(conversation: ConversationId, uploader: UserId, mime: &str) -> Attachment {
        Attachment {
            confirmed_at: Some(t0()),
            ..pending(conversation, uploader, mime, 10)
        }
    }

    fn sent(conversation: ConversationId, uploader: UserId, mime: &str) -> Attachment {
        Attachment {
            message_id: Some(MessageId::new()),
            ..confirmed(conversation, uploader, mime)
        }
    }

    fn data(bytes: &[u8]) -> BlobData {
        BlobData {
            bytes: bytes.to_vec(),
            offset: 0,
            total_size: bytes.len() as u64,
            content_type: None,
        }
    }

    fn meta(key: &str, size: usize) -> BlobMeta {
        BlobMeta {
            key: key.into(),
            size: size as u64,
            last_modified: t0(),
        }
    }

    fn down() -> BlobError {
        BlobError::unavailable(std::io::Error::other("down"))
    }

    fn refusal(e: ChatError) -> AttachmentRefusal {
        match e {
            ChatError::AttachmentRefused(r) => r,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    struct Ports {
        store: MockAttachmentStore,
        blobs: MockBlobStore,
        images: MockImageProcessor,
        encryption: Option<MockEncryptionStore>,
        members: Vec<(ConversationId, UserId)>,
        encrypted: bool,
        settings: AttachmentSettings,
    }

    impl Ports {
        fn new() -> Self {
            Self {
                store: MockAttachmentStore::new(),
                blobs: MockBlobStore::new(),
                images: MockImageProcessor::new(),
                encryption: None,
                members: Vec::new(),
                encrypted: false,
                settings: AttachmentSettings {
                    limits: AttachmentLimits {
                        max_bytes: 1_000,
                        ..AttachmentLimits::default()
                    },
                    ..AttachmentSettings::default()
                },
            }
        }

        fn member(mut self, conversation: ConversationId, user: UserId) -> Self {
            self.members.push((conversation, user));
            self
        }

        fn encrypted(mut self) -> Self {
            self.encrypted = true;
            self
        }

        /// `attachment` is what the store answers for its id.
        fn stored(mut self, attachment: &Attachment) -> Self {
            let a = attachment.clone();
            self.store
                .expect_attachment()
                .with(eq(a.id))
                .returning(move |_| Ok(Some(a.clone())));
            self
        }

        fn service(self) -> AttachmentService {
            let members = self.members;
            let mut conversations = MockConversationStore::new();
            conversations.expect_participant().returning(move |c, u| {
                Ok(members.contains(&(c, u)).then_some(Participant {
                    conversation_id: c,
                    user_id: u,
                    role: Role::Member,
                    joined_at: t0(),
                    delivered_seq: 0,
                    read_seq: 0,
                }))
            });
            let mut clock = MockClock::new();
            clock.expect_now().returning(t1);
            let encryption = self.encryption.unwrap_or_else(|| {
                crate::services::test_support::encryption_where(self.encrypted, t0())
            });
            AttachmentService::new(
                Arc::new(self.store),
                Arc::new(self.blobs),
                Arc::new(conversations),
                Arc::new(encryption),
                Arc::new(self.images),
                Arc::new(clock),
                self.settings,
            )
        }
    }

    // ---- announce ----

    #[tokio::test]
    async fn announce_refuses_a_non_member_and_reads_and_inserts_nothing() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member(c, UserId::new());
        let mut encryption = MockEncryptionStore::new();
        encryption.expect_encryption_state().never();
        ports.encryption = Some(encryption);
        ports.store.expect_insert_attachment().never();
        ports.blobs.expect_presign_put().never();
        let err = ports
            .service()
            .announce(me, c, "a.png", "image/png", 10)
            .await;
        assert!(matches!(err, Err(ChatError::NotParticipant)), "{err:?}");
    }

    #[tokio::test]
    async fn announce_refuses_empty_oversize_malformed_and_misnamed_files_before_storing() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let cases: [(&str, &str, u64, AttachmentRefusal, u16); 6] = [
            ("a.png", "image/png", 0, AttachmentRefusal::Empty, 422),
            (
                "a.png",
                "image/png",
                1_001,
                AttachmentRefusal::TooLarge {
                    size: 1_001,
                    max: 1_000,
                },
                413,
            ),
            (
                "a.png",
                "image",
                10,
                AttachmentRefusal::MalformedMimeType,
                422,
            ),
            (
                "a.png",
                "image/p ng",
                10,
                AttachmentRefusal::MalformedMimeType,
                422,
            ),
            (
                "..",
                "image/png",
                10,
                AttachmentRefusal::MalformedFilename,
                422,
            ),
            (
                "dir/\u{202E}",
                "image/png",
                10,
                AttachmentRefusal::MalformedFilename,
                422,
            ),
        ];
        for (name, mime, size, want, status) in cases {
            let mut ports = Ports::new().member(c, me);
            ports.store.expect_insert_attachment().never();
            ports.blobs.expect_presign_put().never();
            let err = ports.service().announce(me, c, name, mime, size).await;
            let got = refusal(err.err().unwrap());
            assert_eq!(got, want, "{name:?} {mime:?} {size}");
            assert_eq!(got.status(), status);
        }
    }

    #[tokio::test]
    async fn announce_refuses_a_type_not_allowed_with_415() {
        let (me, c) = (UserId::new(), ConversationId::new());
        for mime in ["application/x-msdownload", "video/mp4"] {
            let mut ports = Ports::new().member(c, me);
            // MP4 is of the list, but this server takes images only.
            ports.settings.limits.allowed_mime_types = vec!["image/png".into()];
            ports.store.expect_insert_attachment().never();
            let err = ports.service().announce(me, c, "x.bin", mime, 10).await;
            let got = refusal(err.err().unwrap());
            assert_eq!(got, AttachmentRefusal::TypeNotAllowed(mime.into()));
            assert_eq!(got.status(), 415);
        }
    }

    #[tokio::test]
    async fn announce_in_an_encrypted_conversation_takes_any_type_and_records_it_encrypted() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member(c, me).encrypted();
        ports
            .store
            .expect_insert_attachment()
            .withf(|n| n.encrypted && n.mime_type == "application/x-msdownload")
            .times(1)
            .returning(|n| Ok(n.stored()));
        ports.blobs.expect_presign_put().returning(|_, _| Ok(None));
        let ticket = ports
            .service()
            .announce(me, c, "tool.exe", "application/x-msdownload", 10)
            .await
            .unwrap();
        assert!(ticket.attachment.encrypted);
        assert_eq!(ticket.presigned_url, None);
    }

    #[tokio::test]
    async fn announce_stores_the_sanitised_name_and_mime_essence_and_answers_the_presigned_url() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new().member(c, me);
        ports
            .store
            .expect_insert_attachment()
            .withf(move |n| {
                n.filename == "cat.png"
                    && n.mime_type == "image/png"
                    && n.size == 10
                    && !n.encrypted
                    && n.conversation_id == c
                    && n.uploader_id == me
                    && n.created_at == t1()
            })
            .times(1)
            .returning(|n| Ok(n.stored()));
        let presigned = Arc::new(Mutex::new(None::<String>));
        let seen = presigned.clone();
        ports
            .blobs
            .expect_presign_put()
            .withf(|_, ttl| *ttl == Duration::from_secs(15 * 60))
            .times(1)
            .returning(move |key, _| {
                *seen.lock().unwrap() = Some(key.to_owned());
                Ok(Some(format!("https://s3.example/{key}?sig")))
            });
        let ticket = ports
            .service()
            .announce(me, c, "C:\\fakepath\\cat.png", "IMAGE/PNG; charset=x", 10)
            .await
            .unwrap();
        let key = Attachment::upload_key(ticket.attachment.id);
        assert_eq!(presigned.lock().unwrap().as_deref(), Some(key.as_str()));
        assert_eq!(
            ticket.presigned_url,
            Some(format!("https://s3.example/{key}?sig"))
        );
        assert_eq!(ticket.attachment.filename, "cat.png");
    }

    // ---- receive_upload ----

    #[tokio::test]
    async fn an_upload_by_anyone_but_the_uploader_is_not_found() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, UserId::new(), "image/png", 3);
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.blobs.expect_put().never();
        let err = ports
            .service()
            .receive_upload(me, a.id, vec![1, 2, 3])
            .await;
        assert!(matches!(err, Err(ChatError::NotFound(_))), "{err:?}");
    }

    #[tokio::test]
    async fn an_upload_to_a_confirmed_attachment_is_refused() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = confirmed(c, me, "image/png");
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.blobs.expect_put().never();
        let err = ports.service().receive_upload(me, a.id, vec![0; 10]).await;
        assert!(
            matches!(err, Err(ChatError::AttachmentUnavailable(_))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_upload_of_other_than_the_announced_size_or_past_the_limit_puts_nothing() {
        let (me, c) = (UserId::new(), ConversationId::new());
        for (announced, sent) in [(10, 11), (10, 9), (1_000, 1_001)] {
            let a = pending(c, me, "application/pdf", announced);
            let mut ports = Ports::new().member(c, me).stored(&a);
            ports.blobs.expect_put().never();
            let err = ports
                .service()
                .receive_upload(me, a.id, vec![0; sent])
                .await
                .err()
                .unwrap();
            if sent > 1_000 {
                assert_eq!(refusal(err).status(), 413);
            } else {
                assert!(
                    matches!(&err, ChatError::Invalid(f) if f.field == "size"),
                    "{err:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_upload_of_the_announced_size_is_put_at_the_upload_key() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "application/pdf", PDF.len() as u64);
        let mut ports = Ports::new().member(c, me).stored(&a);
        let key = Attachment::upload_key(a.id);
        ports
            .blobs
            .expect_put()
            .withf(move |k, bytes, _| k == key && bytes == PDF)
            .times(1)
            .returning(|_, _, _| Ok(()));
        ports
            .service()
            .receive_upload(me, a.id, PDF.to_vec())
            .await
            .unwrap();
    }

    // ---- confirm ----

    /// `ports` with the upload of `a` of `size` bytes, copied to its file key, where a read
    /// finds `bytes`; the deletions it makes are recorded in the answer.
    fn uploaded(
        mut ports: Ports,
        a: &Attachment,
        size: usize,
        bytes: &'static [u8],
    ) -> (Ports, Arc<Mutex<Vec<String>>>) {
        let (upload, file) = (Attachment::upload_key(a.id), Attachment::file_key(a.id));
        let up = upload.clone();
        ports
            .blobs
            .expect_head()
            .withf(move |k| k == up)
            .returning(move |k| Ok(Some(meta(k, size))));
        let f = file.clone();
        ports
            .blobs
            .expect_head()
            .withf(move |k| k == f)
            .returning(move |k| Ok(Some(meta(k, size))));
        let (up, f) = (upload.clone(), file.clone());
        ports
            .blobs
            .expect_copy()
            .withf(move |from, to| from == up && to == f)
            .returning(|_, _| Ok(()));
        // What is checked is the copy: never the upload a PUT may still replace.
        let f = file.clone();
        ports
            .blobs
            .expect_get()
            .withf(move |k, _| k == f)
            .returning(move |_, range| {
                let end = match range {
                    Some(ByteRange::Bounded { end, .. }) => {
                        usize::try_from(end).unwrap().min(bytes.len())
                    }
                    _ => bytes.len(),
                };
                Ok(data(&bytes[..end]))
            });
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let d = deleted.clone();
        ports.blobs.expect_delete().returning(move |k| {
            d.lock().unwrap().push(k.to_owned());
            Ok(())
        });
        (ports, deleted)
    }

    #[tokio::test]
    async fn confirming_with_nothing_uploaded_is_upload_missing() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "application/pdf", 10);
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.blobs.expect_head().returning(|_| Ok(None));
        ports.blobs.expect_copy().never();
        ports.store.expect_confirm_attachment().never();
        let err = ports.service().confirm(me, a.id).await;
        assert!(matches!(err, Err(ChatError::UploadMissing)), "{err:?}");
    }

    #[tokio::test]
    async fn confirming_someone_elses_attachment_is_not_found() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, UserId::new(), "application/pdf", 10);
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.blobs.expect_head().never();
        ports.store.expect_confirm_attachment().never();
        let err = ports.service().confirm(me, a.id).await;
        assert!(matches!(err, Err(ChatError::NotFound(_))), "{err:?}");
    }

    #[tokio::test]
    async fn an_upload_of_another_size_than_announced_is_refused_and_deleted() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "application/pdf", PDF.len() as u64 + 1);
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports
            .blobs
            .expect_head()
            .returning(|k| Ok(Some(meta(k, PDF.len()))));
        // Refused from the size alone: nothing is copied nor read.
        ports.blobs.expect_copy().never();
        ports.blobs.expect_get().never();
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let d = deleted.clone();
        ports.blobs.expect_delete().returning(move |k| {
            d.lock().unwrap().push(k.to_owned());
            Ok(())
        });
        ports.store.expect_confirm_attachment().never();
        let err = ports.service().confirm(me, a.id).await;
        assert!(
            matches!(&err, Err(ChatError::Invalid(f)) if f.field == "size"),
            "{err:?}"
        );
        assert!(deleted
            .lock()
            .unwrap()
            .contains(&Attachment::upload_key(a.id)));
    }

    #[tokio::test]
    async fn an_upload_replaced_before_its_copy_is_checked_as_copied() {
        // The upload had the announced size when confirm looked; a PUT replaced it with
        // a bigger file before the copy: what was copied is refused.
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "application/pdf", PDF.len() as u64);
        let mut ports = Ports::new().member(c, me).stored(&a);
        let (upload, file) = (Attachment::upload_key(a.id), Attachment::file_key(a.id));
        let up = upload.clone();
        ports
            .blobs
            .expect_head()
            .withf(move |k| k == up)
            .returning(|k| Ok(Some(meta(k, PDF.len()))));
        let f = file.clone();
        ports
            .blobs
            .expect_head()
            .withf(move |k| k == f)
            .returning(|k| Ok(Some(meta(k, PDF.len() + 100))));
        ports.blobs.expect_copy().times(1).returning(|_, _| Ok(()));
        ports.blobs.expect_get().never();
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let d = deleted.clone();
        ports.blobs.expect_delete().returning(move |k| {
            d.lock().unwrap().push(k.to_owned());
            Ok(())
        });
        ports.store.expect_confirm_attachment().never();
        let err = ports.service().confirm(me, a.id).await;
        assert!(matches!(&err, Err(ChatError::Invalid(_))), "{err:?}");
        assert_eq!(*deleted.lock().unwrap(), vec![upload, file]);
    }

    #[tokio::test]
    async fn a_renamed_exe_declared_as_png_is_refused_with_415_and_deleted_unconfirmed() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "image/png", EXE.len() as u64);
        let (mut ports, deleted) =
            uploaded(Ports::new().member(c, me).stored(&a), &a, EXE.len(), EXE);
        ports.images.expect_process().never();
        ports.blobs.expect_put().never();
        ports.store.expect_confirm_attachment().never();
        let err = ports.service().confirm(me, a.id).await.err().unwrap();
        let got = refusal(err);
        assert_eq!(
            got,
            AttachmentRefusal::ContentMismatch {
                declared: MediaType::Png,
                found: None
            }
        );
        assert_eq!(got.status(), 415);
        let deleted = deleted.lock().unwrap();
        assert!(deleted.contains(&Attachment::upload_key(a.id)));
        // Nor may the copy that was checked be downloaded.
        assert!(deleted.contains(&Attachment::file_key(a.id)));
    }

    #[tokio::test]
    async fn a_pdf_is_copied_checked_and_confirmed_with_the_type_its_bytes_have() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "application/pdf", PDF.len() as u64);
        let (mut ports, deleted) =
            uploaded(Ports::new().member(c, me).stored(&a), &a, PDF.len(), PDF);
        ports.images.expect_process().never();
        ports.blobs.expect_put().never();
        let want = AttachmentConfirmation {
            mime_type: "application/pdf".into(),
            size: PDF.len() as u64,
            width: None,
            height: None,
            has_thumbnail: false,
            confirmed_at: t1(),
        };
        let done = Attachment {
            confirmed_at: Some(t1()),
            ..a.clone()
        };
        let answer = done.clone();
        ports
            .store
            .expect_confirm_attachment()
            .with(eq(a.id), eq(want))
            .times(1)
            .returning(move |_, _| Ok(Some(answer.clone())));
        assert_eq!(ports.service().confirm(me, a.id).await.unwrap(), done);
        assert_eq!(*deleted.lock().unwrap(), vec![Attachment::upload_key(a.id)]);
    }

    #[tokio::test]
    async fn an_image_is_processed_whole_and_its_stripped_file_and_thumbnail_kept() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "image/png", PNG.len() as u64);
        let (mut ports, deleted) =
            uploaded(Ports::new().member(c, me).stored(&a), &a, PNG.len(), PNG);
        ports
            .images
            .expect_process()
            .withf(|bytes, max, px| bytes == PNG && *max == 40_000_000 && *px == 320)
            .times(1)
            .returning(|_, _, _| {
                Ok(ProcessedImage {
                    file: b"stripped".to_vec(),
                    width: 2,
                    height: 3,
                    thumbnail: b"thumb".to_vec(),
                    thumbnail_mime: "image/png".into(),
                })
            });
        let thumb = Attachment::thumbnail_key(a.id);
        ports
            .blobs
            .expect_put()
            .withf(move |k, b, t| k == thumb && b == b"thumb" && t.as_deref() == Some("image/png"))
            .times(1)
            .returning(|_, _, _| Ok(()));
        let file = Attachment::file_key(a.id);
        ports
            .blobs
            .expect_put()
            .withf(move |k, b, t| {
                k == file && b == b"stripped" && t.as_deref() == Some("image/png")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        let want = AttachmentConfirmation {
            mime_type: "image/png".into(),
            size: 8,
            width: Some(2),
            height: Some(3),
            has_thumbnail: true,
            confirmed_at: t1(),
        };
        ports
            .store
            .expect_confirm_attachment()
            .with(eq(a.id), eq(want))
            .times(1)
            .returning(|_, _| {
                Ok(Some(confirmed(
                    ConversationId::new(),
                    UserId::new(),
                    "image/png",
                )))
            });
        ports.service().confirm(me, a.id).await.unwrap();
        assert_eq!(*deleted.lock().unwrap(), vec![Attachment::upload_key(a.id)]);
    }

    #[tokio::test]
    async fn an_image_of_too_many_pixels_is_refused_with_422_and_nothing_confirmed() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "image/png", PNG.len() as u64);
        let (mut ports, deleted) =
            uploaded(Ports::new().member(c, me).stored(&a), &a, PNG.len(), PNG);
        ports.images.expect_process().returning(|_, max, _| {
            Err(AttachmentRefusal::TooManyPixels {
                width: 100_000,
                height: 100_000,
                max_pixels: max,
            })
        });
        ports.blobs.expect_put().never();
        ports.store.expect_confirm_attachment().never();
        let err = ports.service().confirm(me, a.id).await.err().unwrap();
        assert_eq!(refusal(err).status(), 422);
        let deleted = deleted.lock().unwrap();
        assert!(deleted.contains(&Attachment::upload_key(a.id)));
        assert!(deleted.contains(&Attachment::file_key(a.id)));
    }

    #[tokio::test]
    async fn an_encrypted_upload_is_only_copied_never_read_and_keeps_its_declared_type() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = Attachment {
            encrypted: true,
            ..pending(c, me, "application/x-msdownload", 10)
        };
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.blobs.expect_get().never();
        ports.images.expect_process().never();
        ports.blobs.expect_put().never();
        ports
            .blobs
            .expect_head()
            .returning(|k| Ok(Some(meta(k, 10))));
        ports.blobs.expect_copy().times(1).returning(|_, _| Ok(()));
        let upload = Attachment::upload_key(a.id);
        ports
            .blobs
            .expect_delete()
            .withf(move |k| k == upload)
            .times(1)
            .returning(|_| Ok(()));
        let want = AttachmentConfirmation {
            mime_type: "application/x-msdownload".into(),
            size: 10,
            width: None,
            height: None,
            has_thumbnail: false,
            confirmed_at: t1(),
        };
        let answer = a.clone();
        ports
            .store
            .expect_confirm_attachment()
            .with(eq(a.id), eq(want))
            .times(1)
            .returning(move |_, _| Ok(Some(answer.clone())));
        ports.service().confirm(me, a.id).await.unwrap();
    }

    #[tokio::test]
    async fn confirming_twice_answers_the_confirmed_attachment_without_touching_blobs() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = confirmed(c, me, "image/png");
        // No blob expectation: any call would fail the test.
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.store.expect_confirm_attachment().never();
        assert_eq!(ports.service().confirm(me, a.id).await.unwrap(), a);
    }

    #[tokio::test]
    async fn a_confirmation_made_meanwhile_by_another_call_is_answered() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = pending(c, me, "application/pdf", PDF.len() as u64);
        let done = Attachment {
            confirmed_at: Some(t0()),
            ..a.clone()
        };
        let mut ports = Ports::new().member(c, me);
        let mut reads = 0;
        let (first, second) = (a.clone(), done.clone());
        ports.store.expect_attachment().returning(move |_| {
            reads += 1;
            Ok(Some(if reads == 1 {
                first.clone()
            } else {
                second.clone()
            }))
        });
        let (mut ports, _) = uploaded(ports, &a, PDF.len(), PDF);
        ports
            .store
            .expect_confirm_attachment()
            .returning(|_, _| Ok(None));
        assert_eq!(ports.service().confirm(me, a.id).await.unwrap(), done);
    }

    // ---- visible and download ----

    #[tokio::test]
    async fn a_non_member_may_neither_see_nor_download_an_attachment() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = sent(c, UserId::new(), "application/pdf");
        let mut ports = Ports::new().stored(&a);
        ports.blobs.expect_get().never();
        let service = ports.service();
        let err = service.visible(me, a.id).await;
        assert!(matches!(err, Err(ChatError::NotParticipant)), "{err:?}");
        let err = service.download(me, a.id, Variant::File, None).await;
        assert!(matches!(err, Err(ChatError::NotParticipant)), "{err:?}");
    }

    #[tokio::test]
    async fn an_unsent_attachment_is_visible_to_its_uploader_alone_and_unconfirmed_to_none() {
        let (me, other, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let unsent = confirmed(c, me, "application/pdf");
        let unconfirmed = pending(c, me, "application/pdf", 10);
        let shown = sent(c, me, "application/pdf");
        let service = Ports::new()
            .member(c, me)
            .member(c, other)
            .stored(&unsent)
            .stored(&unconfirmed)
            .stored(&shown)
            .service();
        assert_eq!(service.visible(me, unsent.id).await.unwrap(), unsent);
        let err = service.visible(other, unsent.id).await;
        assert!(matches!(err, Err(ChatError::NotFound(_))), "{err:?}");
        let err = service.visible(me, unconfirmed.id).await;
        assert!(matches!(err, Err(ChatError::NotFound(_))), "{err:?}");
        assert_eq!(service.visible(other, shown.id).await.unwrap(), shown);
    }

    #[tokio::test]
    async fn a_file_is_served_with_its_recorded_type_and_the_range_asked_for() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = sent(c, me, "application/pdf");
        let mut ports = Ports::new().member(c, me).stored(&a);
        let file = Attachment::file_key(a.id);
        let range = ByteRange::Bounded { start: 2, end: 5 };
        ports
            .blobs
            .expect_get()
            .withf(move |k, r| k == file && *r == Some(range))
            .times(1)
            .returning(|_, _| {
                Ok(BlobData {
                    offset: 2,
                    total_size: 10,
                    ..data(b"abc")
                })
            });
        let d = ports
            .service()
            .download(me, a.id, Variant::File, Some(range))
            .await
            .unwrap();
        assert_eq!(d.content_type, "application/pdf");
        assert_eq!(d.data.bytes, b"abc");
    }

    #[tokio::test]
    async fn an_encrypted_file_is_served_as_octet_stream() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = Attachment {
            encrypted: true,
            ..sent(c, me, "image/png")
        };
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports
            .blobs
            .expect_get()
            .returning(|_, _| Ok(data(b"ciphertext")));
        let d = ports
            .service()
            .download(me, a.id, Variant::File, None)
            .await
            .unwrap();
        assert_eq!(d.content_type, "application/octet-stream");
    }

    #[tokio::test]
    async fn an_attachment_without_a_thumbnail_has_none_to_download() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = sent(c, me, "application/pdf");
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports.blobs.expect_get().never();
        let err = ports
            .service()
            .download(me, a.id, Variant::Thumbnail, None)
            .await;
        assert!(matches!(err, Err(ChatError::NotFound(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_thumbnail_is_served_with_the_type_it_was_stored_with_or_its_bytes_have() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = Attachment {
            has_thumbnail: true,
            ..sent(c, me, "image/png")
        };
        for (stored_type, want) in [(Some("image/webp"), "image/webp"), (None, "image/png")] {
            let mut ports = Ports::new().member(c, me).stored(&a);
            let thumb = Attachment::thumbnail_key(a.id);
            ports
                .blobs
                .expect_get()
                .withf(move |k, _| k == thumb)
                .returning(move |_, _| {
                    Ok(BlobData {
                        content_type: stored_type.map(str::to_owned),
                        ..data(PNG)
                    })
                });
            let d = ports
                .service()
                .download(me, a.id, Variant::Thumbnail, None)
                .await
                .unwrap();
            assert_eq!(d.content_type, want);
        }
    }

    #[tokio::test]
    async fn a_range_past_the_end_is_not_satisfiable_and_a_missing_file_not_found() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = sent(c, me, "application/pdf");
        let mut ports = Ports::new().member(c, me).stored(&a);
        ports
            .blobs
            .expect_get()
            .withf(|_, r| *r == Some(ByteRange::From(10)))
            .returning(|_, _| Err(BlobError::RangeNotSatisfiable { size: 10 }));
        ports
            .blobs
            .expect_get()
            .withf(|_, r| r.is_none())
            .returning(|k, _| Err(BlobError::NotFound(k.to_owned())));
        let service = ports.service();
        let err = service
            .download(me, a.id, Variant::File, Some(ByteRange::From(10)))
            .await;
        assert!(
            matches!(err, Err(ChatError::RangeNotSatisfiable(10))),
            "{err:?}"
        );
        let err = service.download(me, a.id, Variant::File, None).await;
        assert!(matches!(err, Err(ChatError::NotFound(_))), "{err:?}");
    }

    // ---- for_send ----

    #[tokio::test]
    async fn a_send_of_too_many_or_repeated_attachments_is_invalid_without_reading() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut store = MockAttachmentStore::new();
        store.expect_attachments_by_ids().never();
        let ids: Vec<AttachmentId> = (0..3).map(|_| AttachmentId::new()).collect();
        let err = for_send(&store, me, c, &ids, 2, false).await;
        assert!(
            matches!(&err, Err(ChatError::Invalid(f)) if f.field == "attachment_ids"),
            "{err:?}"
        );
        let twice = [ids[0], ids[1], ids[0]];
        let err = for_send(&store, me, c, &twice, 10, false).await;
        assert!(
            matches!(&err, Err(ChatError::Invalid(f)) if f.field == "attachment_ids"),
            "{err:?}"
        );
        assert!(for_send(&store, me, c, &[], 10, false)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_send_of_what_is_not_a_confirmed_upload_of_the_sender_here_is_unavailable() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let cases = [
            Some(confirmed(c, UserId::new(), "application/pdf")),
            Some(confirmed(ConversationId::new(), me, "application/pdf")),
            Some(pending(c, me, "application/pdf", 10)),
            None,
        ];
        for case in cases {
            let id = case.as_ref().map_or_else(AttachmentId::new, |a| a.id);
            let mut store = MockAttachmentStore::new();
            store
                .expect_attachments_by_ids()
                .times(1)
                .returning(move |_| Ok(case.clone().into_iter().collect()));
            let err = for_send(&store, me, c, &[id], 10, true).await;
            assert!(
                matches!(err, Err(ChatError::AttachmentUnavailable(_))),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_sent_attachment_is_refused_unless_the_send_may_be_a_retry() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let a = sent(c, me, "application/pdf");
        let mut store = MockAttachmentStore::new();
        let found = a.clone();
        store
            .expect_attachments_by_ids()
            .returning(move |_| Ok(vec![found.clone()]));
        let err = for_send(&store, me, c, &[a.id], 10, false).await;
        assert!(
            matches!(err, Err(ChatError::AttachmentAlreadySent)),
            "{err:?}"
        );
        // With a temp_id: storage tells a replay of that send from a second use.
        assert_eq!(
            for_send(&store, me, c, &[a.id], 10, true).await.unwrap(),
            [a]
        );
    }

    #[tokio::test]
    async fn a_sends_attachments_keep_the_order_given_read_in_one_call() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let all: Vec<Attachment> = (0..3).map(|_| confirmed(c, me, "image/png")).collect();
        let ids: Vec<AttachmentId> = [2, 0, 1].iter().map(|&i| all[i].id).collect();
        let mut store = MockAttachmentStore::new();
        let found = all.clone();
        let asked = ids.clone();
        store
            .expect_attachments_by_ids()
            .withf(move |ids| ids == asked.as_slice())
            .times(1)
            .returning(move |_| Ok(found.clone()));
        let got = for_send(&store, me, c, &ids, 10, false).await.unwrap();
        assert_eq!(got.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
    }

    // ---- delete and sweep ----

    #[tokio::test]
    async fn deleting_removes_the_three_blobs_of_each_then_the_records() {
        let c = ConversationId::new();
        let all = [
            sent(c, UserId::new(), "image/png"),
            sent(c, UserId::new(), "application/pdf"),
        ];
        let mut ports = Ports::new();
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let d = deleted.clone();
        ports.blobs.expect_delete().returning(move |k| {
            d.lock().unwrap().push(k.to_owned());
            Ok(())
        });
        let ids: Vec<AttachmentId> = all.iter().map(|a| a.id).collect();
        let d = deleted.clone();
        ports
            .store
            .expect_delete_attachments()
            .withf(move |got| got == ids.as_slice())
            .times(1)
            .returning(move |ids| {
                // Every blob went before the records.
                assert_eq!(d.lock().unwrap().len(), 6);
                Ok(ids.len() as u64)
            });
        assert_eq!(ports.service().delete(&all).await.unwrap(), 2);
        let deleted = deleted.lock().unwrap();
        for a in &all {
            for key in [
                Attachment::upload_key(a.id),
                Attachment::file_key(a.id),
                Attachment::thumbnail_key(a.id),
            ] {
                assert!(deleted.contains(&key), "{key} not deleted");
            }
        }
    }

    #[tokio::test]
    async fn a_blob_store_failure_leaves_the_records_for_the_next_sweep() {
        let a = sent(ConversationId::new(), UserId::new(), "image/png");
        let mut ports = Ports::new();
        let file = Attachment::file_key(a.id);
        ports
            .blobs
            .expect_delete()
            .returning(move |k| if k == file { Err(down()) } else { Ok(()) });
        ports.store.expect_delete_attachments().never();
        let err = ports.service().delete(&[a]).await;
        assert!(
            matches!(err, Err(ChatError::BlobsUnavailable(_))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_sweep_asks_for_what_was_announced_before_now_minus_expire_after() {
        let mut ports = Ports::new();
        ports.settings.expire_after = Duration::from_secs(3600);
        ports
            .store
            .expect_expired_attachments()
            .with(eq(t1() - chrono::Duration::hours(1)), eq(50))
            .times(1)
            .returning(|_, _| Ok(Vec::new()));
        ports.store.expect_delete_attachments().never();
        assert_eq!(ports.service().sweep(50).await.unwrap(), 0);
    }
}
