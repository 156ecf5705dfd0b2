//! Brokers carry messages between nodes. They are doorbells, not the source of truth:
//! every broker is treated as at-most-once, and nodes fill gaps from the event log.
//!
//! The trait is deliberately narrow (`publish` + `subscribe` of opaque bytes) so that
//! Redis, NATS and Postgres LISTEN/NOTIFY backends add only transport; framing,
//! dedupe, gap filling and reconnect policy live once, outside the backends (in the
//! node's ingest, which resubscribes with backoff whenever a subscription ends).
//!
//! Each backend keeps messages within its size limit with `fit::fit_payload`: a logged
//! event too large for the backend is sent by reference, as a
//! [`BrokerMessage::Doorbell`].

pub(crate) mod fit;
pub(crate) mod health;
mod memory;
pub(crate) mod message;
#[cfg(feature = "nats")]
mod nats;
mod options;
#[cfg(feature = "postgres-notify")]
mod pg_payload;
#[cfg(feature = "postgres-notify")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod select;

use bytes::Bytes;
use futures::{future::BoxFuture, stream::BoxStream};

pub use health::{BrokerHealth, BrokerState};
pub use memory::{DEFAULT_MEMORY_BUFFER_BYTES, MemoryBroker};
pub(crate) use message::BrokerMessage;
#[cfg(feature = "nats")]
pub use nats::NatsBroker;
pub use options::BrokerOptions;
#[cfg(feature = "postgres-notify")]
pub use postgres::PostgresBroker;
#[cfg(feature = "redis")]
pub use redis::RedisBroker;
pub use select::{from_url, supported_schemes};

/// A broker failure; carries the backend's description.
#[derive(Debug, Clone, thiserror::Error)]
#[error("broker error: {0}")]
pub struct BrokerError(pub String);

/// Transport between the nodes sharing one event log.
pub trait Broker: Send + Sync + 'static {
    /// Sends `payload` to every node's subscription (this node's included).
    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// A stream of every payload published from now on. The stream may skip payloads
    /// (at-most-once); it ends when the broker connection is lost.
    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>>;

    /// What kind of broker this is, for the node's status and its startup checks:
    /// `memory`, `redis`, `nats` or `postgres` for this crate's backends, and
    /// [`CUSTOM_BROKER`] (the default) for any other. A node whose event log is on
    /// SQLite refuses `redis`, `nats` and `postgres`: SQLite is one node.
    fn kind(&self) -> &'static str {
        CUSTOM_BROKER
    }
}

/// The [`Broker::kind`] of a broker that does not say what it is.
pub const CUSTOM_BROKER: &str = "custom";
