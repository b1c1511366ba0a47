//! The image functions on real images built here with `image`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::{DynamicImage, Frame, ImageDecoder, ImageReader, Rgba, RgbaImage};
use media::{probe, strip_metadata, thumbnail, ImageFormat, MediaError, THUMBNAIL_LONG_SIDE};

const MAX_PIXELS: u64 = 40_000_000;

fn picture(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
        Rgba([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x + y) % 256) as u8,
            255,
        ])
    }))
}

fn encode(img: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let img = if format == image::ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(img.to_rgb8())
    } else {
        img.clone()
    };
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    c.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    c
}

/// A big-endian TIFF block: IFD0 with Orientation and a GPS IFD pointer; the GPS IFD with
/// GPSLatitudeRef "N" and GPSLongitudeRef "E" (and the marker string "SECRETGPS" after it).
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\0\x2A\0\0\0\x08".to_vec();
    t.extend_from_slice(&[0, 2]); // IFD0: two entries
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]); // GPS IFD at 38
    t.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(t.len(), 38);
    t.extend_from_slice(&[0, 2]);
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    t.extend_from_slice(&[0, 3, 0, 2, 0, 0, 0, 2, b'E', 0, 0, 0]);
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(b"SECRETGPS");
    t
}

/// The JPEG with an Exif APP1 and an XMP APP1 right after SOI, and a comment.
fn jpeg_with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(exif_with_gps(orientation));
    let mut out = jpeg[..2].to_vec();
    for (marker, payload) in [
        (0xE1u8, exif),
        (
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>SECRETXMP</x:xmpmeta>".to_vec(),
        ),
        (0xFE, b"SECRETCOMMENT".to_vec()),
    ] {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn pixels(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes)
        .unwrap()
        .to_rgba8()
        .into_raw()
}

fn orientation(bytes: &[u8]) -> image::metadata::Orientation {
    let mut d = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    d.orientation().unwrap()
}

#[test]
fn probe_reads_size_and_format_of_each_image_type() {
    let img = picture(64, 48);
    for (format, want) in [
        (image::ImageFormat::Png, ImageFormat::Png),
        (image::ImageFormat::Jpeg, ImageFormat::Jpeg),
        (image::ImageFormat::Gif, ImageFormat::Gif),
        (image::ImageFormat::WebP, ImageFormat::Webp),
    ] {
        let info = probe(&encode(&img, format), MAX_PIXELS).unwrap();
        assert_eq!((info.width, info.height, info.format), (64, 48, want));
    }
    assert_eq!(probe(b"MZ\x90\0", MAX_PIXELS), Err(MediaError::NotAnImage));
}

#[test]
fn a_png_header_declaring_100000_by_100000_is_refused_before_decoding() {
    // Signature and IHDR only: 33 bytes claiming ten gigapixels.
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    bomb.extend(png_chunk(b"IHDR", &ihdr));
    assert_eq!(bomb.len(), 33);
    let err = probe(&bomb, MAX_PIXELS).unwrap_err();
    assert_eq!(
        err,
        MediaError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            max_pixels: MAX_PIXELS
        }
    );
    assert_eq!(err.status(), 422);
    // The thumbnail refuses it the same way, without decoding.
    assert_eq!(thumbnail(&bomb, 320, MAX_PIXELS).unwrap_err(), err);
}

#[test]
fn a_truncated_image_is_unreadable() {
    let png = encode(&picture(8, 8), image::ImageFormat::Png);
    let err = probe(&png[..12], MAX_PIXELS).unwrap_err();
    assert!(matches!(err, MediaError::Unreadable(_)), "{err:?}");
    assert_eq!(err.status(), 422);
}

#[test]
fn thumbnails_fit_the_long_side_and_never_enlarge() {
    for (w, h, tw, th) in [
        (1000, 500, 320, 160),
        (300, 1200, 80, 320),
        (100, 50, 100, 50),
        (4000, 3, 320, 1),
    ] {
        for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
            let t = thumbnail(
                &encode(&picture(w, h), format),
                THUMBNAIL_LONG_SIDE,
                MAX_PIXELS,
            )
            .unwrap();
            assert_eq!((t.width, t.height), (tw, th), "{w}x{h} {format:?}");
            assert_eq!((t.original.width, t.original.height), (w, h));
            let decoded = image::load_from_memory(&t.bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (tw, th));
            let want = if format == image::ImageFormat::Jpeg {
                "image/jpeg"
            } else {
                "image/png"
            };
            assert_eq!(t.mime, want);
            assert_eq!(
                ImageFormat::sniff(&t.bytes).map(ImageFormat::mime),
                Some(want)
            );
        }
    }
}

