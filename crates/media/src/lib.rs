//! Image work for attachments (issue 14): synchronous, pure functions on bytes in memory,
//! no I/O. Decoding is CPU-bound, so the server calls them through `spawn_blocking`, never
//! on its async workers.
//!
//! - [`probe`] reads only an image's header: its format and size, and refuses an image of
//!   more pixels than allowed before anything is decoded (a decompression bomb).
//! - [`thumbnail`] decodes (the first frame of an animated GIF or WebP) and scales down to
//!   a long side, never up.
//! - [`strip_metadata`] removes what others must not download (Exif with its GPS location,
//!   XMP, text chunks) by walking the file's segments or chunks; the image data is copied
//!   byte for byte, so nothing is re-encoded and quality is untouched.
//!
//! Only JPEG, PNG, GIF and WebP are handled (the image types of seed 003).

use std::io::Cursor;

mod processor;
pub use processor::{process_image, MediaProcessor};

use image::{DynamicImage, ImageDecoder, ImageReader};

/// The image formats handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl ImageFormat {
    /// The MIME type.
    pub const fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
        }
    }

    /// The format by its magic number.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(PNG_SIGNATURE) {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else {
            None
        }
    }

    const fn to_image(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Gif => image::ImageFormat::Gif,
            ImageFormat::Webp => image::ImageFormat::WebP,
        }
    }
}

const PNG_SIGNATURE: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Why an image could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Not a JPEG, PNG, GIF or WebP (415).
    #[error("not a JPEG, PNG, GIF or WebP image")]
    NotAnImage,
    /// More pixels than allowed, found in the header before decoding (422).
    #[error("the image is {width}x{height}; at most {max_pixels} pixels are accepted")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// The header or the data cannot be read (422).
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
    /// The thumbnail could not be encoded (500: a bug, not the client's fault).
    #[error("the thumbnail cannot be encoded: {0}")]
    Encode(String),
}

impl MediaError {
    /// The HTTP status the server answers with (the same as the domain's
    /// `AttachmentRefusal` of the same name).
    pub const fn status(&self) -> u16 {
        match self {
            MediaError::NotAnImage => 415,
            MediaError::TooManyPixels { .. } | MediaError::Unreadable(_) => 422,
            MediaError::Encode(_) => 500,
        }
    }
}

/// What [`probe`] read from an image's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

/// Reads the format and the size from the header only, and refuses an image of more than
/// `max_pixels` pixels (width x height) or of zero width or height. Nothing is decoded and
/// no pixel buffer is allocated, so a file of a few bytes declaring 100000x100000 pixels
/// costs nothing.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<ImageInfo, MediaError> {
    let format = ImageFormat::sniff(bytes).ok_or(MediaError::NotAnImage)?;
    let check = |width: u32, height: u32| {
        if u64::from(width) * u64::from(height) > max_pixels {
            Err(MediaError::TooManyPixels {
                width,
                height,
                max_pixels,
            })
        } else {
            Ok(())
        }
    };
    // The decoders read more than the size before they tell it (PNG every chunk up to
    // the first IDAT, JPEG the tables); the size itself comes first, so a bomb is refused
    // from a few bytes, whatever follows.
    if let Some((w, h)) = declared_size(format, bytes) {
        check(w, h)?;
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format.to_image());
    // The header is read with no allocation limit of the decoder's own: the pixel limit
    // below is the one that refuses, with its own error.
    reader.no_limits();
    let (width, height) = reader.into_dimensions().map_err(unreadable)?;
    if width == 0 || height == 0 {
        return Err(MediaError::Unreadable("zero width or height".into()));
    }
    check(width, height)?;
    Ok(ImageInfo {
        width,
        height,
        format,
    })
}

