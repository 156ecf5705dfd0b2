//! The node's subscription to the broker, kept alive: subscribes, notices a stream
//! that ended or went silent, waits with backoff and subscribes again, and reports
//! the broker's health. Reconnect policy lives here once, not in the backends, which
//! only end their stream when their connection is lost.
//!
//! The ingest reads messages through [`BrokerLink::next_event`], which also tells
//! when the broker stops being up, and polls the log faster while
//! [`BrokerLink::is_up`] is false.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use tokio::{sync::Notify, time::Instant};

use crate::{
    broker::{
        Broker, BrokerError, BrokerHealth, BrokerState,
        health::{Backoff, HealthTracker},
    },
    config::BrokerConfig,
    metrics::Metrics,
};

type Subscription = BoxStream<'static, Bytes>;
type Attempt = BoxFuture<'static, Result<Subscription, BrokerError>>;

/// Where the link is. Every pending piece of work is stored here rather than held by
/// an `await`, so [`BrokerLink::next_event`] can be dropped (the ingest polls the
/// log in between) and resumed without losing an attempt or restarting a wait.
enum Phase {
    Subscribed(Subscription),
    Subscribing(Attempt),
    Waiting(Instant),
}

/// What the link has to tell the ingest.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A message from the broker.
    Message {
        /// The payload.
        bytes: Bytes,
        /// True when this message brought the broker back up: the ingest catches
        /// up from the log once, for what the broker missed while it was not.
        restored: bool,
    },
    /// The broker is no longer up (down or silent): the ingest polls faster.
    NotUp,
}

/// The broker's health as the rest of the node reads it (`Realtime::broker_status`,
/// `/metrics`). Written only by the link.
#[derive(Debug)]
pub(crate) struct HealthBoard {
    kind: &'static str,
    current: RwLock<(BrokerState, SystemTime)>,
    metrics: Arc<Metrics>,
}

impl HealthBoard {
    /// Down since now, for a broker of `kind`; counters come from `metrics`.
    pub(crate) fn new(kind: &'static str, metrics: Arc<Metrics>) -> Self {
        Self {
            kind,
            current: RwLock::new((BrokerState::Down, SystemTime::now())),
            metrics,
        }
    }

    /// The current health.
    pub(crate) fn snapshot(&self) -> BrokerHealth {
        use std::sync::atomic::Ordering::Relaxed;
        // A panic elsewhere cannot leave the pair half-written: read it anyway.
        let (state, since) = *self.current.read().unwrap_or_else(|e| e.into_inner());
        BrokerHealth {
            kind: self.kind,
            state,
            since,
            reconnects: self.metrics.broker_reconnects.load(Relaxed),
            recovered_by_poll: self.metrics.events_recovered_by_poll.load(Relaxed),
        }
    }

    fn set(&self, state: BrokerState, since: SystemTime) {
        use std::sync::atomic::Ordering::Relaxed;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (state, since);
        let up = u64::from(state == BrokerState::Up);
        self.metrics.broker_up.store(up, Relaxed);
    }
}

/// One node's subscription to the broker, with its health.
pub(crate) struct BrokerLink {
    broker: Arc<dyn Broker>,
    tracker: HealthTracker,
    backoff: Backoff,
    phase: Phase,
    board: Arc<HealthBoard>,
    metrics: Arc<Metrics>,
    /// Wakes the heartbeat task, so a new subscription hears a message at once
    /// (and counts as up) instead of up to one heartbeat interval later.
    heartbeat_now: Arc<Notify>,
}

