//! Authentication: password hashing, access tokens, the request extractor, login and
//! registration throttling.

pub mod extractor;
pub mod jwt;
pub mod password;
pub mod rate_limit;
pub mod signing_key;

pub use extractor::AuthUser;
pub use jwt::{Claims, InvalidToken, JwtIssuer, TokenVerifier};
pub use password::Argon2Hasher;
pub use rate_limit::{LoginRateLimiter, RegistrationRateLimiter, RetryAfter, UploadRateLimiter};
