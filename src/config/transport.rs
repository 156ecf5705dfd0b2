//! Limits before a request becomes a WebSocket or SSE stream.

use std::time::Duration;

use serde::Deserialize;

/// Limits applied by [`Realtime::serve`](crate::Realtime::serve) to every socket
/// before its request becomes a WebSocket or SSE stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// A request's headers must arrive within this, counted from when the server
    /// starts waiting for them (a new socket, or an idle keep-alive one); else the
    /// socket is closed. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A socket that is not a WebSocket or SSE stream and moves no byte either way
    /// for this long is closed (a stalled request body, a stalled reader). Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger is answered
    /// 431. Default: 16384.
    pub max_header_bytes: usize,
    /// Open sockets per client IP address; more are answered 429 with `Retry-After`
    /// and closed. Default: 16384 (a node's connections plus room for plain requests,
    /// all through one reverse proxy); lower it when clients connect directly.
    pub max_sockets_per_ip: usize,
    /// New sockets per second per client IP address (bursts of twice that); more are
    /// answered 429 with `Retry-After` and closed. Default: 5000 (a proxy reconnecting
    /// a node's clients after a restart); lower it when clients connect directly.
    pub connects_per_second_per_ip: u32,
    /// Keys (IP addresses, users) a rate limiter remembers before it prunes the ones
    /// whose budget is full again without waiting for `prune_interval`. Default: 100000.
    pub max_tracked_keys: usize,
    /// How often the rate limiters forget keys whose budget is full again. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_sockets_per_ip: 16_384,
            connects_per_second_per_ip: 5_000,
            max_tracked_keys: 100_000,
            prune_interval: Duration::from_secs(30),
        }
    }
}
