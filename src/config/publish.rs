//! What clients may publish.

use std::time::Duration;

use serde::Deserialize;

/// What clients may publish over the WebSocket (`publish` frames).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Largest `data` of one `publish`, as compact JSON; larger is refused with
    /// `limit_exceeded`. Default: 16384.
    pub max_payload_bytes: usize,
    /// Events one user may publish per `window`, across the user's connections on
    /// this node (anonymous publishers share one quota); more are refused with
    /// `rate_limited`. Default: 600.
    pub events_per_window: u32,
    /// Bytes of `data` one user may publish per `window`. Default: 4 MiB.
    pub bytes_per_window: u64,
    /// The quota's window; the quota refills evenly over it. Default: 60 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 16 * 1024,
            events_per_window: 600,
            bytes_per_window: 4 * 1024 * 1024,
            window: Duration::from_secs(60),
        }
    }
}
