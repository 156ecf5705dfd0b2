//! The hot ring: the most recent events of this node, so that most resumes never touch
//! the database.

use std::{
    collections::VecDeque,
    sync::{Arc, RwLock},
};

use crate::event::Event;

/// Bytes counted per event besides its encoded body: the `Event` itself, its `Arc`
/// and the ring's slot.
const EVENT_OVERHEAD: usize = 256;

/// What one event costs the ring, approximately: its encoded body three times over
/// (the body, the parsed content it was encoded from, and the SSE bytes encoded on
/// first use), plus a fixed overhead. An estimate, but one that grows with the event,
/// which is what keeps a burst of large events from growing the node without bound.
fn weight(event: &Event) -> usize {
    event
        .body
        .len()
        .saturating_mul(3)
        .saturating_add(EVENT_OVERHEAD)
}

/// A bounded, seq-contiguous window of recent logged events, bounded both in events
/// and in (estimated) bytes.
#[derive(Debug)]
pub(crate) struct Ring {
    events: RwLock<Window>,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Window {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
}

impl Window {
    fn pop_front(&mut self) {
        if let Some(event) = self.events.pop_front() {
            self.bytes = self.bytes.saturating_sub(weight(&event));
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

impl Ring {
    /// An empty ring holding at most `capacity` events and `max_bytes` bytes.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            events: RwLock::new(Window {
                events: VecDeque::with_capacity(capacity.min(4096)),
                bytes: 0,
            }),
            capacity,
            max_bytes,
        }
    }

    /// The ring's estimated size in bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.events.read().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// Appends the next event. A non-contiguous seq restarts the window, so the ring
    /// never claims to cover a range it has a hole in.
    pub(crate) fn push(&self, event: Arc<Event>) {
        let mut window = self.events.write().unwrap_or_else(|e| e.into_inner());
        let contiguous = match (window.events.back().and_then(|e| e.seq), event.seq) {
            (Some(last), Some(seq)) => seq == last + 1,
            _ => true,
        };
        if !contiguous {
            window.clear();
        }
        let size = weight(&event);
        // Evict from the front until the new event fits both bounds. An event larger
        // than the whole byte budget empties the ring and is kept alone: the window
        // stays contiguous, and the next event evicts it.
        while !window.events.is_empty()
            && (window.events.len() >= self.capacity
                || window.bytes.saturating_add(size) > self.max_bytes)
        {
            window.pop_front();
        }
        window.bytes = window.bytes.saturating_add(size);
        window.events.push_back(event);
    }

    /// Events with `after < seq <= upto`, or `None` if the ring does not hold all of
    /// them.
    pub(crate) fn range(&self, after: u64, upto: u64) -> Option<Vec<Arc<Event>>> {
        if after >= upto {
            return Some(Vec::new());
        }
        let window = self.events.read().unwrap_or_else(|e| e.into_inner());
        let events = &window.events;
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
        sized_event(seq, 0)
    }

    /// An event whose data is a string of `len` bytes.
    fn sized_event(seq: u64, len: usize) -> Arc<Event> {
        let cursor = Cursor {
            epoch: "e".into(),
            seq,
        };
        let data = serde_json::Value::String("x".repeat(len));
        Event::logged(&cursor, LogEntry::broadcast("c", None, "x", data))
    }

    fn seqs(events: Option<Vec<Arc<Event>>>) -> Option<Vec<u64>> {
        events.map(|v| v.iter().filter_map(|e| e.seq).collect())
    }

    #[test]
    fn serves_only_ranges_it_fully_holds() {
        let ring = Ring::new(3, usize::MAX);
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

    #[test]
    fn large_events_are_bounded_in_bytes_not_only_in_count() {
        // Room for 10_000 events by count, but only about 1 MB: 60 KB events, as in
        // the incident that filled 458 MB, must not pile up.
        let ring = Ring::new(10_000, 1_000_000);
        for seq in 1..=3000 {
            ring.push(sized_event(seq, 60_000));
            assert!(
                ring.bytes() <= 1_000_000,
                "{} bytes at seq {seq}",
                ring.bytes()
            );
        }
        // The newest events are still there, contiguous, and older ones are gone.
        assert_eq!(seqs(ring.range(2998, 3000)), Some(vec![2999, 3000]));
        assert_eq!(seqs(ring.range(1000, 3000)), None);
        // One event larger than the whole budget is kept alone, then evicted.
        ring.push(sized_event(3001, 2_000_000));
        assert_eq!(seqs(ring.range(3000, 3001)), Some(vec![3001]));
        ring.push(event(3002));
        assert_eq!(seqs(ring.range(3001, 3002)), Some(vec![3002]));
        assert!(ring.bytes() < 1_000_000);
        ring.clear();
        assert_eq!(ring.bytes(), 0);
    }
}
