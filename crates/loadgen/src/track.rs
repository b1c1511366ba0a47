//! Accounting of what each client saw of each conversation: duplicates, gaps and
//! acked-but-lost messages. Pure data, no I/O, so every rule is unit-tested here.
//!
//! The rules (per receiving client and conversation, on seqs):
//! - A `message` frame outside a `sync` for a seq the client already has (received, or acked
//!   to it as the sender) is a **duplicate**.
//! - During a `sync` (each page a request of its own) with cursor `c`, a replayed seq `<= c`,
//!   or one replayed twice in the same page, is a **duplicate**; a replayed seq above `c`
//!   the client already had is only *redundant* (the protocol replays everything after the
//!   cursor, holes included).
//! - After the run, a seq of `1..=last_seq` the client never got (live or through its own
//!   recovery syncs) is a **gap**.
//! - A seq acked to its sender that a member still lacks after a final verification `sync`
//!   is **acked-but-lost**.

use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// The set of seqs one client holds of one conversation: a contiguous prefix `1..=n` and
/// the seqs above it (holes between).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeqSet {
    contiguous: u64,
    above: BTreeSet<u64>,
}

impl SeqSet {
    /// Adds `seq`; `true` when it was new. Seq 0 is never a message and is ignored.
    pub fn insert(&mut self, seq: u64) -> bool {
        if seq == 0 || seq <= self.contiguous {
            return false;
        }
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            while self.above.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
            true
        } else {
            self.above.insert(seq)
        }
    }

    /// Whether `seq` is held.
    pub fn contains(&self, seq: u64) -> bool {
        seq != 0 && (seq <= self.contiguous || self.above.contains(&seq))
    }

    /// Every seq `1..=n` is held: the `sync` cursor.
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// The highest seq held (0 if none).
    pub fn max(&self) -> u64 {
        self.above.last().copied().unwrap_or(self.contiguous)
    }

    /// How many seqs are held.
    pub fn len(&self) -> u64 {
        self.contiguous + self.above.len() as u64
    }

    /// Whether no seq is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many of `1..=last` are not held.
    pub fn missing_up_to(&self, last: u64) -> u64 {
        if last <= self.contiguous {
            return 0;
        }
        let held_above = self.above.range(..=last).count() as u64;
        last - self.contiguous - held_above
    }
}

/// How a `message` frame was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A seq the client did not have.
    New,
    /// A seq the client already had, sent again when it should not have been.
    Duplicate,
    /// A seq replayed by a `sync` above its cursor that the client already had: expected.
    Redundant,
}

/// One client's view of one conversation.
#[derive(Debug, Clone, Default)]
pub struct ConvLog {
    /// Seqs held: received, replayed, or acked to this client as the sender.
    pub seen: SeqSet,
    /// Duplicates counted so far.
    pub duplicates: u64,
    /// Redundant replays counted so far.
    pub redundant: u64,
    /// The `sync` in progress for this conversation: its cursor and what it replayed.
    sync: Option<(u64, BTreeSet<u64>)>,
    /// The highest `last_seq` the server reported (hello, sync_done).
    pub last_seq: u64,
}

impl ConvLog {
    /// A `message` frame for `seq` (inside or outside a `sync`).
    pub fn on_message(&mut self, seq: u64) -> Arrival {
        let arrival = match &mut self.sync {
            None => {
                if self.seen.insert(seq) {
                    Arrival::New
                } else {
                    Arrival::Duplicate
                }
            }
            Some((cursor, replayed)) => {
                if seq <= *cursor || !replayed.insert(seq) {
                    Arrival::Duplicate
                } else if self.seen.insert(seq) {
                    Arrival::New
                } else {
                    Arrival::Redundant
                }
            }
        };
        match arrival {
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::Redundant => self.redundant += 1,
            Arrival::New => {}
        }
        arrival
    }

    /// The client's own message was acked with `seq`; `true` when the seq is new to it.
    pub fn on_ack(&mut self, seq: u64) -> bool {
        self.last_seq = self.last_seq.max(seq);
        self.seen.insert(seq)
    }

    /// A `sync` for this conversation starts; answers its cursor.
    pub fn begin_sync(&mut self) -> u64 {
        let cursor = self.seen.contiguous();
        self.sync = Some((cursor, BTreeSet::new()));
        cursor
    }

