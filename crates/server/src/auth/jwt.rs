//! HS256 access tokens: [`JwtIssuer`] signs them, [`TokenVerifier`] checks them (for the
//! REST extractor and the WebSocket upgrade alike).

use chrono::{DateTime, Duration, Utc};
use domain::auth::AccessToken;
use domain::ports::AccessTokenIssuer;
use domain::{StorageError, UserId};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Shortest HMAC key accepted: HS256 wants at least as many bytes as its output.
pub const MIN_SECRET_BYTES: usize = 32;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Who issued it.
    pub iss: String,
    /// Who it is for.
    pub aud: String,
    /// Unique token id.
    pub jti: String,
}

impl Claims {
    /// The authenticated user.
    pub fn user_id(&self) -> UserId {
        self.sub
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// The token is missing, malformed, forged, expired, or meant for someone else. Which of
/// these is deliberately not said: every case gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid access token")]
pub struct InvalidToken;

/// Signs access tokens (HS256) with `iss`, `aud`, `iat`, `exp` and a fresh `jti`.
#[derive(Clone)]
pub struct JwtIssuer {
    key: Arc<EncodingKey>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl JwtIssuer {
    /// An issuer signing with `secret`, tokens living `ttl_secs` seconds.
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        Self {
            key: Arc::new(EncodingKey::from_secret(secret)),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl: Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1_000)),
        }
    }
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AccessTokenIssuer for JwtIssuer {
    fn issue(&self, user: UserId, now: DateTime<Utc>) -> Result<AccessToken, StorageError> {
        let claims = Claims {
            sub: user,
            exp: (now + self.ttl).timestamp(),
            iat: now.timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|e| StorageError::msg(format!("signing an access token failed: {e}")))?;
        Ok(AccessToken {
            token,
            expires_in: u64::try_from(self.ttl.num_seconds()).unwrap_or(0),
        })
    }
}

/// How far in the future a token's `iat` may lie before it is refused, unless configured
/// (`auth.iat_leeway`): room for the clocks of the nodes to disagree a little.
pub const DEFAULT_IAT_LEEWAY_SECS: u64 = 30;

/// Checks access tokens: HS256 only (a token naming another algorithm, `none` included,
/// is refused), signature, `exp` with no leeway, `nbf` (when present) with no leeway, `iat`
/// not later than now plus a small leeway, `iss` and `aud`.
///
/// A token that is not valid yet is refused like any other invalid one: it was minted by
/// someone holding the key for later use, or by a node whose clock is far off; neither
/// should open a session now.
#[derive(Clone)]
pub struct TokenVerifier {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
    iat_leeway_secs: i64,
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret` by `issuer` for `audience`, allowing
    /// [`DEFAULT_IAT_LEEWAY_SECS`] of clock skew on `iat`.
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // One leeway for `exp` and `nbf` in jsonwebtoken: none, so a token is refused from
        // the second its `exp` passes and until the second its `nbf` comes.
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            key: Arc::new(DecodingKey::from_secret(secret)),
            validation: Arc::new(validation),
            iat_leeway_secs: DEFAULT_IAT_LEEWAY_SECS as i64,
        }
    }

    /// The same verifier allowing `secs` of clock skew on `iat` (`auth.iat_leeway`).
    pub fn with_iat_leeway(mut self, secs: u64) -> Self {
        self.iat_leeway_secs = i64::try_from(secs).unwrap_or(i64::MAX);
        self
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let claims = decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| InvalidToken)?;
        // jsonwebtoken does not look at `iat`; a token issued in the future is as suspect
        // as one not valid yet.
        let latest_iat = Utc::now().timestamp().saturating_add(self.iat_leeway_secs);
        if claims.iat > latest_iat {
            return Err(InvalidToken);
        }
        Ok(claims)
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("iat_leeway_secs", &self.iat_leeway_secs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(SECRET, "chat-server", "chat")
    }

    fn claims(user: UserId, exp: i64) -> Claims {
        Claims {
            sub: user,
            exp,
            iat: Utc::now().timestamp(),
            iss: "chat-server".into(),
            aud: "chat".into(),
            jti: "j".into(),
        }
    }

    fn sign(header: &Header, claims: &Claims, secret: &[u8]) -> String {
        encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn in_an_hour() -> i64 {
        Utc::now().timestamp() + 3600
    }

    #[test]
    fn an_issued_token_verifies_with_its_user_and_expiry() {
        let issuer = JwtIssuer::new(SECRET, "chat-server", "chat", 900);
        let user = UserId::new();
        let now = Utc::now();
        let token = issuer.issue(user, now).unwrap();
        assert_eq!(token.expires_in, 900);
        let claims = verifier().verify(&token.token).unwrap();
        assert_eq!(claims.user_id(), user);
        assert_eq!(claims.expires_at().timestamp(), now.timestamp() + 900);
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("chat-server", "chat")
        );
    }

    #[test]
    fn every_issued_token_has_its_own_jti() {
        let issuer = JwtIssuer::new(SECRET, "chat-server", "chat", 900);
        let (user, now) = (UserId::new(), Utc::now());
        let a = verifier()
            .verify(&issuer.issue(user, now).unwrap().token)
            .unwrap();
        let b = verifier()
            .verify(&issuer.issue(user, now).unwrap().token)
            .unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let token = sign(
            &Header::default(),
            &claims(UserId::new(), Utc::now().timestamp() - 2),
            SECRET,
        );
        assert_eq!(verifier().verify(&token), Err(InvalidToken));
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let mut c = claims(UserId::new(), in_an_hour());
        c.aud = "admin".into();
        assert_eq!(
            verifier().verify(&sign(&Header::default(), &c, SECRET)),
            Err(InvalidToken)
        );
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let mut c = claims(UserId::new(), in_an_hour());
        c.iss = "evil".into();
        assert_eq!(
            verifier().verify(&sign(&Header::default(), &c, SECRET)),
            Err(InvalidToken)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let c = claims(UserId::new(), in_an_hour());
        let token = sign(&Header::default(), &c, b"another-secret-another-secret-!!");
        assert_eq!(verifier().verify(&token), Err(InvalidToken));
    }

    #[test]
    fn a_token_with_another_hmac_algorithm_is_refused_even_with_the_right_key() {
        let c = claims(UserId::new(), in_an_hour());
        let token = sign(&Header::new(Algorithm::HS512), &c, SECRET);
        assert_eq!(verifier().verify(&token), Err(InvalidToken));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let c = claims(UserId::new(), in_an_hour());
        let token = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(serde_json::to_string(&c).unwrap().as_bytes())
        );
        assert_eq!(verifier().verify(&token), Err(InvalidToken));
    }

    /// A token of our issuer and audience with `extra` claims on top (or replacing them).
    fn sign_with(extra: serde_json::Value) -> String {
        let mut claims = serde_json::to_value(claims(UserId::new(), in_an_hour())).unwrap();
        for (key, value) in extra.as_object().unwrap() {
            claims[key] = value.clone();
        }
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn a_token_not_valid_before_a_future_time_is_refused() {
        let now = Utc::now().timestamp();
        for nbf in [now + 3600, now + 5] {
            let token = sign_with(serde_json::json!({ "nbf": nbf }));
            assert_eq!(
                verifier().verify(&token),
                Err(InvalidToken),
                "nbf now+{}",
                nbf - now
            );
        }
    }

    #[test]
    fn a_token_whose_nbf_has_passed_is_accepted() {
        let token = sign_with(serde_json::json!({ "nbf": Utc::now().timestamp() - 60 }));
        assert!(verifier().verify(&token).is_ok());
    }

    #[test]
    fn a_malformed_nbf_is_refused() {
        let token = sign_with(serde_json::json!({ "nbf": "tomorrow" }));
        assert_eq!(verifier().verify(&token), Err(InvalidToken));
    }

    #[test]
    fn a_token_issued_in_the_future_beyond_the_leeway_is_refused() {
        let now = Utc::now().timestamp();
        let token = sign_with(serde_json::json!({ "iat": now + 3600 }));
        assert_eq!(verifier().verify(&token), Err(InvalidToken));
        let token = sign_with(serde_json::json!({ "iat": now + 15 }));
        assert_eq!(
            verifier().with_iat_leeway(5).verify(&token),
            Err(InvalidToken),
            "15 s ahead with a 5 s leeway"
        );
    }

    #[test]
    fn a_token_issued_slightly_in_the_future_is_accepted_within_the_leeway() {
        let token = sign_with(serde_json::json!({ "iat": Utc::now().timestamp() + 10 }));
        assert!(
            verifier().verify(&token).is_ok(),
            "10 s of skew, default 30 s"
        );
        assert!(verifier().with_iat_leeway(60).verify(&token).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        for token in ["", "abc", "a.b.c", "Bearer x"] {
            assert_eq!(verifier().verify(token), Err(InvalidToken), "{token:?}");
        }
    }

    /// Unpadded URL-safe base64, enough to forge a header by hand.
    fn base64_url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}
