//! Presence across nodes.

use std::time::Duration;

use serde::Deserialize;

/// Presence: who is subscribed to a topic (with `"presence": true`), across nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// A user's `leave` waits this long after their last connection to a topic went
    /// away, and a return within it (a page reload) sends neither `leave` nor `join`.
    /// Zero sends `leave` at once. Default: 3 s.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Every node publishes its full presence state this often, which repairs any
    /// change message the broker lost. Default: 2 s.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// A node not heard from for this long is presumed dead and its members are
    /// dropped (then `leave` follows after `grace`). Must exceed `sync_interval`.
    /// Default: 6 s.
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
    /// Users listed in one `presence` reply at most; beyond that the reply says
    /// `"truncated":true`. Default: 100.
    pub max_users_listed: usize,
    /// Largest presence broker message in bytes: a full state is split into parts of
    /// at most this size. Keep it under the smallest broker limit in use (Postgres
    /// NOTIFY: 8000 bytes). At least 1024. Default: 7000.
    pub max_message_bytes: usize,
    /// `join`/`leave` frames queued per connection before it is closed 4008.
    /// Default: 256.
    pub queue_capacity: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3),
            sync_interval: Duration::from_secs(2),
            node_ttl: Duration::from_secs(6),
            max_users_listed: 100,
            max_message_bytes: 7000,
            queue_capacity: 256,
        }
    }
}
