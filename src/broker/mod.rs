//! Brokers carry messages between nodes. They are doorbells, not the source of truth:
//! every broker is treated as at-most-once, and nodes fill gaps from the event log.
//!
//! The trait is deliberately narrow (`publish` + `subscribe` of opaque bytes) so that
//! Redis, NATS and Postgres LISTEN/NOTIFY backends add only transport; framing,
//! dedupe, gap filling and reconnect policy live once, outside the backends.

mod memory;
mod message;

use bytes::Bytes;
use futures::{future::BoxFuture, stream::BoxStream};

pub use memory::MemoryBroker;
pub use message::BrokerMessage;

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
}

/// Opens the broker named by `url`: `memory` (one process).
pub fn from_url(url: &str, capacity: usize) -> Result<std::sync::Arc<dyn Broker>, BrokerError> {
    match url {
        "memory" | "memory://" | "" => Ok(std::sync::Arc::new(MemoryBroker::new(capacity))),
        other => {
            let scheme = other.split(':').next().unwrap_or_default();
            Err(BrokerError(format!(
                "unsupported broker {scheme:?}: this build supports \"memory\""
            )))
        }
    }
}
