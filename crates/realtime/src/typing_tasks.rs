//! The typing sweeper: takes typing leases nobody refreshed within their TTL and announces
//! `is_typing: false` for each, so a client that never sends the stop cannot leave anyone
//! "typing". Every node runs one; the store hands each lapsed lease to exactly one of them.

use domain::services::TypingService;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// A sweep period for leases of `ttl`: a fifth of it (a lease ends at most that late),
/// between 10 ms and 1 s.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Sweeps every `every` until `shutdown` completes. Failures (Redis down) are logged and
/// the next sweep takes what this one could not.
pub fn spawn_typing_sweeper(
    service: TypingService,
    every: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let every = every.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {
                    if let Err(error) = service.sweep().await {
                        tracing::warn!(error = %error, "typing sweep failed");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use adapters_memory::MemoryTyping;
    use async_trait::async_trait;
    use chrono::{DateTime, TimeZone, Utc};
    use domain::ports::Clock;
    use domain::realtime::{Event, EventPublisher, RealtimeError, Topic};
    use domain::services::TypingSettings;
    use domain::{ConversationId, UserId};
    use std::sync::{Arc, Mutex};
    use tokio::time::{sleep, Instant};

    const TTL: Duration = Duration::from_secs(5);

    /// Wall time that follows Tokio's (paused) clock.
    struct TokioClock(Instant);

    impl Clock for TokioClock {
        fn now(&self) -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                + chrono::TimeDelta::from_std(self.0.elapsed()).unwrap()
        }
    }

    /// `is_typing` of every typing event published, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<bool>>);

    #[async_trait]
    impl EventPublisher for Recorder {
        async fn publish(&self, _: Topic, event: Event) -> Result<(), RealtimeError> {
            if let Event::Typing { is_typing, .. } = event {
                self.0.lock().unwrap().push(is_typing);
            }
            Ok(())
        }
    }

    fn service(events: &Arc<Recorder>) -> TypingService {
        TypingService::new(
            Arc::new(MemoryTyping::new()),
            events.clone(),
            Arc::new(TokioClock(Instant::now())),
            TypingSettings {
                lease_ttl: TTL,
                ..TypingSettings::default()
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_never_refreshed_is_announced_stopped_within_the_ttl_and_one_sweep() {
        let events = Arc::new(Recorder::default());
        let service = service(&events);
        let every = sweep_interval(TTL);
        let _sweeper = spawn_typing_sweeper(service.clone(), every, std::future::pending());
        service
            .typing(ConversationId::new(), UserId::new(), true)
            .await
            .unwrap();
        sleep(TTL - Duration::from_millis(100)).await;
        assert_eq!(*events.0.lock().unwrap(), vec![true]);
        sleep(Duration::from_millis(100) + every).await;
        assert_eq!(*events.0.lock().unwrap(), vec![true, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_ends_when_shutdown_completes() {
        let events = Arc::new(Recorder::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = spawn_typing_sweeper(service(&events), Duration::from_millis(100), async {
            let _ = stopped.await;
        });
        sleep(Duration::from_millis(250)).await;
        assert!(!sweeper.is_finished());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(1), sweeper)
            .await
            .expect("the sweeper stopped")
            .unwrap();
    }

    #[test]
    fn the_sweep_interval_is_a_fifth_of_the_ttl_within_10_ms_and_1_s() {
        assert_eq!(
            sweep_interval(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(500)),
            Duration::from_millis(100)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(20)),
            Duration::from_millis(10)
        );
    }
}
