//! Per-session, per-conversation ordering: what makes "every message, in seq order, exactly
//! once" hold although live events from different nodes can arrive out of order, twice, or not
//! at all (Redis pub/sub drops events while a subscription is down).
//!
//! A session keeps one [`OrderedFeed`] per conversation. Live events are [`OrderedFeed::offer`]ed;
//! whatever is in order comes out at once, duplicates are dropped, and anything ahead of a
//! hole waits while the session fetches the hole from storage ([`OrderedFeed::missing`],
//! then [`OrderedFeed::fill`]).

use std::collections::BTreeMap;

/// Orders one conversation's messages for one session.
#[derive(Debug, Clone)]
pub struct OrderedFeed<M> {
    next: i64,
    pending: BTreeMap<i64, M>,
    max_pending: usize,
}

impl<M> OrderedFeed<M> {
    /// A feed whose client already holds everything up to `last_seq`. At most `max_pending`
    /// out-of-order messages wait for a hole to be filled; past that the newest are dropped
    /// (storage still has them: the next fill fetches them).
    pub fn new(last_seq: i64, max_pending: usize) -> Self {
        Self {
            next: last_seq + 1,
            pending: BTreeMap::new(),
            max_pending,
        }
    }

    /// The seq the client holds everything up to.
    pub fn delivered_up_to(&self) -> i64 {
        self.next - 1
    }

    /// Offers a live message with `seq`: returns what can go to the client now, in order
    /// (possibly nothing, if `seq` is ahead of a hole, or a duplicate).
    pub fn offer(&mut self, seq: i64, message: M) -> Vec<M> {
        if seq < self.next || self.pending.contains_key(&seq) {
            return Vec::new();
        }
        if seq == self.next {
            self.next += 1;
            let mut out = vec![message];
            out.extend(self.drain_ready());
            return out;
        }
        if self.pending.len() < self.max_pending {
            self.pending.insert(seq, message);
        } else if let Some((&highest, _)) = self.pending.last_key_value() {
            // Keep the lowest seqs: they unblock delivery first.
            if seq < highest {
                self.pending.remove(&highest);
                self.pending.insert(seq, message);
            }
        }
        Vec::new()
    }

    /// Moves the position so the client holds everything up to `last_seq`: backwards when
    /// the client asks for a replay of what it lacks (a `sync` below the position), forwards
    /// past what it already holds. Waiting messages beyond `last_seq` keep waiting; returns
    /// what can go to the client now, in order.
    pub fn reposition(&mut self, last_seq: i64) -> Vec<M> {
        self.next = last_seq + 1;
        self.pending = self.pending.split_off(&self.next);
        self.drain_ready()
    }

    /// Whether messages wait for a hole to be filled.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The hole to fetch from storage: `(after_seq, up_to_seq)` — every seq in
    /// `after_seq + 1 ..= up_to_seq` is missing — or `None` when nothing waits.
    pub fn missing(&self) -> Option<(i64, i64)> {
        let (&first, _) = self.pending.first_key_value()?;
        Some((self.next - 1, first - 1))
    }

    /// Takes messages fetched from storage (any order, duplicates allowed): returns what can
    /// go to the client now, in order.
    pub fn fill(&mut self, fetched: impl IntoIterator<Item = (i64, M)>) -> Vec<M> {
        for (seq, message) in fetched {
            if seq >= self.next {
                self.pending.entry(seq).or_insert(message);
            }
        }
        self.drain_ready()
    }

    fn drain_ready(&mut self) -> Vec<M> {
        let mut out = Vec::new();
        while let Some(message) = self.pending.remove(&self.next) {
            out.push(message);
            self.next += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_messages_flow_straight_through() {
        let mut feed = OrderedFeed::new(0, 100);
        assert_eq!(feed.offer(1, "a"), vec!["a"]);
        assert_eq!(feed.offer(2, "b"), vec!["b"]);
        assert_eq!(feed.delivered_up_to(), 2);
        assert_eq!(feed.missing(), None);
    }

    #[test]
    fn seq_n_plus_one_before_n_waits_for_n() {
        let mut feed = OrderedFeed::new(4, 100);
        assert!(feed.offer(6, "six").is_empty());
        assert_eq!(feed.missing(), Some((4, 5)));
        assert_eq!(feed.offer(5, "five"), vec!["five", "six"]);
        assert_eq!(feed.missing(), None);
    }

    #[test]
    fn duplicates_and_old_messages_are_dropped() {
        let mut feed = OrderedFeed::new(3, 100);
        assert!(feed.offer(3, "old").is_empty());
        assert!(feed.offer(5, "x").is_empty());
        assert!(feed.offer(5, "x again").is_empty());
        assert_eq!(
            feed.fill([(4, "four"), (5, "five from storage")]),
            vec!["four", "x"]
        );
    }

    #[test]
    fn a_full_buffer_keeps_the_lowest_seqs() {
        let mut feed = OrderedFeed::new(0, 2);
        feed.offer(5, 5);
        feed.offer(4, 4);
        feed.offer(3, 3);
        assert_eq!(feed.missing(), Some((0, 2)));
        assert_eq!(feed.fill([(1, 1), (2, 2)]), vec![1, 2, 3, 4]);
        // 5 was dropped from the buffer; it is fetched on the next fill.
        assert_eq!(feed.delivered_up_to(), 4);
    }

    #[test]
    fn repositioning_back_replays_from_there_and_keeps_what_waits_beyond() {
        let mut feed = OrderedFeed::new(10, 100);
        assert!(feed.offer(12, "twelve").is_empty());
        assert!(feed.reposition(7).is_empty());
        assert_eq!(feed.missing(), Some((7, 11)));
        assert_eq!(
            feed.fill([(8, "8"), (9, "9"), (10, "10"), (11, "11")]),
            vec!["8", "9", "10", "11", "twelve"]
        );
    }

    #[test]
    fn repositioning_forward_drops_what_the_client_already_holds() {
        let mut feed = OrderedFeed::new(0, 100);
        assert!(feed.offer(3, "three").is_empty());
        assert!(feed.offer(5, "five").is_empty());
        assert_eq!(feed.reposition(3), Vec::<&str>::new());
        assert!(feed.has_pending());
        assert_eq!(feed.offer(4, "four"), vec!["four", "five"]);
        assert_eq!(feed.reposition(1), Vec::<&str>::new());
        assert_eq!(feed.delivered_up_to(), 1);
    }

    proptest! {
        /// Whatever order, duplication and loss live delivery suffers, a session that fills
        /// its holes from storage hands the client every message once, in seq order.
        #[test]
        fn every_message_arrives_once_in_order(
            n in 1i64..60,
            start in 0i64..5,
            live in proptest::collection::vec((1i64..70, any::<bool>()), 0..150),
            buffer in 1usize..20,
        ) {
            let mut feed = OrderedFeed::new(start, buffer);
            let mut got = Vec::new();
            for (seq, _) in live.iter().filter(|(s, keep)| *keep && *s <= n) {
                got.extend(feed.offer(*seq, *seq));
                // The session fetches a hole whenever one shows.
                if let Some((after, upto)) = feed.missing() {
                    got.extend(feed.fill((after + 1..=upto).map(|s| (s, s))));
                }
            }
            // At the end (e.g. `sync` after reconnect) the rest comes from storage.
            let after = feed.delivered_up_to();
            got.extend(feed.fill((after + 1..=n).map(|s| (s, s))));
            let want: Vec<i64> = (start + 1..=n).collect();
            prop_assert_eq!(got, want);
        }
    }
}
