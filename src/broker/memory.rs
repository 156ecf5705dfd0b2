//! The in-process broker: a tokio broadcast channel. One process only.

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use tokio::sync::broadcast;

use super::{Broker, BrokerError};

/// In-memory broker for single-node deployments and tests.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    sender: broadcast::Sender<Bytes>,
}

impl MemoryBroker {
    /// A broker buffering up to `capacity` messages per slow subscriber; beyond that a
    /// subscriber skips messages, like any other at-most-once broker.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(payload);
        futures::future::ready(Ok(())).boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        let receiver = self.sender.subscribe();
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(payload) => return Some((payload, receiver)),
                    // Skipped messages are recovered from the log by the ingest.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed();
        futures::future::ready(Ok(stream)).boxed()
    }
}
