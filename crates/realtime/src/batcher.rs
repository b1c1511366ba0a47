//! [`CommitBatcher`]: group commit for every send of the node, WebSocket and REST alike.
//!
//! One task takes the first queued send, drains whatever else is queued (up to
//! `commit_max_batch`), appends them all in ONE transaction, and repeats. A batch closes when
//! the previous commit returns, never on a timer: an idle server commits a lone message at
//! once, a busy one commits many per transaction. A second task publishes each message
//! and then answers its sender, in commit order, while the next batch commits.
//!
//! Acks come only after commit. One message the database refuses never fails the others of
//! its batch: `MessageService::append` retries the batch in halves until the refused message
//! is alone, and only its sender is answered with an error (`validation_failed`). When the
//! database cannot be reached every waiter of the batch gets `unavailable` and nothing was
//! written.
//!
//! A retried `temp_id` ([`AppendOutcome::Replayed`]) is answered with the original AND
//! published again: the original may have been committed by a node that died (or stalled)
//! before publishing it, and nothing else would tell the recipients live. Sessions follow
//! each conversation by seq and drop what they already delivered
//! ([`domain::delivery::OrderedFeed`]), so a recipient that had it gets nothing twice.
//!
//! A batch's messages are published with one `publish_all` (one pipeline, one round trip on
//! Redis); when that fails every sender of the batch gets `unavailable` too: its retry is
//! answered from storage and published then, and recipients fetch the message as a gap on
//! their next event or `sync`.

use super::metrics::Metrics;
use domain::message::{AppendOutcome, NewMessage, ReplyPreview};
use domain::realtime::{Event, EventPublisher, SessionId, Topic};
use domain::services::{ChatError, MessageService};
use domain::StorageError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What a send comes to.
pub type SendResult = Result<AppendOutcome, ChatError>;

/// Sends waiting to be committed, at most (senders wait for room beyond).
const QUEUE_CAPACITY: usize = 8192;

struct Pending {
    message: NewMessage,
    origin: Option<SessionId>,
    reply: oneshot::Sender<SendResult>,
}

// Nearly every command is a send, and a channel slot is as large as the largest variant
// either way: boxing the send would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Send(Pending),
    /// Answered once everything queued before it was committed, published and answered.
    Drain(oneshot::Sender<()>),
}

type Answer = (
    Option<SessionId>,
    oneshot::Sender<SendResult>,
    SendResult,
    Option<ReplyPreview>,
);

enum Committed {
    /// Per send, in commit order: its session, its sender's answer, its outcome, and the
    /// preview of the message it replies to (`None` for a plain message).
    Batch(Vec<Answer>),
    Drain(oneshot::Sender<()>),
}

/// Faults a test may inject (`[testing]`); none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Commit, then never publish nor answer: a node stalled between commit and publish.
    pub stall_after_commit: bool,
}

/// The node's group-commit batcher. Cheap to clone.
#[derive(Clone)]
pub struct CommitBatcher {
    queue: mpsc::Sender<Command>,
}

impl CommitBatcher {
    /// [`Self::start_with_faults`] with no fault (the unit tests' batcher).
    #[cfg(test)]
    pub(crate) fn start(
        service: MessageService,
        publisher: Arc<dyn EventPublisher>,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::start_with_faults(service, publisher, max_batch, metrics, Faults::default())
    }

