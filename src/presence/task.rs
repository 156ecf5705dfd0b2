//! The sync task, one per node: publishes this node's changes as they happen and its
//! full state every `presence.sync_interval`, drops silent nodes and sends the leaves
//! whose grace ended, each at its deadline. On shutdown it says goodbye, so the other
//! nodes drop this node's members without waiting for `presence.node_ttl`.

use std::{future::pending, sync::Arc};

use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::PresenceNode;
use crate::broker::{Broker, BrokerMessage};

/// Runs until `shutdown`.
pub(crate) async fn run(
    node: Arc<PresenceNode>,
    broker: Arc<dyn Broker>,
    shutdown: CancellationToken,
) {
    let period = node.config().sync_interval;
    let mut sync = interval(period);
    sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut deadline = node.next_deadline();
    let mut publishing = Publishing::default();
    loop {
        let due = async move {
            match deadline {
                Some(at) => sleep_until(at).await,
                None => pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = sync.tick() => {
                // The first tick is immediate: a starting node announces itself.
                publishing.send(&*broker, node.take_sync(), &node).await;
            }
            () = node.changed() => {
                publishing.send(&*broker, node.take_changes(), &node).await;
                deadline = node.next_deadline();
            }
            () = due => deadline = node.tick(Instant::now()),
        }
    }
    publishing.send(&*broker, vec![node.goodbye()], &node).await;
}

/// Publishing, and whether it works: a failure is logged as a warning once, when
/// publishing starts failing (a broker that is down would otherwise log one every
/// sync interval), and the recovery once.
#[derive(Debug, Default)]
struct Publishing {
    failing: bool,
}

impl Publishing {
    /// Publishes `messages` in order, each within one sync interval: a stalled broker
    /// delays presence, never the task's other duties for long. A message that fails
    /// is dropped; the next full state repairs what it carried.
    async fn send(
        &mut self,
        broker: &dyn Broker,
        messages: Vec<BrokerMessage>,
        node: &PresenceNode,
    ) {
        let bound = node.config().sync_interval;
        for message in messages {
            let error = match timeout(bound, broker.publish(message.encode())).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {bound:?}")),
            };
            match (error, self.failing) {
                (Some(error), false) => {
                    tracing::warn!(%error, "presence: publishing failed; other nodes may show stale members");
                    self.failing = true;
                }
                (Some(error), true) => tracing::debug!(%error, "presence: publishing still fails"),
                (None, true) => {
                    tracing::info!("presence: publishing works again");
                    self.failing = false;
                }
                (None, false) => {}
            }
        }
    }
}
