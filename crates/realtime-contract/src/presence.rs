//! Contract of `PresenceStore`: per-(user, node) session counts that only count while their
//! node's lease lives, an atomic per-user session cap across nodes, and reaping that hands
//! each dead node's users to exactly one caller.

use crate::harness::{node_id, SharedBackend};
use domain::realtime::{NodeId, OpenSessionError, PresenceStatus, PresenceStore, SessionCounts};
use domain::UserId;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// A lease that outlives any case.
const LIVE: Duration = Duration::from_secs(60);
/// A lease renewed with this TTL lapses almost at once: how a case kills a node.
const DYING: Duration = Duration::from_millis(30);
/// Long enough for a [`DYING`] lease to have lapsed.
const AFTER_DEATH: Duration = Duration::from_millis(90);

fn counts(sessions: u32, away: u32) -> SessionCounts {
    SessionCounts { sessions, away }
}

/// A node with a live lease.
async fn live_node(store: &Arc<dyn PresenceStore>) -> NodeId {
    let node = node_id();
    store.renew_lease(&node, LIVE).await.unwrap();
    node
}

/// Makes `node`'s lease lapse: renewed with a tiny TTL, then waited out.
async fn kill(store: &Arc<dyn PresenceStore>, nodes: &[&NodeId]) {
    for node in nodes {
        store.renew_lease(node, DYING).await.unwrap();
    }
    tokio::time::sleep(AFTER_DEATH).await;
}

async fn open(store: &Arc<dyn PresenceStore>, user: UserId, node: &NodeId) -> SessionCounts {
    store.open_session(user, node, 100).await.unwrap()
}

async fn counts_of(store: &Arc<dyn PresenceStore>, user: UserId) -> SessionCounts {
    store.counts(&[user]).await.unwrap()[0]
}

/// Sessions of one user on two nodes add up, seen from any node.
pub async fn sessions_on_two_nodes_add_up(backend: SharedBackend) {
    let on_a = backend.presence().await;
    let on_b = backend.presence().await;
    let observer = backend.presence().await;
    let (a, b) = (live_node(&on_a).await, live_node(&on_b).await);
    let user = UserId::new();

    assert_eq!(open(&on_a, user, &a).await, counts(1, 0));
    assert_eq!(open(&on_a, user, &a).await, counts(2, 0));
    assert_eq!(open(&on_b, user, &b).await, counts(3, 0));
    assert_eq!(counts_of(&observer, user).await, counts(3, 0));
    assert_eq!(
        counts_of(&observer, user).await.status(),
        PresenceStatus::Online
    );

    assert_eq!(
        on_a.close_session(user, &a, false).await.unwrap(),
        counts(2, 0)
    );
    assert_eq!(
        on_a.close_session(user, &a, false).await.unwrap(),
        counts(1, 0)
    );
    assert_eq!(
        on_b.close_session(user, &b, false).await.unwrap(),
        counts(0, 0)
    );
    assert_eq!(
        counts_of(&observer, user).await.status(),
        PresenceStatus::Offline
    );
}

/// Away is aggregated: online while any session is active, away when all are.
pub async fn a_user_is_away_only_while_every_session_is_away(backend: SharedBackend) {
    let on_a = backend.presence().await;
    let on_b = backend.presence().await;
    let (a, b) = (live_node(&on_a).await, live_node(&on_b).await);
    let user = UserId::new();
    open(&on_a, user, &a).await;
    open(&on_b, user, &b).await;

    let after = on_a.set_away(user, &a, true).await.unwrap();
    assert_eq!(
        (after, after.status()),
        (counts(2, 1), PresenceStatus::Online)
    );
    let after = on_b.set_away(user, &b, true).await.unwrap();
    assert_eq!(
        (after, after.status()),
        (counts(2, 2), PresenceStatus::Away)
    );
    let after = on_a.set_away(user, &a, false).await.unwrap();
    assert_eq!(
        (after, after.status()),
        (counts(2, 1), PresenceStatus::Online)
    );
    let after = on_b.close_session(user, &b, true).await.unwrap();
    assert_eq!(
        (after, after.status()),
        (counts(1, 0), PresenceStatus::Online)
    );
    let after = on_a.set_away(user, &a, true).await.unwrap();
    assert_eq!(
        (after, after.status()),
        (counts(1, 1), PresenceStatus::Away)
    );
    let after = on_a.close_session(user, &a, true).await.unwrap();
    assert_eq!(
        (after, after.status()),
        (counts(0, 0), PresenceStatus::Offline)
    );
}