impl BrokerLink {
    /// A link that starts its first subscription attempt at once; the broker is down
    /// until that subscription delivers a message.
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        config: &BrokerConfig,
        board: Arc<HealthBoard>,
        metrics: Arc<Metrics>,
        heartbeat_now: Arc<Notify>,
    ) -> Self {
        let attempt = Self::attempt(&broker);
        Self {
            broker,
            tracker: HealthTracker::new(Instant::now(), config.silence_timeout),
            backoff: Backoff::new(config.reconnect_backoff, config.reconnect_backoff_max),
            phase: Phase::Subscribing(attempt),
            board,
            metrics,
            heartbeat_now,
        }
    }

    /// Waits at most `bound` for the first subscription, so that when the broker is
    /// there, doorbells rung right after startup are heard. A broker that is down or
    /// slow does not stop the node: the attempt goes on in the background (and the
    /// log is polled meanwhile).
    pub(crate) async fn first_subscription(&mut self, bound: Duration) {
        let Phase::Subscribing(attempt) = &mut self.phase else {
            return;
        };
        match tokio::time::timeout(bound, attempt).await {
            Ok(result) => self.settle(result),
            Err(_) => tracing::warn!(
                kind = self.broker.kind(),
                "no broker subscription yet; serving from the log meanwhile"
            ),
        }
    }

    /// Whether messages arrive from the broker.
    pub(crate) fn is_up(&self) -> bool {
        self.tracker.state() == BrokerState::Up
    }

    /// The next message, subscribing (again) as often as needed, or the news that
    /// the broker stopped being up. Cancel-safe: a dropped call loses no message and
    /// restarts no attempt or wait.
    pub(crate) async fn next_event(&mut self) -> LinkEvent {
        loop {
            match &mut self.phase {
                Phase::Subscribed(stream) => {
                    // Always set while subscribed; a missing one counts as silence.
                    let silent_at = self.tracker.silence_deadline().unwrap_or_else(Instant::now);
                    let heard = tokio::select! {
                        message = stream.next() => Some(message),
                        () = tokio::time::sleep_until(silent_at) => None,
                    };
                    let went_down = match heard {
                        Some(Some(bytes)) => return self.arrived(bytes),
                        Some(None) => self.lost("the broker subscription ended"),
                        None => self.silenced(),
                    };
                    if went_down {
                        return LinkEvent::NotUp;
                    }
                }
                // Not up while subscribing: no news to pass on, whatever the outcome.
                Phase::Subscribing(attempt) => {
                    let result = attempt.await;
                    self.settle(result);
                }
                Phase::Waiting(until) => {
                    tokio::time::sleep_until(*until).await;
                    self.phase = Phase::Subscribing(Self::attempt(&self.broker));
                }
            }
        }
    }

    fn attempt(broker: &Arc<dyn Broker>) -> Attempt {
        let broker = broker.clone();
        async move { broker.subscribe().await }.boxed()
    }

    /// Takes the outcome of a subscription attempt.
    fn settle(&mut self, result: Result<Subscription, BrokerError>) {
        match result {
            Ok(stream) => {
                self.tracker.subscribed(Instant::now());
                self.publish_counters();
                self.phase = Phase::Subscribed(stream);
                self.heartbeat_now.notify_one();
            }
            Err(error) => {
                self.lost(&format!("subscribing to the broker failed: {error}"));
            }
        }
    }

    fn arrived(&mut self, bytes: Bytes) -> LinkEvent {
        let restored = self.tracker.heard(Instant::now());
        if restored {
            self.backoff.reset();
            self.publish_state();
            tracing::info!(kind = self.broker.kind(), "the broker is up");
        }
        LinkEvent::Message { bytes, restored }
    }

    /// No subscription any more (`why`); retries later. True when the broker was up
    /// until now.
    fn lost(&mut self, why: &str) -> bool {
        let was_up = self.is_up();
        if self.tracker.lost(Instant::now()) {
            self.publish_state();
            tracing::warn!(
                kind = self.broker.kind(),
                "{why}; the broker is down, polling the log meanwhile"
            );
        } else {
            tracing::debug!(kind = self.broker.kind(), "{why}");
        }
        self.retry_later();
        was_up
    }

    /// The subscription was quiet too long: drops it and retries later. True when
    /// the broker was up until now.
    fn silenced(&mut self) -> bool {
        let was_up = self.is_up();
        if self.tracker.silenced(Instant::now()) {
            self.publish_state();
            tracing::warn!(
                kind = self.broker.kind(),
                "the broker is silent (no message, not even a heartbeat); subscribing again"
            );
        }
        self.retry_later();
        was_up
    }

    fn retry_later(&mut self) {
        self.phase = Phase::Waiting(Instant::now() + self.backoff.next_delay());
    }

    fn publish_state(&self) {
        // The wall-clock time of the tracker's own instant, for display.
        let ago = Instant::now().saturating_duration_since(self.tracker.since());
        let since = SystemTime::now()
            .checked_sub(ago)
            .unwrap_or_else(SystemTime::now);
        self.board.set(self.tracker.state(), since);
    }

    fn publish_counters(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let reconnects = self.tracker.reconnects();
        self.metrics.broker_reconnects.store(reconnects, Relaxed);
    }
}
