//! The Datastar SSE bridge.

use std::time::Duration;

use serde::Deserialize;

/// Datastar SSE bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// Keep-alive comment interval (at most 15 s by the protocol). Default: 15 s.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Cookie holding the JWT for SSE requests, when set. Default: none.
    pub cookie_name: Option<String>,
    /// Events queued per stream before it is ended (the client resumes). Default: 1024.
    pub queue_capacity: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            cookie_name: None,
            queue_capacity: 1024,
        }
    }
}