#[test]
fn an_animated_gif_gives_its_first_frame() {
    let red = RgbaImage::from_pixel(40, 20, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(40, 20, Rgba([0, 0, 255, 255]));
    let mut gif = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut gif);
        enc.encode_frames(vec![Frame::new(red), Frame::new(blue)])
            .unwrap();
    }
    let t = thumbnail(&gif, 320, MAX_PIXELS).unwrap();
    assert_eq!((t.width, t.height, t.mime), (40, 20, "image/png"));
    let px = image::load_from_memory(&t.bytes).unwrap().to_rgba8();
    assert_eq!(px.get_pixel(10, 10), &Rgba([255, 0, 0, 255]));
}

#[test]
fn a_webp_thumbnail_is_made() {
    let webp = encode(&picture(640, 320), image::ImageFormat::WebP);
    let t = thumbnail(&webp, 320, MAX_PIXELS).unwrap();
    assert_eq!((t.width, t.height), (320, 160));
}

#[test]
fn jpeg_exif_gps_xmp_and_comment_are_stripped_and_pixels_kept() {
    let plain = encode(&picture(64, 48), image::ImageFormat::Jpeg);
    let tagged = jpeg_with_exif(&plain, 1);
    assert!(contains(&tagged, b"SECRETGPS"));
    let stripped = strip_metadata(&tagged).unwrap();
    for secret in [&b"SECRETGPS"[..], b"SECRETXMP", b"SECRETCOMMENT", b"Exif"] {
        assert!(
            !contains(&stripped, secret),
            "{}",
            String::from_utf8_lossy(secret)
        );
    }
    assert_eq!(pixels(&stripped), pixels(&plain));
    // Upright: nothing but the Exif was removed, so the result is the untagged file.
    assert_eq!(stripped, plain);
}

#[test]
fn a_jpeg_keeps_its_orientation_but_not_its_location() {
    let plain = encode(&picture(64, 48), image::ImageFormat::Jpeg);
    let tagged = jpeg_with_exif(&plain, 6);
    assert_eq!(orientation(&tagged), image::metadata::Orientation::Rotate90);
    let stripped = strip_metadata(&tagged).unwrap();
    assert!(!contains(&stripped, b"SECRETGPS"));
    assert!(!contains(&stripped, &[0x88, 0x25]), "GPS IFD pointer left");
    assert_eq!(
        orientation(&stripped),
        image::metadata::Orientation::Rotate90
    );
    assert_eq!(pixels(&stripped), pixels(&plain));
    // The thumbnail is turned upright: 64x48 rotated is 48x64.
    let t = thumbnail(&tagged, 320, MAX_PIXELS).unwrap();
    assert_eq!((t.width, t.height), (48, 64));
}

#[test]
fn data_after_a_jpeg_end_is_dropped() {
    let plain = encode(&picture(16, 16), image::ImageFormat::Jpeg);
    let mut with_tail = plain.clone();
    with_tail.extend(jpeg_with_exif(&plain, 1));
    assert_eq!(strip_metadata(&with_tail).unwrap(), plain);
}

