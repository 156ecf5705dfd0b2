//! Settings shared by every broker backend.

use std::time::Duration;

use super::BrokerError;

/// How a broker connects and which channel it uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// Prefix of the channel (Redis), subject (NATS) or NOTIFY channel (Postgres):
    /// the broker uses `<prefix>.events`. Give each app sharing one Redis, NATS or
    /// database its own prefix. Default `tidings`.
    pub channel_prefix: String,
    /// Messages the in-memory broker buffers per slow subscriber. Default 1024.
    pub memory_capacity: usize,
    /// Bytes the in-memory broker buffers for slow subscribers at most; larger logged
    /// events go by reference. Default 16 MiB.
    pub memory_buffer_bytes: usize,
    /// Bound on establishing a connection (a subscription, or the first publish).
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Bound on one publish, so a stalled broker never stalls the relay for long:
    /// a doorbell that is not sent in time is dropped (nodes poll the log).
    /// Default 2 s.
    pub publish_timeout: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            channel_prefix: "tidings".to_owned(),
            memory_capacity: 1024,
            memory_buffer_bytes: super::DEFAULT_MEMORY_BUFFER_BYTES,
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(2),
        }
    }
}

impl BrokerOptions {
    /// These options with `prefix` as the channel prefix.
    pub fn with_channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// These options with `capacity` for the in-memory broker.
    pub fn with_memory_capacity(mut self, capacity: usize) -> Self {
        self.memory_capacity = capacity;
        self
    }

    /// These options with a byte budget of `bytes` for the in-memory broker.
    pub fn with_memory_buffer_bytes(mut self, bytes: usize) -> Self {
        self.memory_buffer_bytes = bytes;
        self
    }

    /// The channel every node publishes to and subscribes to: `<prefix>.events`.
    ///
    /// The prefix must be non-empty and made of ASCII letters, digits, `-`, `_` and
    /// inner single `.`s, which every backend accepts as a literal name (no NATS wildcards, no
    /// whitespace, no quoting surprises in a Postgres identifier).
    pub fn channel(&self) -> Result<String, BrokerError> {
        let prefix = &self.channel_prefix;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        // NATS subjects are dot-separated tokens, none of them empty.
        let tokens_ok = prefix.split('.').all(|token| !token.is_empty());
        if !tokens_ok || !prefix.chars().all(allowed) {
            return Err(BrokerError(format!(
                "invalid broker channel prefix {prefix:?}: use ASCII letters, digits, '-', '_' \
                 and single inner dots"
            )));
        }
        Ok(format!("{prefix}.events"))
    }
}
