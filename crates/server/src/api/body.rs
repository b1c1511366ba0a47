//! `JsonBody<T>`: a request body read in three steps so the three ways it can be wrong get
//! three answers: bytes (over the limit: 413), JSON syntax (400 `malformed_json`) and a
//! JSON object (400 `invalid_body`), then the fields (422 `validation_failed` naming the field).

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// The largest request body accepted, in bytes (`http.max_body_bytes`), as app data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

impl Default for BodyLimit {
    fn default() -> Self {
        Self(64 * 1024)
    }
}

/// A JSON object body deserialized into `T`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map_or(BodyLimit::default().0, |l| l.0);
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            // Refuse a declared oversize body before reading a byte of it.
            if declared.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::MalformedJson(e.to_string()))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody)
        })
    }
}

/// Bytes to `T`, telling syntax, shape and field errors apart.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| match lone_surrogate_field(bytes) {
            Some(field) => ApiError::validation(field, LONE_SURROGATE),
            None => ApiError::MalformedJson(e.to_string()),
        })?;
    if !value.is_object() {
        return Err(ApiError::InvalidBody);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.inner().to_string();
        // A missing field is reported at the parent; serde names it in the message.
        if let Some(field) = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let field = if path == "." {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            return ApiError::validation(field, "is required");
        }
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::validation(field, reason)
    })
}

/// Why a string with a lone surrogate escape is refused.
pub const LONE_SURROGATE: &str =
    "must be valid Unicode text: a lone UTF-16 surrogate escape (\\uD800-\\uDFFF) is not a character";

/// The field (`content`, `a.b`, `ids[0]`; `body` at the top) of the first string in a JSON
/// text that holds a lone UTF-16 surrogate escape (`"\ud800"`, a high surrogate without
/// its low half, as a client cutting a string in the middle of an emoji sends it), if any.
///
/// The JSON grammar allows such escapes but no Unicode string holds them: the parser
/// refuses the text, and this tells that case (a bad field, 422) from broken syntax (400).
pub fn lone_surrogate_field(bytes: &[u8]) -> Option<String> {
    if !has_lone_surrogate(bytes) {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<serde_json::Value, _> = serde_path_to_error::deserialize(&mut deserializer);
    let path = parsed.err()?.path().to_string();
    Some(if path == "." { "body".to_owned() } else { path })
}

/// Whether `bytes` hold a `\uXXXX` escape of a surrogate that is not part of a pair.
pub fn has_lone_surrogate(bytes: &[u8]) -> bool {
    !lone_surrogates(bytes).is_empty()
}

/// `bytes` with every lone surrogate escape replaced by `\ufffd` (the replacement
/// character; an escape of the same length), so the rest of the text can still be read
/// (a WebSocket frame's `temp_id`, for the error's `ref`).
pub fn replace_lone_surrogates(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for at in lone_surrogates(bytes) {
        out[at..at + 6].copy_from_slice(b"\\ufffd");
    }
    out
}

/// Where each `\uXXXX` escape of a surrogate that is not part of a pair starts.
fn lone_surrogates(bytes: &[u8]) -> Vec<usize> {
    let hex = |at: usize| -> Option<u16> {
        let digits = bytes.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2; // `\\`, `\"`, `\n`...: never the start of a `\u` escape.
            continue;
        }
        match hex(i + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (bytes.get(i + 6..i + 8) == Some(b"\\u".as_slice()))
                    .then(|| hex(i + 8))
                    .flatten();
                if matches!(low, Some(0xDC00..=0xDFFF)) {
                    i += 12;
                } else {
                    found.push(i);
                    i += 6;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                found.push(i);
                i += 6;
            }
            _ => i += 6,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use actix_web::test::TestRequest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Send {
        content: String,
        temp_id: Option<String>,
        ids: Option<Vec<uuid::Uuid>>,
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn broken_json_is_malformed() {
        for body in ["", "{", "{'a':1}", "nope"] {
            let err = parse::<Send>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "malformed_json", "{body:?}");
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_an_invalid_body() {
        for body in ["[]", "\"text\"", "42", "null"] {
            let err = parse::<Send>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "invalid_body", "{body:?}");
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse::<Send>(br#"{"temp_id":"t"}"#).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert_eq!(field_of(err), "content");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_with_its_path() {
        assert_eq!(
            field_of(parse::<Send>(br#"{"content":5}"#).unwrap_err()),
            "content"
        );
        let err = parse::<Send>(br#"{"content":"x","ids":["not-a-uuid"]}"#).unwrap_err();
        assert_eq!(field_of(err), "ids[0]");
    }

    #[test]
    fn a_lone_surrogate_is_a_validation_error_of_its_field() {
        for (body, field) in [
            (r#"{"content":"\ud800"}"#, "content"),
            (r#"{"content":"a\udc00b"}"#, "content"),
            (r#"{"temp_id":"t","content":"cut \ud83d"}"#, "content"),
            (r#"{"content":"ok","ids":["\udbff\u0041"]}"#, "ids[0]"),
        ] {
            let err = parse::<Send>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "validation_failed", "{body}");
            assert_eq!(field_of(err), field, "{body}");
        }
    }

    #[test]
    fn surrogate_pairs_and_escaped_backslashes_are_not_lone_surrogates() {
        let pair = parse::<Send>(br#"{"content":"\ud83c\udf89"}"#).unwrap();
        assert_eq!(pair.content, "\u{1f389}");
        let literal = parse::<Send>(br#"{"content":"\\ud800"}"#).unwrap();
        assert_eq!(literal.content, "\\ud800");
        assert!(!has_lone_surrogate(br#"{"a":"\u00e9\\\"\ud83c\udf89"}"#));
        assert_eq!(
            replace_lone_surrogates(br#"{"a":"\ud800\ud83c\udf89\udc00"}"#),
            br#"{"a":"\ufffd\ud83c\udf89\ufffd"}"#.to_vec()
        );
        assert_eq!(
            parse::<Send>(br#"{"content":"\u12"}"#).unwrap_err().code(),
            "malformed_json",
            "a broken escape is broken syntax"
        );
    }

    #[test]
    fn a_valid_object_is_parsed_and_unknown_fields_ignored() {
        let send = parse::<Send>(br#"{"content":"hi","extra":true}"#).unwrap();
        assert_eq!(send.content, "hi");
    }

    #[actix_web::test]
    async fn a_body_over_the_limit_is_too_large() {
        let (req, mut payload) = TestRequest::post()
            .app_data(web::Data::new(BodyLimit(16)))
            .set_payload(r#"{"content":"more than sixteen bytes"}"#)
            .to_http_parts();
        let err = JsonBody::<Send>::from_request(&req, &mut payload)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "payload_too_large");
    }

    #[actix_web::test]
    async fn a_body_within_the_limit_is_read() {
        let (req, mut payload) = TestRequest::post()
            .app_data(web::Data::new(BodyLimit(64)))
            .set_payload(r#"{"content":"ok"}"#)
            .to_http_parts();
        let JsonBody(send) = JsonBody::<Send>::from_request(&req, &mut payload)
            .await
            .unwrap();
        assert_eq!(send.content, "ok");
    }
}
