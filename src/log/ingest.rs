//! The node's ingest: takes sequenced events from the broker, drops duplicates, fills
//! gaps from the log, appends to the ring and hands each event to the hub, strictly in
//! seq order. One task per node, so ordering needs no further locking.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{Broker, BrokerMessage},
    event::{Cursor, Event, LogEntry},
    hub::Hub,
    log::{Log, reader},
    metrics::Metrics,
    presence::PresenceNode,
};

/// Rows read per gap-filling query.
const FILL_PAGE: u32 = 1000;

/// Moves events from the broker (and the log, for gaps) to the hub.
pub(crate) struct Ingest {
    log: Arc<Log>,
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    presence: Option<Arc<PresenceNode>>,
}

impl Ingest {
    /// An ingest feeding `hub`.
    pub(crate) fn new(
        log: Arc<Log>,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            log,
            hub,
            broker,
            metrics,
            presence: None,
        }
    }

    /// Hands the presence messages heard on the broker to `presence`.
    pub(crate) fn with_presence(mut self, presence: Arc<PresenceNode>) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Subscribes to the broker. Done before the relay starts, so no doorbell rung
    /// after startup is missed; anything missed anyway is found by the poll.
    pub(crate) async fn subscribe(
        &self,
    ) -> Result<futures::stream::BoxStream<'static, bytes::Bytes>, crate::broker::BrokerError> {
        self.broker.subscribe().await
    }

    /// Runs until `shutdown`.
    pub(crate) async fn run(
        self,
        mut stream: futures::stream::BoxStream<'static, bytes::Bytes>,
        shutdown: CancellationToken,
    ) {
        let mut poll = tokio::time::interval(self.log.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = stream.next() => match message {
                    Some(bytes) => {
                        backoff = Duration::from_millis(100);
                        self.handle(&bytes).await;
                    }
                    None => {
                        tracing::warn!("broker subscription ended; resubscribing");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        match self.broker.subscribe().await {
                            Ok(s) => stream = s,
                            Err(e) => tracing::warn!(error = %e, "broker resubscribe failed"),
                        }
                        // Whatever was published meanwhile is in the log.
                        self.catch_up().await;
                    }
                },
                _ = poll.tick() => self.catch_up().await,
            }
        }
    }

    async fn handle(&self, bytes: &[u8]) {
        match BrokerMessage::decode(bytes) {
            Some(BrokerMessage::Logged { epoch, seq, event }) => {
                if *epoch != *self.log.epoch() {
                    self.epoch_changed().await;
                    return;
                }
                let position = self.hub.position();
                if seq <= position {
                    return; // already delivered (duplicate or filled from the log)
                }
                if seq > position + 1 {
                    Metrics::inc(&self.metrics.gaps_filled);
                    if !self.fill(position, seq - 1).await {
                        return; // the poll will retry the whole range
                    }
                }
                self.deliver(seq, event);
            }
            Some(BrokerMessage::Doorbell { epoch, seq }) => {
                // An event too large for the broker, sent by reference: read it,
                // and anything before it we missed, from the log.
                if *epoch != *self.log.epoch() {
                    self.epoch_changed().await;
                    return;
                }
                let position = self.hub.position();
                if seq > position {
                    self.fill(position, seq).await;
                }
            }
            Some(BrokerMessage::Direct { event }) => {
                self.hub.publish_direct(&Event::direct(event));
            }
            Some(BrokerMessage::Presence { node, seq, update }) => {
                if let Some(presence) = &self.presence {
                    presence.receive(&node, seq, update);
                }
            }
            None => tracing::warn!(len = bytes.len(), "ignoring an undecodable broker message"),
        }
    }

    /// Delivers everything the log has beyond our position.
    async fn catch_up(&self) {
        match reader::load_meta(&self.log.db).await {
            Ok((epoch, last)) => {
                if *epoch != *self.log.epoch() {
                    self.epoch_changed().await;
                    return;
                }
                let position = self.hub.position();
                if last > position {
                    self.fill(position, last).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "ingest: reading the log position failed"),
        }
    }

    /// Reads and delivers `after < seq <= upto` from the log. False on failure.
    async fn fill(&self, mut after: u64, upto: u64) -> bool {
        while after < upto {
            match reader::read_range(&self.log.db, after, upto, FILL_PAGE).await {
                Ok(rows) if !rows.is_empty() => {
                    for (seq, event) in rows {
                        if seq != after + 1 {
                            tracing::error!(
                                expected = after + 1,
                                seq,
                                "the log has a hole; closing connections so they resume"
                            );
                            self.hub.reset(seq - 1);
                            self.log.ring.clear();
                        }
                        self.deliver(seq, event);
                        after = seq;
                    }
                }
                Ok(_) => return false,
                Err(e) => {
                    tracing::warn!(error = %e, "ingest: filling a gap failed");
                    return false;
                }
            }
        }
        true
    }

    fn deliver(&self, seq: u64, event: LogEntry) {
        let cursor = Cursor {
            epoch: self.log.epoch(),
            seq,
        };
        let event = Event::logged(&cursor, event);
        self.log.ring.push(event.clone());
        self.hub.publish(&event);
    }

    /// The log was reset under us: adopt the new epoch and make every connection
    /// reconnect and resume (they will get `epoch_changed`).
    async fn epoch_changed(&self) {
        let Ok((epoch, last)) = reader::load_meta(&self.log.db).await else {
            return;
        };
        if *epoch == *self.log.epoch() {
            return;
        }
        tracing::warn!(%epoch, "the event log's epoch changed; closing connections with 4010");
        self.log.set_epoch(&epoch);
        self.log.ring.clear();
        self.hub.reset(last);
    }
}