    /// Starts the commit and publish tasks on the current runtime, with `faults` injected
    /// (`[testing]`, for the end-to-end suite; none in production).
    pub(crate) fn start_with_faults(
        service: MessageService,
        publisher: Arc<dyn EventPublisher>,
        max_batch: usize,
        metrics: Arc<Metrics>,
        faults: Faults,
    ) -> Self {
        let (queue, commands) = mpsc::channel(QUEUE_CAPACITY);
        let (committed, results) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(
            commands,
            committed,
            service,
            max_batch.max(1),
            metrics,
        ));
        tokio::spawn(publish_loop(results, publisher, faults));
        Self { queue }
    }

    /// Queues a prepared message; the answer comes on the receiver once it is committed
    /// (and published). Queuing order is commit order, so one client's sends keep their order.
    pub async fn enqueue(
        &self,
        message: NewMessage,
        origin: Option<SessionId>,
    ) -> Result<oneshot::Receiver<SendResult>, ChatError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command::Send(Pending {
                message,
                origin,
                reply,
            }))
            .await
            .map_err(|_| stopped())?;
        Ok(answer)
    }

    /// Queues a prepared message and waits for its outcome.
    pub async fn send(&self, message: NewMessage, origin: Option<SessionId>) -> SendResult {
        let answer = self.enqueue(message, origin).await?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Waits until every send queued so far is committed, published and answered.
    pub async fn drain(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Command::Drain(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// Sends waiting in the queue now.
    pub(crate) fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

fn stopped() -> ChatError {
    ChatError::Storage(StorageError::msg("the commit batcher has stopped"))
}

async fn commit_loop(
    mut commands: mpsc::Receiver<Command>,
    committed: mpsc::UnboundedSender<Committed>,
    service: MessageService,
    max_batch: usize,
    metrics: Arc<Metrics>,
) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(command) => command,
            None => match commands.recv().await {
                Some(command) => command,
                None => return,
            },
        };
        let first = match first {
            Command::Send(pending) => pending,
            Command::Drain(done) => {
                let _ = committed.send(Committed::Drain(done));
                continue;
            }
        };
        // Whatever queued while the previous commit ran joins this batch.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match commands.try_recv() {
                Ok(Command::Send(pending)) => batch.push(pending),
                Ok(drain @ Command::Drain(_)) => {
                    // Keep it for after this batch: it must follow everything before it.
                    next = Some(drain);
                    break;
                }
                Err(_) => break,
            }
        }
        let (messages, waiters): (Vec<NewMessage>, Vec<_>) = batch
            .into_iter()
            .map(|p| {
                // `None` for a plain message: nothing is allocated on its way.
                let preview = p.message.reply_preview.clone();
                (p.message, (p.origin, p.reply, preview))
            })
            .unzip();
        let answers = match service.append(&messages).await {
            Ok(results) => {
                let created = results
                    .iter()
                    .filter(|r| matches!(r, Ok(AppendOutcome::Created(_))))
                    .count();
                let replayed = results
                    .iter()
                    .filter(|r| matches!(r, Ok(AppendOutcome::Replayed(_))))
                    .count();
                metrics.record_commit(messages.len(), created, replayed);
                for result in &results {
                    if let Err(ChatError::Unstorable(cause)) = result {
                        tracing::warn!(%cause, batch = messages.len(), "the database refused one message; the rest of its batch was committed");
                    }
                }
                waiters
                    .into_iter()
                    .zip(results)
                    .map(|((origin, reply, preview), result)| (origin, reply, result, preview))
                    .collect()
            }
            Err(e) => {
                metrics.record_commit_failure();
                tracing::error!(error = %e, batch = messages.len(), "commit failed: every send of the batch is refused");
                let cause = e.to_string();
                waiters
                    .into_iter()
                    .map(|(origin, reply, preview)| {
                        (
                            origin,
                            reply,
                            Err(ChatError::Storage(StorageError::msg(cause.clone()))),
                            preview,
                        )
                    })
                    .collect()
            }
        };
        if committed.send(Committed::Batch(answers)).is_err() {
            return;
        }
    }
}