/// The size in an image's first header: PNG's IHDR, JPEG's first SOFn, GIF's logical
/// screen, WebP's VP8X canvas. `None` when it is not where expected (the decoder then
/// says why).
fn declared_size(format: ImageFormat, b: &[u8]) -> Option<(u32, u32)> {
    match format {
        ImageFormat::Png if b.get(12..16) == Some(b"IHDR") => Some((be32(b, 16)?, be32(b, 20)?)),
        ImageFormat::Gif => {
            let le16 = |at: usize| {
                b.get(at..at + 2)
                    .map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
            };
            Some((le16(6)?, le16(8)?))
        }
        ImageFormat::Webp if b.get(12..16) == Some(b"VP8X") => {
            let le24 = |at: usize| {
                b.get(at..at + 3)
                    .map(|s| u32::from_le_bytes([s[0], s[1], s[2], 0]) + 1)
            };
            Some((le24(24)?, le24(27)?))
        }
        ImageFormat::Jpeg => {
            let mut i = 2;
            loop {
                if *b.get(i)? != 0xFF {
                    return None;
                }
                let marker = *b.get(i + 1)?;
                if marker == 0xFF {
                    i += 1;
                    continue;
                }
                let len = be16(b, i + 2)?;
                let is_sof =
                    (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker);
                if is_sof {
                    let h = u32::try_from(be16(b, i + 5)?).ok()?;
                    let w = u32::try_from(be16(b, i + 7)?).ok()?;
                    return Some((w, h));
                }
                if marker == 0xDA || marker == 0xD9 {
                    return None;
                }
                i += 2 + len;
            }
        }
        _ => None,
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn unreadable(err: image::ImageError) -> MediaError {
    MediaError::Unreadable(err.to_string())
}

/// The default long side of a thumbnail, in pixels.
pub const THUMBNAIL_LONG_SIDE: u32 = 320;

/// A thumbnail: encoded bytes, their MIME type and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    /// The size of the original, as [`probe`] read it.
    pub original: ImageInfo,
}

/// Makes a thumbnail whose long side is at most `long_side` pixels (aspect ratio kept, a
/// smaller image not enlarged), from the first frame of an animated GIF or WebP. A JPEG
/// gives a JPEG (quality 80), with its Exif orientation applied; the others give a PNG
/// (transparency kept). [`probe`] runs first: an image of more than `max_pixels` is refused
/// before it is decoded.
pub fn thumbnail(bytes: &[u8], long_side: u32, max_pixels: u64) -> Result<Thumbnail, MediaError> {
    let original = probe(bytes, max_pixels)?;
    let long_side = long_side.max(1);
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(original.format.to_image());
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let orientation = decoder.orientation().map_err(unreadable)?;
    // Decodes the first frame only, for GIF and WebP alike.
    let mut img = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    img.apply_orientation(orientation);
    let (w, h) = (img.width(), img.height());
    if w.max(h) > long_side {
        let (tw, th) = fit(w, h, long_side);
        img = img.thumbnail_exact(tw, th);
    }
    let mut out = Cursor::new(Vec::new());
    let mime = if original.format == ImageFormat::Jpeg {
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
        rgb.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut out, 80,
        ))
        .map_err(|e| MediaError::Encode(e.to_string()))?;
        "image/jpeg"
    } else {
        img.write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| MediaError::Encode(e.to_string()))?;
        "image/png"
    };
    Ok(Thumbnail {
        width: img.width(),
        height: img.height(),
        bytes: out.into_inner(),
        mime,
        original,
    })
}