    /// Another page of the same `sync`, requested from `cursor`: a request of its own, so
    /// a seq the previous page replayed above this cursor may come again (redundant).
    pub fn continue_sync(&mut self, cursor: u64) {
        self.sync = Some((cursor, BTreeSet::new()));
    }

    /// The `sync` finished.
    pub fn end_sync(&mut self) {
        self.sync = None;
    }

    /// Whether a `sync` is in progress.
    pub fn syncing(&self) -> bool {
        self.sync.is_some()
    }

    /// The cursor of the `sync` (page) in progress.
    pub fn sync_cursor(&self) -> Option<u64> {
        self.sync.as_ref().map(|(cursor, _)| *cursor)
    }

    /// The server says the conversation has reached `seq`.
    pub fn saw_last_seq(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }
}

/// What a member held of a conversation at the end of a run, for [`audit`].
#[derive(Debug, Clone)]
pub struct MemberView {
    /// The conversation.
    pub conversation: Uuid,
    /// Seqs held before the final verification `sync`.
    pub before_final: SeqSet,
    /// Seqs held after it.
    pub after_final: SeqSet,
    /// The conversation's last seq as the server reported it.
    pub last_seq: u64,
    /// Duplicates this member counted.
    pub duplicates: u64,
    /// Redundant replays this member counted.
    pub redundant: u64,
}

/// The correctness figures of a run. All but `redundant_replays` must be 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// Messages a client received more than once.
    pub duplicates: u64,
    /// (member, seq) pairs of stored messages a member never received live or by its own
    /// recovery.
    pub gaps: u64,
    /// (member, seq) pairs acked to the sender that the member lacks even after a final
    /// `sync`: an acknowledged message the server cannot produce.
    pub acked_but_lost: u64,
    /// Replays above the cursor of seqs already held (expected with holes; informational).
    pub redundant_replays: u64,
    /// Messages acked (distinct conversation and seq).
    pub acked_messages: u64,
    /// Member views checked.
    pub members_checked: u64,
}

impl Audit {
    /// Nothing duplicated, nothing missing, nothing lost.
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.gaps == 0 && self.acked_but_lost == 0
    }
}

