//! Traffic for the fault tests: a sender that pipelines `message` frames and records how
//! each was answered, retries with the same `temp_id`, checks of what ended up stored,
//! and the figures the tests print.

use crate::cluster;
use crate::ws::{frame_type, WsClient};
use crate::{Api, TestUser};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// How one send was answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `message_sent`: its seq.
    Acked(i64),
    /// `error`: its code.
    Refused(String),
    /// Nothing within the wait, or the socket closed first.
    Unanswered,
}

/// The answer to the send of `temp_id` on `ws` within `wait` (frames of other kinds are
/// kept). `Unanswered` if the socket closes or nothing comes.
pub async fn answer_of(ws: &mut WsClient, temp_id: &str, wait: Duration) -> Answer {
    let deadline = Instant::now() + wait;
    if let Some(found) = take_answer(ws, temp_id) {
        return found;
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || ws.closed().is_some() {
            return Answer::Unanswered;
        }
        match ws
            .still_open_after(left.min(Duration::from_millis(50)))
            .await
        {
            Some(_) => return take_answer(ws, temp_id).unwrap_or(Answer::Unanswered),
            None => {
                if let Some(found) = take_answer(ws, temp_id) {
                    return found;
                }
            }
        }
    }
}

/// The answer to `temp_id` among the frames kept so far, removed from them.
fn take_answer(ws: &mut WsClient, temp_id: &str) -> Option<Answer> {
    let matches = |f: &Value| {
        (frame_type(f) == "message_sent" && f["temp_id"] == temp_id)
            || (frame_type(f) == "error" && f["ref"] == temp_id)
    };
    let frame = ws.take_kept(matches)?;
    Some(if frame_type(&frame) == "message_sent" {
        Answer::Acked(frame["seq"].as_i64().expect("an ack with a seq"))
    } else {
        Answer::Refused(frame["code"].as_str().unwrap_or("?").to_owned())
    })
}

/// The sends of one client and what became of them.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every `temp_id` sent, in first-send order, with its content.
    pub sent: Vec<(String, String)>,
    /// Acknowledged: `temp_id` -> seq (the first ack; later replays must agree).
    pub acked: HashMap<String, i64>,
    /// Sends answered `error` at least once, with the codes seen.
    pub refused: BTreeMap<String, usize>,
    /// Sends never answered on their socket (it died first).
    pub unanswered: usize,
    /// Sends sent again with the same `temp_id`.
    pub retries: usize,
    /// Longest wait for an answer (ack or error).
    pub slowest_answer: Duration,
}

impl Ledger {
    /// Records one answer of `temp_id` after `took`; panics if a replay's seq differs from
    /// the first ack's.
    pub fn record(&mut self, temp_id: &str, answer: &Answer, took: Duration) {
        if !matches!(answer, Answer::Unanswered) {
            self.slowest_answer = self.slowest_answer.max(took);
        }
        match answer {
            Answer::Acked(seq) => {
                if let Some(first) = self.acked.insert(temp_id.to_owned(), *seq) {
                    assert_eq!(first, *seq, "{temp_id}: acked at {first}, then at {seq}");
                }
            }
            Answer::Refused(code) => *self.refused.entry(code.clone()).or_default() += 1,
            Answer::Unanswered => self.unanswered += 1,
        }
    }

    /// The `(temp_id, content)` of every send not acknowledged yet.
    pub fn unacked(&self) -> Vec<(String, String)> {
        self.sent
            .iter()
            .filter(|(k, _)| !self.acked.contains_key(k))
            .cloned()
            .collect()
    }

    /// Sends `count` messages pipelined (`{prefix}-{n}` keys), then waits for each answer
    /// (`wait` each), recording them.
    pub async fn burst(
        &mut self,
        ws: &mut WsClient,
        conversation: &str,
        prefix: &str,
        count: usize,
        wait: Duration,
    ) {
        let start = self.sent.len();
        let mut keys = Vec::new();
        let sent_at = Instant::now();
        for n in start..start + count {
            let key = format!("{prefix}-{n}");
            let content = format!("m{n}");
            if !ws
                .try_send_text(message_frame(conversation, &content, &key))
                .await
            {
                break;
            }
            self.sent.push((key.clone(), content));
            keys.push(key);
        }
        for key in keys {
            let answer = answer_of(ws, &key, wait).await;
            self.record(&key, &answer, sent_at.elapsed());
        }
    }