/// `counts` answers in input order, repeats included, with zero for unknown users.
pub async fn counts_come_back_in_input_order_and_unknown_users_are_offline(backend: SharedBackend) {
    let store = backend.presence().await;
    let a = live_node(&store).await;
    let (two, away, unknown) = (UserId::new(), UserId::new(), UserId::new());
    open(&store, two, &a).await;
    open(&store, two, &a).await;
    open(&store, away, &a).await;
    store.set_away(away, &a, true).await.unwrap();

    assert_eq!(
        store.counts(&[unknown, two, away, two]).await.unwrap(),
        vec![counts(0, 0), counts(2, 0), counts(1, 1), counts(2, 0)]
    );
    assert_eq!(store.counts(&[]).await.unwrap(), vec![]);
}

/// The cap is per user over every live node; a refusal counts nothing.
pub async fn the_session_cap_counts_sessions_on_every_node(backend: SharedBackend) {
    let on_a = backend.presence().await;
    let on_b = backend.presence().await;
    let (a, b) = (live_node(&on_a).await, live_node(&on_b).await);
    let (user, other) = (UserId::new(), UserId::new());
    on_a.open_session(user, &a, 3).await.unwrap();
    on_a.open_session(user, &a, 3).await.unwrap();
    on_b.open_session(user, &b, 3).await.unwrap();

    for (store, node) in [(&on_b, &b), (&on_a, &a)] {
        assert!(matches!(
            store.open_session(user, node, 3).await,
            Err(OpenSessionError::TooManySessions)
        ));
    }
    assert_eq!(counts_of(&on_a, user).await, counts(3, 0));
    assert_eq!(on_a.open_session(other, &a, 3).await.unwrap(), counts(1, 0));

    on_a.close_session(user, &a, false).await.unwrap();
    assert_eq!(on_b.open_session(user, &b, 3).await.unwrap(), counts(3, 0));
}

/// Twenty concurrent opens from two nodes against a cap of seven: exactly seven succeed,
/// each seeing a different count.
pub async fn twenty_concurrent_opens_admit_exactly_the_cap(backend: SharedBackend) {
    let on_a = backend.presence().await;
    let on_b = backend.presence().await;
    let (a, b) = (live_node(&on_a).await, live_node(&on_b).await);
    let user = UserId::new();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, node) = if i % 2 == 0 {
                (on_a.clone(), a.clone())
            } else {
                (on_b.clone(), b.clone())
            };
            tokio::spawn(async move { store.open_session(user, &node, 7).await })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(after) => admitted.push(after.sessions),
            Err(OpenSessionError::TooManySessions) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    admitted.sort_unstable();
    assert_eq!(admitted, (1..=7).collect::<Vec<_>>());
    assert_eq!(refused, 13);
    assert_eq!(counts_of(&on_a, user).await, counts(7, 0));
}

/// Once a node's lease lapses its sessions count for nobody and block nobody's cap, even
/// before anyone reaps it.
pub async fn a_dead_nodes_sessions_stop_counting_and_stop_blocking_the_cap(backend: SharedBackend) {
    let on_live = backend.presence().await;
    let on_dead = backend.presence().await;
    let (live, dead) = (live_node(&on_live).await, live_node(&on_dead).await);
    let user = UserId::new();
    for _ in 0..3 {
        on_dead.open_session(user, &dead, 3).await.unwrap();
    }
    on_dead.set_away(user, &dead, true).await.unwrap();
    assert!(matches!(
        on_live.open_session(user, &live, 3).await,
        Err(OpenSessionError::TooManySessions)
    ));

    kill(&on_dead, &[&dead]).await;

    assert_eq!(counts_of(&on_live, user).await, counts(0, 0));
    for expected in 1..=3 {
        assert_eq!(
            on_live.open_session(user, &live, 3).await.unwrap(),
            counts(expected, 0)
        );
    }
    assert!(matches!(
        on_live.open_session(user, &live, 3).await,
        Err(OpenSessionError::TooManySessions)
    ));
}