async fn publish_loop(
    mut results: mpsc::UnboundedReceiver<Committed>,
    publisher: Arc<dyn EventPublisher>,
    faults: Faults,
) {
    while let Some(committed) = results.recv().await {
        match committed {
            Committed::Drain(done) => {
                let _ = done.send(());
            }
            Committed::Batch(answers) => {
                // The batch's messages, new and replayed, in one publish (one round trip on
                // Redis), in commit order; then every sender is answered. A replay is
                // published again: nobody knows whether its original ever was.
                let events: Vec<(Topic, Event)> = answers
                    .iter()
                    .filter_map(|(origin, _, result, preview)| match result {
                        Ok(outcome) => Some((
                            Topic::Conversation(outcome.message().conversation_id),
                            Event::Message {
                                message: outcome.message().clone(),
                                origin: *origin,
                                reply_preview: preview.clone(),
                            },
                        )),
                        Err(_) => None,
                    })
                    .collect();
                if faults.stall_after_commit && !events.is_empty() {
                    tracing::warn!(
                        messages = events.len(),
                        "testing.stall_after_commit: committed, never publishing nor answering"
                    );
                    // Hold the answers (their senders wait, as on a stalled node) for good.
                    let _held = answers;
                    std::future::pending::<()>().await;
                    return;
                }
                let published = if events.is_empty() {
                    Ok(())
                } else {
                    let count = events.len();
                    publisher.publish_all(events).await.map_err(|e| {
                        tracing::error!(error = %e, messages = count, "committed messages could not be published");
                        e.to_string()
                    })
                };
                for (_, reply, result, _) in answers {
                    let result = match (result, &published) {
                        (Ok(_), Err(cause)) => {
                            Err(ChatError::Storage(StorageError::msg(cause.clone())))
                        }
                        (result, _) => result,
                    };
                    // The sender may be gone (socket closed): the message is committed anyway.
                    let _ = reply.send(result);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use async_trait::async_trait;
    use chrono::Utc;
    use domain::conversation::{Participant, Role};
    use domain::message::{AppendRejection, ClientMsgId, ContentType, Message, MessageContent};
    use domain::ports::{
        MessageStore, MockConversationStore, MockEncryptionStore, MockReceiptStore, SystemClock,
    };
    use domain::realtime::{MockEventPublisher, RealtimeError};
    use domain::{ConversationId, Limits, MessageId, UserId};
    use std::sync::Mutex;
    use std::time::Duration;

    /// An encryption store for which no conversation is encrypted.
    fn plain() -> Arc<MockEncryptionStore> {
        let mut store = MockEncryptionStore::new();
        store.expect_encryption_state().returning(|_| Ok(None));
        Arc::new(store)
    }
    use tokio::sync::Semaphore;

    /// Appends in memory; each call waits for a permit, so a test can hold a commit open.
    struct FakeMessages {
        batches: Mutex<Vec<Vec<NewMessage>>>,
        gate: Semaphore,
        fail: bool,
        seen: Mutex<Vec<(UserId, String)>>,
    }

    impl FakeMessages {
        fn new(permits: usize, fail: bool) -> Arc<Self> {
            Arc::new(Self {
                batches: Mutex::new(Vec::new()),
                gate: Semaphore::new(permits),
                fail,
                seen: Mutex::new(Vec::new()),
            })
        }

        fn batch_sizes(&self) -> Vec<usize> {
            self.batches.lock().unwrap().iter().map(Vec::len).collect()
        }
    }

    #[async_trait]
    impl MessageStore for FakeMessages {
        async fn append_messages(
            &self,
            batch: &[NewMessage],
        ) -> Result<Vec<Result<AppendOutcome, AppendRejection>>, StorageError> {
            self.gate.acquire().await.unwrap().forget();
            self.batches.lock().unwrap().push(batch.to_vec());
            if self.fail {
                return Err(StorageError::msg("database is down"));
            }
            let mut seen = self.seen.lock().unwrap();
            Ok(batch
                .iter()
                .map(|m| {
                    let key = (
                        m.sender_id,
                        m.client_msg_id
                            .as_ref()
                            .map(|k| k.as_str().to_owned())
                            .unwrap_or_default(),
                    );
                    if let Some(i) = seen.iter().position(|k| *k == key) {
                        return Ok(AppendOutcome::Replayed(m.stored_as(i as i64 + 1)));
                    }
                    seen.push(key);
                    Ok(AppendOutcome::Created(m.stored_as(seen.len() as i64)))
                })
                .collect())
        }
        async fn messages_before(
            &self,
            _: ConversationId,
            _: Option<i64>,
            _: u32,
        ) -> Result<Vec<Message>, StorageError> {
            Ok(vec![])
        }
        async fn messages_after(
            &self,
            _: ConversationId,
            _: i64,
            _: u32,
        ) -> Result<Vec<Message>, StorageError> {
            Ok(vec![])
        }
        async fn message(
            &self,
            _: ConversationId,
            _: MessageId,
        ) -> Result<Option<Message>, StorageError> {
            Ok(None)
        }
        async fn messages_by_ids(
            &self,
            _: ConversationId,
            _: &[MessageId],
        ) -> Result<Vec<Message>, StorageError> {
            Ok(vec![])
        }
        // The batcher never changes a message: these are not called.
        async fn edit_message(
            &self,
            _: ConversationId,
            _: MessageId,
            _: &MessageContent,
            _: chrono::DateTime<Utc>,
        ) -> Result<Option<Message>, StorageError> {
            Ok(None)
        }
        async fn delete_message(
            &self,
            _: ConversationId,
            _: MessageId,
            _: UserId,
            _: chrono::DateTime<Utc>,
        ) -> Result<Option<domain::message::DeleteOutcome>, StorageError> {
            Ok(None)
        }
        async fn set_reaction(
            &self,
            _: ConversationId,
            _: MessageId,
            _: UserId,
            _: &domain::message::Emoji,
            _: bool,
            _: chrono::DateTime<Utc>,
        ) -> Result<Option<domain::message::ReactionOutcome>, StorageError> {
            Ok(None)
        }
        async fn reactions_of(
            &self,
            _: ConversationId,
            _: &[MessageId],
            _: UserId,
            _: u32,
        ) -> Result<Vec<(MessageId, Vec<domain::message::ReactionCount>)>, StorageError> {
            Ok(vec![])
        }
        async fn changes_after(
            &self,
            _: ConversationId,
            _: i64,
            _: u32,
        ) -> Result<Vec<Message>, StorageError> {
            Ok(vec![])
        }
    }

    fn service(messages: Arc<FakeMessages>) -> MessageService {
        let mut conversations = MockConversationStore::new();
        conversations.expect_participant().returning(|c, u| {
            Ok(Some(Participant {
                conversation_id: c,
                user_id: u,
                role: Role::Member,
                joined_at: Utc::now(),
                delivered_seq: 0,
                read_seq: 0,
            }))
        });
        MessageService::new(
            messages,
            Arc::new(conversations),
            Arc::new(MockReceiptStore::new()),
            plain(),
            Arc::new(domain::ports::MockAttachmentStore::new()),
            Arc::new(SystemClock),
            Limits::default(),
        )
    }

    fn new_message(c: ConversationId, sender: UserId, key: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            conversation_id: c,
            sender_id: sender,
            client_msg_id: Some(ClientMsgId::parse(key).unwrap()),
            content: MessageContent::parse("hi", 100).unwrap(),
            content_type: ContentType::Text,
            reply_to: None,
            reply_preview: None,
            created_at: Utc::now(),
            attachments: Vec::new(),
        }
    }

    fn publisher(times: usize) -> (Arc<MockEventPublisher>, Arc<Mutex<Vec<i64>>>) {
        let published = Arc::new(Mutex::new(Vec::new()));
        let seen = published.clone();
        let mut mock = MockEventPublisher::new();
        mock.expect_publish().never();
        // One call per committed batch with new messages, `times` messages in all.
        mock.expect_publish_all()
            .times(times.min(1)..=times)
            .returning(move |events| {
                for (_, event) in events {
                    if let Event::Message { message, .. } = event {
                        seen.lock().unwrap().push(message.seq);
                    }
                }
                Ok(())
            });
        (Arc::new(mock), published)
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_lone_send_is_committed_at_once_without_waiting_for_company() {
        let store = FakeMessages::new(100, false);
        let (publisher, _) = publisher(1);
        let batcher = CommitBatcher::start(service(store.clone()), publisher, 64, Arc::default());
        let outcome = tokio::time::timeout(
            Duration::from_secs(2),
            batcher.send(new_message(ConversationId::new(), UserId::new(), "a"), None),
        )
        .await
        .expect("answered without a timer")
        .unwrap();
        assert!(matches!(outcome, AppendOutcome::Created(m) if m.seq == 1));
        assert_eq!(store.batch_sizes(), vec![1]);
    }

    #[tokio::test]
    async fn sends_queued_during_a_commit_share_the_next_transaction_and_are_answered_in_order() {
        let store = FakeMessages::new(0, false);
        let metrics = Arc::new(Metrics::default());
        let (publisher, published) = publisher(5);
        let batcher = CommitBatcher::start(service(store.clone()), publisher, 64, metrics.clone());
        let (c, sender) = (ConversationId::new(), UserId::new());
        let mut answers = Vec::new();
        answers.push(
            batcher
                .enqueue(new_message(c, sender, "k0"), None)
                .await
                .unwrap(),
        );
        // The first commit is held open while four more sends queue up.
        until("the first commit to start", || batcher.queue_depth() == 0).await;
        for i in 1..5 {
            let key = format!("k{i}");
            answers.push(
                batcher
                    .enqueue(new_message(c, sender, &key), None)
                    .await
                    .unwrap(),
            );
        }
        store.gate.add_permits(2);
        let mut seqs = Vec::new();
        for answer in answers {
            seqs.push(answer.await.unwrap().unwrap().message().seq);
        }
        assert_eq!(seqs, vec![1, 2, 3, 4, 5], "acks in send order");
        assert_eq!(
            store.batch_sizes(),
            vec![1, 4],
            "two transactions for five sends"
        );
        assert_eq!(metrics.commit_transactions(), 2);
        assert_eq!(*published.lock().unwrap(), vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_the_maximum() {
        let store = FakeMessages::new(0, false);
        let (publisher, _) = publisher(7);
        let batcher = CommitBatcher::start(service(store.clone()), publisher, 3, Arc::default());
        let (c, sender) = (ConversationId::new(), UserId::new());
        let mut answers = Vec::new();
        for i in 0..7 {
            let key = format!("k{i}");
            answers.push(
                batcher
                    .enqueue(new_message(c, sender, &key), None)
                    .await
                    .unwrap(),
            );
        }
        store.gate.add_permits(10);
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(store.batch_sizes(), vec![3, 3, 1]);
    }

    #[tokio::test]
    async fn a_failed_commit_answers_every_waiter_unavailable_and_publishes_nothing() {
        let store = FakeMessages::new(0, true);
        let (publisher, _) = publisher(0);
        let batcher = CommitBatcher::start(service(store.clone()), publisher, 64, Arc::default());
        let c = ConversationId::new();
        let mut answers = Vec::new();
        for i in 0..3 {
            let key = format!("k{i}");
            answers.push(
                batcher
                    .enqueue(new_message(c, UserId::new(), &key), None)
                    .await
                    .unwrap(),
            );
        }
        store.gate.add_permits(10);
        for answer in answers {
            assert!(matches!(answer.await.unwrap(), Err(ChatError::Storage(_))));
        }
    }

    #[tokio::test]
    async fn a_retried_temp_id_is_acknowledged_again_and_published_again() {
        let store = FakeMessages::new(10, false);
        let (publisher, published) = publisher(2);
        let batcher = CommitBatcher::start(service(store), publisher, 64, Arc::default());
        let (c, sender) = (ConversationId::new(), UserId::new());
        let first = batcher
            .send(new_message(c, sender, "same"), None)
            .await
            .unwrap();
        let retry = batcher
            .send(new_message(c, sender, "same"), None)
            .await
            .unwrap();
        assert!(matches!(first, AppendOutcome::Created(_)));
        assert!(matches!(&retry, AppendOutcome::Replayed(m) if m.seq == first.message().seq));
        // The original may never have been published (its node died after the commit):
        // the replay is, with the original's seq; sessions drop what they already have.
        assert_eq!(*published.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test]
    async fn a_replay_that_cannot_be_published_is_answered_unavailable_so_it_is_retried() {
        let store = FakeMessages::new(10, false);
        let (c, sender) = (ConversationId::new(), UserId::new());
        let mut publisher = MockEventPublisher::new();
        let mut sequence = mockall::Sequence::new();
        publisher
            .expect_publish_all()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Ok(()));
        publisher
            .expect_publish_all()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Err(RealtimeError::msg("redis is down")));
        let batcher = CommitBatcher::start(service(store), Arc::new(publisher), 64, Arc::default());
        batcher
            .send(new_message(c, sender, "same"), None)
            .await
            .unwrap();
        let retry = batcher.send(new_message(c, sender, "same"), None).await;
        assert!(matches!(retry, Err(ChatError::Storage(_))), "{retry:?}");
    }

    #[tokio::test]
    async fn a_send_the_database_refuses_fails_alone_and_the_others_of_its_batch_are_acked_and_published(
    ) {
        use domain::ports::MockMessageStore;
        let c = ConversationId::new();
        let mut store = MockMessageStore::new();
        // Refuses, as PostgreSQL refuses a NUL byte, every transaction holding "poison".
        store.expect_append_messages().returning(|batch| {
            if batch.iter().any(|m| m.content.as_str() == "poison") {
                return Err(StorageError::refused(std::io::Error::other(
                    "invalid byte sequence for encoding \"UTF8\": 0x00",
                )));
            }
            Ok(batch
                .iter()
                .map(|m| Ok(AppendOutcome::Created(m.stored_as(1))))
                .collect())
        });
        let (publisher, published) = publisher(5);
        let metrics = Arc::new(Metrics::default());
        let service = MessageService::new(
            Arc::new(store),
            Arc::new(MockConversationStore::new()),
            Arc::new(MockReceiptStore::new()),
            plain(),
            Arc::new(domain::ports::MockAttachmentStore::new()),
            Arc::new(SystemClock),
            Limits::default(),
        );
        let batcher = CommitBatcher::start(service, publisher, 64, metrics);
        let mut answers = Vec::new();
        for (i, content) in ["a", "b", "poison", "c", "d", "e"].iter().enumerate() {
            let mut message = new_message(c, UserId::new(), &format!("k{i}"));
            message.content = MessageContent::parse(content, 100).unwrap();
            answers.push((content, batcher.enqueue(message, None).await.unwrap()));
        }
        for (content, answer) in answers {
            let result = answer.await.unwrap();
            if *content == "poison" {
                assert!(
                    matches!(result, Err(ChatError::Unstorable(_))),
                    "{result:?}"
                );
            } else {
                assert!(
                    matches!(result, Ok(AppendOutcome::Created(_))),
                    "{content}: {result:?}"
                );
            }
        }
        assert_eq!(
            published.lock().unwrap().len(),
            5,
            "every good send published"
        );
    }

    #[tokio::test]
    async fn stalling_after_commit_commits_but_never_publishes_nor_answers() {
        let store = FakeMessages::new(10, false);
        let mut publisher = MockEventPublisher::new();
        publisher.expect_publish_all().never();
        let batcher = CommitBatcher::start_with_faults(
            service(store.clone()),
            Arc::new(publisher),
            64,
            Arc::default(),
            Faults {
                stall_after_commit: true,
            },
        );
        let answer = batcher
            .enqueue(new_message(ConversationId::new(), UserId::new(), "a"), None)
            .await
            .unwrap();
        until("the commit", || store.batch_sizes() == vec![1]).await;
        let waited = tokio::time::timeout(Duration::from_millis(100), answer).await;
        assert!(waited.is_err(), "answered although stalled: {waited:?}");
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_published_is_answered_unavailable() {
        let store = FakeMessages::new(10, false);
        let mut publisher = MockEventPublisher::new();
        publisher
            .expect_publish_all()
            .returning(|_| Err(RealtimeError::msg("redis is down")));
        let batcher = CommitBatcher::start(service(store), Arc::new(publisher), 64, Arc::default());
        let result = batcher
            .send(new_message(ConversationId::new(), UserId::new(), "a"), None)
            .await;
        assert!(matches!(result, Err(ChatError::Storage(_))));
    }

    #[tokio::test]
    async fn drain_returns_once_everything_queued_before_it_is_answered() {
        let store = FakeMessages::new(0, false);
        let (publisher, _) = publisher(2);
        let batcher = CommitBatcher::start(service(store.clone()), publisher, 64, Arc::default());
        let c = ConversationId::new();
        let a = batcher
            .enqueue(new_message(c, UserId::new(), "a"), None)
            .await
            .unwrap();
        let b = batcher
            .enqueue(new_message(c, UserId::new(), "b"), None)
            .await
            .unwrap();
        let drained = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.drain().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!drained.is_finished(), "the commit is still held open");
        store.gate.add_permits(10);
        drained.await.unwrap();
        assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
    }
}
