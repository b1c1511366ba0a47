//! `AuthUser`: the authenticated caller of a REST handler.

use super::jwt::TokenVerifier;
use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use domain::UserId;
use std::future::{ready, Ready};

/// The user of a request carrying `Authorization: Bearer <access token>`.
///
/// A missing header, another scheme, a malformed, forged or expired token, or one for
/// another audience or issuer all answer 401 `unauthorized`, alike. The token is never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub UserId);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let Some(verifier) = req.app_data::<web::Data<TokenVerifier>>() else {
        tracing::error!("no TokenVerifier registered as app data");
        return Err(ApiError::Unauthorized);
    };
    let token = bearer_token(req).ok_or(ApiError::Unauthorized)?;
    let claims = verifier.verify(token).map_err(|_| ApiError::Unauthorized)?;
    Ok(AuthUser(claims.user_id()))
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::auth::jwt::JwtIssuer;
    use actix_web::test::TestRequest;
    use chrono::{Duration, Utc};
    use domain::ports::AccessTokenIssuer;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn request(authorization: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default().app_data(web::Data::new(TokenVerifier::new(
            SECRET,
            "chat-server",
            "chat",
        )));
        if let Some(value) = authorization {
            req = req.insert_header((AUTHORIZATION, value));
        }
        req.to_http_request()
    }

    fn token(audience: &str, issued: chrono::DateTime<Utc>) -> String {
        JwtIssuer::new(SECRET, "chat-server", audience, 60)
            .issue(UserId::new(), issued)
            .unwrap()
            .token
    }

    #[test]
    fn a_valid_bearer_token_yields_its_user() {
        let user = UserId::new();
        let jwt = JwtIssuer::new(SECRET, "chat-server", "chat", 60)
            .issue(user, Utc::now())
            .unwrap()
            .token;
        let req = request(Some(&format!("bearer {jwt}")));
        assert_eq!(authenticate(&req).unwrap(), AuthUser(user));
    }

    #[test]
    fn missing_garbage_expired_and_foreign_tokens_get_the_same_401() {
        let expired = format!(
            "Bearer {}",
            token("chat", Utc::now() - Duration::minutes(5))
        );
        let foreign = format!("Bearer {}", token("billing", Utc::now()));
        let valid_without_scheme = token("chat", Utc::now());
        let cases = [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer not.a.jwt"),
            Some(expired.as_str()),
            Some(foreign.as_str()),
            Some(valid_without_scheme.as_str()),
        ];
        for header in cases {
            let err = authenticate(&request(header)).unwrap_err();
            assert_eq!(err.code(), "unauthorized", "{header:?}");
            assert_eq!(err.body().error.message, "missing or invalid access token");
        }
    }
}
