//! Attachments (issue 14): announce an upload, take its bytes, confirm them, hand them to a
//! send, serve them to members, and delete what no message shows.
//!
//! The bytes go to [`Attachment::upload_key`] first (a presigned PUT of the object store in
//! scale-out mode, the server's own endpoint in embedded mode). Confirming checks them
//! there (size, then magic numbers against the declared type; images: pixel count before
//! decoding), writes what others will download to [`Attachment::file_key`] (an image with
//! its metadata stripped, plus [`Attachment::thumbnail_key`]) and deletes the upload, so a
//! later PUT to a still-valid upload URL can change nothing anyone sees. In an end-to-end
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
        let (key, content_type) = match variant {
            Variant::File if attachment.encrypted => (
                Attachment::file_key(id),
                "application/octet-stream".to_owned(),
            ),
            Variant::File => (Attachment::file_key(id), attachment.mime_type.clone()),
            Variant::Thumbnail if attachment.has_thumbnail => {
                (Attachment::thumbnail_key(id), String::new())
            }
            Variant::Thumbnail => return Err(ChatError::NotFound("no thumbnail")),
        };
        let data = self.blobs.get(&key, range).await.map_err(|e| match e {
            BlobError::NotFound(_) => ChatError::NotFound("attachment not found"),
            BlobError::RangeNotSatisfiable { size } => ChatError::RangeNotSatisfiable(size),
            other => ChatError::BlobsUnavailable(other.to_string()),
        })?;
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

    /// Deletes the attachments of messages `ids` (deleted messages); what message deletion
    /// calls right after the tombstone is committed.
    pub async fn delete_by_ids(&self, ids: &[AttachmentId]) -> Result<u64, ChatError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let found = self.store.attachments_by_ids(ids).await?;
        self.delete(&found).await
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
