//! The app's handlers for client events.

use std::time::Duration;

use serde::Deserialize;

/// The app's handlers for client events (`RealtimeBuilder::on_publish`,
/// `on_request`, `middleware`; see `docs/handlers.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlersConfig {
    /// How long one call (the middleware chain and the handler) may take; past it
    /// the client gets `error` `internal` and the call is dropped. At most 5 min.
    /// Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Handled frames of one connection that may wait behind the one running (calls
    /// of a connection run one at a time, in order); more are refused with
    /// `rate_limited`. 1 to 1024. Default: 16.
    pub max_pending: usize,
}

impl Default for HandlersConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_pending: 16,
        }
    }
}