/// Four nodes reap at once: every dead node's users come back exactly once in total, live
/// nodes' users never, and a second round finds nothing.
pub async fn concurrent_reapers_get_each_dead_nodes_users_exactly_once(backend: SharedBackend) {
    let mut reapers = Vec::new();
    for _ in 0..4 {
        let store = backend.presence().await;
        let node = live_node(&store).await;
        reapers.push((store, node));
    }
    let on_dead = backend.presence().await;
    let mut dead_users = BTreeSet::new();
    let mut dead_nodes = Vec::new();
    for _ in 0..6 {
        let node = live_node(&on_dead).await;
        for _ in 0..3 {
            let user = UserId::new();
            open(&on_dead, user, &node).await;
            open(&on_dead, user, &node).await;
            dead_users.insert(user);
        }
        dead_nodes.push(node);
    }
    let survivor = UserId::new();
    open(&reapers[0].0, survivor, &reapers[0].1).await;
    kill(&on_dead, &dead_nodes.iter().collect::<Vec<_>>()).await;

    let tasks: Vec<_> = reapers
        .iter()
        .map(|(store, node)| {
            let (store, node) = (store.clone(), node.clone());
            tokio::spawn(async move { store.reap_dead_nodes(&node).await })
        })
        .collect();
    let mut returned = Vec::new();
    for task in tasks {
        returned.extend(task.await.unwrap().unwrap());
    }
    returned.sort_unstable();
    assert_eq!(returned, dead_users.iter().copied().collect::<Vec<_>>());

    for (store, node) in &reapers {
        assert_eq!(store.reap_dead_nodes(node).await.unwrap(), vec![]);
    }
    let users: Vec<_> = dead_users.iter().copied().collect();
    let after = reapers[0].0.counts(&users).await.unwrap();
    assert!(after.iter().all(|c| *c == counts(0, 0)), "{after:?}");
    assert_eq!(counts_of(&reapers[0].0, survivor).await, counts(1, 0));
}

/// A user with sessions on two dead nodes is returned once by a reap that finds both.
pub async fn a_user_on_several_dead_nodes_is_returned_once_per_reap(backend: SharedBackend) {
    let reaper = backend.presence().await;
    let me = live_node(&reaper).await;
    let on_dead = backend.presence().await;
    let (d1, d2) = (live_node(&on_dead).await, live_node(&on_dead).await);
    let (both, only_d2) = (UserId::new(), UserId::new());
    open(&on_dead, both, &d1).await;
    open(&on_dead, both, &d2).await;
    open(&on_dead, only_d2, &d2).await;
    kill(&on_dead, &[&d1, &d2]).await;

    let mut returned = reaper.reap_dead_nodes(&me).await.unwrap();
    returned.sort_unstable();
    let mut expected = vec![both, only_d2];
    expected.sort_unstable();
    assert_eq!(returned, expected);
}

/// Reaping skips the caller even when its own lease lapsed, and skips every live node.
pub async fn a_node_never_reaps_itself_nor_a_live_node(backend: SharedBackend) {
    let on_self = backend.presence().await;
    let on_live = backend.presence().await;
    let on_other = backend.presence().await;
    let (me, live, other) = (
        live_node(&on_self).await,
        live_node(&on_live).await,
        live_node(&on_other).await,
    );
    let (mine, theirs) = (UserId::new(), UserId::new());
    open(&on_self, mine, &me).await;
    open(&on_live, theirs, &live).await;
    kill(&on_self, &[&me]).await;

    assert_eq!(on_self.reap_dead_nodes(&me).await.unwrap(), vec![]);
    assert_eq!(counts_of(&on_self, theirs).await, counts(1, 0));

    assert_eq!(on_other.reap_dead_nodes(&other).await.unwrap(), vec![mine]);
}

/// `remove_node` drops what that node registered and nothing else; it is not reaped later.
pub async fn removing_a_node_drops_its_sessions_and_only_its_sessions(backend: SharedBackend) {
    let on_a = backend.presence().await;
    let on_b = backend.presence().await;
    let (a, b) = (live_node(&on_a).await, live_node(&on_b).await);
    let (shared, only_a) = (UserId::new(), UserId::new());
    open(&on_a, shared, &a).await;
    open(&on_a, shared, &a).await;
    open(&on_a, only_a, &a).await;
    on_a.set_away(only_a, &a, true).await.unwrap();
    open(&on_b, shared, &b).await;

    on_a.remove_node(&a).await.unwrap();

    assert_eq!(
        on_b.counts(&[shared, only_a]).await.unwrap(),
        vec![counts(1, 0), counts(0, 0)]
    );
    assert_eq!(on_b.reap_dead_nodes(&b).await.unwrap(), vec![]);
}

/// A node that was reaped while it still had sessions, then came back and closes them,
/// leaves counts at zero (never negative, nothing left behind).
pub async fn closing_a_session_that_was_reaped_leaves_the_counts_at_zero(backend: SharedBackend) {
    let on_reaper = backend.presence().await;
    let on_back = backend.presence().await;
    let (reaper, back) = (live_node(&on_reaper).await, live_node(&on_back).await);
    let user = UserId::new();
    open(&on_back, user, &back).await;
    on_back.set_away(user, &back, true).await.unwrap();
    kill(&on_back, &[&back]).await;
    assert_eq!(
        on_reaper.reap_dead_nodes(&reaper).await.unwrap(),
        vec![user]
    );

    on_back.renew_lease(&back, LIVE).await.unwrap();
    assert_eq!(
        on_back.set_away(user, &back, false).await.unwrap(),
        counts(0, 0)
    );
    assert_eq!(
        on_back.close_session(user, &back, true).await.unwrap(),
        counts(0, 0)
    );
    assert_eq!(
        on_back.set_away(user, &back, true).await.unwrap(),
        counts(0, 0)
    );
    assert_eq!(open(&on_back, user, &back).await, counts(1, 0));
}

