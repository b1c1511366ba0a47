//! The `persist` scenario: what the store commits per second, without a server or a
//! WebSocket (SPEC section 9, "messages durably persisted/s").
//!
//! The generator opens the server's store itself (as it does to provision users), makes
//! N/2 direct conversations in it, and runs `--persist-writers` writer tasks for
//! `--duration`. Each writer, in a closed loop, takes up to `--persist-batch` sends from a
//! shared [`Dispatcher`] (`--rate` per second in total, 0 = as fast as possible) and commits
//! them with ONE `MessageStore::append_messages` call, as the server's group-commit batcher
//! does: a batch closes when the previous commit returns. Afterwards every conversation is
//! read back with `messages_after` and checked against what was acked as created.

use crate::cli::Args;
use crate::client::{content_for, Histos};
use crate::procstat::{self, Machine};
use crate::provision;
use crate::report::{
    Connections, MetricsScrape, Percentiles, Persist, Report, Resources, RunSetup, Traffic,
};
use crate::run::LoadError;
use crate::track::Audit;
use domain::message::{AppendOutcome, ClientMsgId, ContentType, MessageContent, NewMessage};
use domain::ports::{Clock, Storage, SystemClock};
use domain::{ConversationId, MessageId, UserId};
use futures_util::stream::{self, StreamExt};
use server::config::DatabaseTarget;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Messages read per `messages_after` call when verifying.
const VERIFY_PAGE: u32 = 1_000;

/// Hands out sends to the writers: `rate` per second in total over `duration` (the sends
/// due so far, never more), or, with rate 0, as many as asked until `duration` is over.
#[derive(Debug)]
pub struct Dispatcher {
    start: Instant,
    duration: Duration,
    rate: f64,
    handed: Mutex<u64>,
}

/// Sends due `elapsed` into a run at `rate` per second (the `direct` dispatcher's rule).
pub fn due(elapsed: Duration, rate: f64) -> u64 {
    (elapsed.as_secs_f64() * rate) as u64
}

impl Dispatcher {
    /// A dispatcher whose window starts now.
    pub fn new(rate: f64, duration: Duration) -> Self {
        Self {
            start: Instant::now(),
            duration,
            rate: rate.max(0.0),
            handed: Mutex::new(0),
        }
    }