/// The size of `w` x `h` scaled so its long side is `long_side`, each side at least 1.
fn fit(w: u32, h: u32, long_side: u32) -> (u32, u32) {
    let scale = |short: u32, long: u32| {
        let s = (u64::from(short) * u64::from(long_side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(s).unwrap_or(long_side).max(1)
    };
    if w >= h {
        (long_side, scale(h, w))
    } else {
        (scale(w, h), long_side)
    }
}

/// The image without the metadata others must not download, the image data byte-exact:
///
/// - JPEG: drops APP1 (Exif, XMP), APP13 (IPTC), COM, every APPn but APP0 (JFIF), APP2
///   `ICC_PROFILE` and APP14 (Adobe colour transform), and anything after EOI (phones
///   append a second picture there, Exif and all). An Exif orientation other than
///   "upright" is kept as a new Exif segment holding that one tag, so the picture is not
///   shown rotated.
/// - PNG: drops `eXIf`, `tEXt`, `iTXt`, `zTXt` and `tIME`; every other chunk is copied with
///   its CRC; nothing after `IEND` is kept.
/// - WebP: drops the `EXIF` and `XMP ` chunks, clears their flags in `VP8X` and rewrites
///   the RIFF size.
/// - GIF: returned as it is (GIF has no Exif; its comment and application extensions are
///   not walked).
pub fn strip_metadata(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    match ImageFormat::sniff(bytes).ok_or(MediaError::NotAnImage)? {
        ImageFormat::Jpeg => strip_jpeg(bytes),
        ImageFormat::Png => strip_png(bytes),
        ImageFormat::Webp => strip_webp(bytes),
        ImageFormat::Gif => Ok(bytes.to_vec()),
    }
}

fn truncated() -> MediaError {
    MediaError::Unreadable("truncated".into())
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 2)
        .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
}

fn strip_jpeg(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    const SOS: u8 = 0xDA;
    const EOI: u8 = 0xD9;
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut i = 2;
    let mut orientation = None;
    loop {
        if b.get(i) != Some(&0xFF) {
            return Err(MediaError::Unreadable("JPEG marker expected".into()));
        }
        while b.get(i) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        let marker = *b.get(i).ok_or_else(truncated)?;
        i += 1;
        match marker {
            EOI => break,
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, marker]);
                continue;
            }
            _ => {}
        }
        let len = be16(b, i).ok_or_else(truncated)?;
        let segment = b.get(i..i + len).ok_or_else(truncated)?;
        if len < 2 {
            return Err(MediaError::Unreadable("JPEG segment length".into()));
        }
        let payload = &segment[2..];
        let keep = match marker {
            0xE0 | 0xEE => true,
            0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
            0xE1 => {
                if let Some(tiff) = payload.strip_prefix(b"Exif\0\0") {
                    orientation =
                        orientation.or(image::metadata::Orientation::from_exif_chunk(tiff));
                }
                false
            }
            0xE3..=0xEF | 0xFE => false,
            _ => true,
        };
        if marker == SOS || (0xC0..=0xCF).contains(&marker) || marker == 0xDB {
            // The first frame or table segment: write the kept orientation before it.
            if let Some(o) = orientation.take() {
                if o != image::metadata::Orientation::NoTransforms {
                    out.extend_from_slice(&exif_orientation_segment(o.to_exif()));
                }
            }
        }
        if keep {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(segment);
        }
        i += len;
        if marker == SOS {
            // Entropy-coded data: up to the next marker that is not a stuffed 0xFF00, a
            // restart marker or fill.
            let start = i;
            while i < b.len() {
                if b[i] == 0xFF {
                    match b.get(i + 1) {
                        Some(0x00 | 0xD0..=0xD7) => i += 2,
                        Some(0xFF) => i += 1,
                        _ => break,
                    }
                } else {
                    i += 1;
                }
            }
            out.extend_from_slice(&b[start..i.min(b.len())]);
            if i >= b.len() {
                // No EOI: keep what there is, as decoders do.
                return Ok(out);
            }
        }
    }
    out.extend_from_slice(&[0xFF, EOI]);
    Ok(out)
}

/// An APP1 Exif segment holding only the orientation tag (0x0112).
fn exif_orientation_segment(value: u8) -> Vec<u8> {
    let mut s = vec![0xFF, 0xE1, 0x00, 0x22];
    s.extend_from_slice(b"Exif\0\0");
    s.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // big-endian TIFF, IFD0 at 8
    s.extend_from_slice(&[0x00, 0x01]); // one entry
    s.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, value, 0, 0]); // SHORT
    s.extend_from_slice(&[0, 0, 0, 0]); // no next IFD
    s
}

fn strip_png(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    const DROP: [&[u8; 4]; 5] = [b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"tIME"];
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut i = PNG_SIGNATURE.len();
    while i < b.len() {
        let len = b
            .get(i..i + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(truncated)?;
        let end = i.checked_add(12 + len).ok_or_else(truncated)?;
        let chunk = b.get(i..end).ok_or_else(truncated)?;
        let kind = &chunk[4..8];
        if !DROP.iter().any(|d| kind == *d) {
            out.extend_from_slice(chunk);
        }
        i = end;
        if kind == b"IEND" {
            break;
        }
    }
    Ok(out)
}

fn strip_webp(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    const EXIF_FLAG: u8 = 0x08;
    const XMP_FLAG: u8 = 0x04;
    let mut body = Vec::with_capacity(b.len());
    body.extend_from_slice(b"WEBP");
    let riff_len = b
        .get(4..8)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(truncated)?;
    let end = (8 + riff_len).min(b.len());
    let mut i = 12;
    while i + 8 <= end {
        let kind = &b[i..i + 4];
        let len = usize::try_from(u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]))
            .map_err(|_| truncated())?;
        let padded = len + (len & 1);
        let chunk = b.get(i..i + 8 + padded).ok_or_else(truncated)?;
        match kind {
            b"EXIF" | b"XMP " => {}
            b"VP8X" => {
                let mut c = chunk.to_vec();
                if let Some(flags) = c.get_mut(8) {
                    *flags &= !(EXIF_FLAG | XMP_FLAG);
                }
                body.extend_from_slice(&c);
            }
            _ => body.extend_from_slice(chunk),
        }
        i += 8 + padded;
    }
    let size = u32::try_from(body.len()).map_err(|_| truncated())?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}
