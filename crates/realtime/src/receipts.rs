//! [`ReceiptBatcher`]: delivered and read watermarks, coalesced and written in batches.
//!
//! Every `message` frame written to a recipient's session marks it delivered; `read` and
//! `delivered` frames mark explicitly. Marks are merged per (conversation, user) to the highest
//! seq, and one task writes whatever accumulated with ONE `advance_watermarks` call, then
//! repeats. Each flush first lingers (`realtime.receipt_linger`) so marks from more
//! messages join it: at 500 sends a second a flush used to start as soon as the previous
//! one ended and carried 1-2 marks, so PostgreSQL committed ~800 watermark writes a second.
//! So the database sees one write per batch, never one per recipient per message.
//!
//! After a flush, the watermarks that moved are published, all in one `publish_all`:
//! `delivered` and `read_receipt` to the conversation (the reader's other sessions see them
//! too), and `unread` to the reader's own channel.

use super::metrics::Metrics;
use chrono::{DateTime, Utc};
use domain::ports::{ConversationStore, ReceiptStore, WatermarkUpdate};
use domain::realtime::{Event, EventPublisher, Topic};
use domain::{ConversationId, MessageId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a failed flush waits before trying again (the marks are kept).
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Watermarks published per (conversation, user) remembered at most, so a repeat of one
/// that did not move is not announced again.
const PUBLISHED_MEMORY: usize = 100_000;

type Key = (ConversationId, UserId);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Marks {
    delivered: Option<(i64, MessageId)>,
    read: Option<(i64, MessageId, DateTime<Utc>)>,
}

impl Marks {
    fn merge(&mut self, other: Marks) {
        if let Some(d) = other.delivered {
            if self.delivered.is_none_or(|(seq, _)| d.0 > seq) {
                self.delivered = Some(d);
            }
        }
        if let Some(r) = other.read {
            if self.read.is_none_or(|(seq, _, _)| r.0 > seq) {
                self.read = Some(r);
            }
        }
    }
}

struct Shared {
    pending: Mutex<HashMap<Key, Marks>>,
    wake: Notify,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<Key, Marks>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mark(&self, key: Key, marks: Marks) {
        self.pending().entry(key).or_default().merge(marks);
        self.wake.notify_one();
    }
}

/// The node's receipt coalescer. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptBatcher {
    shared: Arc<Shared>,
}

/// What a flush needs.
pub(crate) struct ReceiptPorts {
    /// Where watermarks are written.
    pub receipts: Arc<dyn ReceiptStore>,
    /// Unread counts after a read.
    pub conversations: Arc<dyn ConversationStore>,
    /// Where moved watermarks are announced.
    pub publisher: Arc<dyn EventPublisher>,
}

impl ReceiptBatcher {
    /// Starts the flush task on the current runtime: at most `max_batch` marks per flush,
    /// each flush gathering marks for `linger` first.
    pub(crate) fn start(
        ports: ReceiptPorts,
        max_batch: usize,
        linger: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        });
        let flushing = Flushing {
            max_batch: max_batch.max(1),
            linger,
        };
        tokio::spawn(flush_loop(shared.clone(), ports, flushing, metrics));
        Self { shared }
    }

    /// `user` has every message of `conversation` up to `seq` (`message_id`).
    pub fn delivered(
        &self,
        conversation: ConversationId,
        user: UserId,
        seq: i64,
        message_id: MessageId,
    ) {
        self.shared.mark(
            (conversation, user),
            Marks {
                delivered: Some((seq, message_id)),
                read: None,
            },
        );
    }

    /// `user` read every message of `conversation` up to `seq` (`message_id`) at `at`.
    pub fn read(
        &self,
        conversation: ConversationId,
        user: UserId,
        seq: i64,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) {
        self.shared.mark(
            (conversation, user),
            Marks {
                delivered: None,
                read: Some((seq, message_id, at)),
            },
        );
    }

    /// (conversation, user) pairs waiting for the next flush.
    pub(crate) fn queue_depth(&self) -> usize {
        self.shared.pending().len()
    }

    /// Waits until nothing waits to be written (bounded by `limit`), for graceful shutdown.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.queue_depth() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How the flush task batches.
#[derive(Debug, Clone, Copy)]
struct Flushing {
    max_batch: usize,
    linger: Duration,
}

