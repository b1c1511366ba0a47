//! Contract of `TypingStore`: one lease per (conversation, user) until `now + ttl`; every
//! lease end is reported exactly once, by `stop_typing` or by one `take_expired` caller.

use crate::harness::SharedBackend;
use chrono::{DateTime, SubsecRound, Utc};
use domain::{ConversationId, UserId};
use std::collections::BTreeSet;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(5);

/// A starting instant at millisecond precision, so `t0 + n ms` means the same everywhere.
fn t0() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn at(t0: DateTime<Utc>, millis: i64) -> DateTime<Utc> {
    t0 + chrono::Duration::milliseconds(millis)
}

/// The first start begins typing; a start while the lease lives only refreshes it.
pub async fn starting_returns_true_and_refreshing_returns_false(backend: SharedBackend) {
    let typing = backend.typing().await;
    let (c, u, t) = (ConversationId::new(), UserId::new(), t0());
    assert!(typing.start_typing(c, u, t, TTL).await.unwrap());
    assert!(!typing.start_typing(c, u, at(t, 1_000), TTL).await.unwrap());
    assert!(!typing.start_typing(c, u, at(t, 4_999), TTL).await.unwrap());
}

/// Stopping a lease reports it once; stopping again, or stopping what never started, is false.
pub async fn stopping_returns_true_once(backend: SharedBackend) {
    let typing = backend.typing().await;
    let (c, u, t) = (ConversationId::new(), UserId::new(), t0());
    assert!(!typing.stop_typing(c, u).await.unwrap());
    typing.start_typing(c, u, t, TTL).await.unwrap();
    assert!(typing.stop_typing(c, u).await.unwrap());
    assert!(!typing.stop_typing(c, u).await.unwrap());
    assert!(typing.start_typing(c, u, at(t, 100), TTL).await.unwrap());
}

/// The same user typing in two conversations, and two users in one, hold separate leases.
pub async fn leases_are_per_user_and_conversation(backend: SharedBackend) {
    let typing = backend.typing().await;
    let (c1, c2, u1, u2, t) = (
        ConversationId::new(),
        ConversationId::new(),
        UserId::new(),
        UserId::new(),
        t0(),
    );
    assert!(typing.start_typing(c1, u1, t, TTL).await.unwrap());
    assert!(typing.start_typing(c2, u1, t, TTL).await.unwrap());
    assert!(typing.start_typing(c1, u2, t, TTL).await.unwrap());
    assert!(typing.stop_typing(c1, u1).await.unwrap());
    assert!(!typing.start_typing(c2, u1, at(t, 10), TTL).await.unwrap());
    assert!(!typing.start_typing(c1, u2, at(t, 10), TTL).await.unwrap());
}

/// A lease past its deadline is not live even before anyone took it: starting again is a
/// new start, and the renewed lease is no longer due at the old deadline.
pub async fn a_lapsed_lease_is_not_live_so_starting_again_returns_true(backend: SharedBackend) {
    let typing = backend.typing().await;
    let (c, u, t) = (ConversationId::new(), UserId::new(), t0());
    typing.start_typing(c, u, t, TTL).await.unwrap();
    assert!(typing.start_typing(c, u, at(t, 5_000), TTL).await.unwrap());
    assert_eq!(typing.take_expired(at(t, 9_999)).await.unwrap(), vec![]);
    assert_eq!(
        typing.take_expired(at(t, 10_000)).await.unwrap(),
        vec![(c, u)]
    );
}

