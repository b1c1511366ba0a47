//! Presence work that runs on timers: this node's lease, reaping dead nodes, and the grace
//! period between a user's last session closing and `offline` being announced.
//!
//! [`spawn_presence_tasks`] renews the lease once before it returns (sessions may open only
//! after that), then every third of the lease TTL, and reaps nodes whose lease lapsed every
//! half TTL, so a node killed with -9 has its users announced offline within about
//! 1.5 TTLs. A renewal that finds this node's own registration lost (its lease lapsed and
//! was reaped while Redis was unreachable, or Redis came back empty) registers the node's
//! live sessions again and announces their users' status, within a third of a TTL of
//! Redis answering again. On shutdown it removes the node and waits for the pending grace
//! checks.
//!
//! The rules themselves live in [`PresenceService`]; this file only schedules them.

use domain::realtime::RealtimeError;
use domain::services::{LeaseRenewal, PresenceService};
use domain::UserId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How many times an offline check that failed (storage or Redis down) is tried in all,
/// one grace period apart, before the user is left to the next reap or reconnect.
const OFFLINE_CHECK_ATTEMPTS: u32 = 3;

/// The shortest timer period, so a zero or tiny setting cannot make a busy loop.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// Schedules [`PresenceService::confirm_offline`] one grace period after a user's last
/// session closed. Clones share the schedule.
///
/// Scheduling a user again restarts their grace: only the newest check runs, so a user who
/// comes and goes is checked once, a grace after they last left. The check itself asks every
/// node (a reconnect elsewhere keeps the user online), so nothing needs cancelling.
#[derive(Clone)]
pub struct OfflineGrace {
    inner: Arc<GraceState>,
}

struct GraceState {
    service: PresenceService,
    grace: Duration,
    /// The runtime the timers run on: the one that made the schedule, not an actix worker
    /// that may stop first during shutdown.
    runtime: Handle,
    /// The newest check of each user with one pending; older timers see a newer one here
    /// and do nothing.
    pending: Mutex<HashMap<UserId, u64>>,
    next_check: Mutex<u64>,
    /// Timers not finished yet, for [`OfflineGrace::drain`].
    in_flight: watch::Sender<usize>,
}

impl OfflineGrace {
    /// A schedule for `service`, with its configured grace period, whose timers run on the
    /// current Tokio runtime. Panics outside a runtime (as `tokio::spawn` would).
    pub(crate) fn new(service: PresenceService) -> Self {
        let grace = service.settings().offline_grace;
        Self {
            inner: Arc::new(GraceState {
                service,
                grace,
                runtime: Handle::current(),
                pending: Mutex::default(),
                next_check: Mutex::new(0),
                in_flight: watch::Sender::new(0),
            }),
        }
    }

    /// Checks `user` for offline one grace period from now (call when
    /// [`PresenceService::session_closed`] answered `true`). Returns at once.
    pub fn schedule(&self, user: UserId) {
        self.schedule_attempt(user, 1);
    }

    /// A session of `user` opened on this node: a check pending for them is dropped, since
    /// it would only find that session (when it closes as their last, a new check is
    /// scheduled). Spares the store one read per user who comes back within the grace, which
    /// in a reconnect storm is most of them, all due at once. A check pending on another
    /// node still runs there and finds the session.
    pub fn reopened(&self, user: UserId) {
        lock(&self.inner.pending).remove(&user);
    }

    /// Users with a check pending.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Waits until every pending check (and any scheduled meanwhile) has run.
    pub(crate) async fn drain(&self) {
        let mut in_flight = self.inner.in_flight.subscribe();
        // Only fails when the sender is gone, which `self` prevents.
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    fn schedule_attempt(&self, user: UserId, attempt: u32) {
        let state = &self.inner;
        let check = {
            let mut next = lock(&state.next_check);
            *next += 1;
            *next
        };
        lock(&state.pending).insert(user, check);
        state.in_flight.send_modify(|n| *n += 1);
        let timer = InFlight(self.clone());
        state.runtime.spawn(async move {
            let grace = timer.0.clone();
            tokio::time::sleep(grace.inner.grace).await;
            grace.run_check(user, check, attempt).await;
            drop(timer);
        });
    }

    async fn run_check(&self, user: UserId, check: u64, attempt: u32) {
        {
            let mut pending = lock(&self.inner.pending);
            if pending.get(&user) != Some(&check) {
                return;
            }
            pending.remove(&user);
        }
        match self.inner.service.confirm_offline(user).await {
            Ok(true) => tracing::debug!(%user, "user offline after the grace period"),
            Ok(false) => {}
            Err(error) if attempt < OFFLINE_CHECK_ATTEMPTS => {
                tracing::warn!(%user, attempt, error = %error, "offline check failed; retrying");
                // Unless a newer check was scheduled while this one ran.
                if !lock(&self.inner.pending).contains_key(&user) {
                    self.schedule_attempt(user, attempt + 1);
                }
            }
            Err(error) => {
                tracing::warn!(%user, attempt, error = %error, "offline check failed; giving up");
            }
        }
    }
}

/// Counts a timer in flight until dropped, also when its task is cancelled.
struct InFlight(OfflineGrace);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .inner
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The running presence tasks of this node.
pub struct PresenceTasks {
    grace: OfflineGrace,
    task: JoinHandle<()>,
}

impl PresenceTasks {
    /// The grace scheduler: sessions call [`OfflineGrace::schedule`] when their close was
    /// the user's last.
    pub fn grace(&self) -> &OfflineGrace {
        &self.grace
    }