async fn flush_loop(
    shared: Arc<Shared>,
    ports: ReceiptPorts,
    flushing: Flushing,
    metrics: Arc<Metrics>,
) {
    let mut published: HashMap<Key, (i64, i64)> = HashMap::new();
    loop {
        shared.wake.notified().await;
        loop {
            if !flushing.linger.is_zero() {
                tokio::time::sleep(flushing.linger).await;
            }
            let batch: Vec<(Key, Marks)> = {
                let mut pending = shared.pending();
                let keys: Vec<Key> = pending.keys().take(flushing.max_batch).copied().collect();
                keys.into_iter()
                    .filter_map(|k| pending.remove(&k).map(|m| (k, m)))
                    .collect()
            };
            if batch.is_empty() {
                break;
            }
            if let Err(batch) = flush(&ports, batch, &mut published, &metrics).await {
                // Keep the marks (merged with any newer ones) and try again shortly.
                {
                    let mut pending = shared.pending();
                    for (key, marks) in batch {
                        pending.entry(key).or_default().merge(marks);
                    }
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
            if published.len() > PUBLISHED_MEMORY {
                published.clear();
            }
        }
    }
}

/// Writes one batch and announces what moved; on a storage failure, hands the batch back.
async fn flush(
    ports: &ReceiptPorts,
    batch: Vec<(Key, Marks)>,
    published: &mut HashMap<Key, (i64, i64)>,
    metrics: &Metrics,
) -> Result<(), Vec<(Key, Marks)>> {
    let updates: Vec<WatermarkUpdate> = batch
        .iter()
        .map(|((conversation_id, user_id), marks)| WatermarkUpdate {
            conversation_id: *conversation_id,
            user_id: *user_id,
            delivered_seq: marks.delivered.map(|(seq, _)| seq),
            read_seq: marks.read.map(|(seq, _, _)| seq),
        })
        .collect();
    let after = match ports.receipts.advance_watermarks(&updates).await {
        Ok(after) if after.len() == batch.len() => after,
        Ok(_) => {
            tracing::error!("storage answered a different number of watermarks than asked");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(error = %e, updates = batch.len(), "receipt flush failed; retrying");
            return Err(batch);
        }
    };
    metrics.receipt_flush(batch.len());
    let mut items: Vec<(Topic, Event)> = Vec::new();
    let mut readers: HashMap<UserId, Vec<ConversationId>> = HashMap::new();
    for (((conversation_id, user), marks), now) in batch.into_iter().zip(after) {
        // `None`: not a member (any more); nothing to announce.
        let Some(now) = now else { continue };
        let seen = published.entry((conversation_id, user)).or_insert((0, 0));
        let topic = Topic::Conversation(conversation_id);
        if let Some((seq, message_id, read_at)) = marks.read {
            // Announce only a watermark that is now exactly this one: a higher one was moved
            // (and announced) by someone else.
            if now.read_seq == seq && seq > seen.1 {
                let since_seq = seen.1;
                seen.1 = seq;
                seen.0 = seen.0.max(seq);
                let event = Event::Read {
                    conversation_id,
                    message_id,
                    seq,
                    since_seq,
                    read_by: user,
                    read_at,
                };
                items.push((topic, event));
                readers.entry(user).or_default().push(conversation_id);
            }
        }
        if let Some((seq, message_id)) = marks.delivered {
            if now.delivered_seq.max(now.read_seq) == seq && seq > seen.0 {
                let since_seq = seen.0;
                seen.0 = seq;
                let event = Event::Delivered {
                    conversation_id,
                    message_id,
                    seq,
                    since_seq,
                    user_id: user,
                };
                items.push((topic, event));
            }
        }
    }
    for (user, conversations) in readers {
        items.extend(unread_events(ports, user, &conversations).await);
    }
    if items.is_empty() {
        return Ok(());
    }
    let count = items.len();
    if let Err(e) = ports.publisher.publish_all(items).await {
        tracing::warn!(error = %e, events = count, "receipts could not be published");
    }
    Ok(())
}

/// The `unread` events of `user` in `conversations`, to their own channel; none when the
/// counts cannot be read.
async fn unread_events(
    ports: &ReceiptPorts,
    user: UserId,
    conversations: &[ConversationId],
) -> Vec<(Topic, Event)> {
    let counts = match ports.conversations.unread_counts(user).await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::warn!(error = %e, "unread counts unavailable after a read");
            return Vec::new();
        }
    };
    let total = counts.iter().map(|(_, n)| n).sum();
    conversations
        .iter()
        .map(|conversation_id| {
            let unread_count = counts
                .iter()
                .find(|(c, _)| c == conversation_id)
                .map_or(0, |(_, n)| *n);
            let event = Event::Unread {
                conversation_id: *conversation_id,
                unread_count,
                total,
            };
            (Topic::User(user), event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use domain::conversation::{Participant, Role};
    use domain::ports::{MockConversationStore, MockReceiptStore};
    use domain::realtime::MockEventPublisher;
    use domain::StorageError;

    fn participant(update: &WatermarkUpdate, delivered: i64, read: i64) -> Participant {
        Participant {
            conversation_id: update.conversation_id,
            user_id: update.user_id,
            role: Role::Member,
            joined_at: Utc::now(),
            delivered_seq: delivered,
            read_seq: read,
        }
    }

    type Published = Arc<Mutex<Vec<(Topic, Event)>>>;

    fn recording_publisher() -> (Arc<MockEventPublisher>, Published) {
        let published: Published = Arc::default();
        let log = published.clone();
        let mut mock = MockEventPublisher::new();
        mock.expect_publish_all().returning(move |items| {
            log.lock().unwrap().extend(items);
            Ok(())
        });
        (Arc::new(mock), published)
    }

    /// A receipt store that applies updates like the real one: max, read implies delivered.
    fn store(calls: Arc<Mutex<Vec<Vec<WatermarkUpdate>>>>) -> MockReceiptStore {
        let marks: Arc<Mutex<HashMap<Key, (i64, i64)>>> = Arc::default();
        let mut receipts = MockReceiptStore::new();
        receipts
            .expect_advance_watermarks()
            .returning(move |updates| {
                calls.lock().unwrap().push(updates.to_vec());
                let mut marks = marks.lock().unwrap();
                Ok(updates
                    .iter()
                    .map(|u| {
                        let m = marks.entry((u.conversation_id, u.user_id)).or_default();
                        m.1 = m.1.max(u.read_seq.unwrap_or(0));
                        m.0 = m.0.max(u.delivered_seq.unwrap_or(0)).max(m.1);
                        Some(participant(u, m.0, m.1))
                    })
                    .collect())
            });
        receipts
    }

    fn unread_counts() -> MockConversationStore {
        let mut conversations = MockConversationStore::new();
        conversations
            .expect_unread_counts()
            .returning(|_| Ok(vec![]));
        conversations
    }

    /// A started batcher over [`store`] (its writes land in `calls`) and a recording
    /// publisher, with no unread counts, flushing after `linger`.
    fn recorded_batcher(
        calls: &Arc<Mutex<Vec<Vec<WatermarkUpdate>>>>,
        linger: Duration,
    ) -> (ReceiptBatcher, Published) {
        let (publisher, published) = recording_publisher();
        let batcher = ReceiptBatcher::start(
            ReceiptPorts {
                receipts: Arc::new(store(calls.clone())),
                conversations: Arc::new(unread_counts()),
                publisher,
            },
            64,
            linger,
            Arc::default(),
        );
        (batcher, published)
    }

    async fn settle(batcher: &ReceiptBatcher) {
        for _ in 0..100 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            if batcher.queue_depth() == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn marks_for_one_member_coalesce_to_the_highest_seq_in_one_write() {
        let calls: Arc<Mutex<Vec<Vec<WatermarkUpdate>>>> = Arc::default();
        let (publisher, published) = recording_publisher();
        let batcher = ReceiptBatcher {
            shared: Arc::new(Shared {
                pending: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        };
        let (c, u) = (ConversationId::new(), UserId::new());
        let last = MessageId::new();
        // Marked before the flush task starts: all of them wait for one flush.
        for seq in 1..=9 {
            batcher.delivered(c, u, seq, MessageId::new());
        }
        batcher.delivered(c, u, 10, last);
        batcher.delivered(c, u, 4, MessageId::new());
        tokio::spawn(flush_loop(
            batcher.shared.clone(),
            ReceiptPorts {
                receipts: Arc::new(store(calls.clone())),
                conversations: Arc::new(unread_counts()),
                publisher,
            },
            Flushing {
                max_batch: 64,
                linger: Duration::ZERO,
            },
            Arc::default(),
        ));
        settle(&batcher).await;
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "one write");
        assert_eq!(calls[0].len(), 1, "one update for the member");
        assert_eq!(calls[0][0].delivered_seq, Some(10));
        let published = published.lock().unwrap();
        assert_eq!(published.len(), 1);
        assert!(matches!(
            &published[0],
            (Topic::Conversation(topic), Event::Delivered { seq: 10, message_id, .. }) if *topic == c && *message_id == last
        ));
    }

    #[tokio::test]
    async fn a_watermark_that_did_not_move_is_not_announced_again() {
        let calls: Arc<Mutex<Vec<Vec<WatermarkUpdate>>>> = Arc::default();
        let (batcher, published) = recorded_batcher(&calls, Duration::ZERO);
        let (c, u) = (ConversationId::new(), UserId::new());
        batcher.delivered(c, u, 5, MessageId::new());
        settle(&batcher).await;
        batcher.delivered(c, u, 5, MessageId::new());
        settle(&batcher).await;
        batcher.delivered(c, u, 3, MessageId::new());
        settle(&batcher).await;
        assert_eq!(published.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_read_announces_the_receipt_to_the_conversation_and_unread_to_the_reader() {
        let calls: Arc<Mutex<Vec<Vec<WatermarkUpdate>>>> = Arc::default();
        let (publisher, published) = recording_publisher();
        let (c, other, u) = (ConversationId::new(), ConversationId::new(), UserId::new());
        let mut conversations = MockConversationStore::new();
        conversations
            .expect_unread_counts()
            .returning(move |_| Ok(vec![(c, 2), (other, 3)]));
        let batcher = ReceiptBatcher::start(
            ReceiptPorts {
                receipts: Arc::new(store(calls)),
                conversations: Arc::new(conversations),
                publisher,
            },
            64,
            Duration::ZERO,
            Arc::default(),
        );
        batcher.read(c, u, 7, MessageId::new(), Utc::now());
        settle(&batcher).await;
        let published = published.lock().unwrap();
        assert!(published.iter().any(|(t, e)| *t == Topic::Conversation(c)
            && matches!(e, Event::Read { seq: 7, read_by, .. } if *read_by == u)));
        assert!(published.iter().any(|(t, e)| *t == Topic::User(u)
            && matches!(
                e,
                Event::Unread {
                    unread_count: 2,
                    total: 5,
                    ..
                }
            )));
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_the_marks_and_writes_them_later() {
        let attempts = Arc::new(Mutex::new(0));
        let seen = attempts.clone();
        let mut receipts = MockReceiptStore::new();
        receipts
            .expect_advance_watermarks()
            .returning(move |updates| {
                let mut n = seen.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    return Err(StorageError::msg("down"));
                }
                Ok(updates.iter().map(|u| Some(participant(u, 3, 0))).collect())
            });
        let (publisher, published) = recording_publisher();
        let batcher = ReceiptBatcher::start(
            ReceiptPorts {
                receipts: Arc::new(receipts),
                conversations: Arc::new(unread_counts()),
                publisher,
            },
            64,
            Duration::ZERO,
            Arc::default(),
        );
        batcher.delivered(ConversationId::new(), UserId::new(), 3, MessageId::new());
        tokio::time::sleep(RETRY_AFTER * 2).await;
        settle(&batcher).await;
        assert_eq!(*attempts.lock().unwrap(), 2);
        assert_eq!(published.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn marks_arriving_while_a_flush_lingers_share_its_write_and_its_publish() {
        let calls: Arc<Mutex<Vec<Vec<WatermarkUpdate>>>> = Arc::default();
        let (batcher, published) = recorded_batcher(&calls, Duration::from_millis(50));
        let c = ConversationId::new();
        let (ann, ben) = (UserId::new(), UserId::new());
        batcher.delivered(c, ann, 1, MessageId::new());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(calls.lock().unwrap().is_empty(), "still lingering");
        batcher.delivered(c, ben, 1, MessageId::new());
        settle(&batcher).await;
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "one write: {calls:?}");
        assert_eq!(calls[0].len(), 2);
        assert_eq!(published.lock().unwrap().len(), 2, "both announced");
    }
}
