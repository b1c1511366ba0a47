//! A session's second cursor per conversation: the change number (issue 12). Edits,
//! deletions and reactions reach a session live, each with the conversation's next change
//! number, and from storage (`changes_after`), each changed message once as it is now.
//!
//! Live change numbers have no gap (every committed change is published once), so a live
//! feed orders them as [`OrderedFeed`] orders seqs: duplicates dropped, a number ahead of
//! a hole waits while the hole is fetched. Storage answers differently: a message changed
//! twice comes once, with its latest number, so a fetched page is sparse. It is written
//! whole, in change order, and the feed moves to its highest number: what waited at or
//! below it is an older state of a message the page brought as it is now.
//!
//! Every change frame carries the message's whole state, so of two copies of a message the
//! one with the higher change number is the newer. That lets a `sync` below what this
//! session wrote replay only what it did not write (see [`ChangeFeed::plan_sync`]).

use bytestring::ByteString;
use domain::delivery::OrderedFeed;

/// One conversation's change feed of one session.
#[derive(Debug)]
pub(crate) struct ChangeFeed {
    order: OrderedFeed<ByteString>,
    /// This session wrote every change frame it wrote with a number above `floor` (and up
    /// to the position): the client holds those. At the start, the feed's base.
    floor: i64,
    /// A replay is paging (its last page said `has_more`): live changes wait here until it
    /// ends, so the client sees no change number above the replay's cursor meanwhile and
    /// may take the highest number it saw as its cursor.
    parked: Option<Vec<(i64, ByteString)>>,
    /// More live changes came while parked than a feed may hold: caught up from storage
    /// when the replay ends.
    overflowed: bool,
    max_pending: usize,
}

/// How a `sync`'s change cursor is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSync {
    /// The client holds everything up to `last_change` (or is being sent it): nothing to
    /// read. `release`: live frames that waited below the client's cursor and may go now.
    Current {
        /// The cursor to answer.
        last_change: i64,
        /// Frames to write.
        release: Vec<ByteString>,
    },
    /// Read `changes_after(after)` and hand the page to [`ChangeFeed::replayed`].
    Replay {
        /// The client's cursor.
        after: i64,
    },
}

/// What a replayed page gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Frames to write, in change order.
    pub frames: Vec<ByteString>,
    /// The change cursor to answer in `sync_done`.
    pub last_change: i64,
    /// Whether the client should `sync` again from `last_change`.
    pub has_more: bool,
}

impl ChangeFeed {
    /// A feed whose client holds every change up to `base` (the `hello` snapshot's, or the
    /// conversation's at the join). At most `max_pending` live frames wait behind a hole.
    pub(crate) fn new(base: i64, max_pending: usize) -> Self {
        Self {
            order: OrderedFeed::new(base, max_pending),
            floor: base,
            parked: None,
            overflowed: false,
            max_pending,
        }
    }

    /// The change number the client holds everything up to, as far as this session knows.
    pub(crate) fn position(&self) -> i64 {
        self.order.delivered_up_to()
    }

    /// A live change: what may be written now, in order.
    pub(crate) fn offer(&mut self, change: i64, frame: ByteString) -> Vec<ByteString> {
        if let Some(parked) = &mut self.parked {
            if parked.len() < self.max_pending {
                parked.push((change, frame));
            } else {
                self.overflowed = true;
            }
            return Vec::new();
        }
        self.order.offer(change, frame)
    }

    /// Where a fetch for a hole starts (the position), when live changes wait behind one;
    /// none while a replay pages (it ends by letting them through).
    pub(crate) fn hole(&self) -> Option<i64> {
        if self.parked.is_some() {
            return None;
        }
        self.order.missing().map(|(after, _)| after)
    }