    /// Up to `max` sends (at least one), numbered from 0 over the run; waits until one is
    /// due. `None` once the window is over and every due send was handed out.
    pub async fn take(&self, max: usize) -> Option<Range<u64>> {
        let max = u64::try_from(max.max(1)).unwrap_or(u64::MAX);
        loop {
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(self.start);
            let over = elapsed >= self.duration;
            let next_due = {
                let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
                let first = *handed;
                if self.rate == 0.0 {
                    if over {
                        return None;
                    }
                    *handed += max;
                    return Some(first..first + max);
                }
                let n = due(elapsed.min(self.duration), self.rate)
                    .saturating_sub(first)
                    .min(max);
                if n > 0 {
                    *handed += n;
                    return Some(first..first + n);
                }
                if over {
                    return None;
                }
                // When send number `first` (the next one) falls due.
                self.start + Duration::from_secs_f64((first + 1) as f64 / self.rate)
            };
            let wake = next_due.min(self.start + self.duration);
            // Rounding may put it at or before now: wait for the next timer tick instead
            // of spinning.
            let wake = if wake <= now {
                now + Duration::from_millis(1)
            } else {
                wake
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Sends handed out so far.
    pub fn handed(&self) -> u64 {
        *self.handed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the writers build messages from.
#[derive(Debug)]
pub struct Workload {
    /// Each conversation with its two members.
    pub conversations: Vec<(ConversationId, [UserId; 2])>,
    /// The content of every message.
    pub content: MessageContent,
    /// Names the run in the idempotency keys (`lgp-<run>-<n>`).
    pub run_id: String,
}

impl Workload {
    /// Send number `n`: to conversation `n mod N` (round robin, like the `direct`
    /// dispatcher), from either member at random, with the unique key `lgp-<run>-<n>`.
    pub fn message(&self, n: u64, now: chrono::DateTime<chrono::Utc>) -> Option<NewMessage> {
        let count = u64::try_from(self.conversations.len()).ok()?;
        let index = usize::try_from(n.checked_rem(count)?).ok()?;
        let (conversation_id, members) = self.conversations.get(index)?;
        let sender_id = members[usize::from(rand::random::<bool>())];
        Some(NewMessage {
            id: MessageId::new(),
            conversation_id: *conversation_id,
            sender_id,
            client_msg_id: ClientMsgId::parse(&format!("lgp-{}-{n}", self.run_id)).ok(),
            content: self.content.clone(),
            content_type: ContentType::Text,
            reply_to: None,
            reply_preview: None,
            created_at: now,
            attachments: Vec::new(),
        })
    }
}

/// What one writer did.
#[derive(Debug, Default)]
pub struct WriterOutcome {
    /// Messages passed to `append_messages`.
    pub appended: u64,
    /// Commits that returned results.
    pub commits: u64,
    /// Messages in those commits.
    pub committed_messages: u64,
    /// Largest commit.
    pub max_batch: u64,
    /// Commits that failed (nothing of them was written).
    pub failed_commits: u64,
    /// Messages of the failed commits.
    pub failed_messages: u64,
    /// Created, per conversation: (seq, message id).
    pub created: HashMap<ConversationId, Vec<(i64, MessageId)>>,
    /// Answered `Replayed` (never expected: every key is new).
    pub replayed: u64,
    /// Rejected (key reused, conversation not found).
    pub rejected: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

impl WriterOutcome {
    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    /// Counts one commit's answer for `batch`.
    pub fn record(
        &mut self,
        batch: &[NewMessage],
        answer: Result<
            Vec<Result<AppendOutcome, domain::message::AppendRejection>>,
            domain::StorageError,
        >,
    ) {
        let size = batch.len() as u64;
        let results = match answer {
            Ok(results) => results,
            Err(_) => {
                self.failed_commits += 1;
                self.failed_messages += size;
                self.error("commit:failed");
                return;
            }
        };
        self.commits += 1;
        self.committed_messages += size;
        self.max_batch = self.max_batch.max(size);
        if results.len() != batch.len() {
            self.error("commit:result_count_mismatch");
        }
        for (new, result) in batch.iter().zip(results) {
            match result {
                Ok(AppendOutcome::Created(m)) => {
                    if m.id != new.id || m.conversation_id != new.conversation_id {
                        self.error("append:created_another_message");
                    }
                    self.created
                        .entry(m.conversation_id)
                        .or_default()
                        .push((m.seq, m.id));
                }
                Ok(AppendOutcome::Replayed(_)) => {
                    self.replayed += 1;
                    self.error("append:replayed");
                }
                Err(rejection) => {
                    self.rejected += 1;
                    self.error(format!("append:{rejection:?}"));
                }
            }
        }
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: WriterOutcome) {
        self.appended += other.appended;
        self.commits += other.commits;
        self.committed_messages += other.committed_messages;
        self.max_batch = self.max_batch.max(other.max_batch);
        self.failed_commits += other.failed_commits;
        self.failed_messages += other.failed_messages;
        self.replayed += other.replayed;
        self.rejected += other.rejected;
        for (conv, list) in other.created {
            self.created.entry(conv).or_default().extend(list);
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }

    /// Messages acked as created.
    pub fn created_count(&self) -> u64 {
        self.created.values().map(|v| v.len() as u64).sum()
    }
}

/// One writer: take a batch, commit it in one call, repeat until the dispatcher is done.
async fn writer(
    index: usize,
    store: Arc<dyn Storage>,
    dispatcher: Arc<Dispatcher>,
    workload: Arc<Workload>,
    max_batch: usize,
    latency: Arc<Histos>,
) -> WriterOutcome {
    let mut out = WriterOutcome::default();
    while let Some(sends) = dispatcher.take(max_batch).await {
        let now = SystemClock.now();
        let mut batch = Vec::with_capacity(max_batch);
        for n in sends {
            match workload.message(n, now) {
                Some(m) if m.client_msg_id.is_some() => batch.push(m),
                _ => out.error("build:invalid_message"),
            }
        }
        if batch.is_empty() {
            continue;
        }
        out.appended += batch.len() as u64;
        let started = Instant::now();
        let answer = store.append_messages(&batch).await;
        if answer.is_ok() {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            latency.record(index, micros);
        }
        out.record(&batch, answer);
    }
    out
}

/// A stored message as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its seq.
    pub seq: i64,
    /// Its id.
    pub id: MessageId,
    /// Its sender and key.
    pub key: (UserId, Option<String>),
}

/// One conversation checked against what was acked in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvCheck {
    /// Seqs acked twice, seqs read twice, or (sender, key) pairs stored twice.
    pub duplicates: u64,
    /// Seqs in `1..=last` (the highest of `last_seq`, the seqs read and acked) not read.
    pub gaps: u64,
    /// Acked (seq, id) not read back as such.
    pub lost: u64,
    /// Distinct seqs read back.
    pub stored: u64,
    /// Of them, seqs that were never acked as created.
    pub stored_not_acked: u64,
}

/// Checks what was read back from one conversation (`last_seq` as the store reports it)
/// against the (seq, id) pairs acked as created in it.
pub fn check_conversation(acked: &[(i64, MessageId)], last_seq: i64, read: &[Stored]) -> ConvCheck {
    let mut out = ConvCheck::default();
    let mut acked_by_seq: BTreeMap<i64, MessageId> = BTreeMap::new();
    for &(seq, id) in acked {
        if acked_by_seq.insert(seq, id).is_some() {
            out.duplicates += 1;
        }
    }
    let mut read_by_seq: BTreeMap<i64, MessageId> = BTreeMap::new();
    let mut keys = HashSet::new();
    for m in read {
        if read_by_seq.insert(m.seq, m.id).is_some() {
            out.duplicates += 1;
        }
        if m.key.1.is_some() && !keys.insert(&m.key) {
            out.duplicates += 1;
        }
    }
    let last = [
        last_seq,
        read_by_seq.keys().next_back().copied().unwrap_or(0),
        acked_by_seq.keys().next_back().copied().unwrap_or(0),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
    .max(0);
    let held = read_by_seq.range(1..=last).count() as u64;
    out.gaps = u64::try_from(last).unwrap_or(0).saturating_sub(held);
    out.lost = acked_by_seq
        .iter()
        .filter(|(seq, id)| read_by_seq.get(seq) != Some(id))
        .count() as u64;
    out.stored = read_by_seq.len() as u64;
    out.stored_not_acked = read_by_seq
        .keys()
        .filter(|seq| !acked_by_seq.contains_key(seq))
        .count() as u64;
    out
}

/// Reads a conversation back: its `last_seq` and every message, page by page.
async fn read_back(
    store: &dyn Storage,
    id: ConversationId,
) -> Result<(i64, Vec<Stored>), domain::StorageError> {
    let last_seq = store
        .conversation(id)
        .await?
        .map_or(0, |d| d.conversation.last_seq);
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = store.messages_after(id, after, VERIFY_PAGE).await?;
        let full = page.len() >= VERIFY_PAGE as usize;
        for m in page {
            after = after.max(m.seq);
            read.push(Stored {
                seq: m.seq,
                id: m.id,
                key: (m.sender_id, m.client_msg_id),
            });
        }
        if !full {
            return Ok((last_seq, read));
        }
    }
}

/// The read-back of the run: the audit, the figures, conversations whose read failed.
struct Verified {
    audit: Audit,
    stored: u64,
    stored_not_acked: u64,
    unverified: u64,
}

async fn verify(
    store: Arc<dyn Storage>,
    conversations: &[ConversationId],
    created: &HashMap<ConversationId, Vec<(i64, MessageId)>>,
    concurrency: usize,
    errors: &mut BTreeMap<String, u64>,
) -> Verified {
    let checks: Vec<Option<ConvCheck>> = stream::iter(conversations.iter().copied())
        .map(|id| {
            let store = store.clone();
            async move {
                let (last_seq, read) = read_back(store.as_ref(), id).await.ok()?;
                let acked = created.get(&id).map_or(&[][..], Vec::as_slice);
                Some(check_conversation(acked, last_seq, &read))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = Verified {
        audit: Audit::default(),
        stored: 0,
        stored_not_acked: 0,
        unverified: 0,
    };
    for check in checks {
        let Some(c) = check else {
            out.unverified += 1;
            *errors.entry("verify:read_failed".into()).or_default() += 1;
            continue;
        };
        out.audit.members_checked += 1;
        out.audit.duplicates += c.duplicates;
        out.audit.gaps += c.gaps;
        out.audit.acked_but_lost += c.lost;
        out.stored += c.stored;
        out.stored_not_acked += c.stored_not_acked;
    }
    // Acked created messages that belong to no conversation of the run are lost too.
    let known: HashSet<&ConversationId> = conversations.iter().collect();
    out.audit.acked_but_lost += created
        .iter()
        .filter(|(id, _)| !known.contains(id))
        .map(|(_, v)| v.len() as u64)
        .sum::<u64>();
    out
}

/// Runs `persist` (arguments already validated): no server is contacted.
pub async fn run(args: Args) -> Result<Report, LoadError> {
    let machine = Machine::describe();
    let own_pid = std::process::id();
    let content = MessageContent::parse(
        &content_for(0, args.content_bytes),
        domain::Limits::default().max_content_chars,
    )
    .map_err(|e| LoadError::Setup(format!("--content-bytes: {e}")))?;
    let latency = Arc::new(Histos::new().map_err(|e| LoadError::Setup(e.to_string()))?);

    // Provisioning, straight into the store.
    let target = provision::database_target(&args)?;
    let pool = args
        .provision_concurrency
        .min(16)
        .max(args.persist_writers + 1);
    let started = Instant::now();
    let store = provision::open_store(&target, u32::try_from(pool).unwrap_or(16)).await?;
    let run_id = provision::new_run_id();
    let users = provision::insert_users(
        store.clone(),
        &run_id,
        args.clients,
        args.provision_concurrency,
    )
    .await?;
    let users_s = started.elapsed().as_secs_f64();
    let plan = provision::plan_pairs(args.clients);
    let started = Instant::now();
    let conv_ids =
        provision::create_pairs_in_store(store.clone(), &users, &plan, args.provision_concurrency)
            .await?;
    let conversations_s = started.elapsed().as_secs_f64();
    let user = |i: usize| users.get(i).map(|(id, _)| UserId::from_uuid(*id));
    let conversations: Vec<(ConversationId, [UserId; 2])> = plan
        .iter()
        .zip(&conv_ids)
        .filter_map(|(members, id)| {
            let a = user(*members.first()?)?;
            let b = user(*members.get(1)?)?;
            Some((ConversationId::from_uuid(*id), [a, b]))
        })
        .collect();
    let conversation_ids: Vec<ConversationId> = conversations.iter().map(|(id, _)| *id).collect();
    let workload = Arc::new(Workload {
        conversations,
        content,
        run_id: run_id.clone(),
    });

    // The measured window: from the first send due until the last commit returned.
    let cpu0 = procstat::cpu_seconds(own_pid);
    let window = Instant::now();
    let dispatcher = Arc::new(Dispatcher::new(args.rate, args.duration));
    let tasks: Vec<_> = (0..args.persist_writers)
        .map(|index| {
            tokio::spawn(writer(
                index,
                store.clone(),
                dispatcher.clone(),
                workload.clone(),
                args.persist_batch,
                latency.clone(),
            ))
        })
        .collect();
    let mut total = WriterOutcome::default();
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(_) => total.error("writer:panicked"),
        }
    }
    let window_s = window.elapsed().as_secs_f64();
    let cpu1 = procstat::cpu_seconds(own_pid);

    // Read everything back.
    let started = Instant::now();
    let mut errors = std::mem::take(&mut total.errors);
    let verified = verify(
        store.clone(),
        &conversation_ids,
        &total.created,
        pool,
        &mut errors,
    )
    .await;
    let verify_s = started.elapsed().as_secs_f64();
    drop(store);

    let created = total.created_count();
    let mut audit = verified.audit;
    audit.acked_messages = created;
    let per_s = |n: u64| n as f64 / window_s.max(1e-9);
    let persist = Persist {
        writers: args.persist_writers,
        max_batch: args.persist_batch,
        window_s,
        created,
        persisted_per_s: per_s(created),
        commits: total.commits,
        commits_per_s: per_s(total.commits),
        messages_per_commit_mean: if total.commits == 0 {
            0.0
        } else {
            total.committed_messages as f64 / total.commits as f64
        },
        messages_per_commit_max: total.max_batch,
        failed_commits: total.failed_commits,
        replayed: total.replayed,
        rejected: total.rejected,
        commit_latency: Percentiles::of(latency.merged().as_ref()),
        stored: verified.stored,
        stored_not_acked: verified.stored_not_acked,
        verify_s,
    };
    let traffic = Traffic {
        window_s,
        scheduled: dispatcher.handed(),
        sent: total.appended,
        acked: created,
        sent_per_s: per_s(total.appended),
        persisted_per_s: per_s(created),
        sent_total: total.appended,
        acked_total: created,
        send_failed_total: total.rejected + total.failed_messages,
        drained: true,
        ..Traffic::default()
    };
    Ok(Report {
        machine,
        load_average_end: procstat::load_average(),
        setup: RunSetup {
            scenario: args.scenario,
            run_id,
            target: "none (storage only)".into(),
            storage: match target {
                DatabaseTarget::Sqlite(_) => "sqlite".into(),
                DatabaseTarget::Postgres(_) => "postgres".into(),
            },
            clients: args.clients,
            conversation_size: 2,
            conversations: conv_ids.len(),
            rate: args.rate,
            duration_s: args.duration.as_secs_f64(),
            source_addrs: Vec::new(),
            users_s,
            conversations_s,
            connect_s: 0.0,
        },
        connections: Connections::default(),
        traffic,
        delivery_latency: Percentiles::default(),
        ack_latency: Percentiles::default(),
        storm: None,
        persist: Some(persist),
        correctness: audit,
        unverified_clients: verified.unverified,
        errors,
        resources: Resources {
            generator_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
            generator_rss_kib: procstat::rss_kib(own_pid),
            ..Resources::default()
        },
        metrics: MetricsScrape::default(),
        fresh_database: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use domain::message::AppendRejection;

    #[tokio::test(start_paused = true)]
    async fn the_dispatcher_hands_out_the_rate_in_batches_of_at_most_max() {
        let d = Dispatcher::new(1_000.0, Duration::from_secs(2));
        let mut total = 0;
        let mut next = 0;
        let mut takes = 0;
        while let Some(r) = d.take(64).await {
            assert_eq!(r.start, next, "consecutive numbers");
            assert!((1..=64).contains(&(r.end - r.start)), "{r:?}");
            next = r.end;
            total += r.end - r.start;
            takes += 1;
        }
        assert_eq!(total, 2_000);
        assert_eq!(d.handed(), 2_000);
        // Taken as they fall due (about one per ms), not all at the end.
        assert!(takes > 100, "{takes}");
        assert!(d.take(64).await.is_none(), "stays over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_taker_gets_what_accumulated_while_it_committed() {
        let d = Dispatcher::new(10_000.0, Duration::from_secs(1));
        // The first send falls due after 100 µs; the timer wakes on the next ms.
        let first = d.take(256).await.unwrap();
        assert_eq!(first.start, 0);
        assert!((1..=11).contains(&first.end), "{first:?}");
        tokio::time::advance(Duration::from_millis(10)).await;
        // 100 more became due during a 10 ms "commit": one batch takes them all.
        let r = d.take(256).await.unwrap();
        assert_eq!(r.start, first.end);
        assert!((99..=101).contains(&(r.end - r.start)), "{r:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(d.take(256).await.map(|r| r.end - r.start), Some(256));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_zero_hands_out_full_batches_until_the_window_ends() {
        let d = Dispatcher::new(0.0, Duration::from_millis(50));
        assert_eq!(d.take(256).await, Some(0..256));
        assert_eq!(d.take(10).await, Some(256..266));
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(d.take(256).await, None);
        assert_eq!(d.handed(), 266);
    }

    fn workload(pairs: usize) -> Workload {
        Workload {
            conversations: (0..pairs)
                .map(|_| (ConversationId::new(), [UserId::new(), UserId::new()]))
                .collect(),
            content: MessageContent::parse(&content_for(0, 40), 4_000).unwrap(),
            run_id: "abcd1234".into(),
        }
    }

    #[test]
    fn messages_go_round_robin_from_a_member_with_unique_keys() {
        let w = workload(3);
        let now = chrono::Utc::now();
        let batch: Vec<NewMessage> = (0..7).map(|n| w.message(n, now).unwrap()).collect();
        for (n, m) in batch.iter().enumerate() {
            let (conv, members) = &w.conversations[n % 3];
            assert_eq!(m.conversation_id, *conv);
            assert!(members.contains(&m.sender_id));
            assert_eq!(
                m.client_msg_id.as_ref().unwrap().as_str(),
                format!("lgp-abcd1234-{n}")
            );
            assert_eq!(m.content.as_str().len(), 40);
        }
        assert!(workload(0).message(0, now).is_none());
    }

    #[test]
    fn a_writer_counts_each_outcome_and_a_failed_commit_as_a_whole() {
        let w = workload(2);
        let now = chrono::Utc::now();
        let batch: Vec<NewMessage> = (0..4).map(|n| w.message(n, now).unwrap()).collect();
        let mut out = WriterOutcome::default();
        out.record(
            &batch,
            Ok(vec![
                Ok(AppendOutcome::Created(batch[0].stored_as(1))),
                Ok(AppendOutcome::Created(batch[1].stored_as(1))),
                Ok(AppendOutcome::Replayed(batch[2].stored_as(1))),
                Err(AppendRejection::KeyReused),
            ]),
        );
        out.record(&batch[..2], Err(domain::StorageError::msg("down")));
        assert_eq!(
            (out.commits, out.committed_messages, out.max_batch),
            (1, 4, 4)
        );
        assert_eq!((out.failed_commits, out.failed_messages), (1, 2));
        assert_eq!((out.replayed, out.rejected, out.created_count()), (1, 1, 2));
        assert_eq!(out.errors["commit:failed"], 1);
        assert_eq!(out.errors["append:KeyReused"], 1);
        let mut total = WriterOutcome::default();
        total.merge(out);
        assert_eq!(total.created_count(), 2);
        assert_eq!(total.max_batch, 4);
    }

    fn stored(seq: i64, id: MessageId, key: &str) -> Stored {
        Stored {
            seq,
            id,
            key: (UserId::from_uuid(uuid::Uuid::nil()), Some(key.into())),
        }
    }

    #[test]
    fn a_conversation_read_back_whole_checks_clean() {
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        let acked: Vec<(i64, MessageId)> = (1..=3).zip(ids.iter().copied()).collect();
        let read: Vec<Stored> = acked
            .iter()
            .map(|&(s, id)| stored(s, id, &format!("k{s}")))
            .collect();
        let c = check_conversation(&acked, 3, &read);
        assert_eq!(
            c,
            ConvCheck {
                stored: 3,
                ..ConvCheck::default()
            }
        );
        assert_eq!(check_conversation(&[], 0, &[]), ConvCheck::default());
    }

    #[test]
    fn holes_losses_duplicates_and_unacked_rows_are_counted() {
        let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        let acked: Vec<(i64, MessageId)> = (1..=4).zip(ids.iter().copied()).collect();
        // Seq 2 missing (gap and loss), seq 3 holds another message (loss), seq 5 stored but
        // never acked, key k1 stored twice, and last_seq says 6 (a tail gap).
        let read = vec![
            stored(1, ids[0], "k1"),
            stored(3, MessageId::new(), "k3"),
            stored(4, ids[3], "k4"),
            stored(5, ids[4], "k1"),
        ];
        let c = check_conversation(&acked, 6, &read);
        assert_eq!(c.gaps, 2, "seqs 2 and 6");
        assert_eq!(c.lost, 2, "seqs 2 and 3");
        assert_eq!(c.duplicates, 1, "key k1");
        assert_eq!((c.stored, c.stored_not_acked), (4, 1));
        let twice = check_conversation(&[(1, ids[0]), (1, ids[0])], 1, &[stored(1, ids[0], "a")]);
        assert_eq!(twice.duplicates, 1, "one seq acked twice");
    }
}
