//! How a node watches its broker.

use std::time::Duration;

use serde::Deserialize;

/// How a node watches its broker. A broker only rings doorbells: while it is down or
/// silent the node polls the log faster, so a broker failure costs latency, never
/// events.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// How often every node publishes a heartbeat on the broker. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A subscription that receives nothing for this long, not even the node's own
    /// heartbeat, counts as silent and is replaced. Must exceed
    /// `heartbeat_interval`. Default: 3 s.
    #[serde(with = "humantime_serde")]
    pub silence_timeout: Duration,
    /// How often the node polls the log while the broker is down or silent (instead
    /// of `log.poll_interval`). Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub fallback_poll_interval: Duration,
    /// The first wait before subscribing again after a loss; each failed attempt
    /// doubles it. Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff: Duration,
    /// The longest wait between two attempts to subscribe. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    /// Prefix of the broker's channel (Redis), subject (NATS) or NOTIFY channel
    /// (Postgres), which is `<prefix>.events`: give each app sharing one broker its
    /// own. ASCII letters, digits, `-`, `_` and single inner dots. The library does
    /// not open brokers itself: pass it to
    /// [`BrokerOptions::with_channel_prefix`](crate::broker::BrokerOptions::with_channel_prefix)
    /// (the reference server does). Default: `tidings`.
    pub channel_prefix: String,
    /// The in-memory broker's budget for messages not yet read by every node's
    /// ingest; a logged event that does not fit goes by reference (the nodes read it
    /// from the log). Applies to the default broker of
    /// [`RealtimeBuilder::build`](crate::RealtimeBuilder::build); pass it to
    /// [`BrokerOptions::with_memory_buffer_bytes`](crate::broker::BrokerOptions::with_memory_buffer_bytes)
    /// otherwise (the reference server does). Default: 16 MiB.
    pub memory_buffer_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(3),
            fallback_poll_interval: Duration::from_millis(100),
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            channel_prefix: "tidings".to_owned(),
            memory_buffer_bytes: crate::broker::DEFAULT_MEMORY_BUFFER_BYTES,
        }
    }
}
