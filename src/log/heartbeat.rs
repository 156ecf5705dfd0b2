//! Every node publishes a heartbeat on the broker, so that every node (itself
//! included) can tell a quiet broker from a dead one: a subscription that hears not
//! even a heartbeat within `broker.silence_timeout` is replaced.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerMessage};

/// Characters of a node id: 64 random bits tell the nodes of a cluster apart, and a
/// short heartbeat fits any broker's message limit.
const NODE_ID_LEN: usize = 16;

/// A random id for this node, sent in its heartbeats.
pub(crate) fn node_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(NODE_ID_LEN);
    id
}

/// Publishes `node`'s heartbeat every `interval`, and at once whenever `now` is
/// notified (a new subscription wants to hear something), until `shutdown`.
pub(crate) async fn run(
    broker: Arc<dyn Broker>,
    node: String,
    interval: Duration,
    now: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let beat = BrokerMessage::Heartbeat { node }.encode();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            () = now.notified() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            sent = broker.publish(beat.clone()) => {
                // The broker link reports the outage; one line per beat would be noise.
                if let Err(error) = sent {
                    tracing::debug!(%error, "heartbeat not sent");
                }
            }
        }
    }
}