/// Checks every member view against the seqs acked in its conversation.
pub fn audit(acked: &HashMap<Uuid, BTreeSet<u64>>, views: &[MemberView]) -> Audit {
    let mut out = Audit {
        acked_messages: acked.values().map(|s| s.len() as u64).sum(),
        ..Audit::default()
    };
    for view in views {
        out.members_checked += 1;
        out.duplicates += view.duplicates;
        out.redundant_replays += view.redundant;
        let conv_acked = acked.get(&view.conversation);
        let max_acked = conv_acked
            .and_then(|s| s.last().copied())
            .unwrap_or_default();
        let last = view.last_seq.max(max_acked);
        out.gaps += view.before_final.missing_up_to(last);
        if let Some(seqs) = conv_acked {
            out.acked_but_lost += seqs
                .iter()
                .filter(|&&s| !view.after_final.contains(s))
                .count() as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn set(seqs: &[u64]) -> SeqSet {
        let mut s = SeqSet::default();
        for &q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn a_seq_set_keeps_a_contiguous_prefix_and_the_holes_above_it() {
        let mut s = SeqSet::default();
        assert!(s.is_empty());
        assert!(s.insert(2));
        assert!(s.insert(4));
        assert_eq!((s.contiguous(), s.max(), s.len()), (0, 4, 2));
        assert!(s.insert(1));
        assert_eq!(s.contiguous(), 2);
        assert!(!s.insert(2));
        assert!(!s.insert(0));
        assert!(s.insert(3));
        assert_eq!((s.contiguous(), s.max(), s.len()), (4, 4, 4));
        assert!(s.contains(3) && !s.contains(5) && !s.contains(0));
    }

    #[test]
    fn missing_counts_holes_and_the_tail() {
        let s = set(&[1, 2, 5, 7]);
        assert_eq!(s.missing_up_to(2), 0);
        assert_eq!(s.missing_up_to(5), 2); // 3, 4
        assert_eq!(s.missing_up_to(7), 3); // 3, 4, 6
        assert_eq!(s.missing_up_to(10), 6); // 3, 4, 6, 8, 9, 10
        assert_eq!(SeqSet::default().missing_up_to(3), 3);
    }

    #[test]
    fn a_live_repeat_is_a_duplicate_and_so_is_a_live_copy_of_an_own_acked_message() {
        let mut log = ConvLog::default();
        assert_eq!(log.on_message(1), Arrival::New);
        assert_eq!(log.on_message(1), Arrival::Duplicate);
        assert!(log.on_ack(2));
        assert_eq!(log.on_message(2), Arrival::Duplicate);
        assert!(!log.on_ack(2), "an ack replayed for a resend is not new");
        assert_eq!(log.duplicates, 2);
        assert_eq!(log.last_seq, 2);
    }

    #[test]
    fn a_sync_may_replay_held_seqs_above_its_cursor_but_nothing_at_or_below_it_nor_twice() {
        let mut log = ConvLog::default();
        for q in [1, 2, 4] {
            log.on_message(q);
        }
        assert_eq!(log.begin_sync(), 2);
        assert!(log.syncing());
        assert_eq!(log.on_message(3), Arrival::New);
        assert_eq!(log.on_message(4), Arrival::Redundant);
        assert_eq!(log.on_message(2), Arrival::Duplicate, "at the cursor");
        assert_eq!(log.on_message(3), Arrival::Duplicate, "twice in one sync");
        log.continue_sync(3);
        assert_eq!(
            log.on_message(3),
            Arrival::Duplicate,
            "at the next page's cursor"
        );
        assert_eq!(
            log.on_message(4),
            Arrival::Redundant,
            "asked again from a lower cursor"
        );
        assert_eq!(log.on_message(5), Arrival::New);
        assert_eq!(log.on_message(5), Arrival::Duplicate, "twice in one page");
        log.end_sync();
        assert_eq!(
            log.on_message(5),
            Arrival::Duplicate,
            "live after the replay"
        );
        assert_eq!((log.duplicates, log.redundant), (5, 2));
        assert_eq!(log.seen.contiguous(), 5);
    }

    fn view(conv: Uuid, before: &[u64], after: &[u64], last: u64) -> MemberView {
        MemberView {
            conversation: conv,
            before_final: set(before),
            after_final: set(after),
            last_seq: last,
            duplicates: 0,
            redundant: 0,
        }
    }

    #[test]
    fn a_clean_run_audits_clean() {
        let c = Uuid::new_v4();
        let acked = HashMap::from([(c, BTreeSet::from([1, 2, 3]))]);
        let views = [
            view(c, &[1, 2, 3], &[1, 2, 3], 3),
            view(c, &[1, 2, 3], &[1, 2, 3], 3),
        ];
        let a = audit(&acked, &views);
        assert!(a.clean(), "{a:?}");
        assert_eq!((a.acked_messages, a.members_checked), (3, 2));
    }

    #[test]
    fn a_message_only_the_final_sync_brought_is_a_gap_not_a_loss() {
        let c = Uuid::new_v4();
        let acked = HashMap::from([(c, BTreeSet::from([1, 2, 3]))]);
        let a = audit(&acked, &[view(c, &[1, 3], &[1, 2, 3], 3)]);
        assert_eq!((a.gaps, a.acked_but_lost), (1, 0));
        assert!(!a.clean());
    }

    #[test]
    fn an_acked_message_that_even_the_final_sync_lacks_is_lost() {
        let c = Uuid::new_v4();
        let acked = HashMap::from([(c, BTreeSet::from([1, 2, 3, 4]))]);
        // The server reports last_seq 3, yet 4 was acked: tail gap and loss both count.
        let a = audit(&acked, &[view(c, &[1, 2, 3], &[1, 2, 3], 3)]);
        assert_eq!((a.gaps, a.acked_but_lost), (1, 1));
    }

    #[test]
    fn stored_but_unacked_messages_still_count_as_gaps_when_missing() {
        let c = Uuid::new_v4();
        let acked = HashMap::from([(c, BTreeSet::from([1]))]);
        let a = audit(&acked, &[view(c, &[1], &[1, 2], 2)]);
        assert_eq!((a.gaps, a.acked_but_lost), (1, 0));
    }

    #[test]
    fn duplicates_and_redundant_replays_are_summed() {
        let c = Uuid::new_v4();
        let mut v = view(c, &[1], &[1], 1);
        v.duplicates = 2;
        v.redundant = 5;
        let a = audit(&HashMap::new(), &[v.clone(), v]);
        assert_eq!((a.duplicates, a.redundant_replays), (4, 10));
        assert!(!a.clean());
    }
}
