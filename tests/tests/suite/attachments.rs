//! Attachments end to end (issue 14), in both modes: embedded (one in-process node, SQLite,
//! files under `data.dir`) and scale-out (two node processes on PostgreSQL and Redis, the
//! bytes in an S3 bucket on the moto server this binary starts). Upload -> confirm -> send
//! over WebSocket and REST -> receive live, in history and in `sync` -> download with
//! signed links (range requests, headers); the member-only rule; every refusal; expiry and
//! deletion with the message; ciphertext in an encrypted conversation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, quick, Deployment, Mode};
use e2e::ws::{WsConnect, WAIT};
use e2e::{Api, Reply, TestUser};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Cursor;
use std::time::Duration;

/// Something only EXIF carries: it must not reach anyone who downloads the photo.
const GPS_MARK: &[u8] = b"GPS-52.5200N-13.4050E-SECRET";

/// A real JPEG of `w` x `h` with an EXIF (APP1) segment holding [`GPS_MARK`].
fn photo(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(GPS_MARK);
    let len = u16::try_from(payload.len() + 2).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A small valid-looking PDF.
fn pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 5_000));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

/// A Windows executable's first bytes.
fn exe() -> Vec<u8> {
    let mut bytes = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 2_000));
    bytes
}

/// A PNG whose header claims 60000 x 60000 pixels: a decompression bomb.
fn bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&[0, 0, 0, 0]); // CRC (not checked before the pixel count)
    png.extend(std::iter::repeat_n(0u8, 100));
    png
}

/// The deployment of `mode`, its blobs in a fresh bucket in scale-out mode.
async fn deployment(mode: Mode, extra: &[(&'static str, &str)]) -> Deployment {
    let mut tuning = quick(&[]);
    for (k, v) in extra {
        tuning.push((k, (*v).to_owned()));
    }
    if mode == Mode::ScaleOut {
        let s3 = adapters_blobs::testing::fresh_bucket().await;
        tuning.push(("blobs.url", s3.url.unwrap()));
        tuning.push(("blobs.endpoint", s3.endpoint.unwrap()));
        tuning.push(("blobs.region", "us-east-1".into()));
        tuning.push(("blobs.access_key_id", "test".into()));
        tuning.push(("blobs.secret_access_key", "test".into()));
        tuning.push(("blobs.allow_http", "true".into()));
    }
    Deployment::start(mode, &tuning).await
}

fn refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.error_code(), code, "{:?}", reply.body);
}

/// `POST /conversations/{conv}/messages` with `body`.
async fn post_message(api: &Api, user: &TestUser, conv: &str, body: Value) -> Reply {
    api.post(
        &format!("/api/v1/conversations/{conv}/messages"),
        user.t(),
        body,
    )
    .await
}

/// The newest page of history as `user` reads it.
async fn history(api: &Api, user: &TestUser, conv: &str) -> Value {
    api.get(&format!("/api/v1/conversations/{conv}/messages"), user.t())
        .await
        .body
}

async fn announce(
    api: &Api,
    user: &TestUser,
    conv: &str,
    name: &str,
    mime: &str,
    size: usize,
) -> Reply {
    api.post(
        "/api/v1/attachments/upload-url",
        user.t(),
        json!({"conversation_id": conv, "filename": name, "mime_type": mime, "size": size}),
    )
    .await
}

/// PUT `bytes` to an `upload_url` (a server path in embedded mode, S3's URL in scale-out).
async fn put(base: &str, upload_url: &str, bytes: Vec<u8>) -> StatusCode {
    let url = if upload_url.starts_with('/') {
        format!("{base}{upload_url}")
    } else {
        upload_url.to_owned()
    };
    e2e::client()
        .put(url)
        .body(bytes)
        .send()
        .await
        .unwrap()
        .status()
}

async fn confirm(api: &Api, user: &TestUser, id: &str) -> Reply {
    api.post(
        &format!("/api/v1/attachments/{id}/confirm"),
        user.t(),
        json!({}),
    )
    .await
}

