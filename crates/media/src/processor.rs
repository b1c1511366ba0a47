//! [`MediaProcessor`]: the domain's [`ImageProcessor`] port on this crate's functions.

use std::io::Cursor;

use async_trait::async_trait;
use domain::attachment::AttachmentRefusal;
use domain::services::{ImageProcessor, ProcessedImage};
use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader};

use crate::{probe, strip_metadata, thumbnail, ImageFormat, ImageInfo, MediaError};

/// Probes, strips and thumbnails images on tokio's blocking threads
/// ([`tokio::task::spawn_blocking`]), never on the async workers. Needs a tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaProcessor;

impl MediaProcessor {
    /// The processor.
    pub const fn new() -> Self {
        Self
    }
}

#[async_trait]
impl ImageProcessor for MediaProcessor {
    async fn process(
        &self,
        bytes: Vec<u8>,
        max_pixels: u64,
        thumbnail_px: u32,
    ) -> Result<ProcessedImage, AttachmentRefusal> {
        run_blocking(move || process_image(&bytes, max_pixels, thumbnail_px)).await
    }
}

/// Runs `job` on a blocking thread. A job that panicked (a decoder's bug on hostile
/// bytes) or was cancelled is a refusal of the image (422), not a panic of the caller.
async fn run_blocking<F>(job: F) -> Result<ProcessedImage, AttachmentRefusal>
where
    F: FnOnce() -> Result<ProcessedImage, AttachmentRefusal> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .unwrap_or(Err(AttachmentRefusal::UnreadableImage))
}

/// What [`ImageProcessor::process`] does, synchronously: [`probe`] first (an image of more
/// than `max_pixels` is refused from its header, before anything is decoded), then
/// [`strip_metadata`] (a GIF comes back as it is) and [`thumbnail`] (`thumbnail_px` on its
/// long side). `width` and `height` are as the image is shown: a JPEG whose Exif
/// orientation turns it a quarter (kept by the stripping) has them swapped.
///
/// Refusals: [`AttachmentRefusal::TooManyPixels`]; anything else that cannot be handled
/// (not a JPEG, PNG, GIF or WebP, unreadable, a thumbnail that cannot be encoded) is
/// [`AttachmentRefusal::UnreadableImage`]: the port has no other answer, and the caller
/// sniffed the bytes as an image before.
pub fn process_image(
    bytes: &[u8],
    max_pixels: u64,
    thumbnail_px: u32,
) -> Result<ProcessedImage, AttachmentRefusal> {
    let info = probe(bytes, max_pixels).map_err(refusal)?;
    let file = strip_metadata(bytes).map_err(refusal)?;
    let thumb = thumbnail(bytes, thumbnail_px, max_pixels).map_err(refusal)?;
    let (width, height) = displayed_size(bytes, info);
    Ok(ProcessedImage {
        file,
        width,
        height,
        thumbnail: thumb.bytes,
        thumbnail_mime: thumb.mime.to_owned(),
    })
}

fn refusal(e: MediaError) -> AttachmentRefusal {
    match e {
        MediaError::TooManyPixels {
            width,
            height,
            max_pixels,
        } => AttachmentRefusal::TooManyPixels {
            width,
            height,
            max_pixels,
        },
        MediaError::NotAnImage | MediaError::Unreadable(_) | MediaError::Encode(_) => {
            AttachmentRefusal::UnreadableImage
        }
    }
}

/// The size of a JPEG as a browser shows it (its Exif orientation applied: the stripped
/// file keeps it); of the others as stored (their orientation is stripped with their
/// metadata).
fn displayed_size(bytes: &[u8], info: ImageInfo) -> (u32, u32) {
    if info.format != ImageFormat::Jpeg {
        return (info.width, info.height);
    }
    let orientation = ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Jpeg)
        .into_decoder()
        .and_then(|mut d| d.orientation())
        .unwrap_or(Orientation::NoTransforms);
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (info.height, info.width),
        _ => (info.width, info.height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_that_panics_is_a_refusal_not_a_panic() {
        let got = run_blocking(|| panic!("a decoder bug")).await;
        assert_eq!(got, Err(AttachmentRefusal::UnreadableImage));
    }

    #[tokio::test]
    async fn a_jobs_answer_is_passed_through() {
        let refused = AttachmentRefusal::TooManyPixels {
            width: 1,
            height: 2,
            max_pixels: 1,
        };
        let want = refused.clone();
        assert_eq!(run_blocking(move || Err(refused)).await, Err(want));
    }

    #[test]
    fn media_errors_map_to_the_domains_refusals() {
        assert_eq!(
            refusal(MediaError::TooManyPixels {
                width: 3,
                height: 4,
                max_pixels: 5
            }),
            AttachmentRefusal::TooManyPixels {
                width: 3,
                height: 4,
                max_pixels: 5
            }
        );
        for e in [
            MediaError::NotAnImage,
            MediaError::Unreadable("x".into()),
            MediaError::Encode("x".into()),
        ] {
            assert_eq!(refusal(e), AttachmentRefusal::UnreadableImage);
        }
    }
}
