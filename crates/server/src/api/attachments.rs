//! `/attachments`: files and images (issue 14). Upload flow (seed 003's): `upload-url`
//! announces a file and answers where to PUT its bytes (the object store's presigned URL in
//! scale-out mode, this server's signed `/content` endpoint in embedded mode); `confirm`
//! checks the stored bytes and makes the attachment sendable; a message then carries it
//! (`attachment_ids` on send). Downloads go through signed links (`url`, `thumbnail_url`)
//! that carry no access token: the server checks the signature, then that the reader is
//! (still) a member of the conversation.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use domain::attachment::Attachment;
use domain::blob::ByteRange;
use domain::services::{ChatError, Download, Variant};
use domain::{AttachmentId, ConversationId, UserId};
use futures_util::StreamExt;
use protocol::rest::{AttachmentDto, UploadUrlRequest, UploadUrlResponse};
use protocol::ErrorBody;
use realtime::links::{self, LinkKind, SignedQuery};
use serde::Deserialize;
use utoipa::IntoParams;

use super::body::JsonBody;
use super::ids::parse_or_nil;

/// An attachment as `reader` sees it: links signed for them.
fn dto(state: &AppState, attachment: &Attachment, reader: UserId) -> AttachmentDto {
    let mut dto = links::attachment(attachment);
    state.links.sign_attachment(&mut dto, reader, Utc::now());
    dto
}

/// Announces an upload: answers the attachment id and where to PUT its bytes. Refused
/// before anything is stored: too large (413), a type not accepted (415; any type in an
/// end-to-end encrypted conversation), a malformed type or filename, or no bytes (422).
#[utoipa::path(
    post, operation_id = "createUploadUrl", path = "/api/v1/attachments/upload-url", tag = "attachments",
    request_body = UploadUrlRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Announced: PUT the bytes to `upload_url`, then confirm", body = UploadUrlResponse),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 413, description = "`too_large`: over `attachments.max_size_bytes`", body = ErrorBody),
        (status = 415, description = "`type_not_allowed`", body = ErrorBody),
        (status = 422, description = "`malformed_mime_type`, `malformed_filename`, `empty_file`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many uploads (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "`unavailable`: storage or the blob store down", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn upload_url(
    user: AuthUser,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<UploadUrlRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .upload_limiter
        .check(user.0)
        .map_err(ApiError::rate_limited)?;
    let ticket = state
        .attachments
        .announce(
            user.0,
            ConversationId::from_uuid(body.conversation_id),
            &body.filename,
            &body.mime_type,
            body.size,
        )
        .await?;
    let id = ticket.attachment.id;
    let now = Utc::now();
    let (upload_url, expires_at) = match ticket.presigned_url {
        Some(url) => {
            let ttl = chrono::Duration::from_std(state.attachments.settings().url_ttl)
                .unwrap_or(chrono::Duration::minutes(15));
            (url, now + ttl)
        }
        None => {
            let path = links::path(id, LinkKind::Upload);
            let expiry = state.links.expiry(now);
            (
                state.links.sign(&path, user.0, now),
                chrono::DateTime::from_timestamp(expiry, 0).unwrap_or(now),
            )
        }
    };
    tracing::info!(attachment_id = %id, size = body.size, "upload announced");
    Ok(HttpResponse::Created().json(UploadUrlResponse {
        attachment_id: id.as_uuid(),
        upload_url,
        upload_method: "PUT".to_owned(),
        expires_at,
    }))
}

/// The query of a signed link.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The user the link was made for.
    #[param(value_type = Option<uuid::Uuid>)]
    u: Option<String>,
    /// Expiry, Unix seconds.
    #[param(value_type = Option<i64>)]
    e: Option<String>,
    /// Signature.
    #[param(value_type = Option<String>)]
    s: Option<String>,
}

