//! How writers tell the relay about their commits: a wake-up, and on SQLite the
//! committed events themselves, so the relay need not read back what was just written.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::event::LogEntry;

/// The default bound on events handed off and not yet taken: `log.relay_batch`'s
/// default, what one relay read holds at most.
const DEFAULT_HANDOFF_CAPACITY: usize = 500;

/// Wakes the relay after a commit that wrote outbox rows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RelaySignal(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    notify: Notify,
    handed: Mutex<HandedOff>,
    /// At most this many events wait in `handed`, as many as one relay read returns
    /// (`log.relay_batch`): past it the relay reads them from the log as before.
    capacity: usize,
}

/// Committed SQLite events with their seqs, handed to the relay in whatever order
/// their writers got there.
#[derive(Debug, Default)]
pub(crate) struct HandedOff {
    events: Vec<(u64, LogEntry)>,
    /// More were handed off than `capacity`: some were dropped, so the relay must read.
    overflowed: bool,
}

impl Default for RelaySignal {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_HANDOFF_CAPACITY)
    }
}

impl RelaySignal {
    /// A signal that holds at most `capacity` handed-off events.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Arc::new(Shared {
            notify: Notify::new(),
            handed: Mutex::new(HandedOff::default()),
            capacity,
        }))
    }

    /// Tells the relay that new rows may be waiting.
    pub fn wake(&self) {
        self.0.notify.notify_one();
    }

    /// Waits for the next wake-up (or returns at once if one is pending).
    pub async fn woken(&self) {
        self.0.notify.notified().await;
    }

    /// Gives the relay events that a committed SQLite transaction numbered, then wakes
    /// it. Only for events whose transaction has committed: the relay publishes them
    /// as they are.
    pub(crate) fn hand_off(&self, events: Vec<(u64, LogEntry)>) {
        let mut handed = self.0.handed.lock().unwrap_or_else(|e| e.into_inner());
        if handed.overflowed || handed.events.len() + events.len() > self.0.capacity {
            handed.events.clear();
            handed.overflowed = true;
        } else {
            handed.events.extend(events);
        }
        drop(handed);
        self.wake();
    }

    /// Wakes the relay to read the log: a SQLite writer committed events it could
    /// not hand off (more than [`RelaySignal::capacity`] in one transaction).
    pub(crate) fn read_the_log(&self) {
        let mut handed = self.0.handed.lock().unwrap_or_else(|e| e.into_inner());
        handed.events.clear();
        handed.overflowed = true;
        drop(handed);
        self.wake();
    }

    /// The most events that may wait to be taken. A transaction that writes more
    /// keeps none of them and calls [`RelaySignal::read_the_log`] instead.
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Everything handed off since the last call.
    pub(crate) fn take_handed(&self) -> HandedOff {
        std::mem::take(&mut *self.0.handed.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl HandedOff {
    /// The events right after `published`, in seq order, if they are all there: every
    /// seq from `published + 1` to the largest handed off. `None` when one is missing
    /// (a row the app's own SQL or a capture trigger wrote, or a writer that has not
    /// got here yet) or some were dropped: then only the log knows them all.
    pub(crate) fn run_after(self, published: u64) -> Option<Vec<(u64, LogEntry)>> {
        if self.overflowed {
            return None;
        }
        let mut events = self.events;
        events.retain(|(seq, _)| *seq > published);
        events.sort_unstable_by_key(|(seq, _)| *seq);
        let contiguous = events
            .iter()
            .zip(published + 1..)
            .all(|((seq, _), expected)| *seq == expected);
        contiguous.then_some(events)
    }
}

#[cfg(test)]
mod tests {
    use super::RelaySignal;
    use crate::event::LogEntry;

    fn event(seq: u64) -> (u64, LogEntry) {
        let entry = LogEntry::broadcast("todos", None, "ping", serde_json::json!({}));
        (seq, entry)
    }

    fn seqs(run: Option<Vec<(u64, LogEntry)>>) -> Option<Vec<u64>> {
        run.map(|events| events.into_iter().map(|(seq, _)| seq).collect())
    }

    #[test]
    fn a_run_in_any_order_comes_back_sorted() {
        let signal = RelaySignal::with_capacity(10);
        signal.hand_off(vec![event(7)]);
        signal.hand_off(vec![event(5), event(6)]);
        assert_eq!(seqs(signal.take_handed().run_after(4)), Some(vec![5, 6, 7]));
        assert_eq!(seqs(signal.take_handed().run_after(7)), Some(vec![]));
    }

    #[test]
    fn published_events_are_dropped_and_a_gap_means_read_the_log() {
        let signal = RelaySignal::with_capacity(10);
        signal.hand_off(vec![event(3), event(4), event(5)]);
        assert_eq!(seqs(signal.take_handed().run_after(3)), Some(vec![4, 5]));
        signal.hand_off(vec![event(7)]);
        assert_eq!(
            seqs(signal.take_handed().run_after(5)),
            None,
            "6 is missing"
        );
    }

    #[test]
    fn a_writer_that_could_not_hand_off_makes_the_relay_read() {
        let signal = RelaySignal::with_capacity(10);
        signal.hand_off(vec![event(1)]);
        signal.read_the_log();
        assert_eq!(seqs(signal.take_handed().run_after(0)), None);
        assert_eq!(seqs(signal.take_handed().run_after(0)), Some(vec![]));
    }

    #[test]
    fn past_its_capacity_it_drops_them_all_and_says_so() {
        let signal = RelaySignal::with_capacity(2);
        signal.hand_off(vec![event(1), event(2)]);
        signal.hand_off(vec![event(3)]);
        signal.hand_off(vec![event(4)]);
        assert_eq!(seqs(signal.take_handed().run_after(0)), None);
        signal.hand_off(vec![event(5)]);
        assert_eq!(seqs(signal.take_handed().run_after(4)), Some(vec![5]));
    }
}