    /// Whether live changes were dropped while a replay paged (catch up from storage).
    pub(crate) fn take_overflowed(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// A page of `changes_after(position)` (change number and frame, in change order): what
    /// to write. Entries at or below the position are dropped (an older read).
    pub(crate) fn fetched(&mut self, page: Vec<(i64, ByteString)>) -> Vec<ByteString> {
        let position = self.position();
        let mut out = Vec::with_capacity(page.len());
        let mut highest = position;
        for (change, frame) in page {
            if change > highest {
                highest = change;
                out.push(frame);
            }
        }
        if highest > position {
            out.extend(self.order.reposition(highest));
        }
        out
    }

    /// A `sync` says the client holds every change up to `cursor`.
    ///
    /// At or above the floor, the client holds all this session wrote: the cursor, or the
    /// position when this session wrote past it, is current (later changes come live, the
    /// subscription being older than the snapshot the feed started from). Below it, the
    /// client lacks what came before the floor: replay from its cursor.
    pub(crate) fn plan_sync(&mut self, cursor: i64) -> ChangeSync {
        if cursor < self.floor {
            return ChangeSync::Replay { after: cursor };
        }
        let position = self.position();
        let release = if cursor > position {
            self.order.reposition(cursor)
        } else {
            Vec::new()
        };
        ChangeSync::Current {
            last_change: self.position(),
            release,
        }
    }

    /// The page a [`ChangeSync::Replay`] read after `after` (`full`: it has as many
    /// entries as asked). Only entries at or below the floor are written: one above it is
    /// a message whose latest change this session wrote already, or will write when its
    /// live copy comes (waiting, or still on its way), whole.
    pub(crate) fn replayed(
        &mut self,
        after: i64,
        page: Vec<(i64, ByteString)>,
        full: bool,
    ) -> Replayed {
        let floor = self.floor;
        let mut frames = Vec::new();
        let mut last = after;
        let mut beyond = false;
        for (change, frame) in page {
            if change > floor {
                beyond = true;
                break;
            }
            if change > last {
                last = change;
                frames.push(frame);
            }
        }
        let has_more = full && !beyond;
        if has_more {
            self.parked.get_or_insert_with(Vec::new);
            return Replayed {
                frames,
                last_change: last,
                has_more,
            };
        }
        // Everything up to the floor is written now, and above it up to the position; what
        // came live meanwhile follows.
        self.floor = self.floor.min(after);
        for (change, frame) in self.parked.take().unwrap_or_default() {
            frames.extend(self.order.offer(change, frame));
        }
        Replayed {
            frames,
            last_change: self.position(),
            has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn f(change: i64) -> ByteString {
        ByteString::from(format!("c{change}"))
    }

    fn texts(frames: &[ByteString]) -> Vec<String> {
        frames.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn live_changes_pass_in_order_once() {
        let mut feed = ChangeFeed::new(3, 8);
        assert_eq!(texts(&feed.offer(4, f(4))), ["c4"]);
        assert!(feed.offer(4, f(4)).is_empty(), "a duplicate");
        assert!(feed.offer(2, f(2)).is_empty(), "below the base");
        assert!(feed.offer(6, f(6)).is_empty(), "behind a hole");
        assert_eq!(feed.hole(), Some(4));
        assert_eq!(texts(&feed.offer(5, f(5))), ["c5", "c6"]);
        assert_eq!(feed.hole(), None);
        assert_eq!(feed.position(), 6);
    }

    #[test]
    fn a_fetched_page_is_written_whole_and_drops_the_older_states_that_waited() {
        let mut feed = ChangeFeed::new(3, 8);
        // 4 was lost; 5 and 7 wait. Storage has the message of 4 and 5 changed again at 6
        // (absorbed), and 7.
        assert!(feed.offer(5, f(5)).is_empty());
        assert!(feed.offer(7, f(7)).is_empty());
        assert_eq!(feed.hole(), Some(3));
        let written = feed.fetched(vec![(6, f(6)), (7, f(7))]);
        assert_eq!(texts(&written), ["c6", "c7"]);
        assert_eq!(feed.position(), 7);
        assert_eq!(feed.hole(), None);
        // 8 arrives live next; a stale page changes nothing.
        assert_eq!(texts(&feed.offer(8, f(8))), ["c8"]);
        assert!(feed.fetched(vec![(7, f(7))]).is_empty());
    }

    #[test]
    fn a_fetched_page_lets_through_what_waits_above_it() {
        let mut feed = ChangeFeed::new(0, 8);
        assert!(feed.offer(3, f(3)).is_empty());
        assert!(feed.offer(4, f(4)).is_empty());
        // Read before 3 and 4 committed: it has 2 (1 absorbed).
        let written = feed.fetched(vec![(2, f(2))]);
        assert_eq!(texts(&written), ["c2", "c3", "c4"]);
    }

    #[test]
    fn a_sync_at_or_above_what_was_written_reads_nothing() {
        let mut feed = ChangeFeed::new(5, 8);
        assert_eq!(
            feed.plan_sync(5),
            ChangeSync::Current {
                last_change: 5,
                release: vec![]
            }
        );
        assert_eq!(texts(&feed.offer(6, f(6))), ["c6"]);
        // The client had 5 and got 6 here (or has it in flight).
        assert!(matches!(
            feed.plan_sync(5),
            ChangeSync::Current { last_change: 6, .. }
        ));
        // A client that holds more (another session brought it): what waited below it goes.
        assert!(feed.offer(9, f(9)).is_empty());
        assert_eq!(
            feed.plan_sync(8),
            ChangeSync::Current {
                last_change: 9,
                release: vec![f(9)]
            }
        );
    }

    #[test]
    fn a_sync_below_the_floor_replays_only_what_this_session_did_not_write() {
        let mut feed = ChangeFeed::new(10, 8);
        // Written live before the client's sync came: 11 and 12.
        feed.offer(11, f(11));
        feed.offer(12, f(12));
        assert_eq!(feed.plan_sync(4), ChangeSync::Replay { after: 4 });
        // Storage: 6, 9, 10 and the message of an earlier change now at 12.
        let replayed = feed.replayed(
            4,
            vec![(6, f(6)), (9, f(9)), (10, f(10)), (12, f(12))],
            false,
        );
        assert_eq!(texts(&replayed.frames), ["c6", "c9", "c10"]);
        assert_eq!(replayed.last_change, 12);
        assert!(!replayed.has_more);
        // The client holds everything now: a later sync from its cursor reads nothing.
        assert!(matches!(feed.plan_sync(12), ChangeSync::Current { .. }));
        assert!(matches!(
            feed.plan_sync(4),
            ChangeSync::Current {
                last_change: 12,
                ..
            }
        ));
        assert_eq!(
            feed.plan_sync(3),
            ChangeSync::Replay { after: 3 },
            "below what it was sent: replays again"
        );
    }

    #[test]
    fn a_long_replay_pages_from_the_cursor_it_answers() {
        let mut feed = ChangeFeed::new(100, 8);
        let page: Vec<(i64, ByteString)> = (1..=3).map(|c| (c, f(c))).collect();
        let first = feed.replayed(0, page, true);
        assert_eq!(first.last_change, 3);
        assert!(first.has_more);
        // Live changes wait while it pages: the client sees nothing above its cursor.
        assert!(feed.offer(101, f(101)).is_empty());
        assert_eq!(feed.hole(), None, "no hole fetch while paging");
        assert_eq!(feed.plan_sync(3), ChangeSync::Replay { after: 3 });
        let last = feed.replayed(3, vec![(50, f(50)), (101, f(101))], true);
        assert_eq!(
            texts(&last.frames),
            ["c50", "c101"],
            "101 after the replay, from its live copy"
        );
        assert!(!last.has_more, "the page went past the floor");
        assert_eq!(last.last_change, 101);
        assert_eq!(texts(&feed.offer(102, f(102))), ["c102"], "live again");
    }

    #[test]
    fn live_changes_beyond_what_a_paging_replay_may_park_are_caught_up_after() {
        let mut feed = ChangeFeed::new(10, 2);
        assert!(feed.replayed(0, vec![(1, f(1)), (2, f(2))], true).has_more);
        for change in 11..=14 {
            assert!(feed.offer(change, f(change)).is_empty());
        }
        let done = feed.replayed(2, vec![(5, f(5))], false);
        assert_eq!(texts(&done.frames), ["c5", "c11", "c12"]);
        assert!(feed.take_overflowed());
        assert!(!feed.take_overflowed());
        assert_eq!(feed.position(), 12, "13 and 14 come from storage");
    }

    #[test]
    fn an_empty_replay_answers_the_position() {
        let mut feed = ChangeFeed::new(7, 8);
        let replayed = feed.replayed(7, Vec::new(), false);
        assert_eq!(replayed.last_change, 7);
        assert!(replayed.frames.is_empty());
    }
}
