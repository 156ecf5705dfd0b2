//! The open-connection gauges of `/metrics`, counted by a guard: however a connection
//! task ends (a panic included) it stops being counted. The caps themselves are the
//! slots' (`slots.rs`); a gauge only reports.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crate::metrics::Metrics;

/// Which gauge of [`Metrics`] counts the connection.
pub(crate) type Gauge = fn(&Metrics) -> &AtomicU64;

/// One open connection, counted in its gauge until dropped.
pub(crate) struct Counted {
    metrics: Arc<Metrics>,
    gauge: Gauge,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("open", &(self.gauge)(&self.metrics))
            .finish()
    }
}

impl Counted {
    /// Counts one more open connection in `gauge` until the guard is dropped.
    pub(crate) fn new(metrics: &Arc<Metrics>, gauge: Gauge) -> Self {
        gauge(metrics).fetch_add(1, Ordering::AcqRel);
        Self {
            metrics: metrics.clone(),
            gauge,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Ordering::AcqRel);
    }
}

/// The gauge of open WebSocket connections.
pub(crate) fn websockets(metrics: &Metrics) -> &AtomicU64 {
    &metrics.connections
}

/// The gauge of open Datastar SSE streams.
pub(crate) fn sse_streams(metrics: &Metrics) -> &AtomicU64 {
    &metrics.sse_streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_stops_the_count() {
        let metrics = Arc::new(Metrics::default());
        let held = metrics.clone();
        let outcome = std::panic::catch_unwind(move || {
            let _open = Counted::new(&held, websockets);
            assert_eq!(held.connections.load(Ordering::Acquire), 1);
            panic!("a bug in a connection task");
        });
        assert!(outcome.is_err());
        assert_eq!(metrics.connections.load(Ordering::Acquire), 0);
    }
}