    /// Sends every unacknowledged message again, same `temp_id` and content, until each is
    /// acknowledged (at most `rounds` rounds, `pause` apart); panics if some never are.
    pub async fn resend_unacked(
        &mut self,
        ws: &mut WsClient,
        conversation: &str,
        rounds: usize,
        pause: Duration,
    ) {
        for _ in 0..rounds {
            let pending = self.unacked();
            if pending.is_empty() {
                return;
            }
            let sent_at = Instant::now();
            for (key, content) in &pending {
                assert!(
                    ws.try_send_text(message_frame(conversation, content, key))
                        .await,
                    "{}: the socket closed during the resend",
                    ws.label
                );
                self.retries += 1;
            }
            for (key, _) in &pending {
                let answer = answer_of(ws, key, Duration::from_secs(10)).await;
                self.record(key, &answer, sent_at.elapsed());
            }
            tokio::time::sleep(pause).await;
        }
        let left = self.unacked();
        assert!(
            left.is_empty(),
            "{} sends still unacknowledged after {rounds} resends: {:?}",
            left.len(),
            &left[..left.len().min(5)]
        );
    }
}

/// A `message` frame as text.
pub fn message_frame(conversation: &str, content: &str, temp_id: &str) -> String {
    protocol::ClientFrame::message(crate::uuid(conversation), content, temp_id).to_json()
}

/// What is stored in a conversation, checked against what was acknowledged.
#[derive(Debug)]
pub struct Stored {
    /// Messages stored.
    pub stored: usize,
    /// `temp_id`s stored more than once.
    pub duplicates: usize,
    /// Seqs missing between 1 and the highest.
    pub gaps: usize,
    /// Acknowledged sends not stored, or stored at another seq than acked.
    pub lost: Vec<String>,
}

/// Reads the whole history of `conversation` and compares it with `ledger`.
pub async fn check_stored(
    api: &Api,
    reader: &TestUser,
    conversation: &str,
    ledger: &Ledger,
) -> Stored {
    let history = cluster::history(api, reader, conversation).await;
    let mut by_key: HashMap<&str, i64> = HashMap::new();
    let mut duplicates = 0;
    for m in &history {
        let key = m["temp_id"].as_str().unwrap_or_default();
        if by_key
            .insert(key, m["seq"].as_i64().expect("a seq"))
            .is_some()
        {
            duplicates += 1;
        }
    }
    let seqs: HashSet<i64> = history.iter().filter_map(|m| m["seq"].as_i64()).collect();
    let top = seqs.iter().copied().max().unwrap_or(0);
    let gaps = (1..=top).filter(|s| !seqs.contains(s)).count();
    let mut lost: Vec<String> = ledger
        .acked
        .iter()
        .filter(|(k, seq)| by_key.get(k.as_str()) != Some(*seq))
        .map(|(k, _)| k.clone())
        .collect();
    lost.sort();
    Stored {
        stored: history.len(),
        duplicates,
        gaps,
        lost,
    }
}

/// The seqs of `conversation` a receiver got live: reads its socket until it holds
/// `1..=expected` or `patience` passes without a new one. Returns them in arrival order.
pub async fn live_seqs(
    ws: &mut WsClient,
    conversation: &str,
    expected: i64,
    patience: Duration,
) -> Vec<i64> {
    let mut got = Vec::new();
    let mut held = HashSet::new();
    loop {
        if (1..=expected).all(|s| held.contains(&s)) {
            return got;
        }
        let frames = ws.collect_type_for("message", patience).await;
        if frames.is_empty() {
            return got;
        }
        for f in frames {
            if f["message"]["conversation_id"] == conversation {
                let seq = f["message"]["seq"].as_i64().expect("a seq");
                got.push(seq);
                held.insert(seq);
            }
        }
    }
}

