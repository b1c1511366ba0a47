//! Attachments (issue 14): which files the server accepts, recognised by their bytes.
//!
//! Pure functions, no I/O. The server reads the first [`SNIFF_PREFIX_LEN`] bytes of what
//! was stored and calls [`verify`] with them, the client's declared MIME type and filename
//! and the stored size; the type the client declares is never trusted alone: the bytes must
//! say the same (a renamed `.exe` sent as `image/png` is refused with 415).
//!
//! Status codes of the refusals ([`AttachmentRefusal::status`]):
//! - 413: the file is larger than [`AttachmentLimits::max_bytes`].
//! - 415: the declared type is not allowed, or the bytes are not what was declared.
//! - 422: the declared MIME type or the filename is malformed, the file is empty, or an
//!   image has more pixels than [`AttachmentLimits::max_image_pixels`].

use crate::ids::{AttachmentId, ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use std::fmt;

/// How many leading bytes of a file [`sniff`] and [`verify`] look at. Fewer may be given
/// (a short file); more are ignored. Every magic number but DOCX's is within the first 16
/// bytes; a DOCX is a ZIP archive whose `word/` entries must start within this prefix.
pub const SNIFF_PREFIX_LEN: usize = 64 * 1024;

/// The longest filename kept, in bytes of UTF-8 (a longer one is shortened, its extension
/// kept).
pub const MAX_FILENAME_BYTES: usize = 255;

/// A filename longer than this many bytes as sent is refused outright (422) rather than
/// shortened: no client sends one by accident.
pub const MAX_FILENAME_INPUT_BYTES: usize = 4 * 1024;

/// The types an attachment may have (seed 003's list). Anything else is refused (415),
/// whatever the configuration says: the server could not check its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaType {
    /// `image/jpeg`
    Jpeg,
    /// `image/png`
    Png,
    /// `image/gif`
    Gif,
    /// `image/webp`
    Webp,
    /// `video/mp4`
    Mp4,
    /// `audio/mpeg` (MP3)
    Mpeg,
    /// `application/pdf`
    Pdf,
    /// `application/msword` (legacy Word, an OLE2 compound file)
    Doc,
    /// `application/vnd.openxmlformats-officedocument.wordprocessingml.document`
    Docx,
}

impl MediaType {
    /// Every type, in the seed's order.
    pub const ALL: [MediaType; 9] = [
        MediaType::Jpeg,
        MediaType::Png,
        MediaType::Gif,
        MediaType::Webp,
        MediaType::Mp4,
        MediaType::Mpeg,
        MediaType::Pdf,
        MediaType::Doc,
        MediaType::Docx,
    ];

    /// The MIME type, lower case, without parameters.
    pub const fn mime(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Gif => "image/gif",
            MediaType::Webp => "image/webp",
            MediaType::Mp4 => "video/mp4",
            MediaType::Mpeg => "audio/mpeg",
            MediaType::Pdf => "application/pdf",
            MediaType::Doc => "application/msword",
            MediaType::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }

    /// The type named by a MIME string (case-insensitive, parameters such as `; charset=`
    /// ignored), if it is one of the list.
    pub fn from_mime(mime: &str) -> Option<MediaType> {
        let essence = mime_essence(mime)?;
        MediaType::ALL
            .into_iter()
            .find(|t| t.mime().eq_ignore_ascii_case(&essence))
    }

    /// Whether the server decodes it as an image (probe, thumbnail, metadata stripping).
    pub const fn is_image(self) -> bool {
        matches!(
            self,
            MediaType::Jpeg | MediaType::Png | MediaType::Gif | MediaType::Webp
        )
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// The lower-case `type/subtype` of a MIME string, or `None` if it is malformed (not two
/// RFC 9110 tokens around one `/`).
pub fn mime_essence(mime: &str) -> Option<String> {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let (ty, sub) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if token(ty) && token(sub) {
        Some(essence.to_ascii_lowercase())
    } else {
        None
    }
}

/// The limits [`verify`] applies. Configurable; the defaults follow issue 14.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// The largest file accepted, in bytes (default 50 MiB).
    pub max_bytes: u64,
    /// The MIME types accepted (default: all of [`MediaType::ALL`]). An entry outside that
    /// list is never accepted: the server cannot check such bytes.
    pub allowed_mime_types: Vec<String>,
    /// The most pixels (width x height) an image may have, against decompression bombs
    /// (default 40 megapixels). Checked on the image's header before decoding it.
    pub max_image_pixels: u64,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        Self {
            max_bytes: 50 * 1024 * 1024,
            allowed_mime_types: MediaType::ALL.iter().map(|t| t.mime().to_owned()).collect(),
            max_image_pixels: 40_000_000,
        }
    }
}

