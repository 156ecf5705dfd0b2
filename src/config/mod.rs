//! Typed configuration. Every field documents its default; `Config::validate` checks the
//! whole thing once, at startup, so nothing downstream re-checks it.
//!
//! The library never reads environment variables: the binary (`main.rs`) turns its
//! environment and TOML file into a `Config`.

use std::time::Duration;

use serde::Deserialize;

mod auth;
mod broker;
mod connection;
mod handlers;
mod log;
mod presence;
mod publish;
mod sse;
mod transport;
mod validate;

#[cfg(test)]
mod tests;

pub use auth::{AuthConfig, JwksConfig, JwtAlgorithm, JwtConfig};
pub use broker::BrokerConfig;
pub use connection::ConnectionConfig;
pub use handlers::HandlersConfig;
pub use log::LogConfig;
pub use presence::PresenceConfig;
pub use publish::PublishConfig;
pub use sse::SseConfig;
pub use transport::TransportConfig;
pub use validate::ConfigError;

/// All settings of a tidings node. Every field has a documented default; start from
/// [`Config::default`] and change what you need (the reference server also reads a
/// TOML file and `TIDINGS_*` variables into it, see `docs/configuration.md`).
///
/// ```
/// use std::time::Duration;
///
/// let mut config = tidings::Config::default();
/// config.jwt.secret = Some("a secret of at least thirty-two bytes".into());
/// config.connection.max_subscriptions = 50;
/// config.auth.refresh_notice = Duration::from_secs(60);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// JWT verification. Default: no key (only anonymous connections, if allowed).
    pub jwt: JwtConfig,
    /// Handshake and token lifetime settings.
    pub auth: AuthConfig,
    /// Exact browser origins allowed to open a WebSocket. Default: empty, meaning the
    /// server's own origins (`http://<bind address>`, `http://localhost:<port>`) when
    /// the local address is known, else the request's own `Host`.
    pub allowed_origins: Vec<String>,
    /// Per-connection limits and heartbeat.
    pub connection: ConnectionConfig,
    /// Event log, ring and resume.
    pub log: LogConfig,
    /// Broker health: heartbeats, silence, the fallback poll, reconnects.
    pub broker: BrokerConfig,
    /// Datastar SSE bridge.
    pub sse: SseConfig,
    /// Who is subscribed to which topic, across nodes.
    pub presence: PresenceConfig,
    /// Limits before a request becomes a WebSocket or SSE stream, applied by
    /// [`Realtime::serve`](crate::Realtime::serve): timeouts, sockets and connects
    /// per IP address.
    pub transport: TransportConfig,
    /// What clients may publish: payload size and a quota per user.
    pub publish: PublishConfig,
    /// The app's handlers for client events: how long a call may take, how many may
    /// wait per connection.
    pub handlers: HandlersConfig,
    /// How long graceful shutdown may take. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            jwt: JwtConfig::default(),
            auth: AuthConfig::default(),
            allowed_origins: Vec::new(),
            connection: ConnectionConfig::default(),
            log: LogConfig::default(),
            broker: BrokerConfig::default(),
            sse: SseConfig::default(),
            presence: PresenceConfig::default(),
            transport: TransportConfig::default(),
            publish: PublishConfig::default(),
            handlers: HandlersConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}