/// The user a signed link of `path` was made for, if the link is valid and unexpired;
/// else 403 (`forbidden`: the same answer for a forged, altered or expired link).
fn signed_user(state: &AppState, path: &str, query: &LinkQuery) -> Result<UserId, ApiError> {
    let refused = || ApiError::Forbidden("the link is invalid or expired: fetch a new one");
    let user = query
        .u
        .as_deref()
        .and_then(|u| u.parse::<uuid::Uuid>().ok())
        .map(UserId::from_uuid)
        .ok_or_else(refused)?;
    let expires = query
        .e
        .as_deref()
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or_else(refused)?;
    let signed = SignedQuery {
        user,
        expires,
        signature: query.s.clone().unwrap_or_default(),
    };
    if state.links.verify(path, &signed, Utc::now()) {
        Ok(user)
    } else {
        Err(refused())
    }
}

/// The embedded store's upload endpoint (what `upload_url` names in embedded mode): the
/// bytes of an announced attachment, exactly as many as announced. No Authorization header:
/// the link is signed for the uploader. Nothing is stored on a refusal.
#[utoipa::path(
    put, operation_id = "uploadAttachment", path = "/api/v1/attachments/{id}/content", tag = "attachments",
    params(("id" = uuid::Uuid, Path, description = "Attachment id"), LinkQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored: now confirm it"),
        (status = 403, description = "`forbidden`: an invalid or expired link", body = ErrorBody),
        (status = 404, description = "`not_found`: no such pending attachment of the link's user", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: not the announced size; `attachment_unavailable`: confirmed already", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<LinkQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id: AttachmentId = parse_or_nil(&id);
    let user = signed_user(&state, req.path(), &query)?;
    let max = state.attachments.settings().limits.max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|size| *size > max) {
        return Err(domain::attachment::AttachmentRefusal::TooLarge { size, max }.into());
    }
    // Read at most one byte past the limit: enough to refuse, never more in memory.
    let cap = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(declared.map_or(0, |d| d as usize).min(cap));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::validation("body", e.to_string()))?;
        let room = cap - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= cap {
            break;
        }
    }
    state.attachments.receive_upload(user, id, bytes).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Checks the uploaded bytes and makes the attachment sendable: its size, its type by its