/// Whether `seqs` is strictly increasing (in order, each once).
pub fn in_order_once(seqs: &[i64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

/// The statuses of a conversation's members as `viewer` is told by `api`: user id ->
/// status.
pub async fn presence_of(
    api: &Api,
    viewer: &TestUser,
    conversation: &str,
) -> HashMap<String, String> {
    let reply = api
        .get(
            &format!("/api/v1/conversations/{conversation}/presence"),
            viewer.t(),
        )
        .await;
    if reply.status != reqwest::StatusCode::OK {
        return HashMap::new();
    }
    reply.body["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap_or_default().to_owned(),
                p["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Polls [`presence_of`] until `want` (user id -> status) holds, or `within` passes; how long
/// it took, or `None`.
pub async fn wait_presence(
    api: &Api,
    viewer: &TestUser,
    conversation: &str,
    want: &[(&str, &str)],
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let now = presence_of(api, viewer, conversation).await;
        if want
            .iter()
            .all(|(user, status)| now.get(*user).map(String::as_str) == Some(*status))
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// A socket read in the background (so its pings are answered and nothing piles up in the
/// kernel) while the test drives others; [`Reader::stop`] hands it back with every frame
/// read meanwhile.
pub struct Reader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(WsClient, Vec<Value>)>,
}

impl Reader {
    /// Starts reading `ws`.
    pub fn spawn(mut ws: WsClient) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut frames = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Acquire) && ws.closed().is_none() {
                frames.extend(ws.collect_for(Duration::from_millis(100)).await);
            }
            (ws, frames)
        });
        Self { stop, task }
    }

    /// Stops reading; the socket and the frames read.
    pub async fn stop(self) -> (WsClient, Vec<Value>) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.task.await.expect("the reader task")
    }
}

/// Seqs of `conversation` among `frames`, in arrival order.
pub fn seqs_in(frames: &[Value], conversation: &str) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message" && f["message"]["conversation_id"] == conversation)
        .map(|f| f["message"]["seq"].as_i64().expect("a seq"))
        .collect()
}

/// The highest seq held with everything below it held too.
pub fn contiguous(seqs: &[i64]) -> i64 {
    let held: HashSet<i64> = seqs.iter().copied().collect();
    let mut top = 0;
    while held.contains(&(top + 1)) {
        top += 1;
    }
    top
}

pub fn assert_stored(what: &str, stored: &Stored, sent: usize) {
    assert!(
        stored.lost.is_empty(),
        "{what}: acknowledged, then lost: {:?}",
        stored.lost
    );
    assert_eq!(stored.duplicates, 0, "{what}: a temp_id stored twice");
    assert_eq!(stored.gaps, 0, "{what}: a hole in the seqs");
    assert_eq!(stored.stored, sent, "{what}: every message stored once");
}

/// Every seq of `1..=top` held, live or synced.
pub fn assert_holds_all(what: &str, parts: &[&[i64]], top: i64) {
    let mut all: Vec<i64> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all,
        (1..=top).collect::<Vec<_>>(),
        "{what} holds every message"
    );
}

/// Reads what a receiver on the surviving node got live (`frames` read in the background,
/// then its socket), and syncs what it lacks from the highest seq it holds without a hole
/// (counting `held`, what it had before).
pub async fn live_then_sync(
    ws: &mut WsClient,
    frames: &[Value],
    conv: &str,
    top: i64,
    held: &[i64],
) -> (Vec<i64>, Vec<i64>) {
    let mut live = seqs_in(frames, conv);
    live.extend(live_seqs(ws, conv, top, Duration::from_secs(3)).await);
    let all: Vec<i64> = held.iter().chain(&live).copied().collect();
    let synced = if contiguous(&all) < top {
        crate::ws::seqs(&ws.sync_all(conv, contiguous(&all)).await)
    } else {
        Vec::new()
    };
    (live, synced)
}