/// Announce, upload and confirm: the confirmed attachment.
async fn upload(
    api: &Api,
    base: &str,
    user: &TestUser,
    conv: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> Value {
    let ticket = announce(api, user, conv, name, mime, bytes.len()).await;
    assert_eq!(ticket.status, StatusCode::CREATED, "{:?}", ticket.body);
    assert_eq!(ticket.body["upload_method"], "PUT");
    let id = ticket.body["attachment_id"].as_str().unwrap().to_owned();
    let stored = put(base, ticket.body["upload_url"].as_str().unwrap(), bytes).await;
    assert!(stored.is_success(), "upload answered {stored}");
    let confirmed = confirm(api, user, &id).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);
    confirmed.body
}

/// Uploads [`pdf`] as `name` and sends it with `content`: the message as answered.
async fn send_pdf(
    api: &Api,
    base: &str,
    user: &TestUser,
    conv: &str,
    name: &str,
    content: &str,
) -> Value {
    let doc = upload(api, base, user, conv, name, "application/pdf", pdf()).await;
    let sent = post_message(
        api,
        user,
        conv,
        json!({"content": content, "attachment_ids": [doc["id"]]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    sent.body
}

struct Fetched {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

async fn fetch(base: &str, link: &str, range: Option<&str>) -> Fetched {
    let mut req = e2e::client().get(format!("{base}{link}"));
    if let Some(range) = range {
        req = req.header(RANGE, range);
    }
    let resp = req.send().await.unwrap();
    Fetched {
        status: resp.status(),
        headers: resp.headers().clone(),
        bytes: resp.bytes().await.unwrap().to_vec(),
    }
}

fn header(f: &Fetched, name: impl reqwest::header::AsHeaderName) -> &str {
    f.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The user a signed link was made for.
fn link_user(link: &str) -> &str {
    link.split(['?', '&'])
        .find_map(|p| p.strip_prefix("u="))
        .unwrap_or("")
}

async fn the_whole_flow(mode: Mode) {
    let d = deployment(mode, &[]).await;
    let api = d.api(0);
    let far = d.other(0);
    let far_api = d.api(far);
    let (a, b, outsider) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Oscar").await,
    );
    let chat = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(far), &b.token).open_ready("B").await;

    // A photo: confirmed with its size, dimensions and a thumbnail; EXIF stripped.
    let original = photo(640, 480);
    let image = upload(
        &api,
        &d.base(0),
        &a,
        &chat,
        "holiday.jpg",
        "image/jpeg",
        original.clone(),
    )
    .await;
    assert_eq!(image["mime_type"], "image/jpeg");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert!(image["thumbnail_url"].is_string(), "{image}");
    assert_eq!(link_user(image["url"].as_str().unwrap()), a.id);
    let image_id = image["id"].as_str().unwrap().to_owned();

    // Sent over WebSocket with a caption: Bob, on the other node, gets it live with links
    // signed for him.
    ws_a.send_json(
        &json!({"type": "message", "conversation_id": chat, "content": "look",
        "temp_id": "photo-1", "attachment_ids": [image_id]}),
    )
    .await;
    let ack = ws_a.ack("photo-1").await;
    assert_eq!(ack["type"], "message_sent", "{ack}");
    let live = ws_b.recv_frame("message", WAIT).await;
    let got = &live["message"]["attachments"][0];
    assert_eq!(got["id"], image_id.as_str());
    assert_eq!(got["filename"], "holiday.jpg");
    assert_eq!(got["size"], image["size"]);
    let url = got["url"].as_str().unwrap().to_owned();
    let thumb = got["thumbnail_url"].as_str().unwrap().to_owned();
    assert_eq!(link_user(&url), b.id, "{url}");

    // Bob downloads it from either node: the stripped photo, inline, nosniff.
    let file = fetch(&d.base(far), &url, None).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(header(&file, CONTENT_TYPE), "image/jpeg");
    assert_eq!(header(&file, "x-content-type-options"), "nosniff");
    assert!(header(&file, CONTENT_DISPOSITION).starts_with("inline"));
    assert!(
        !contains(&file.bytes, GPS_MARK),
        "EXIF reached the downloader"
    );
    assert!(contains(&original, GPS_MARK));
    let decoded = image::load_from_memory(&file.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (640, 480));
    let small = fetch(&d.base(0), &thumb, None).await;
    assert_eq!(small.status, StatusCode::OK);
    let small = image::load_from_memory(&small.bytes).unwrap();
    assert_eq!(small.width().max(small.height()), 320);

    // Someone else's link is no key: Oscar with Bob's link has it only because Bob's
    // signature is in it, so altering it to Oscar is refused; Oscar's own request 403.
    let forged = url.replace(&b.id, &outsider.id);
    assert_eq!(
        fetch(&d.base(0), &forged, None).await.status,
        StatusCode::FORBIDDEN
    );
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(
        fetch(&d.base(0), &unsigned, None).await.status,
        StatusCode::FORBIDDEN
    );
    refused(
        &api.get(&format!("/api/v1/attachments/{image_id}"), outsider.t())
            .await,
        StatusCode::FORBIDDEN,
        "not_participant",
    );

    // A PDF over REST, no text: a file card for Bob; history and sync carry it.
    let doc = upload(
        &far_api,
        &d.base(far),
        &a,
        &chat,
        "C:\\fakepath\\report.pdf",
        "application/pdf",
        pdf(),
    )
    .await;
    assert_eq!(doc["filename"], "report.pdf");
    assert!(doc["thumbnail_url"].is_null());
    let doc_id = doc["id"].as_str().unwrap().to_owned();
    let sent = post_message(
        &api,
        &a,
        &chat,
        json!({"content": "", "temp_id": "doc-1", "attachment_ids": [doc_id]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    assert_eq!(sent.body["content"], "");
    assert_eq!(sent.body["attachments"][0]["id"], doc_id.as_str());
    // Idempotent: the same temp_id answers the original, nothing new.
    let again = post_message(
        &api,
        &a,
        &chat,
        json!({"content": "", "temp_id": "doc-1", "attachment_ids": [doc_id]}),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["id"], sent.body["id"]);
    // Sent once: another message with it is refused, by either surface.
    refused(
        &post_message(
            &api,
            &a,
            &chat,
            json!({"content": "again", "attachment_ids": [doc_id]}),
        )
        .await,
        StatusCode::CONFLICT,
        "attachment_already_sent",
    );
    ws_a.send_json(
        &json!({"type": "message", "conversation_id": chat, "content": "again",
        "temp_id": "doc-2", "attachment_ids": [doc_id]}),
    )
    .await;
    let error = ws_a
        .recv_where("error for doc-2", WAIT, |f| {
            f["type"] == "error" && f["ref"] == "doc-2"
        })
        .await;
    assert_eq!(error["code"], "attachment_already_sent", "{error}");

    let live = ws_b.recv_frame("message", WAIT).await;
    assert_eq!(live["message"]["attachments"][0]["id"], doc_id.as_str());
    let page = history(&far_api, &b, &chat).await;
    let newest = &page[0];
    assert_eq!(newest["attachments"][0]["filename"], "report.pdf");
    let doc_url = newest["attachments"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(link_user(&doc_url), b.id);
    assert_eq!(page[1]["attachments"][0]["id"], image_id.as_str());
    // A new session of Bob's recovers both from the start (his live one has them already).
    let (mut ws_b2, _) = WsConnect::all(&d.base(0), &b.token).open_ready("B2").await;
    let replay = ws_b2.sync(&[(&chat, 0)]).await;
    let synced: Vec<&Value> = replay
        .messages
        .iter()
        .flat_map(|m| m["message"]["attachments"].as_array().unwrap().iter())
        .collect();
    assert_eq!(synced.len(), 2, "{:?}", replay.messages);
    assert!(synced
        .iter()
        .all(|a| link_user(a["url"].as_str().unwrap()) == b.id));

    // The PDF downloads as an attachment, whole or by range.
    let whole = fetch(&d.base(0), &doc_url, None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.bytes, pdf());
    assert_eq!(header(&whole, CONTENT_TYPE), "application/pdf");
    assert!(header(&whole, CONTENT_DISPOSITION).starts_with("attachment; filename=\"report.pdf\""));
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    let part = fetch(&d.base(far), &doc_url, Some("bytes=0-3")).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes, b"%PDF");
    assert_eq!(
        header(&part, CONTENT_RANGE),
        format!("bytes 0-3/{}", pdf().len())
    );
    let tail = fetch(&d.base(0), &doc_url, Some("bytes=-6")).await;
    let body = pdf();
    assert_eq!(tail.bytes, body[body.len() - 6..].to_vec());
    let past = fetch(
        &d.base(0),
        &doc_url,
        Some(&format!("bytes={}-", pdf().len() + 10)),
    )
    .await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // A file larger than the pieces a node holds in memory at once (4 MiB) comes whole,
    // and by ranges starting anywhere, long suffixes too.
    let mut big = b"%PDF-1.7\n".to_vec();
    big.extend((0..9 * 1024 * 1024u32).map(|i| (i % 251) as u8));
    let large = upload(
        &api,
        &d.base(0),
        &a,
        &chat,
        "big.pdf",
        "application/pdf",
        big.clone(),
    )
    .await;
    let sent_big = post_message(
        &api,
        &a,
        &chat,
        json!({"content": "big", "attachment_ids": [large["id"]]}),
    )
    .await;
    assert_eq!(sent_big.status, StatusCode::CREATED, "{:?}", sent_big.body);
    let big_url = sent_big.body["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let whole = fetch(&d.base(far), &big_url, None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert!(whole.bytes == big, "the large file came back different");
    let from = fetch(&d.base(0), &big_url, Some("bytes=1000-")).await;
    assert_eq!(from.status, StatusCode::PARTIAL_CONTENT);
    assert!(from.bytes == big[1000..]);
    assert_eq!(
        header(&from, CONTENT_RANGE),
        format!("bytes 1000-{}/{}", big.len() - 1, big.len())
    );
    let across = fetch(&d.base(0), &big_url, Some("bytes=4194000-8389000")).await;
    assert!(across.bytes == big[4_194_000..=8_389_000]);
    let suffix = fetch(&d.base(0), &big_url, Some("bytes=-5000000")).await;
    assert!(suffix.bytes == big[big.len() - 5_000_000..]);
    assert_eq!(
        header(&suffix, CONTENT_RANGE),
        format!(
            "bytes {}-{}/{}",
            big.len() - 5_000_000,
            big.len() - 1,
            big.len()
        )
    );

    // Deleting the message deletes its files: the links stop working.
    let deleted = api
        .delete(
            &format!(
                "/api/v1/conversations/{chat}/messages/{}",
                sent.body["id"].as_str().unwrap()
            ),
            a.t(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    assert_eq!(deleted.body["attachments"], json!([]));
    assert_eq!(
        fetch(&d.base(0), &doc_url, None).await.status,
        StatusCode::NOT_FOUND
    );
    // The photo's message stays, and so does the photo.
    assert_eq!(fetch(&d.base(0), &url, None).await.status, StatusCode::OK);
    ws_a.close().await;
    ws_b.close().await;
    ws_b2.close().await;
}

#[tokio::test]
async fn upload_send_receive_and_download_embedded() {
    the_whole_flow(Mode::Embedded).await;
}

#[tokio::test]
async fn upload_send_receive_and_download_scale_out() {
    the_whole_flow(Mode::ScaleOut).await;
}

async fn refusals(mode: Mode) {
    let d = deployment(
        mode,
        &[
            ("attachments.max_size_bytes", "100000"),
            ("attachments.uploads_per_minute", "1"),
            ("attachments.upload_burst", "25"),
        ],
    )
    .await;
    let api = d.api(0);
    let base = d.base(0);
    let (a, b, outsider) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Oscar").await,
    );
    let chat = cluster::direct(&api, &a, &b).await;

    // Before anything is stored: too large, not allowed, malformed, empty, not a member.
    let cases: [(&TestUser, &str, &str, usize, StatusCode, &str); 6] = [
        (
            &a,
            "big.pdf",
            "application/pdf",
            100_001,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            &a,
            "x.zip",
            "application/zip",
            10,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "type_not_allowed",
        ),
        (
            &a,
            "x.png",
            "png",
            10,
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed_mime_type",
        ),
        (
            &a,
            "",
            "image/png",
            10,
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed_filename",
        ),
        (
            &a,
            "x.png",
            "image/png",
            0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_file",
        ),
        (
            &outsider,
            "x.png",
            "image/png",
            10,
            StatusCode::FORBIDDEN,
            "not_participant",
        ),
    ];
    for (user, name, mime, size, status, code) in cases {
        refused(
            &announce(&api, user, &chat, name, mime, size).await,
            status,
            code,
        );
    }

    // A renamed .exe declared as image/png: the bytes say otherwise (415), and it can
    // neither be confirmed later nor sent.
    let bytes = exe();
    let ticket = announce(&api, &a, &chat, "cat.png", "image/png", bytes.len()).await;
    let exe_id = ticket.body["attachment_id"].as_str().unwrap().to_owned();
    assert!(
        put(&base, ticket.body["upload_url"].as_str().unwrap(), bytes)
            .await
            .is_success()
    );
    refused(
        &confirm(&api, &a, &exe_id).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content_mismatch",
    );
    refused(
        &confirm(&api, &a, &exe_id).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "upload_missing",
    );
    refused(
        &post_message(
            &api,
            &a,
            &chat,
            json!({"content": "cat", "attachment_ids": [exe_id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attachment_unavailable",
    );

    // A decompression bomb: its header alone is refused.
    let bytes = bomb();
    let ticket = announce(&api, &a, &chat, "bomb.png", "image/png", bytes.len()).await;
    let bomb_id = ticket.body["attachment_id"].as_str().unwrap().to_owned();
    assert!(
        put(&base, ticket.body["upload_url"].as_str().unwrap(), bytes)
            .await
            .is_success()
    );
    refused(
        &confirm(&api, &a, &bomb_id).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_pixels",
    );

    // Confirming before uploading; uploading other than what was announced.
    let ticket = announce(&api, &a, &chat, "r.pdf", "application/pdf", pdf().len()).await;
    let early = ticket.body["attachment_id"].as_str().unwrap().to_owned();
    refused(
        &confirm(&api, &a, &early).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "upload_missing",
    );
    let mut longer = pdf();
    longer.extend_from_slice(b"more");
    let stored = put(&base, ticket.body["upload_url"].as_str().unwrap(), longer).await;
    if mode == Mode::Embedded {
        // The server's own endpoint refuses it at once...
        assert_eq!(stored, StatusCode::UNPROCESSABLE_ENTITY);
    } else {
        // ...S3 takes any bytes: confirm checks the stored size.
        assert!(stored.is_success());
        refused(
            &confirm(&api, &a, &early).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    // Only the announcing user confirms.
    refused(
        &confirm(&api, &b, &early).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // A confirmed attachment is sendable only by its uploader, only where it was uploaded.
    let doc = upload(&api, &base, &a, &chat, "ok.pdf", "application/pdf", pdf()).await;
    let doc_id = doc["id"].as_str().unwrap();
    refused(
        &post_message(
            &api,
            &b,
            &chat,
            json!({"content": "mine?", "attachment_ids": [doc_id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attachment_unavailable",
    );
    let other = cluster::direct(&api, &a, &outsider).await;
    refused(
        &post_message(
            &api,
            &a,
            &other,
            json!({"content": "here?", "attachment_ids": [doc_id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attachment_unavailable",
    );
    let eleven: Vec<String> = (0..11).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    refused(
        &post_message(
            &api,
            &a,
            &chat,
            json!({"content": "many", "attachment_ids": eleven}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    // Nothing of those refusals was written: the conversation has no message.
    let page = history(&api, &a, &chat).await;
    assert_eq!(page, json!([]));

    // The per-user upload rate: the burst is spent, the next announce waits.
    let mut limited = None;
    for _ in 0..30 {
        let reply = announce(&api, &a, &chat, "r.pdf", "application/pdf", 10).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the upload rate limit never answered 429");
    assert_eq!(limited.error_code(), "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
    // Another user is not limited by Alice's uploads.
    let ok = announce(&api, &b, &chat, "b.pdf", "application/pdf", 10).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
}

#[tokio::test]
async fn every_refusal_embedded() {
    refusals(Mode::Embedded).await;
}

#[tokio::test]
async fn every_refusal_scale_out() {
    refusals(Mode::ScaleOut).await;
}

/// A member removed from a group loses the files with the conversation: their links answer
/// 403 from then on.
#[tokio::test]
async fn a_member_removed_cannot_download_any_more() {
    let d = deployment(Mode::Embedded, &[]).await;
    let api = d.api(0);
    let (a, b, c) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Cleo").await,
    );
    let team = cluster::group(&api, &a, &[&b, &c]).await;
    send_pdf(&api, &d.base(0), &a, &team, "plan.pdf", "the plan").await;
    let page = history(&api, &c, &team).await;
    let link = page[0]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fetch(&d.base(0), &link, None).await.status, StatusCode::OK);
    let removed = api
        .delete(
            &format!("/api/v1/conversations/{team}/members/{}", c.id),
            a.t(),
        )
        .await;
    assert!(removed.status.is_success(), "{:?}", removed.body);
    let after = fetch(&d.base(0), &link, None).await;
    assert_eq!(after.status, StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_slice(&after.bytes).unwrap();
    assert_eq!(body["error"]["code"], "not_participant");
}

/// Uploads never sent expire; the sweeper deletes their records and bytes, and nothing a
/// message shows.
#[tokio::test]
async fn unsent_uploads_expire_and_sent_ones_stay() {
    let d = deployment(
        Mode::Embedded,
        &[
            ("attachments.expire_after", "3s"),
            ("attachments.sweep_interval", "200ms"),
        ],
    )
    .await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let chat = cluster::direct(&api, &a, &b).await;
    send_pdf(&api, &d.base(0), &a, &chat, "kept.pdf", "").await;
    let dropped = upload(
        &api,
        &d.base(0),
        &a,
        &chat,
        "dropped.pdf",
        "application/pdf",
        pdf(),
    )
    .await;
    let never = announce(&api, &a, &chat, "never.pdf", "application/pdf", 10).await;
    let never_id = never.body["attachment_id"].as_str().unwrap().to_owned();
    let dropped_id = dropped["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let gone = api
            .get(&format!("/api/v1/attachments/{dropped_id}"), a.t())
            .await;
        if gone.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the unsent upload never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fetch(&d.base(0), dropped["url"].as_str().unwrap(), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The announced one (never uploaded) went too: it cannot be confirmed any more.
    refused(
        &confirm(&api, &a, &never_id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The sent one stays, long past the expiry.
    let page = history(&api, &b, &chat).await;
    let link = page[0]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let still = fetch(&d.base(0), &link, None).await;
    assert_eq!(still.status, StatusCode::OK);
    assert_eq!(still.bytes, pdf());
}

/// In an end-to-end encrypted conversation the server takes ciphertext: any declared type,
/// no sniffing, no thumbnail, served as `application/octet-stream` to download.
#[tokio::test]
async fn an_encrypted_conversation_stores_and_serves_ciphertext() {
    let d = deployment(Mode::Embedded, &[]).await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let chat = cluster::direct(&api, &a, &b).await;
    let enabled = api
        .post(
            &format!("/api/v1/conversations/{chat}/encryption"),
            a.t(),
            json!({}),
        )
        .await;
    assert!(enabled.status.is_success(), "{:?}", enabled.body);
    let ciphertext: Vec<u8> = (0..4_096u32).map(|i| (i * 31 % 251) as u8).collect();
    let file = upload(
        &api,
        &d.base(0),
        &a,
        &chat,
        "encrypted.bin",
        "application/octet-stream",
        ciphertext.clone(),
    )
    .await;
    assert!(file["thumbnail_url"].is_null());
    assert!(file["width"].is_null());
    let envelope = format!(
        r#"{{"v":1,"kid":1,"iv":"{}","ct":"{}"}}"#,
        domain::encryption::encode_base64url(&[1; 12]),
        domain::encryption::encode_base64url(&[2; 40])
    );
    let sent = post_message(
        &api,
        &a,
        &chat,
        json!({"content": envelope, "content_type": "encrypted", "attachment_ids": [file["id"]]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let page = history(&api, &b, &chat).await;
    let link = page[0]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = fetch(&d.base(0), &link, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.bytes, ciphertext);
    assert_eq!(header(&got, CONTENT_TYPE), "application/octet-stream");
    assert!(header(&got, CONTENT_DISPOSITION).starts_with("attachment"));
}
