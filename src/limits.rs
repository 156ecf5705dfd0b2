//! Connection slots: a node admits at most `max` connections of a kind, and a slot is a
//! permit released on drop, so however a connection task ends (a panic included) its
//! slot is given back and the gauge in `/metrics` stays true.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crate::metrics::Metrics;

/// Which gauge of [`Metrics`] counts the slots.
pub(crate) type Gauge = fn(&Metrics) -> &AtomicU64;

/// One admitted connection, counted in its gauge until dropped.
pub(crate) struct ConnectionSlot {
    metrics: Arc<Metrics>,
    gauge: Gauge,
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot")
            .field("open", &(self.gauge)(&self.metrics))
            .finish()
    }
}

impl ConnectionSlot {
    /// Takes a slot unless `max` are taken already. Check and increment are one atomic
    /// step, so concurrent upgrades cannot overshoot the limit.
    pub(crate) fn try_acquire(metrics: &Arc<Metrics>, gauge: Gauge, max: u64) -> Option<Self> {
        gauge(metrics)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        Some(Self {
            metrics: metrics.clone(),
            gauge,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Ordering::AcqRel);
    }
}

/// The gauge of open WebSocket connections.
pub(crate) fn websockets(metrics: &Metrics) -> &AtomicU64 {
    &metrics.connections
}

/// The gauge of open Datastar SSE streams (counted apart, against the same maximum).
pub(crate) fn sse_streams(metrics: &Metrics) -> &AtomicU64 {
    &metrics.sse_streams
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(metrics: &Metrics) -> u64 {
        metrics.connections.load(Ordering::Acquire)
    }

    #[test]
    fn slots_stop_at_the_limit_and_come_back_on_drop() {
        let metrics = Arc::new(Metrics::default());
        let first = ConnectionSlot::try_acquire(&metrics, websockets, 2).unwrap();
        let _second = ConnectionSlot::try_acquire(&metrics, websockets, 2).unwrap();
        assert!(ConnectionSlot::try_acquire(&metrics, websockets, 2).is_none());
        assert_eq!(open(&metrics), 2);
        drop(first);
        assert!(ConnectionSlot::try_acquire(&metrics, websockets, 2).is_some());
    }

    #[test]
    fn a_panic_gives_the_slot_back() {
        let metrics = Arc::new(Metrics::default());
        let held = metrics.clone();
        let outcome = std::panic::catch_unwind(move || {
            let _slot = ConnectionSlot::try_acquire(&held, websockets, 1).unwrap();
            panic!("a bug in a connection task");
        });
        assert!(outcome.is_err());
        assert_eq!(open(&metrics), 0);
    }
}