impl AttachmentLimits {
    /// Whether a type is allowed by this configuration.
    pub fn allows(&self, media_type: MediaType) -> bool {
        self.allowed_mime_types
            .iter()
            .any(|m| MediaType::from_mime(m) == Some(media_type))
    }

    /// Refuses (422) an image of `width` x `height` with more pixels than allowed.
    pub fn check_pixels(&self, width: u32, height: u32) -> Result<(), AttachmentRefusal> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_image_pixels {
            Err(AttachmentRefusal::TooManyPixels {
                width,
                height,
                max_pixels: self.max_image_pixels,
            })
        } else {
            Ok(())
        }
    }
}

/// Why a file was refused. [`AttachmentRefusal::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentRefusal {
    /// 413: larger than the limit.
    #[error("the file is {size} bytes; at most {max} are accepted")]
    TooLarge { size: u64, max: u64 },
    /// 415: the declared type is well formed but not allowed.
    #[error("attachments of type {0} are not accepted")]
    TypeNotAllowed(String),
    /// 415: the bytes are not of the declared type (`found`: what they are, if allowed).
    #[error("the file is not {declared}")]
    ContentMismatch {
        declared: MediaType,
        found: Option<MediaType>,
    },
    /// 422: the declared MIME type is not `type/subtype`.
    #[error("malformed MIME type")]
    MalformedMimeType,
    /// 422: the filename is empty, too long, or nothing is left once sanitised.
    #[error("malformed filename")]
    MalformedFilename,
    /// 422: the file has no bytes.
    #[error("the file is empty")]
    Empty,
    /// 422: an image with more pixels than allowed (a decompression bomb, or just too big).
    #[error("the image is {width}x{height}; at most {max_pixels} pixels are accepted")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// 422: the bytes claim to be an allowed image but its header cannot be read.
    #[error("the image cannot be read")]
    UnreadableImage,
}

impl AttachmentRefusal {
    /// The HTTP status the server answers with.
    pub const fn status(&self) -> u16 {
        match self {
            AttachmentRefusal::TooLarge { .. } => 413,
            AttachmentRefusal::TypeNotAllowed(_) | AttachmentRefusal::ContentMismatch { .. } => 415,
            AttachmentRefusal::MalformedMimeType
            | AttachmentRefusal::MalformedFilename
            | AttachmentRefusal::Empty
            | AttachmentRefusal::TooManyPixels { .. }
            | AttachmentRefusal::UnreadableImage => 422,
        }
    }

    /// A stable machine-readable code for the error body.
    pub const fn code(&self) -> &'static str {
        match self {
            AttachmentRefusal::TooLarge { .. } => "too_large",
            AttachmentRefusal::TypeNotAllowed(_) => "type_not_allowed",
            AttachmentRefusal::ContentMismatch { .. } => "content_mismatch",
            AttachmentRefusal::MalformedMimeType => "malformed_mime_type",
            AttachmentRefusal::MalformedFilename => "malformed_filename",
            AttachmentRefusal::Empty => "empty_file",
            AttachmentRefusal::TooManyPixels { .. } => "too_many_pixels",
            AttachmentRefusal::UnreadableImage => "unreadable_image",
        }
    }
}

/// What [`verify`] accepted: the type the bytes have, and the filename to store and to send
/// back in `Content-Disposition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttachment {
    pub media_type: MediaType,
    pub filename: String,
}

