//! The node's ingest: takes sequenced events from the broker, drops duplicates, fills
//! gaps from the log, appends to the ring and hands each event to the hub, strictly in
//! seq order. One task per node, so ordering needs no further locking.
//!
//! It also polls the log: every `log.poll_interval` while the broker is up, every
//! `broker.fallback_poll_interval` while it is down or silent (the broker link says
//! which), and once more when the broker comes back. So a broker failure costs
//! latency, never an event.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::BrokerMessage,
    event::{Cursor, Event, LogEntry},
    hub::Hub,
    log::{
        Log,
        broker_link::{BrokerLink, LinkEvent},
        reader,
    },
    metrics::Metrics,
    presence::PresenceNode,
};

/// Rows read per gap-filling query.
const FILL_PAGE: u32 = 1000;

/// How an event reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Its own doorbell rang (whole, or by reference).
    Doorbell,
    /// Found in the log: a poll, or a gap before a later doorbell.
    Log,
}

/// Moves events from the broker (and the log, for gaps) to the hub.
pub(crate) struct Ingest {
    log: Arc<Log>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    fallback_poll_interval: Duration,
    presence: Option<Arc<PresenceNode>>,
}

impl Ingest {
    /// An ingest feeding `hub`, polling the log every `fallback_poll_interval` while
    /// the broker is not up.
    pub(crate) fn new(
        log: Arc<Log>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        fallback_poll_interval: Duration,
    ) -> Self {
        Self {
            log,
            hub,
            metrics,
            fallback_poll_interval,
            presence: None,
        }
    }

    /// Hands the presence messages heard on the broker to `presence`.
    pub(crate) fn with_presence(mut self, presence: Arc<PresenceNode>) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Runs until `shutdown`, reading the broker through `link`.
    pub(crate) async fn run(self, mut link: BrokerLink, shutdown: CancellationToken) {
        // The link is the task's own (not a field): its subscription is Send but not
        // Sync, and the methods below share `&self` across awaits.
        let mut last_poll = Instant::now();
        loop {
            // Chosen afresh each turn: a broker that just went down shortens the wait.
            let every = if link.is_up() {
                self.log.config.poll_interval
            } else {
                self.fallback_poll_interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = link.next_event() => match event {
                    LinkEvent::Message { bytes, restored } => {
                        if restored {
                            // Backfill once: whatever the broker missed is in the log.
                            self.catch_up().await;
                        }
                        self.handle(&bytes).await;
                    }
                    // The next turn picks the fallback interval.
                    LinkEvent::NotUp => {}
                },
                () = tokio::time::sleep_until(last_poll + every) => {
                    self.catch_up().await;
                    last_poll = Instant::now();
                }
                // A client resumes here from further than we delivered: read the log now.
                () = self.hub.catch_up_requested() => self.catch_up().await,
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
                self.rang(seq, event).await;
            }
            Some(BrokerMessage::Batch { epoch, events }) => {
                if *epoch != *self.log.epoch() {
                    self.epoch_changed().await;
                    return;
                }
                for (seq, event) in events {
                    if !self.rang(seq, event).await {
                        return;
                    }
                }
            }
            Some(BrokerMessage::Doorbell { epoch, seq }) => {
                // An event too large for the broker, sent by reference: read it,
                // and anything before it we missed, from the log.
                if *epoch != *self.log.epoch() {
                    self.epoch_changed().await;
                    return;
                }
                let position = self.hub.handed();
                if seq > position {
                    self.fill(position, seq, Some(seq)).await;
                }
            }
            Some(BrokerMessage::Direct { event }) => {
                self.hub.publish_direct(&Event::direct(event));
            }
            Some(BrokerMessage::Disconnect { user }) => {
                self.hub.disconnect_user(&user);
            }
            // Its arrival was all it had to say: the link counted it as a sign of life.
            Some(BrokerMessage::Heartbeat { .. }) => {}
            Some(BrokerMessage::Presence { node, seq, update }) => {
                if let Some(presence) = &self.presence {
                    presence.receive(&node, seq, update);
                }
            }
            None => tracing::warn!(len = bytes.len(), "ignoring an undecodable broker message"),
        }
    }

    /// Delivers `event`, which came with its doorbell, after filling any gap before it
    /// from the log. False when the gap could not be filled (the poll retries it).
    async fn rang(&self, seq: u64, event: LogEntry) -> bool {
        let position = self.hub.handed();
        if seq <= position {
            return true; // already delivered (duplicate or filled from the log)
        }
        if seq > position + 1 {
            Metrics::inc(&self.metrics.gaps_filled);
            if !self.fill(position, seq - 1, None).await {
                return false;
            }
        }
        self.deliver(seq, event, Via::Doorbell).await;
        true
    }

    /// Delivers everything the log has beyond our position.
    async fn catch_up(&self) {
        match reader::load_meta(&self.log.db).await {
            Ok((epoch, last)) => {
                if *epoch != *self.log.epoch() {
                    self.epoch_changed().await;
                    return;
                }
                let position = self.hub.handed();
                if last > position {
                    self.fill(position, last, None).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "ingest: reading the log position failed"),
        }
    }

    /// Reads and delivers `after < seq <= upto` from the log. `rung` is the seq whose
    /// doorbell asked for this read, if any: every other event delivered counts as
    /// recovered from the log. False on failure.
    async fn fill(&self, mut after: u64, upto: u64, rung: Option<u64>) -> bool {
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
                        let via = if rung == Some(seq) {
                            Via::Doorbell
                        } else {
                            Via::Log
                        };
                        self.deliver(seq, event, via).await;
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

    /// Hands `event` to the hub, once the hub's shards have room for it: a runner
    /// behind makes the ingest wait, not queue without bound.
    async fn deliver(&self, seq: u64, event: LogEntry, via: Via) {
        self.hub.room().await;
        if via == Via::Log {
            Metrics::inc(&self.metrics.events_recovered_by_poll);
        }
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
