//! Login throttling per client IP and per account, so neither one address guessing many
//! passwords nor many addresses guessing one account's password get far; registration
//! throttling per client IP, so one address cannot mint accounts (and hashing work) at will.

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use realtime::send::RetryAfter;

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

/// Client addresses the registration limiter keeps a bucket for at most (about 64 bytes
/// each, so a few MB): a flood from more distinct addresses than this within a refill
/// period closes registration for everyone until buckets refill, rather than growing
/// memory without bound.
pub const MAX_TRACKED_REGISTRANTS: usize = 100_000;

/// The shortest time between two sweeps of a full registration limiter: a sweep walks
/// every bucket, and a flood must not make every request pay for one.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One token bucket per client address for `POST /auth/register`. IPv4 addresses count
/// one by one, IPv6 addresses by their /64 (one host or site usually holds a whole /64,
/// so counting single addresses would let it register without limit). Requests whose
/// address is unknown share one bucket. Shared by every worker; cheap to clone.
#[derive(Clone)]
pub struct RegistrationRateLimiter {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// How long one registration takes to come back (`60 s / per_minute`).
    refill: Duration,
    max_tracked: usize,
    /// Milliseconds since `epoch` of the last sweep of a full map.
    last_full_sweep_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl RegistrationRateLimiter {
    /// `per_minute` sustained registrations with bursts of `burst`, for each client address.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self::with_capacity(per_minute, burst, MAX_TRACKED_REGISTRANTS)
    }

    fn with_capacity(per_minute: NonZeroU32, burst: NonZeroU32, max_tracked: usize) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            per_ip: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            refill: quota.replenish_interval(),
            max_tracked: max_tracked.max(1),
            last_full_sweep_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Records a registration from `ip`; `Err` when its bucket is empty, or when more
    /// addresses than the limiter tracks are registering at once.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        if self.per_ip.len() >= self.max_tracked && !self.sweep_full_map() {
            return Err(RetryAfter(self.refill));
        }
        let now = self.per_ip.clock().now();
        self.per_ip
            .check_key(&registrant(ip))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(now)))
    }

    /// Forgets full buckets of a map that reached its limit; whether room was made. At most
    /// one sweep per [`FULL_SWEEP_EVERY`]: in between, a full map just refuses.
    fn sweep_full_map(&self) -> bool {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_full_sweep_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= FULL_SWEEP_EVERY.as_millis() as u64;
        if due
            && self
                .last_full_sweep_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.per_ip.retain_recent();
            if self.per_ip.len() >= self.max_tracked {
                tracing::warn!(
                    tracked = self.per_ip.len(),
                    "registrations from too many addresses at once: refusing all for now"
                );
            }
        }
        self.per_ip.len() < self.max_tracked
    }

    /// Forgets buckets that are full again, so the map does not grow without bound.
    pub fn forget_idle(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

/// The bucket key of a client address: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64, unknown as `0.0.0.0`.
fn registrant(ip: Option<IpAddr>) -> IpAddr {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        Some(v4) => v4,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

impl std::fmt::Debug for RegistrationRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationRateLimiter")
            .field("refill", &self.refill)
            .field("max_tracked", &self.max_tracked)
            .finish_non_exhaustive()
    }
}

/// `upload-url` throttling per user (authenticated, so keyed by account): one user cannot
/// announce uploads (records, presigned URLs, bytes to check) at will. Shared by every
/// worker; cheap to clone.
#[derive(Clone)]
pub struct UploadRateLimiter {
    per_user: Arc<DefaultKeyedRateLimiter<domain::UserId>>,
}

impl UploadRateLimiter {
    /// `per_minute` sustained uploads with bursts of `burst`, per user.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            per_user: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
        }
    }

    /// Records an upload of `user`; `Err` with the wait when their bucket is empty.
    pub fn check(&self, user: domain::UserId) -> Result<(), RetryAfter> {
        let now = self.per_user.clock().now();
        self.per_user
            .check_key(&user)
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(now)))
    }

    /// Forgets buckets that are full again, so the map does not grow without bound.
    pub fn forget_idle(&self) {
        self.per_user.retain_recent();
        self.per_user.shrink_to_fit();
    }
}

impl std::fmt::Debug for UploadRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadRateLimiter")
            .field("users", &self.per_user.len())
            .finish()
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

    fn registrations(per_minute: u32, burst: u32, max_tracked: usize) -> RegistrationRateLimiter {
        RegistrationRateLimiter::with_capacity(
            NonZeroU32::new(per_minute).unwrap(),
            NonZeroU32::new(burst).unwrap(),
            max_tracked,
        )
    }

    #[test]
    fn registrations_beyond_the_burst_from_one_ip_are_refused_with_a_wait() {
        let limiter = registrations(6, 3, 1000);
        for _ in 0..3 {
            assert!(limiter.check(ip(1)).is_ok());
        }
        let wait = limiter.check(ip(1)).unwrap_err();
        assert!((1..=10).contains(&wait.as_secs_ceil()), "{wait:?}");
        assert!(limiter.check(ip(2)).is_ok(), "another IP is not affected");
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket_and_mapped_ipv4_counts_as_ipv4() {
        let limiter = registrations(6, 2, 1000);
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(limiter.check(v6("2001:db8:1:2::1")).is_ok());
        assert!(limiter.check(v6("2001:db8:1:2:ffff::9")).is_ok());
        assert!(
            limiter.check(v6("2001:db8:1:2:abcd::1")).is_err(),
            "same /64"
        );
        assert!(limiter.check(v6("2001:db8:1:3::1")).is_ok(), "another /64");
        assert!(limiter.check(v6("::ffff:10.0.0.7")).is_ok());
        assert!(limiter.check(ip(7)).is_ok());
        assert!(limiter.check(ip(7)).is_err(), "::ffff:10.0.0.7 is 10.0.0.7");
    }

    #[test]
    fn requests_of_unknown_address_share_one_bucket() {
        let limiter = registrations(6, 1, 1000);
        assert!(limiter.check(None).is_ok());
        assert!(limiter.check(None).is_err());
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_addresses() {
        let limiter = registrations(60, 2, 100);
        let many = (0..=255u8).flat_map(|a| (0..=255u8).map(move |b| IpAddr::from([10, 1, a, b])));
        let mut refused = 0;
        for address in many.take(5_000) {
            if limiter.check(Some(address)).is_err() {
                refused += 1;
            }
        }
        assert!(
            limiter.per_ip.len() <= 100,
            "{} buckets",
            limiter.per_ip.len()
        );
        assert!(refused >= 4_900, "only {refused} refused once full");
        // A known address with room left is refused too while the map is full: nothing
        // here can tell it apart without growing the map.
        let wait = limiter
            .check(Some(IpAddr::from([10, 1, 0, 0])))
            .unwrap_err();
        assert_eq!(
            wait.as_secs_ceil(),
            1,
            "one registration a second comes back"
        );
    }
}
