//! Access tokens forged with the test key, for claims the server never issues itself (an
//! `nbf` or `iat` in the future).

use serde_json::{json, Value};

/// The JWT secret every test server signs with (`Settings::for_tests`, `NodeProcess`).
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An HS256 token for `user_id` with the test key, issuer and audience, valid for an hour
/// from now, with `extra` claims added or replacing the defaults (`{"nbf": ...}`).
pub fn forge(user_id: &str, extra: Value) -> String {
    let now = now();
    let mut claims = json!({
        "sub": user_id,
        "iat": now,
        "exp": now + 3600,
        "iss": "chat-server",
        "aud": "chat",
        "jti": uuid::Uuid::new_v4().simple().to_string(),
    });
    for (key, value) in extra.as_object().expect("extra claims are an object") {
        claims[key] = value.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("a forged token")
}