/// Checks an upload: `size` is the stored size, `prefix` its first bytes (up to
/// [`SNIFF_PREFIX_LEN`]). In this order: empty (422), too large (413), malformed MIME type
/// or filename (422), type not allowed (415), bytes not of the declared type (415).
pub fn verify(
    declared_mime: &str,
    filename: &str,
    prefix: &[u8],
    size: u64,
    limits: &AttachmentLimits,
) -> Result<VerifiedAttachment, AttachmentRefusal> {
    if size == 0 || prefix.is_empty() {
        return Err(AttachmentRefusal::Empty);
    }
    if size > limits.max_bytes {
        return Err(AttachmentRefusal::TooLarge {
            size,
            max: limits.max_bytes,
        });
    }
    let essence = mime_essence(declared_mime).ok_or(AttachmentRefusal::MalformedMimeType)?;
    let filename = sanitize_filename(filename)?;
    let declared = MediaType::from_mime(&essence)
        .filter(|t| limits.allows(*t))
        .ok_or(AttachmentRefusal::TypeNotAllowed(essence))?;
    let found = sniff(prefix);
    if found != Some(declared) {
        return Err(AttachmentRefusal::ContentMismatch {
            declared,
            found: found.filter(|t| limits.allows(*t)),
        });
    }
    Ok(VerifiedAttachment {
        media_type: declared,
        filename,
    })
}

/// A filename safe to store and to put in `Content-Disposition`: the last path component
/// only (a browser may send `C:\fakepath\x.png`), control characters removed, `"` turned
/// into `'`, surrounding white space trimmed, at most [`MAX_FILENAME_BYTES`] bytes (the
/// extension kept). Refused (422) when longer than [`MAX_FILENAME_INPUT_BYTES`] as sent,
/// or when nothing (or only `.`/`..`) is left.
pub fn sanitize_filename(raw: &str) -> Result<String, AttachmentRefusal> {
    if raw.len() > MAX_FILENAME_INPUT_BYTES {
        return Err(AttachmentRefusal::MalformedFilename);
    }
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .map(|c| if c == '"' { '\'' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err(AttachmentRefusal::MalformedFilename);
    }
    Ok(shorten(cleaned, MAX_FILENAME_BYTES))
}

/// Bidirectional overrides and zero-width characters, which make a name read other than
/// it is (`invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `name` cut to at most `max` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => &name[dot..],
        _ => "",
    };
    let mut end = max - ext.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", name[..end].trim_end(), ext)
}

/// The type of a file by its first bytes (magic numbers), if it is one of [`MediaType`].
///
/// - JPEG `FF D8 FF`; PNG `89 50 4E 47 0D 0A 1A 0A`; GIF `GIF87a`/`GIF89a`; WebP
///   `RIFF` size `WEBP`; PDF `%PDF-`; DOC the OLE2 signature `D0 CF 11 E0 A1 B1 1A E1`.
/// - MP4: an `ftyp` box at offset 4 whose major brand is a video one (`isom`, `iso2`-`iso6`,
///   `mp41`, `mp42`, `avc1`, `dash`, `M4V `, `mmp4`, `msnv`). `M4A `/`M4B `/`M4P ` (audio),
///   `qt  ` (QuickTime) and 3GPP brands are not `video/mp4`.
/// - MP3: an `ID3` tag (version 2 to 4), or an MPEG audio frame header: 11 sync bits, a
///   version that is not reserved, layer I, II or III, a bitrate index that is neither
///   free (0) nor bad (15), a sampling rate that is not reserved.
/// - DOCX: a ZIP local file header (`PK 03 04`) first, and among the local file headers in
///   the prefix one whose name starts with `word/`. Only the prefix is read (not the
///   central directory at the end): a DOCX whose `word/` entries start after
///   [`SNIFF_PREFIX_LEN`] bytes is not recognised. Word and LibreOffice write them first.
///
/// An OLE2 file is taken for a DOC without reading its directory: Excel's `.xls` and
/// PowerPoint's `.ppt` share the signature; they are documents of the same family, not
/// executables.
pub fn sniff(prefix: &[u8]) -> Option<MediaType> {
    let p = &prefix[..prefix.len().min(SNIFF_PREFIX_LEN)];
    if p.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(MediaType::Jpeg)
    } else if p.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(MediaType::Png)
    } else if p.starts_with(b"GIF87a") || p.starts_with(b"GIF89a") {
        Some(MediaType::Gif)
    } else if p.len() >= 12 && p.starts_with(b"RIFF") && &p[8..12] == b"WEBP" {
        Some(MediaType::Webp)
    } else if p.starts_with(b"%PDF-") {
        Some(MediaType::Pdf)
    } else if p.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Some(MediaType::Doc)
    } else if p.starts_with(b"PK\x03\x04") {
        is_docx(p).then_some(MediaType::Docx)
    } else if is_mp4(p) {
        Some(MediaType::Mp4)
    } else if is_mp3(p) {
        Some(MediaType::Mpeg)
    } else {
        None
    }
}

