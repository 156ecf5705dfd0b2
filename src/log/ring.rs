//! The hot ring: the most recent events of this node, so that most resumes never touch
//! the database.

use std::{
    collections::VecDeque,
    sync::{Arc, RwLock},
};

use crate::event::Event;

/// A bounded, seq-contiguous window of recent logged events.
#[derive(Debug)]
pub(crate) struct Ring {
    events: RwLock<VecDeque<Arc<Event>>>,
    capacity: usize,
}

impl Ring {
    /// An empty ring holding at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            events: RwLock::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
        }
    }

    /// Appends the next event. A non-contiguous seq restarts the window, so the ring
    /// never claims to cover a range it has a hole in.
    pub(crate) fn push(&self, event: Arc<Event>) {
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        let contiguous = match (events.back().and_then(|e| e.seq), event.seq) {
            (Some(last), Some(seq)) => seq == last + 1,
            _ => true,
        };
        if !contiguous {
            events.clear();
        }
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Events with `after < seq <= upto`, or `None` if the ring does not hold all of
    /// them.
    pub(crate) fn range(&self, after: u64, upto: u64) -> Option<Vec<Arc<Event>>> {
        if after >= upto {
            return Some(Vec::new());
        }
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let first = events.front()?.seq?;
        let last = events.back()?.seq?;
        if first > after + 1 || last < upto {
            return None;
        }
        let start = usize::try_from(after + 1 - first).ok()?;
        let end = usize::try_from(upto + 1 - first).ok()?;
        Some(events.range(start..end).cloned().collect())
    }

    /// Drops everything (the log's epoch changed).
    pub(crate) fn clear(&self) {
        self.events
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Cursor, LogEntry};

    fn event(seq: u64) -> Arc<Event> {
        let cursor = Cursor {
            epoch: "e".into(),
            seq,
        };
        Event::logged(
            &cursor,
            LogEntry::broadcast("c", None, "x", serde_json::Value::Null),
        )
    }

    fn seqs(events: Option<Vec<Arc<Event>>>) -> Option<Vec<u64>> {
        events.map(|v| v.iter().filter_map(|e| e.seq).collect())
    }

    #[test]
    fn serves_only_ranges_it_fully_holds() {
        let ring = Ring::new(3);
        for seq in 1..=5 {
            ring.push(event(seq));
        }
        assert_eq!(seqs(ring.range(2, 5)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(ring.range(4, 5)), Some(vec![5]));
        assert_eq!(seqs(ring.range(5, 5)), Some(vec![]));
        assert_eq!(seqs(ring.range(1, 5)), None, "seq 2 was evicted");
        assert_eq!(seqs(ring.range(3, 6)), None, "seq 6 not yet seen");
        ring.push(event(9));
        assert_eq!(seqs(ring.range(8, 9)), Some(vec![9]));
        assert_eq!(seqs(ring.range(4, 9)), None, "a hole restarts the window");
    }
}
