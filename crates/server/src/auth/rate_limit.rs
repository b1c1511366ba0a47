//! Login throttling per client IP and per account, so neither one address guessing many
//! passwords nor many addresses guessing one account's password get far.

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The attempt must wait: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header, at least 1 (0 would invite a busy loop).
    pub fn as_secs_ceil(self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Two token buckets per attempt: one keyed by client IP, one by account (the normalised
/// email). Shared by every worker; cheap to clone.
#[derive(Clone)]
pub struct LoginRateLimiter {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
}

impl LoginRateLimiter {
    /// `per_minute` sustained attempts with bursts of `burst`, for each IP and each account.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            per_ip: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            per_account: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
        }
    }

    /// Records an attempt from `ip` on `email`; `Err` when either bucket is empty.
    /// Both buckets are always charged, so alternating addresses does not spare the account.
    pub fn check(&self, ip: Option<IpAddr>, email: &str) -> Result<(), RetryAfter> {
        let now = self.per_ip.clock().now();
        let by_ip = ip.map(|ip| self.per_ip.check_key(&ip));
        let by_account = self.per_account.check_key(&email.trim().to_lowercase());
        let wait = [by_ip, Some(by_account)]
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .map(|not_until| not_until.wait_time_from(now))
            .max();
        match wait {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Forgets buckets that are full again, so the maps do not grow without bound.
    pub fn forget_idle(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_account.retain_recent();
        self.per_account.shrink_to_fit();
    }
}

impl std::fmt::Debug for LoginRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRateLimiter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> LoginRateLimiter {
        LoginRateLimiter::new(
            NonZeroU32::new(per_minute).unwrap(),
            NonZeroU32::new(burst).unwrap(),
        )
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn attempts_beyond_the_burst_from_one_ip_are_refused_with_a_wait() {
        let limiter = limiter(6, 3);
        for i in 0..3 {
            assert!(limiter.check(ip(1), &format!("u{i}@example.com")).is_ok());
        }
        let wait = limiter.check(ip(1), "u9@example.com").unwrap_err();
        // 6 a minute: one attempt back every 10 s.
        assert!((1..=10).contains(&wait.as_secs_ceil()), "{wait:?}");
        assert!(
            limiter.check(ip(2), "u9@example.com").is_ok(),
            "another IP is not affected"
        );
    }

    #[test]
    fn attempts_on_one_account_from_many_ips_are_refused() {
        let limiter = limiter(6, 2);
        assert!(limiter.check(ip(1), "Alice@Example.com").is_ok());
        assert!(limiter.check(ip(2), "alice@example.com ").is_ok());
        assert!(limiter.check(ip(3), "alice@example.com").is_err());
        assert!(
            limiter.check(ip(4), "bob@example.com").is_ok(),
            "another account is not affected"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).as_secs_ceil(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(2001)).as_secs_ceil(), 3);
        assert_eq!(RetryAfter(Duration::ZERO).as_secs_ceil(), 1);
    }
}