fn is_mp4(p: &[u8]) -> bool {
    const VIDEO_BRANDS: [&[u8; 4]; 13] = [
        b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash",
        b"M4V ", b"mmp4", b"msnv",
    ];
    if p.len() < 12 || &p[4..8] != b"ftyp" {
        return false;
    }
    let box_size = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    box_size >= 16 && VIDEO_BRANDS.iter().any(|b| &p[8..12] == *b)
}

fn is_mp3(p: &[u8]) -> bool {
    if p.len() >= 4 && p.starts_with(b"ID3") {
        return (2..=4).contains(&p[3]);
    }
    if p.len() < 4 || p[0] != 0xFF || p[1] & 0xE0 != 0xE0 {
        return false;
    }
    let version = (p[1] >> 3) & 0b11; // 01 is reserved
    let layer = (p[1] >> 1) & 0b11; // 00 is reserved
    let bitrate = p[2] >> 4; // 0000 free, 1111 bad
    let rate = (p[2] >> 2) & 0b11; // 11 is reserved
    version != 0b01 && layer != 0b00 && bitrate != 0 && bitrate != 0b1111 && rate != 0b11
}

/// Walks the ZIP local file headers from the start of the prefix; true when one is named
/// `word/...`. An entry whose size is only in a data descriptor after its data (flag bit
/// 3) cannot be skipped; the walk then searches the rest of the prefix for the next
/// local-header signature.
fn is_docx(p: &[u8]) -> bool {
    const SIG: &[u8; 4] = b"PK\x03\x04";
    let u16_at = |i: usize| {
        p.get(i..i + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |i: usize| {
        p.get(i..i + 4)
            .and_then(|b| usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok())
    };
    let mut at = 0;
    while p.get(at..at + 4) == Some(SIG) {
        let (Some(flags), Some(compressed), Some(name_len), Some(extra_len)) = (
            u16_at(at + 6),
            u32_at(at + 18),
            u16_at(at + 26),
            u16_at(at + 28),
        ) else {
            return false;
        };
        let name_start = at + 30;
        let Some(name) = p.get(name_start..name_start + name_len) else {
            return false;
        };
        if name.starts_with(b"word/") {
            return true;
        }
        let data_start = name_start + name_len + extra_len;
        at = if flags & 0b1000 != 0 {
            match p
                .get(data_start..)
                .and_then(|rest| rest.windows(4).position(|w| w == SIG))
            {
                Some(offset) => data_start + offset,
                None => return false,
            }
        } else {
            data_start.saturating_add(compressed)
        };
    }
    false
}

/// A stored attachment: an upload announced by `upload-url`, confirmed once its bytes are
/// checked, and sent at most once, with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id (UUIDv7): the blob keys are made of it.
    pub id: AttachmentId,
    /// The conversation it was uploaded to; it can be sent only there.
    pub conversation_id: ConversationId,
    /// Who uploaded it; only they may confirm and send it.
    pub uploader_id: UserId,
    /// The sanitised filename (what `Content-Disposition` carries).
    pub filename: String,
    /// The declared type until confirmed; then the type the bytes have. In an encrypted
    /// conversation, as declared (the server cannot look at ciphertext).
    pub mime_type: String,
    /// Bytes: as declared until confirmed, then as stored.
    pub size: u64,
    /// Uploaded to an end-to-end encrypted conversation: the bytes are ciphertext, served
    /// as `application/octet-stream` and never sniffed, stripped or thumbnailed.
    pub encrypted: bool,
    /// Pixels across, for an image once confirmed.
    pub width: Option<u32>,
    /// Pixels down, for an image once confirmed.
    pub height: Option<u32>,
    /// Whether a thumbnail was made (images, once confirmed).
    pub has_thumbnail: bool,
    /// When `upload-url` announced it.
    pub created_at: DateTime<Utc>,
    /// When its bytes were checked and accepted; `None`: not (yet) confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The message it was sent with; `None`: not sent (it expires).
    pub message_id: Option<MessageId>,
}

impl Attachment {
    /// Blob key of the bytes as the uploader PUTs them, before confirmation.
    pub fn upload_key(id: AttachmentId) -> String {
        format!("uploads/{id}")
    }

    /// Blob key of the accepted bytes (an image's with its metadata stripped).
    pub fn file_key(id: AttachmentId) -> String {
        format!("attachments/{id}/file")
    }

    /// Blob key of an image's thumbnail.
    pub fn thumbnail_key(id: AttachmentId) -> String {
        format!("attachments/{id}/thumbnail")
    }

    /// Whether it is a confirmed image others may see inline (not encrypted).
    pub fn is_image(&self) -> bool {
        !self.encrypted && MediaType::from_mime(&self.mime_type).is_some_and(MediaType::is_image)
    }
}

/// An attachment to record when `upload-url` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    pub id: AttachmentId,
    pub conversation_id: ConversationId,
    pub uploader_id: UserId,
    /// Sanitised.
    pub filename: String,
    /// As declared (well formed).
    pub mime_type: String,
    /// As declared (within the limit).
    pub size: u64,
    pub encrypted: bool,
    pub created_at: DateTime<Utc>,
}

