//! Limits of one client connection: frames, subscriptions, queues, heartbeat.

use std::time::Duration;

use serde::Deserialize;

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Largest accepted client frame in bytes; larger closes 1009. Default: 65536.
    pub max_message_size: usize,
    /// Outbound frames queued per connection before it is closed 4008. Default: 1024.
    pub send_queue_capacity: usize,
    /// Outbound bytes queued per WebSocket connection (events not yet taken by its
    /// socket) before it is closed 4008. Default: 1 MiB.
    pub send_queue_bytes: usize,
    /// Subscriptions per connection. Default: 100.
    pub max_subscriptions: usize,
    /// Server ping interval. Default: 25 s.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A peer that has not answered a ping (or sent anything) within this is closed.
    /// Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Client frames per second allowed per connection (burst = 2x). Default: 100.
    pub messages_per_second: u32,
    /// Bad frames (malformed, refused, binary) tolerated before closing 4400.
    /// Default: 100.
    pub misuse_limit: u32,
    /// Frames refused for exceeding `messages_per_second` tolerated before closing
    /// 4029 ("back off"): a burst costs a few refusals, sustained flooding a close.
    /// Default: 100.
    pub rate_limit_tolerance: u32,
    /// How long one write to a client may wait for its socket (a WebSocket frame or
    /// batch, an SSE chunk). A client that stops reading is closed after it: 4008 on
    /// WebSocket, the end of the stream on SSE. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Connections older than this are asked to reconnect with close 1012 (clients
    /// resume without a gap), which spreads load after a deploy and bounds how long a
    /// connection lives on old state. Each connection's age is shortened by up to 10%
    /// at random so they do not all leave at once. Default: none (no limit).
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// Open WebSocket connections per node; more are closed 4029 right after the
    /// upgrade (the protocol's answer). Datastar SSE streams count separately against
    /// the same number (HTTP 429). A semaphore permit held by each connection, so it
    /// is never exceeded. Default: 10000.
    pub max_connections: usize,
    /// Open WebSocket connections and SSE streams (together) per user (`sub`); more
    /// are refused with HTTP 429 when the user is known before the upgrade (bearer
    /// header, SSE), else closed 4029 at the `auth` frame. Default: 10000, the node's
    /// capacity (see `docs/security.md`, "Defaults sized for a proxy"); lower it when
    /// users should not hold many tabs or devices at once.
    pub max_connections_per_user: usize,
    /// Open WebSocket connections and SSE streams (together) per client IP address;
    /// more are refused with HTTP 429. Needs the peer address, which
    /// [`Realtime::serve`](crate::Realtime::serve) provides. Default: 10000, so one
    /// reverse proxy (one address for every client) can fill the node; lower it when
    /// clients connect directly.
    pub max_connections_per_ip: usize,
    /// WebSocket read buffer in bytes: allocated for every connection for its whole
    /// life, and what one read takes at most. Client frames are small (an `auth` with
    /// its token, a `subscribe`), so 1 KiB holds them; a larger frame grows the buffer
    /// for as long as it takes to read it. Default: 1024.
    pub read_buffer_size: usize,
    /// WebSocket write buffer in bytes. Default: 4096.
    pub write_buffer_size: usize,
    /// Glob subscriptions (a `*`, `?`, `[...]` or `{...}` on either side of the
    /// pattern, other than a lone `*`) per connection or SSE stream; more are refused
    /// with `limit_exceeded`. Globs cost every event a match, exact patterns do not.
    /// Default: 20.
    pub max_glob_subscriptions: usize,
    /// Glob subscriptions of one user across all their connections and streams on
    /// this node (anonymous connections count per connection only). Default: 100.
    pub max_glob_subscriptions_per_user: usize,
    /// Distinct glob patterns on this node: the node's matching budget. Identical
    /// patterns share one compiled matcher and count once; a new distinct glob past
    /// this is refused (`limit_exceeded`) rather than slowing every event's fan-out.
    /// Default: 1000.
    pub max_globs_per_node: usize,
    /// Wildcards (`*`, `?`, `[`, `{`, `,`) one glob pattern may hold, both sides
    /// together; more is refused with `invalid_pattern`. Default: 10.
    pub max_glob_wildcards: usize,
    /// Longest glob pattern in characters (exact patterns keep the protocol's 256);
    /// longer is refused with `invalid_pattern`. Default: 128.
    pub max_glob_length: usize,
    /// Conditions (fields) one subscription filter may hold; more is refused with
    /// `bad_request`. Default: 16.
    pub max_filter_conditions: usize,
    /// Values one `in` list of a filter may hold. Default: 100.
    pub max_filter_values: usize,
    /// Bytes of JSON one subscription filter may take (it is kept for the
    /// subscription's life). Default: 4096.
    pub max_filter_bytes: usize,
}

impl ConnectionConfig {
    /// The limits a subscription filter is checked against.
    pub fn filter_limits(&self) -> crate::filter::FilterLimits {
        crate::filter::FilterLimits {
            max_conditions: self.max_filter_conditions,
            max_values: self.max_filter_values,
            max_bytes: self.max_filter_bytes,
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            send_queue_capacity: 1024,
            send_queue_bytes: 1024 * 1024,
            max_subscriptions: 100,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(10),
            messages_per_second: 100,
            misuse_limit: 100,
            rate_limit_tolerance: 100,
            write_timeout: Duration::from_secs(10),
            max_connection_age: None,
            max_connections: 10_000,
            max_connections_per_user: 10_000,
            max_connections_per_ip: 10_000,
            read_buffer_size: 1024,
            write_buffer_size: 4096,
            max_glob_subscriptions: 20,
            max_glob_subscriptions_per_user: 100,
            max_globs_per_node: 1000,
            max_glob_wildcards: 10,
            max_glob_length: 128,
            max_filter_conditions: 16,
            max_filter_values: 100,
            max_filter_bytes: 4096,
        }
    }
}