/// magic numbers (never the declared type alone), an image's pixel count; strips an
/// image's metadata (EXIF, location) and makes its thumbnail. A refused upload is deleted:
/// PUT again, then confirm again. Confirming twice answers the attachment again.
#[utoipa::path(
    post, operation_id = "confirmAttachment", path = "/api/v1/attachments/{id}/confirm", tag = "attachments",
    params(("id" = uuid::Uuid, Path, description = "Attachment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Confirmed: send it with `attachment_ids`", body = AttachmentDto),
        (status = 403, description = "`not_participant`: no longer a member", body = ErrorBody),
        (status = 404, description = "`not_found`: no such attachment of the caller", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 415, description = "`content_mismatch`: the bytes are not of the declared type", body = ErrorBody),
        (status = 422, description = "`upload_missing`, `validation_failed` (not the announced size), `too_many_pixels`, `unreadable_image`, `empty_file`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn confirm(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: AttachmentId = parse_or_nil(&id);
    let attachment = state.attachments.confirm(user.0, id).await?;
    tracing::info!(attachment_id = %id, mime_type = %attachment.mime_type, "upload confirmed");
    Ok(HttpResponse::Ok().json(dto(&state, &attachment, user.0)))
}

/// An attachment with fresh links: one sent in a conversation of the caller, or the
/// caller's own upload.
#[utoipa::path(
    get, operation_id = "getAttachment", path = "/api/v1/attachments/{id}", tag = "attachments",
    params(("id" = uuid::Uuid, Path, description = "Attachment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AttachmentDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn get(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: AttachmentId = parse_or_nil(&id);
    let attachment = state.attachments.visible(user.0, id).await?;
    Ok(HttpResponse::Ok().json(dto(&state, &attachment, user.0)))
}

/// The file (a signed `url`). `Range` requests are answered 206 (audio and video seek).
/// `Content-Disposition: attachment` for anything but an image; always
/// `X-Content-Type-Options: nosniff`.
#[utoipa::path(
    get, operation_id = "downloadAttachment", path = "/api/v1/attachments/{id}/file", tag = "attachments",
    params(("id" = uuid::Uuid, Path, description = "Attachment id"), LinkQuery),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream"),
        (status = 403, description = "`forbidden`: an invalid or expired link; `not_participant`: not (or no longer) a member", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`", body = ErrorBody),
    )
)]
pub async fn file(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<LinkQuery>,
) -> Result<HttpResponse, ApiError> {
    serve(&req, &state, &id, &query, Variant::File).await
}

/// An image's thumbnail (a signed `thumbnail_url`).
#[utoipa::path(
    get, operation_id = "downloadThumbnail", path = "/api/v1/attachments/{id}/thumbnail", tag = "attachments",
    params(("id" = uuid::Uuid, Path, description = "Attachment id"), LinkQuery),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/jpeg"),
        (status = 403, description = "`forbidden` or `not_participant`", body = ErrorBody),
        (status = 404, description = "`not_found`: no thumbnail", body = ErrorBody),
    )
)]
pub async fn thumbnail(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<LinkQuery>,
) -> Result<HttpResponse, ApiError> {
    serve(&req, &state, &id, &query, Variant::Thumbnail).await
}

/// The most bytes of a download held in memory at once: a larger file (or range) is read
/// from the store and sent in pieces of this size.
const DOWNLOAD_CHUNK: u64 = 4 * 1024 * 1024;

async fn serve(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
    query: &LinkQuery,
    variant: Variant,
) -> Result<HttpResponse, ApiError> {
    let id: AttachmentId = parse_or_nil(id);
    let reader = signed_user(state, req.path(), query)?;
    let range = match req.headers().get(header::RANGE) {
        None => None,
        Some(value) => parse_range(value.to_str().unwrap_or_default()),
    };
    // The first piece: the start of what was asked for, at most one chunk.
    let first = match range {
        None => ByteRange::Bounded {
            start: 0,
            end: DOWNLOAD_CHUNK,
        },
        Some(ByteRange::From(start)) => ByteRange::Bounded {
            start,
            end: start.saturating_add(DOWNLOAD_CHUNK),
        },
        Some(ByteRange::Bounded { start, end }) => ByteRange::Bounded {
            start,
            end: end.min(start.saturating_add(DOWNLOAD_CHUNK)),
        },
        Some(ByteRange::Suffix(n)) if n <= DOWNLOAD_CHUNK => ByteRange::Suffix(n),
        // A long suffix: where it starts is known once the size is (one byte read first).
        Some(ByteRange::Suffix(_)) => ByteRange::Bounded { start: 0, end: 1 },
    };
    let download = match state
        .attachments
        .download(reader, id, variant, Some(first))
        .await
    {
        Err(ChatError::RangeNotSatisfiable(size)) => {
            return Ok(HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .json(ApiError::RangeNotSatisfiable(size).body()));
        }
        other => other?,
    };
    let total = download.data.total_size;
    // The whole answer: [start, end) of the file.
    let (start, end) = match range {
        None => (0, total),
        Some(ByteRange::From(start)) => (start, total),
        Some(ByteRange::Bounded { start, end }) => (start, end.min(total)),
        Some(ByteRange::Suffix(n)) => (total.saturating_sub(n), total),
    };
    Ok(respond(
        state,
        download,
        variant,
        range.is_some(),
        start,
        end,
    ))
}

/// The response of a download, with its headers: `download`'s bytes first, then the rest
/// of `[start, end)` read one chunk at a time as the client takes them.
fn respond(
    state: &AppState,
    mut download: Download,
    variant: Variant,
    partial: bool,
    start: u64,
    end: u64,
) -> HttpResponse {
    let mut response = if partial {
        HttpResponse::build(StatusCode::PARTIAL_CONTENT)
    } else {
        HttpResponse::Ok()
    };
    let attachment = &download.attachment;
    let inline = variant == Variant::Thumbnail || attachment.is_image();
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        ascii_fallback(&attachment.filename),
        percent_encode(&attachment.filename),
    );
    let max_age = state.links.ttl().as_secs();
    response
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_str(&download.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        // Nothing in a file runs as a page of this origin, even when opened directly.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, format!("private, max-age={max_age}")));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.insert_header((header::CONTENT_DISPOSITION, value));
    }
    if partial {
        response.insert_header((
            header::CONTENT_RANGE,
            format!(
                "bytes {start}-{}/{}",
                end.saturating_sub(1),
                download.data.total_size
            ),
        ));
    }
    // What the first read brought that belongs to the answer (all of it, except after the
    // one-byte probe of a long suffix).
    let first: Vec<u8> = if download.data.offset == start {
        std::mem::take(&mut download.data.bytes)
    } else {
        Vec::new()
    };
    let next = start + first.len() as u64;
    if next >= end {
        return response.body(first);
    }
    // The rest in pieces, the next one read while the current one is sent (two in flight):
    // the store's round trip overlaps the client's transfer, memory stays two pieces.
    let attachments = state.attachments.clone();
    let allowed = std::sync::Arc::new(download);
    let chunk = usize::try_from(DOWNLOAD_CHUNK).unwrap_or(usize::MAX);
    let pieces = (next..end)
        .step_by(chunk)
        .map(move |from| ByteRange::Bounded {
            start: from,
            end: end.min(from.saturating_add(DOWNLOAD_CHUNK)),
        });
    let rest = futures_util::stream::iter(pieces)
        .map(move |piece| {
            let (attachments, allowed) = (attachments.clone(), allowed.clone());
            async move {
                match attachments.read_more(&allowed, variant, piece).await {
                    Ok(data) => Ok(web::Bytes::from(data.bytes)),
                    Err(e) => {
                        tracing::warn!(error = %e, "a download stopped half way");
                        Err(std::io::Error::other(e.to_string()))
                    }
                }
            }
        })
        .buffered(2);
    let head = futures_util::stream::iter(
        (!first.is_empty()).then(|| Ok::<_, std::io::Error>(web::Bytes::from(first))),
    );
    let stream = head.chain(rest);
    response.no_chunking(end - start).streaming(stream)
}

/// One `bytes=` range of a `Range` header; `None` (the whole file, 200) for anything else:
/// several ranges, other units, or garbage (RFC 9110 lets a server ignore them).
fn parse_range(raw: &str) -> Option<ByteRange> {
    let spec = raw.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    match (start.is_empty(), end.is_empty()) {
        (true, false) => {
            let n: u64 = end.parse().ok()?;
            (n > 0).then_some(ByteRange::Suffix(n))
        }
        (false, true) => Some(ByteRange::From(start.parse().ok()?)),
        (false, false) => {
            let (start, last): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            (last >= start).then_some(ByteRange::Bounded {
                start,
                end: last.saturating_add(1),
            })
        }
        (true, true) => None,
    }
}

/// The filename in printable ASCII for the plain `filename=` parameter.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// RFC 8187 percent-encoding of the filename for `filename*=`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ranges_parse_as_http_says_and_anything_else_is_the_whole_file() {
        assert_eq!(
            parse_range("bytes=0-99"),
            Some(ByteRange::Bounded { start: 0, end: 100 })
        );
        assert_eq!(parse_range("bytes=100-"), Some(ByteRange::From(100)));
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Suffix(5)));
        for ignored in [
            "bytes=-0",
            "bytes=5-1",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=x-",
            "",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn a_filename_is_quoted_safely_in_both_forms() {
        assert_eq!(ascii_fallback("résumé \"v2\".pdf"), "r_sum_ _v2_.pdf");
        assert_eq!(percent_encode("a b.pdf"), "a%20b.pdf");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