/// A renewal tells whether the lease was still live: not for a new node, yes while it is
/// renewed in time, not after it lapsed (nor after the node was reaped).
pub async fn a_renewal_tells_whether_the_lease_was_still_live(backend: SharedBackend) {
    let store = backend.presence().await;
    let reaper = live_node(&store).await;
    let node = node_id();
    assert!(!store.renew_lease(&node, LIVE).await.unwrap(), "a new node");
    assert!(
        store.renew_lease(&node, LIVE).await.unwrap(),
        "renewed in time"
    );
    kill(&store, &[&node]).await;
    assert!(!store.renew_lease(&node, LIVE).await.unwrap(), "lapsed");
    kill(&store, &[&node]).await;
    store.reap_dead_nodes(&reaper).await.unwrap();
    assert!(!store.renew_lease(&node, LIVE).await.unwrap(), "reaped");
    assert!(store.renew_lease(&node, LIVE).await.unwrap());
}

/// Restoring makes a node's counts exactly the given ones (listed users set, others
/// dropped), reports the users whose counts changed, and leaves other nodes alone.
pub async fn restoring_a_node_sets_exactly_its_counts_and_reports_what_changed(
    backend: SharedBackend,
) {
    let on_a = backend.presence().await;
    let on_b = backend.presence().await;
    let (a, b) = (live_node(&on_a).await, live_node(&on_b).await);
    let (same, fewer, gone, new, elsewhere) = (
        UserId::new(),
        UserId::new(),
        UserId::new(),
        UserId::new(),
        UserId::new(),
    );
    open(&on_a, same, &a).await;
    open(&on_a, same, &a).await;
    open(&on_a, fewer, &a).await;
    open(&on_a, fewer, &a).await;
    on_a.set_away(fewer, &a, true).await.unwrap();
    open(&on_a, gone, &a).await;
    open(&on_b, elsewhere, &b).await;
    open(&on_b, gone, &b).await;

    let mut changed = on_a
        .restore_node(
            &a,
            &[
                (same, counts(2, 0)),
                (fewer, counts(1, 1)),
                (new, counts(3, 1)),
            ],
        )
        .await
        .unwrap();
    changed.sort_unstable();
    let mut expected = vec![fewer, gone, new];
    expected.sort_unstable();
    assert_eq!(changed, expected);
    assert_eq!(
        on_b.counts(&[same, fewer, gone, new, elsewhere])
            .await
            .unwrap(),
        vec![
            counts(2, 0),
            counts(1, 1),
            counts(1, 0),
            counts(3, 1),
            counts(1, 0)
        ]
    );
    // Restoring the same again changes nothing; closing works on restored counts.
    let again = on_a
        .restore_node(
            &a,
            &[
                (same, counts(2, 0)),
                (fewer, counts(1, 1)),
                (new, counts(3, 1)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again, vec![]);
    assert_eq!(
        on_a.close_session(new, &a, true).await.unwrap(),
        counts(2, 0)
    );
    // A node's removal still drops what the restore registered.
    on_a.remove_node(&a).await.unwrap();
    assert_eq!(
        on_b.counts(&[same, new]).await.unwrap(),
        vec![counts(0, 0), counts(0, 0)]
    );
}

/// A node reaped while it was cut off comes back: its renewal says the lease was gone and
/// its restore makes its sessions count again.
pub async fn a_reaped_node_that_restores_counts_again(backend: SharedBackend) {
    let on_reaper = backend.presence().await;
    let on_back = backend.presence().await;
    let (reaper, back) = (live_node(&on_reaper).await, live_node(&on_back).await);
    let user = UserId::new();
    open(&on_back, user, &back).await;
    open(&on_back, user, &back).await;
    kill(&on_back, &[&back]).await;
    assert_eq!(
        on_reaper.reap_dead_nodes(&reaper).await.unwrap(),
        vec![user]
    );
    assert_eq!(counts_of(&on_reaper, user).await, counts(0, 0));

    assert!(!on_back.renew_lease(&back, LIVE).await.unwrap());
    assert_eq!(
        on_back
            .restore_node(&back, &[(user, counts(2, 0))])
            .await
            .unwrap(),
        vec![user]
    );
    assert_eq!(counts_of(&on_reaper, user).await, counts(2, 0));
    assert_eq!(on_reaper.reap_dead_nodes(&reaper).await.unwrap(), vec![]);
}
