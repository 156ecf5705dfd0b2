//! The in-process broker: a tokio broadcast channel. One process only.
//!
//! Bounded in messages (the channel's capacity) and in bytes: a message that would
//! take the unread bytes past the budget goes by reference (a doorbell, see `fit`),
//! so a burst of large events costs the nodes a read of the log, never memory.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use tokio::sync::broadcast;

use super::{Broker, BrokerError, fit::fit_payload_by};

/// The default byte budget of [`MemoryBroker::new`]: 16 MiB.
pub const DEFAULT_MEMORY_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// A message in the channel. Its bytes count against the budget until the channel
/// drops it, which tokio does once every subscriber has read it (or it is overwritten).
#[derive(Debug)]
struct Buffered {
    payload: Bytes,
    buffered: Arc<AtomicUsize>,
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.buffered
            .fetch_sub(self.payload.len(), Ordering::Relaxed);
    }
}

/// In-memory broker for single-node deployments and tests.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    sender: broadcast::Sender<Arc<Buffered>>,
    /// Bytes of the messages still in the channel.
    buffered: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl MemoryBroker {
    /// A broker buffering up to `capacity` messages per slow subscriber, and at most
    /// [`DEFAULT_MEMORY_BUFFER_BYTES`] of unread messages; beyond that a subscriber
    /// skips messages, like any other at-most-once broker.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            buffered: Arc::default(),
            max_bytes: DEFAULT_MEMORY_BUFFER_BYTES,
        }
    }

    /// This broker with a budget of `max_bytes` for messages not yet read by every
    /// subscriber. A logged event or batch that does not fit goes as a doorbell; any
    /// other message that does not fit is refused with an error.
    pub fn with_buffer_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes of the messages not yet read by every subscriber.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}

impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        let room = self.max_bytes.saturating_sub(self.buffered_bytes());
        let result = fit_payload_by(payload, |candidate| candidate.len() <= room).map(|payload| {
            // Counted before the send, so a concurrent publish sees it; a send
            // without subscribers drops the message at once and uncounts it.
            self.buffered.fetch_add(payload.len(), Ordering::Relaxed);
            let message = Arc::new(Buffered {
                payload,
                buffered: self.buffered.clone(),
            });
            // No subscriber is not an error: nobody is listening yet.
            let _ = self.sender.send(message);
        });
        futures::future::ready(result).boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        let receiver = self.sender.subscribe();
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(message) => return Some((message.payload.clone(), receiver)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{broker::BrokerMessage, event::LogEntry};

    fn logged(seq: u64, len: usize) -> Bytes {
        let data = serde_json::Value::String("x".repeat(len));
        BrokerMessage::Logged {
            epoch: "e".into(),
            seq,
            event: LogEntry::broadcast("c", None, "x", data),
        }
        .encode()
    }

    #[tokio::test]
    async fn unread_bytes_stay_within_the_budget_and_large_events_go_by_reference() {
        let broker = MemoryBroker::new(1024).with_buffer_bytes(100_000);
        let mut stream = broker.subscribe().await.unwrap();
        // Nobody reads: the first event fits, the next ones would not and become
        // doorbells, so the buffer stays within its budget.
        for seq in 1..=10 {
            broker.publish(logged(seq, 60_000)).await.unwrap();
            assert!(
                broker.buffered_bytes() <= 100_000,
                "{}",
                broker.buffered_bytes()
            );
        }
        let first = BrokerMessage::decode(&stream.next().await.unwrap()).unwrap();
        assert!(
            matches!(first, BrokerMessage::Logged { seq: 1, .. }),
            "{first:?}"
        );
        for seq in 2..=10 {
            let message = BrokerMessage::decode(&stream.next().await.unwrap()).unwrap();
            assert!(
                matches!(message, BrokerMessage::Doorbell { seq: s, .. } if s == seq),
                "{message:?}"
            );
        }
        // Everything read: nothing is counted any more.
        assert_eq!(broker.buffered_bytes(), 0);
        // A direct message that cannot fit is refused, not dropped silently.
        let tiny = MemoryBroker::new(4).with_buffer_bytes(10);
        assert!(tiny.publish(Bytes::from(vec![b'x'; 100])).await.is_err());
    }
}