impl NewAttachment {
    /// The attachment this becomes when stored (not confirmed, not sent).
    pub fn stored(&self) -> Attachment {
        Attachment {
            id: self.id,
            conversation_id: self.conversation_id,
            uploader_id: self.uploader_id,
            filename: self.filename.clone(),
            mime_type: self.mime_type.clone(),
            size: self.size,
            encrypted: self.encrypted,
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: self.created_at,
            confirmed_at: None,
            message_id: None,
        }
    }
}

/// What confirming an upload records: the checked bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentConfirmation {
    /// The type the bytes have (as declared, when encrypted).
    pub mime_type: String,
    /// The stored size (of the stripped file, for an image).
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub has_thumbnail: bool,
    pub confirmed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const EXE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";

    fn zip_entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = b"PK\x03\x04".to_vec();
        v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
        v.extend_from_slice(&[0; 4]); // crc
        let len = u32::try_from(data.len()).unwrap_or(0).to_le_bytes();
        v.extend_from_slice(&len);
        v.extend_from_slice(&len);
        let name_len = u16::try_from(name.len()).unwrap_or(0).to_le_bytes();
        v.extend_from_slice(&name_len);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn docx() -> Vec<u8> {
        let mut v = zip_entry("[Content_Types].xml", b"<Types/>");
        v.extend(zip_entry("_rels/.rels", b"<Relationships/>"));
        v.extend(zip_entry("word/document.xml", b"<w:document/>"));
        v
    }

    fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 0x18];
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(brand);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(b"isommp41");
        v
    }

    #[test]
    fn sniff_recognises_every_seed_type_by_its_magic_number() {
        let cases: Vec<(Vec<u8>, MediaType)> = vec![
            (vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], MediaType::Jpeg),
            (PNG.to_vec(), MediaType::Png),
            (b"GIF87a\x01\0\x01\0".to_vec(), MediaType::Gif),
            (b"GIF89a\x01\0\x01\0".to_vec(), MediaType::Gif),
            (b"RIFF\x24\0\0\0WEBPVP8 ".to_vec(), MediaType::Webp),
            (ftyp(b"isom"), MediaType::Mp4),
            (ftyp(b"mp42"), MediaType::Mp4),
            (ftyp(b"avc1"), MediaType::Mp4),
            (b"ID3\x03\0\0\0\0\0\0".to_vec(), MediaType::Mpeg),
            (vec![0xFF, 0xFB, 0x90, 0x64], MediaType::Mpeg), // MPEG-1 layer III 128k 44.1k
            (vec![0xFF, 0xF3, 0x48, 0xC4], MediaType::Mpeg), // MPEG-2 layer III
            (b"%PDF-1.7\n".to_vec(), MediaType::Pdf),
            (
                vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0],
                MediaType::Doc,
            ),
            (docx(), MediaType::Docx),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(&bytes), Some(want), "{bytes:02x?}");
        }
    }

    #[test]
    fn sniff_refuses_lookalikes() {
        let cases: Vec<Vec<u8>> = vec![
            EXE.to_vec(),
            b"\x7fELF\x02\x01\x01".to_vec(),
            b"GIF88a".to_vec(),
            b"RIFF\x24\0\0\0WAVEfmt ".to_vec(), // WAV, not WebP
            ftyp(b"M4A "),                      // audio-only MP4
            ftyp(b"qt  "),                      // QuickTime
            ftyp(b"3gp4"),
            vec![0xFF, 0xF1, 0x50, 0x80], // ADTS AAC: layer 00
            vec![0xFF, 0xFB, 0xF0, 0x64], // bad bitrate index
            vec![0xFF, 0xFB, 0x9C, 0x64], // reserved sampling rate
            b"ID3\x09".to_vec(),
            zip_entry("xl/workbook.xml", b"<workbook/>"), // an XLSX
            zip_entry("payload.exe", EXE),                // a plain ZIP
            b"PK\x03\x04\x14\0".to_vec(),                 // truncated ZIP header
            b"%PD".to_vec(),
            Vec::new(),
        ];
        for bytes in cases {
            assert_eq!(sniff(&bytes), None, "{bytes:02x?}");
        }
    }

    #[test]
    fn a_docx_is_recognised_after_an_entry_with_a_data_descriptor() {
        let mut first = zip_entry("[Content_Types].xml", b"<Types/>");
        first[6] = 0b1000; // sizes in a data descriptor after the data
        first[18..26].fill(0);
        first.extend_from_slice(b"PK\x07\x08\0\0\0\0\x08\0\0\0\x08\0\0\0");
        first.extend(zip_entry("word/document.xml", b"<w:document/>"));
        assert_eq!(sniff(&first), Some(MediaType::Docx));
    }

    #[test]
    fn a_docx_whose_word_entry_is_past_the_prefix_is_not_recognised() {
        let mut v = zip_entry("media/big.bin", &vec![0; SNIFF_PREFIX_LEN]);
        v.extend(zip_entry("word/document.xml", b"<w:document/>"));
        assert_eq!(sniff(&v), None);
    }

    #[test]
    fn verify_accepts_matching_bytes_and_sanitises_the_name() {
        let ok = verify(
            "IMAGE/PNG; charset=binary",
            "C:\\fakepath\\cat.png",
            PNG,
            1_000,
            &AttachmentLimits::default(),
        );
        assert_eq!(
            ok,
            Ok(VerifiedAttachment {
                media_type: MediaType::Png,
                filename: "cat.png".into()
            })
        );
    }

    #[test]
    fn a_renamed_exe_declared_as_png_is_refused_with_415() {
        let err = verify(
            "image/png",
            "cat.png",
            EXE,
            40_000,
            &AttachmentLimits::default(),
        );
        assert_eq!(
            err,
            Err(AttachmentRefusal::ContentMismatch {
                declared: MediaType::Png,
                found: None
            })
        );
        assert_eq!(err.map_err(|e| e.status()), Err(415));
    }

    #[test]
    fn a_jpeg_declared_as_png_is_refused_with_415_naming_what_it_is() {
        let err = verify(
            "image/png",
            "x.png",
            &[0xFF, 0xD8, 0xFF, 0xE0],
            4,
            &AttachmentLimits::default(),
        );
        assert_eq!(
            err,
            Err(AttachmentRefusal::ContentMismatch {
                declared: MediaType::Png,
                found: Some(MediaType::Jpeg)
            })
        );
    }

    #[test]
    fn refusals_map_to_413_415_and_422() {
        let limits = AttachmentLimits::default();
        let status = |mime: &str, name: &str, bytes: &[u8], size: u64| {
            verify(mime, name, bytes, size, &limits)
                .map(|v| v.media_type)
                .map_err(|e| e.status())
        };
        assert_eq!(
            status("image/png", "a.png", PNG, 50 * 1024 * 1024),
            Ok(MediaType::Png)
        );
        assert_eq!(
            status("image/png", "a.png", PNG, 50 * 1024 * 1024 + 1),
            Err(413)
        );
        assert_eq!(
            status("application/x-msdownload", "a.exe", EXE, 10),
            Err(415)
        );
        assert_eq!(status("text/html", "a.html", b"<html>", 6), Err(415));
        assert_eq!(status("audio/mp4", "a.m4a", &ftyp(b"M4A "), 24), Err(415));
        assert_eq!(status("image/png", "a.png", &[], 0), Err(422));
        assert_eq!(status("image/png", "a.png", PNG, 0), Err(422));
        assert_eq!(status("png", "a.png", PNG, 16), Err(422));
        assert_eq!(status("image/", "a.png", PNG, 16), Err(422));
        assert_eq!(status("image/p ng", "a.png", PNG, 16), Err(422));
        assert_eq!(status("", "a.png", PNG, 16), Err(422));
        assert_eq!(status("image/png", "", PNG, 16), Err(422));
        assert_eq!(status("image/png", "dir/..", PNG, 16), Err(422));
        assert_eq!(status("image/png", "\u{7}\u{1b}", PNG, 16), Err(422));
        assert_eq!(status("image/png", &"a".repeat(5000), PNG, 16), Err(422));
    }

    #[test]
    fn the_allowed_list_and_size_are_configurable() {
        let limits = AttachmentLimits {
            max_bytes: 10,
            allowed_mime_types: vec!["application/pdf".into(), "text/plain".into()],
            ..AttachmentLimits::default()
        };
        assert!(verify("application/pdf", "a.pdf", b"%PDF-1.4", 8, &limits).is_ok());
        assert_eq!(
            verify("image/png", "a.png", PNG, 8, &limits),
            Err(AttachmentRefusal::TypeNotAllowed("image/png".into()))
        );
        // Listed but not a type the server can check: still refused.
        assert_eq!(
            verify("text/plain", "a.txt", b"hello", 5, &limits).map_err(|e| e.status()),
            Err(415)
        );
        assert_eq!(
            verify("application/pdf", "a.pdf", b"%PDF-1.4", 11, &limits).map_err(|e| e.status()),
            Err(413)
        );
    }

    #[test]
    fn the_defaults_follow_the_issue() {
        let limits = AttachmentLimits::default();
        assert_eq!(limits.max_bytes, 52_428_800);
        assert_eq!(limits.max_image_pixels, 40_000_000);
        assert!(MediaType::ALL.iter().all(|t| limits.allows(*t)));
        assert_eq!(MediaType::from_mime("Video/MP4"), Some(MediaType::Mp4));
        assert_eq!(MediaType::from_mime("image/svg+xml"), None);
    }

    #[test]
    fn check_pixels_refuses_a_decompression_bomb_with_422() {
        let limits = AttachmentLimits::default();
        assert_eq!(limits.check_pixels(8_000, 5_000), Ok(()));
        let err = limits.check_pixels(100_000, 100_000);
        assert!(matches!(err, Err(AttachmentRefusal::TooManyPixels { .. })));
        assert_eq!(err.map_err(|e| e.status()), Err(422));
        // No overflow at the extremes.
        assert!(limits.check_pixels(u32::MAX, u32::MAX).is_err());
    }

    #[test]
    fn filenames_lose_paths_controls_quotes_and_bidi_overrides() {
        assert_eq!(sanitize_filename("../../etc/passwd"), Ok("passwd".into()));
        assert_eq!(sanitize_filename("a\\b\\c.txt"), Ok("c.txt".into()));
        assert_eq!(sanitize_filename(" x\r\n\0y.pdf "), Ok("xy.pdf".into()));
        assert_eq!(
            sanitize_filename("say \"hi\".pdf"),
            Ok("say 'hi'.pdf".into())
        );
        assert_eq!(
            sanitize_filename("invoice\u{202E}fdp.exe"),
            Ok("invoicefdp.exe".into())
        );
        assert_eq!(sanitize_filename("photo é.jpg"), Ok("photo é.jpg".into()));
        assert_eq!(
            sanitize_filename("dir/"),
            Err(AttachmentRefusal::MalformedFilename)
        );
        assert_eq!(
            sanitize_filename("."),
            Err(AttachmentRefusal::MalformedFilename)
        );
    }

    #[test]
    fn long_filenames_are_shortened_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.jpeg", "é".repeat(400));
        let short = sanitize_filename(&long).unwrap_or_default();
        assert!(short.len() <= MAX_FILENAME_BYTES, "{}", short.len());
        assert!(short.ends_with("é.jpeg"));
        let no_ext = "x".repeat(300);
        assert_eq!(
            sanitize_filename(&no_ext).map(|s| s.len()),
            Ok(MAX_FILENAME_BYTES)
        );
    }
}