/// Leases due at or before `now` are taken once; leases due later stay.
pub async fn take_expired_returns_leases_due_at_or_before_now_and_never_a_live_one(
    backend: SharedBackend,
) {
    let typing = backend.typing().await;
    let (c, short, long, t) = (ConversationId::new(), UserId::new(), UserId::new(), t0());
    typing.start_typing(c, short, t, TTL).await.unwrap();
    typing
        .start_typing(c, long, t, Duration::from_secs(10))
        .await
        .unwrap();

    assert_eq!(typing.take_expired(at(t, 4_999)).await.unwrap(), vec![]);
    assert_eq!(
        typing.take_expired(at(t, 5_000)).await.unwrap(),
        vec![(c, short)]
    );
    assert_eq!(typing.take_expired(at(t, 5_000)).await.unwrap(), vec![]);
    assert_eq!(typing.take_expired(at(t, 9_999)).await.unwrap(), vec![]);
    assert!(!typing
        .start_typing(c, long, at(t, 9_999), Duration::from_millis(1))
        .await
        .unwrap());
    assert_eq!(
        typing.take_expired(at(t, 10_000)).await.unwrap(),
        vec![(c, long)]
    );
}

/// Four nodes take at once: every lapsed lease is returned exactly once in total, and the
/// live ones to nobody.
pub async fn concurrent_take_expired_callers_get_each_lapsed_lease_exactly_once(
    backend: SharedBackend,
) {
    let setup = backend.typing().await;
    let t = t0();
    let mut lapsed = BTreeSet::new();
    let mut live = Vec::new();
    for i in 0..50 {
        let (c, u) = (ConversationId::new(), UserId::new());
        if i % 5 == 0 {
            setup
                .start_typing(c, u, t, Duration::from_secs(60))
                .await
                .unwrap();
            live.push((c, u));
        } else {
            setup
                .start_typing(c, u, t, Duration::from_secs(1))
                .await
                .unwrap();
            lapsed.insert((c, u));
        }
    }

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let typing = backend.typing().await;
        tasks.push(tokio::spawn(async move {
            typing.take_expired(at(t, 2_000)).await
        }));
    }
    let mut taken = Vec::new();
    for task in tasks {
        taken.extend(task.await.unwrap().unwrap());
    }
    taken.sort_unstable();
    assert_eq!(taken, lapsed.into_iter().collect::<Vec<_>>());

    assert_eq!(setup.take_expired(at(t, 2_000)).await.unwrap(), vec![]);
    for (c, u) in live {
        assert!(!setup.start_typing(c, u, at(t, 2_000), TTL).await.unwrap());
    }
}

/// A refresh moves the deadline: the lease is not due at the old one, only at the new one.
pub async fn a_refreshed_lease_does_not_expire_at_its_old_deadline(backend: SharedBackend) {
    let typing = backend.typing().await;
    let (c, u, t) = (ConversationId::new(), UserId::new(), t0());
    typing.start_typing(c, u, t, TTL).await.unwrap();
    assert!(!typing.start_typing(c, u, at(t, 3_000), TTL).await.unwrap());

    assert_eq!(typing.take_expired(at(t, 5_000)).await.unwrap(), vec![]);
    assert_eq!(typing.take_expired(at(t, 7_999)).await.unwrap(), vec![]);
    assert_eq!(
        typing.take_expired(at(t, 8_000)).await.unwrap(),
        vec![(c, u)]
    );
}

/// A stopped lease is never also taken as expired, even when it had lapsed before the stop
/// (nobody had announced its end yet, so the stop reports it): one report per lease end.
pub async fn a_stopped_lease_is_never_taken_as_expired(backend: SharedBackend) {
    let typing = backend.typing().await;
    let (c, stopped_live, stopped_late, t) =
        (ConversationId::new(), UserId::new(), UserId::new(), t0());
    typing.start_typing(c, stopped_live, t, TTL).await.unwrap();
    typing
        .start_typing(c, stopped_late, at(t, -10_000), TTL)
        .await
        .unwrap();

    assert!(typing.stop_typing(c, stopped_live).await.unwrap());
    assert!(typing.stop_typing(c, stopped_late).await.unwrap());
    assert_eq!(typing.take_expired(at(t, 60_000)).await.unwrap(), vec![]);
}