    /// Waits until the tasks finished after the shutdown signal: the node removed and every
    /// pending offline check run. Await it before the process exits.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "presence task failed");
        }
    }
}

/// Renews this node's lease once (sessions may open when this returns; an error means the
/// backend is down and the server should not start), then runs in the background until
/// `shutdown` completes: renewing the lease every third of its TTL and reaping dead nodes
/// every half TTL (the first reap at once, for a node that died before this one started).
/// On shutdown, removes the node's sessions and waits for the pending offline checks.
/// The lease TTL is [`PresenceService::settings`]' `lease_ttl`.
pub async fn spawn_presence_tasks(
    service: PresenceService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<PresenceTasks, RealtimeError> {
    service.renew_lease().await?;
    let grace = OfflineGrace::new(service.clone());
    let ttl = service.settings().lease_ttl;
    let task = tokio::spawn(run(service, grace.clone(), ttl, shutdown));
    Ok(PresenceTasks { grace, task })
}

async fn run(
    service: PresenceService,
    grace: OfflineGrace,
    ttl: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let renew_every = (ttl / 3).max(MIN_PERIOD);
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    // After a stall (a slow Redis), renew once and keep the cadence: never a burst.
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reap = tokio::time::interval((ttl / 2).max(MIN_PERIOD));
    reap.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = renew.tick() => match service.renew_lease().await {
                Ok(LeaseRenewal::Kept) => {}
                Ok(LeaseRenewal::Restored { users, announced }) => tracing::warn!(
                    users,
                    announced,
                    "this node's presence registration was lost or out of step (lease \
                     lapsed, store restarted empty, or a change failed): registered again"
                ),
                Err(error) => tracing::warn!(error = %error, "presence lease renewal failed"),
            },
            _ = reap.tick() => match service.reap_dead_nodes().await {
                Ok(0) => {}
                Ok(offline) => tracing::info!(offline, "reaped dead nodes; their users are offline"),
                Err(error) => tracing::warn!(error = %error, "reaping dead nodes failed"),
            },
        }
    }
    // Sessions still open here stop counting; the pending checks then see who reconnected
    // to another node and announce the rest offline.
    if let Err(error) = service.remove_node().await {
        tracing::warn!(error = %error, "could not remove this node's presence");
    }
    grace.drain().await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps and counters: what a panicking holder left is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use adapters_memory::MemoryPresence;
    use async_trait::async_trait;
    use chrono::{DateTime, TimeZone, Utc};
    use domain::ports::{Clock, MockConversationStore, MockUserStore};
    use domain::realtime::{Event, EventPublisher, NodeId, PresenceStatus, PresenceStore, Topic};
    use domain::services::PresenceSettings;
    use domain::ConversationId;
    use tokio::time::{sleep, Instant};

    const GRACE: Duration = Duration::from_secs(5);
    const TTL: Duration = Duration::from_secs(15);

    /// Wall time that follows Tokio's (paused) clock.
    struct TokioClock(Instant);

    impl Clock for TokioClock {
        fn now(&self) -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                + chrono::TimeDelta::from_std(self.0.elapsed()).unwrap()
        }
    }

    /// Every presence event published, with the conversation it went to.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Topic, Event)>>);

    #[async_trait]
    impl EventPublisher for Recorder {
        async fn publish(&self, topic: Topic, event: Event) -> Result<(), RealtimeError> {
            self.0.lock().unwrap().push((topic, event));
            Ok(())
        }
    }

    impl Recorder {
        fn offline(&self) -> Vec<UserId> {
            self.statuses(PresenceStatus::Offline)
        }
        fn statuses(&self, wanted: PresenceStatus) -> Vec<UserId> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(_, event)| match event {
                    Event::Presence {
                        user_id, status, ..
                    } if *status == wanted => Some(*user_id),
                    _ => None,
                })
                .collect()
        }
    }

    /// A node's presence service on the shared `presence`, publishing to `events`. Every
    /// user is in one conversation.
    fn node(name: &str, presence: &MemoryPresence, events: &Arc<Recorder>) -> PresenceService {
        let mut conversations = MockConversationStore::new();
        let conversation = ConversationId::new();
        conversations
            .expect_conversation_ids()
            .returning(move |_| Ok(vec![conversation]));
        let mut users = MockUserStore::new();
        users.expect_touch_last_seen().returning(|_, _| Ok(()));
        PresenceService::new(
            Arc::new(presence.clone()),
            events.clone(),
            Arc::new(conversations),
            Arc::new(users),
            Arc::new(TokioClock(Instant::now())),
            PresenceSettings {
                offline_grace: GRACE,
                lease_ttl: TTL,
                ..PresenceSettings::new(NodeId(name.into()))
            },
        )
    }

    fn never() -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    /// A node with its tasks running, and a user whose only session there just closed, their
    /// offline check scheduled.
    async fn just_left() -> (Arc<Recorder>, PresenceService, PresenceTasks, UserId) {
        let events = Arc::new(Recorder::default());
        let service = node("a", &MemoryPresence::new(), &events);
        let tasks = spawn_presence_tasks(service.clone(), never())
            .await
            .unwrap();
        let user = UserId::new();
        service.session_opened(user).await.unwrap();
        assert!(
            service.session_closed(user, false).await.unwrap(),
            "the last"
        );
        tasks.grace().schedule(user);
        (events, service, tasks, user)
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_whose_last_session_closed_is_announced_offline_after_the_grace_and_not_before()
    {
        let (events, _service, tasks, user) = just_left().await;
        sleep(GRACE - Duration::from_millis(10)).await;
        assert_eq!(events.offline(), vec![]);
        sleep(Duration::from_millis(20)).await;
        assert_eq!(events.offline(), vec![user]);
        assert_eq!(tasks.grace().pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_within_the_grace_is_never_announced_offline() {
        let (events, service, _tasks, user) = just_left().await;
        sleep(GRACE / 2).await;
        service.session_opened(user).await.unwrap();
        sleep(GRACE * 3).await;
        assert_eq!(events.offline(), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_back_on_this_node_has_no_check_left_and_is_checked_again_when_gone_again() {
        let (events, service, tasks, user) = just_left().await;
        assert_eq!(tasks.grace().pending(), 1);
        service.session_opened(user).await.unwrap();
        tasks.grace().reopened(user);
        assert_eq!(tasks.grace().pending(), 0, "nothing left to check");
        sleep(GRACE / 2).await;
        assert!(service.session_closed(user, false).await.unwrap());
        tasks.grace().schedule(user);
        // The dropped check's timer ends first and does nothing; the new one announces.
        sleep(GRACE / 2 + Duration::from_millis(10)).await;
        assert_eq!(events.offline(), vec![]);
        sleep(GRACE / 2).await;
        assert_eq!(events.offline(), vec![user]);
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_again_restarts_the_grace_and_the_user_is_checked_once() {
        let (events, service, tasks, user) = just_left().await;
        sleep(Duration::from_secs(3)).await;
        service.session_opened(user).await.unwrap();
        service.session_closed(user, false).await.unwrap();
        tasks.grace().schedule(user);
        // 5.5 s after the first close, 2.5 s after the second: still within its grace.
        sleep(Duration::from_millis(2_500)).await;
        assert_eq!(events.offline(), vec![]);
        sleep(Duration::from_secs(3)).await;
        sleep(GRACE).await;
        assert_eq!(events.offline(), vec![user]);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_count_right_after_spawning_and_for_as_long_as_the_node_runs() {
        let events = Arc::new(Recorder::default());
        let service = node("a", &MemoryPresence::new(), &events);
        let _tasks = spawn_presence_tasks(service.clone(), never())
            .await
            .unwrap();
        let user = UserId::new();
        // Counted at once: the lease was renewed before spawning returned.
        assert_eq!(service.session_opened(user).await.unwrap().sessions, 1);
        sleep(TTL * 4).await;
        assert_eq!(
            service.statuses(&[user]).await.unwrap(),
            vec![PresenceStatus::Online]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_users_of_a_node_that_stopped_renewing_are_announced_offline_within_one_and_a_half_ttls(
    ) {
        let (presence, events) = (MemoryPresence::new(), Arc::new(Recorder::default()));
        // Node b renews once and then "dies": no tasks, so no renewal.
        let dead = node("b", &presence, &events);
        dead.renew_lease().await.unwrap();
        let user = UserId::new();
        dead.session_opened(user).await.unwrap();
        let survivor = node("a", &presence, &events);
        let _tasks = spawn_presence_tasks(survivor, never()).await.unwrap();
        sleep(TTL - Duration::from_secs(1)).await;
        assert_eq!(events.offline(), vec![]);
        sleep(TTL / 2 + Duration::from_secs(1)).await;
        assert_eq!(events.offline(), vec![user]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_reaped_while_cut_off_registers_its_sessions_again_and_they_are_online() {
        let (presence, events) = (MemoryPresence::new(), Arc::new(Recorder::default()));
        // Node b holds a session, then cannot renew for a while (cut off from the store).
        let cut_off = node("b", &presence, &events);
        cut_off.renew_lease().await.unwrap();
        let user = UserId::new();
        cut_off.session_opened(user).await.unwrap();
        let survivor = node("a", &presence, &events);
        let _tasks = spawn_presence_tasks(survivor.clone(), never())
            .await
            .unwrap();
        sleep(TTL * 2).await;
        assert_eq!(events.offline(), vec![user], "reaped meanwhile");
        assert_eq!(
            survivor.statuses(&[user]).await.unwrap(),
            vec![PresenceStatus::Offline]
        );

        // b reaches the store again: its renewal finds its lease gone and registers the
        // session it still holds, and everyone is told the user is online.
        assert_eq!(
            cut_off.renew_lease().await.unwrap(),
            LeaseRenewal::Restored {
                users: 1,
                announced: 1
            }
        );
        assert_eq!(
            survivor.statuses(&[user]).await.unwrap(),
            vec![PresenceStatus::Online]
        );
        assert_eq!(
            events.statuses(PresenceStatus::Online),
            vec![user, user],
            "online at the open, and again after the restore"
        );
        assert_eq!(cut_off.renew_lease().await.unwrap(), LeaseRenewal::Kept);
        // The restored session closes as any other.
        assert!(cut_off.session_closed(user, false).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn on_shutdown_the_node_is_removed_and_pending_checks_run_before_the_tasks_end() {
        let (presence, events) = (MemoryPresence::new(), Arc::new(Recorder::default()));
        let service = node("a", &presence, &events);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tasks = spawn_presence_tasks(service.clone(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let (leaving, still_here) = (UserId::new(), UserId::new());
        service.session_opened(leaving).await.unwrap();
        service.session_opened(still_here).await.unwrap();
        service.session_closed(leaving, false).await.unwrap();
        tasks.grace().schedule(leaving);
        let started = Instant::now();
        stop.send(()).unwrap();
        tasks.stopped().await;
        assert!(
            started.elapsed() >= GRACE,
            "the pending check was waited for"
        );
        assert_eq!(events.offline(), vec![leaving]);
        let counts = presence.counts(&[still_here]).await.unwrap();
        assert_eq!(counts[0].sessions, 0, "the node's sessions were removed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_offline_check_is_tried_again_a_grace_later() {
        let events = Arc::new(Recorder::default());
        let mut conversations = MockConversationStore::new();
        conversations
            .expect_conversation_ids()
            .returning(|_| Ok(vec![ConversationId::new()]));
        let mut users = MockUserStore::new();
        let mut failures = 1;
        users.expect_touch_last_seen().returning(move |_, _| {
            if failures > 0 {
                failures -= 1;
                Err(domain::StorageError::msg("database restarting"))
            } else {
                Ok(())
            }
        });
        let service = PresenceService::new(
            Arc::new(MemoryPresence::new()),
            events.clone(),
            Arc::new(conversations),
            Arc::new(users),
            Arc::new(TokioClock(Instant::now())),
            PresenceSettings {
                offline_grace: GRACE,
                lease_ttl: TTL,
                ..PresenceSettings::new(NodeId("a".into()))
            },
        );
        let tasks = spawn_presence_tasks(service, never()).await.unwrap();
        let user = UserId::new();
        tasks.grace().schedule(user);
        sleep(GRACE + Duration::from_millis(10)).await;
        assert_eq!(events.offline(), vec![]);
        sleep(GRACE).await;
        assert_eq!(events.offline(), vec![user]);
    }
}
