//! Counters and gauges, rendered in the Prometheus text format for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Process-wide counters of one `Realtime`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Open SSE streams.
    pub sse_streams: AtomicU64,
    /// Live subscriptions (WebSocket and SSE).
    pub subscriptions: AtomicU64,
    /// Events sequenced by this node's relay.
    pub events_published: AtomicU64,
    /// Of those, the events the relay read back from the log: on Postgres every one;
    /// on SQLite only those its writer did not hand to it (rows written by the app's
    /// own SQL or capture triggers, or read while a writer was on its way).
    pub events_read_back: AtomicU64,
    /// Postgres: of those, the events the relay numbered with a flush to disk of its
    /// own: they had not settled within `log.relay_settle` (a transaction that began
    /// before theirs was still running), or the node was stopping.
    pub events_numbered_unsettled: AtomicU64,
    /// Event frames handed to connections (one per event per connection).
    pub events_delivered: AtomicU64,
    /// Connections closed because their send queue overflowed.
    pub queue_overflows: AtomicU64,
    /// WebSocket connections closed because a write waited past
    /// `connection.write_timeout` (the client stopped reading).
    pub write_timeouts: AtomicU64,
    /// WebSocket connections closed for breaking RFC 6455 (1002, 1007, 1009).
    pub protocol_errors: AtomicU64,
    /// Resumes served (`recovered:true`).
    pub resumes_recovered: AtomicU64,
    /// Resumes refused (`recovered:false`).
    pub resumes_failed: AtomicU64,
    /// Gaps filled from the log because a doorbell was lost.
    pub gaps_filled: AtomicU64,
    /// 1 while messages arrive from the broker (heartbeats included), 0 while it is
    /// down or silent and the node serves from the log alone.
    pub broker_up: AtomicU64,
    /// Broker subscriptions made again after the first (after a loss or a silence).
    pub broker_reconnects: AtomicU64,
    /// Events delivered because the node found them in the log (a poll or a gap fill)
    /// rather than because their doorbell rang.
    pub events_recovered_by_poll: AtomicU64,
    /// Sockets answered 429 and closed by `Realtime::serve` before any request was
    /// read (sockets or connects per address).
    pub sockets_refused: AtomicU64,
    /// WebSocket connections and SSE streams refused by a connection cap (node, user,
    /// address).
    pub connections_refused: AtomicU64,
    /// Distinct glob patterns indexed on this node (the matching budget in use).
    pub glob_patterns: AtomicU64,
    /// Glob subscriptions refused by a glob limit (per connection, user or node).
    pub glob_refusals: AtomicU64,
    /// Resumes refused by the per-user resume rate limit.
    pub resumes_rate_limited: AtomicU64,
    /// Handler calls for client events that timed out (`handlers.timeout`) or
    /// panicked, each answered `internal`.
    pub handler_failures: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Subtracts one from a gauge.
    pub fn dec(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: &[(&str, &str, &str, &AtomicU64)] = &[
            (
                "tidings_sockets_refused_total",
                "counter",
                "Sockets refused before any request (per-address limits).",
                &self.sockets_refused,
            ),
            (
                "tidings_connections_refused_total",
                "counter",
                "WebSocket connections and SSE streams refused by a connection cap.",
                &self.connections_refused,
            ),
            (
                "tidings_connections",
                "gauge",
                "Open WebSocket connections.",
                &self.connections,
            ),
            (
                "tidings_sse_streams",
                "gauge",
                "Open SSE streams.",
                &self.sse_streams,
            ),
            (
                "tidings_subscriptions",
                "gauge",
                "Live subscriptions.",
                &self.subscriptions,
            ),
            (
                "tidings_events_published_total",
                "counter",
                "Events sequenced by this node.",
                &self.events_published,
            ),
            (
                "tidings_events_read_back_total",
                "counter",
                "Events the relay read back from the log instead of taking them from their writer.",
                &self.events_read_back,
            ),
            (
                "tidings_events_numbered_unsettled_total",
                "counter",
                "Events the relay numbered with a flush of its own: not settled within log.relay_settle, or at shutdown.",
                &self.events_numbered_unsettled,
            ),
            (
                "tidings_events_delivered_total",
                "counter",
                "Event frames handed to connections.",
                &self.events_delivered,
            ),
            (
                "tidings_queue_overflows_total",
                "counter",
                "Connections closed as slow consumers.",
                &self.queue_overflows,
            ),
            (
                "tidings_write_timeouts_total",
                "counter",
                "WebSocket connections closed because a write waited past the write timeout.",
                &self.write_timeouts,
            ),
            (
                "tidings_protocol_errors_total",
                "counter",
                "WebSocket connections closed for a WebSocket protocol violation (1002, 1007, 1009).",
                &self.protocol_errors,
            ),
            (
                "tidings_resumes_recovered_total",
                "counter",
                "Resumes served from the log.",
                &self.resumes_recovered,
            ),
            (
                "tidings_resumes_failed_total",
                "counter",
                "Resumes answered recovered:false.",
                &self.resumes_failed,
            ),
            (
                "tidings_gaps_filled_total",
                "counter",
                "Lost doorbells recovered from the log.",
                &self.gaps_filled,
            ),
            (
                "tidings_broker_up",
                "gauge",
                "1 while the broker delivers messages, 0 while it is down or silent.",
                &self.broker_up,
            ),
            (
                "tidings_broker_reconnects_total",
                "counter",
                "Broker subscriptions made again after a loss or a silence.",
                &self.broker_reconnects,
            ),
            (
                "tidings_events_recovered_by_poll_total",
                "counter",
                "Events delivered from a log poll or gap fill rather than a doorbell.",
                &self.events_recovered_by_poll,
            ),
            (
                "tidings_glob_patterns",
                "gauge",
                "Distinct glob patterns indexed (the matching budget in use).",
                &self.glob_patterns,
            ),
            (
                "tidings_glob_refusals_total",
                "counter",
                "Glob subscriptions refused by a glob limit.",
                &self.glob_refusals,
            ),
            (
                "tidings_resumes_rate_limited_total",
                "counter",
                "Resumes refused by the per-user resume rate limit.",
                &self.resumes_rate_limited,
            ),
            (
                "tidings_handler_failures_total",
                "counter",
                "Handler calls for client events that timed out or panicked.",
                &self.handler_failures,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Relaxed)
            ));
        }
        out
    }
}