#[test]
fn png_exif_and_text_chunks_are_stripped_and_the_rest_is_byte_exact() {
    let plain = encode(&picture(32, 32), image::ImageFormat::Png);
    // After IHDR (8 + 25 bytes): an eXIf, a tEXt, an iTXt and a zTXt chunk.
    let mut tagged = plain[..33].to_vec();
    tagged.extend(png_chunk(b"eXIf", &exif_with_gps(1)));
    tagged.extend(png_chunk(b"tEXt", b"Comment\0SECRETTEXT"));
    tagged.extend(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0SECRETXMP"));
    tagged.extend(png_chunk(b"zTXt", b"Author\0\0x"));
    tagged.extend_from_slice(&plain[33..]);
    assert_eq!(pixels(&tagged), pixels(&plain));
    let stripped = strip_metadata(&tagged).unwrap();
    assert_eq!(stripped, plain);
    assert!(!contains(&stripped, b"SECRET"));
}

#[test]
fn webp_exif_and_xmp_chunks_are_stripped_and_the_header_fixed() {
    let simple = encode(&picture(16, 16), image::ImageFormat::WebP);
    // Re-wrap the VP8L bitstream as an extended file: VP8X (EXIF and XMP flags), VP8L,
    // EXIF, XMP.
    let vp8l = &simple[12..];
    let mut vp8x = b"VP8X\x0a\0\0\0".to_vec();
    vp8x.extend_from_slice(&[0x08 | 0x04, 0, 0, 0, 15, 0, 0, 15, 0, 0]);
    let exif = exif_with_gps(1);
    let mut exif_chunk = b"EXIF".to_vec();
    exif_chunk.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    exif_chunk.extend_from_slice(&exif);
    if exif.len() % 2 == 1 {
        exif_chunk.push(0);
    }
    let mut xmp_chunk = b"XMP \x0a\0\0\0SECRETXMP!".to_vec();
    xmp_chunk.truncate(18);
    let wrap = |chunks: &[&[u8]]| {
        let body: Vec<u8> = chunks.concat();
        let mut f = b"RIFF".to_vec();
        f.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
        f.extend_from_slice(b"WEBP");
        f.extend(body);
        f
    };
    let tagged = wrap(&[&vp8x, vp8l, &exif_chunk, &xmp_chunk]);
    assert_eq!(pixels(&tagged), pixels(&simple));
    let stripped = strip_metadata(&tagged).unwrap();
    let mut clean_vp8x = vp8x.clone();
    clean_vp8x[8] = 0;
    assert_eq!(stripped, wrap(&[&clean_vp8x, vp8l]));
    assert_eq!(pixels(&stripped), pixels(&simple));
}

#[test]
fn a_gif_is_returned_as_it_is() {
    let gif = encode(&picture(8, 8), image::ImageFormat::Gif);
    assert_eq!(strip_metadata(&gif).unwrap(), gif);
    assert_eq!(strip_metadata(b"%PDF-1.7"), Err(MediaError::NotAnImage));
}

/// An animated WebP made by hand from two lossless stills: VP8X, ANIM, two ANMF frames.
fn animated_webp(frames: &[RgbaImage]) -> Vec<u8> {
    let u24 = |v: u32| v.to_le_bytes()[..3].to_vec();
    let (w, h) = frames[0].dimensions();
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X\x0a\0\0\0");
    body.extend_from_slice(&[0x02 | 0x10, 0, 0, 0]); // animation, alpha
    body.extend(u24(w - 1));
    body.extend(u24(h - 1));
    body.extend_from_slice(b"ANIM\x06\0\0\0\0\0\0\0\0\0");
    for frame in frames {
        let still = encode(
            &DynamicImage::ImageRgba8(frame.clone()),
            image::ImageFormat::WebP,
        );
        let vp8l = &still[12..];
        let mut anmf = Vec::new();
        anmf.extend(u24(0));
        anmf.extend(u24(0));
        anmf.extend(u24(w - 1));
        anmf.extend(u24(h - 1));
        anmf.extend(u24(100));
        anmf.push(0);
        anmf.extend_from_slice(vp8l);
        body.extend_from_slice(b"ANMF");
        body.extend_from_slice(&(anmf.len() as u32).to_le_bytes());
        body.extend_from_slice(&anmf);
        if anmf.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut f = b"RIFF".to_vec();
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend(body);
    f
}

#[test]
fn an_animated_webp_gives_its_first_frame() {
    let red = RgbaImage::from_pixel(40, 20, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(40, 20, Rgba([0, 0, 255, 255]));
    let webp = animated_webp(&[red, blue]);
    let info = probe(&webp, MAX_PIXELS).unwrap();
    assert_eq!(
        (info.width, info.height, info.format),
        (40, 20, ImageFormat::Webp)
    );
    let t = thumbnail(&webp, 320, MAX_PIXELS).unwrap();
    assert_eq!((t.width, t.height, t.mime), (40, 20, "image/png"));
    let px = image::load_from_memory(&t.bytes).unwrap().to_rgba8();
    // Red, give or take the rounding of the frame's compositing.
    let [r, g, b, _] = px.get_pixel(10, 10).0;
    assert!(r > 240 && g < 10 && b < 10, "{r} {g} {b}");
    // Stripping keeps an animation without metadata as it is.
    assert_eq!(strip_metadata(&webp).unwrap(), webp);
}

#[test]
fn jpeg_gif_and_webp_headers_declaring_huge_sizes_are_refused() {
    // JPEG: SOI, then a baseline SOF0 of 60000x60000, one component; nothing else.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8];
    jpeg.extend_from_slice(&60_000u16.to_be_bytes());
    jpeg.extend_from_slice(&60_000u16.to_be_bytes());
    jpeg.extend_from_slice(&[1, 1, 0x11, 0]);
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    // GIF: a logical screen of 65535x65535 and one image descriptor as large.
    let mut gif = b"GIF89a\xff\xff\xff\xff\0\0\0".to_vec();
    gif.extend_from_slice(b",\0\0\0\0\xff\xff\xff\xff\x00\x02\x02\x44\x01\x00;");
    // WebP: a VP8X canvas of 16384x16384 and no frame at all.
    let mut webp = b"RIFF\x12\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    webp.extend_from_slice(&[0xFF, 0x3F, 0x00, 0xFF, 0x3F, 0x00]);
    for bytes in [jpeg, gif, webp] {
        let err = probe(&bytes, MAX_PIXELS).unwrap_err();
        assert_eq!(err.status(), 422, "{err:?}");
        assert!(matches!(err, MediaError::TooManyPixels { .. }), "{err:?}");
        assert_eq!(
            thumbnail(&bytes, 320, MAX_PIXELS).unwrap_err().status(),
            422
        );
    }
}

// ---- MediaProcessor: the domain's ImageProcessor port ----

use domain::attachment::AttachmentRefusal;
use domain::services::ImageProcessor;
use media::MediaProcessor;

#[tokio::test]
async fn the_processor_strips_a_jpegs_location_and_thumbnails_it() {
    let plain = encode(&picture(800, 600), image::ImageFormat::Jpeg);
    let tagged = jpeg_with_exif(&plain, 1);
    let done = MediaProcessor::new()
        .process(tagged, MAX_PIXELS, THUMBNAIL_LONG_SIDE)
        .await
        .unwrap();
    for secret in [&b"SECRETGPS"[..], b"SECRETXMP", b"SECRETCOMMENT", b"Exif"] {
        assert!(
            !contains(&done.file, secret),
            "{}",
            String::from_utf8_lossy(secret)
        );
    }
    assert_eq!(pixels(&done.file), pixels(&plain));
    assert_eq!((done.width, done.height), (800, 600));
    assert_eq!(done.thumbnail_mime, "image/jpeg");
    let thumb = image::load_from_memory(&done.thumbnail).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
}

#[tokio::test]
async fn the_processor_answers_the_size_a_rotated_jpeg_is_shown_at() {
    let tagged = jpeg_with_exif(&encode(&picture(64, 48), image::ImageFormat::Jpeg), 6);
    let done = MediaProcessor::new()
        .process(tagged, MAX_PIXELS, THUMBNAIL_LONG_SIDE)
        .await
        .unwrap();
    assert!(!contains(&done.file, b"SECRETGPS"));
    assert_eq!((done.width, done.height), (48, 64));
    let thumb = image::load_from_memory(&done.thumbnail).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (48, 64));
}

#[tokio::test]
async fn the_processor_refuses_a_bomb_from_its_header() {
    // 33 bytes claiming ten gigapixels: no decoder could allocate that, so an answer at
    // all (let alone this one) shows nothing was decoded.
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    bomb.extend(png_chunk(b"IHDR", &ihdr));
    let err = MediaProcessor::new()
        .process(bomb, MAX_PIXELS, THUMBNAIL_LONG_SIDE)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AttachmentRefusal::TooManyPixels {
            width: 100_000,
            height: 100_000,
            max_pixels: MAX_PIXELS
        }
    );
    assert_eq!(err.status(), 422);
}

#[tokio::test]
async fn the_processor_refuses_what_it_cannot_read_and_keeps_a_gif_as_it_is() {
    let processor = MediaProcessor::new();
    let png = encode(&picture(8, 8), image::ImageFormat::Png);
    for bytes in [png[..20].to_vec(), b"%PDF-1.7\n".to_vec(), Vec::new()] {
        let err = processor
            .process(bytes, MAX_PIXELS, THUMBNAIL_LONG_SIDE)
            .await
            .unwrap_err();
        assert_eq!(err, AttachmentRefusal::UnreadableImage);
    }
    let gif = encode(&picture(40, 20), image::ImageFormat::Gif);
    let done = processor
        .process(gif.clone(), MAX_PIXELS, 10)
        .await
        .unwrap();
    assert_eq!(done.file, gif);
    assert_eq!((done.width, done.height), (40, 20));
    assert_eq!(done.thumbnail_mime, "image/png");
    let thumb = image::load_from_memory(&done.thumbnail).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (10, 5));
}

#[tokio::test(flavor = "current_thread")]
async fn the_processor_leaves_a_single_threaded_runtime_free_while_it_works() {
    // On a current-thread runtime, work done on the async worker would block the ticker
    // below until it finished; on a blocking thread, the ticker runs meanwhile.
    let big = encode(&picture(1200, 800), image::ImageFormat::Png);
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    let done = MediaProcessor::new()
        .process(big, MAX_PIXELS, THUMBNAIL_LONG_SIDE)
        .await
        .unwrap();
    ticker.abort();
    assert_eq!((done.width, done.height), (1200, 800));
    assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 1);
}
