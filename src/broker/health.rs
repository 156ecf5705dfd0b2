//! Whether the broker carries messages, as one node sees it: the public
//! [`BrokerHealth`] and the pure state machine the node's broker link drives
//! ([`HealthTracker`], decisions only, every instant passed in, so it is tested
//! without clocks or servers).
//!
//! A broker failure costs latency, never events: while the broker is not
//! [`BrokerState::Up`] the node polls the log every `broker.fallback_poll_interval`.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The broker's health as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Messages arrive on the node's subscription (its own heartbeats included).
    Up,
    /// No subscription: the connection was lost or subscribing fails. The node
    /// subscribes again with backoff.
    Down,
    /// Subscribed, but nothing arrived within `broker.silence_timeout`, not even the
    /// node's own heartbeat. Treated like down: the node subscribes again.
    Silent,
}

impl BrokerState {
    /// `"up"`, `"down"` or `"silent"`, as `/readyz` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Silent => "silent",
        }
    }
}

impl std::fmt::Display for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the broker's health on this node, from
/// [`Realtime::broker_status`](crate::Realtime::broker_status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerHealth {
    /// The broker's [`kind`](super::Broker::kind): `memory`, `redis`, `nats`,
    /// `postgres` or `custom`.
    pub kind: &'static str,
    /// Up, down or silent.
    pub state: BrokerState,
    /// When the broker entered `state` (wall clock).
    pub since: SystemTime,
    /// Subscriptions made again after the first one (after a loss or a silence).
    pub reconnects: u64,
    /// Events this node delivered because it found them in the log (a poll or a gap
    /// fill) rather than because their doorbell rang.
    pub recovered_by_poll: u64,
}

/// The health state machine of one node's broker subscription.
///
/// It starts down (nothing subscribed yet). A subscription that delivers a message
/// makes it up; a lost subscription or a failed attempt makes it down; a
/// subscription quiet for the silence timeout makes it silent and must be dropped.
/// A new subscription counts as up only once something arrives on it, which the
/// node's own heartbeat guarantees within one heartbeat interval of a working broker.
#[derive(Debug, Clone)]
pub(crate) struct HealthTracker {
    state: BrokerState,
    since: Instant,
    /// When the current subscription last delivered (or was made); `None` without one.
    last_heard: Option<Instant>,
    silence_timeout: Duration,
    /// Successful subscriptions so far, the first one included.
    subscriptions: u64,
}

impl HealthTracker {
    /// Down since `now`, judging silence after `silence_timeout`.
    pub(crate) fn new(now: Instant, silence_timeout: Duration) -> Self {
        Self {
            state: BrokerState::Down,
            since: now,
            last_heard: None,
            silence_timeout,
            subscriptions: 0,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> BrokerState {
        self.state
    }

    /// When the current state began.
    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// Subscriptions made again after the first.
    pub(crate) fn reconnects(&self) -> u64 {
        self.subscriptions.saturating_sub(1)
    }

    /// A subscription was made at `now`. The state stays what it was until the
    /// subscription delivers; the silence clock starts now.
    pub(crate) fn subscribed(&mut self, now: Instant) {
        self.subscriptions += 1;
        self.last_heard = Some(now);
    }

    /// A message arrived at `now`. True when this brought the broker back up (the
    /// caller then catches up from the log once).
    pub(crate) fn heard(&mut self, now: Instant) -> bool {
        self.last_heard = Some(now);
        self.enter(BrokerState::Up, now)
    }

    /// The subscription ended, or subscribing failed, at `now`. True when this
    /// changed the state.
    pub(crate) fn lost(&mut self, now: Instant) -> bool {
        self.last_heard = None;
        self.enter(BrokerState::Down, now)
    }

    /// When the current subscription counts as silent if nothing arrives; `None`
    /// without a subscription.
    pub(crate) fn silence_deadline(&self) -> Option<Instant> {
        self.last_heard.map(|heard| heard + self.silence_timeout)
    }

    /// Whether the current subscription has been quiet too long at `now`.
    #[cfg(test)]
    pub(crate) fn is_silent_at(&self, now: Instant) -> bool {
        self.silence_deadline()
            .is_some_and(|deadline| now >= deadline)
    }

    /// The current subscription is given up at `now` for its silence (the caller
    /// drops it and subscribes again). True when this changed the state.
    pub(crate) fn silenced(&mut self, now: Instant) -> bool {
        self.last_heard = None;
        self.enter(BrokerState::Silent, now)
    }

    fn enter(&mut self, state: BrokerState, now: Instant) -> bool {
        if self.state == state {
            return false;
        }
        self.state = state;
        self.since = now;
        true
    }
}

/// Doubling delays between subscription attempts, from `initial` up to `max`; back
/// to `initial` once the broker delivers again.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, never above `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial.min(max),
        }
    }

    /// The delay before the next attempt; the one after is twice as long.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// The broker works again: the next failure waits `initial` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SILENCE: Duration = Duration::from_secs(3);

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn starts_down_and_is_up_only_once_something_arrives() {
        let t0 = Instant::now();
        let mut health = HealthTracker::new(t0, SILENCE);
        assert_eq!(health.state(), BrokerState::Down);
        assert_eq!(
            health.silence_deadline(),
            None,
            "no subscription, no silence"
        );

        health.subscribed(at(t0, 10));
        assert_eq!(
            health.state(),
            BrokerState::Down,
            "subscribed is not yet up"
        );
        assert_eq!(health.silence_deadline(), Some(at(t0, 3010)));

        assert!(health.heard(at(t0, 20)), "the first message brings it up");
        assert_eq!(health.state(), BrokerState::Up);
        assert_eq!(health.since(), at(t0, 20));
        assert!(!health.heard(at(t0, 30)), "already up");
        assert_eq!(health.since(), at(t0, 20), "since is when the state began");
        assert_eq!(
            health.reconnects(),
            0,
            "the first subscription is no reconnect"
        );
    }

    #[test]
    fn every_message_pushes_the_silence_deadline_back() {
        let t0 = Instant::now();
        let mut health = HealthTracker::new(t0, SILENCE);
        health.subscribed(t0);
        health.heard(at(t0, 2000));
        assert!(!health.is_silent_at(at(t0, 4999)));
        assert!(health.is_silent_at(at(t0, 5000)));
        health.heard(at(t0, 4000));
        assert!(!health.is_silent_at(at(t0, 6999)));
    }

    #[test]
    fn a_quiet_subscription_goes_silent_and_is_dropped() {
        let t0 = Instant::now();
        let mut health = HealthTracker::new(t0, SILENCE);
        health.subscribed(t0);
        health.heard(at(t0, 100));
        assert!(health.is_silent_at(at(t0, 3100)));
        assert!(health.silenced(at(t0, 3100)));
        assert_eq!(health.state(), BrokerState::Silent);
        assert_eq!(health.since(), at(t0, 3100));
        assert_eq!(health.silence_deadline(), None, "the subscription is gone");

        // Subscribed again, still nothing: silent again, no new transition.
        health.subscribed(at(t0, 3200));
        assert_eq!(health.state(), BrokerState::Silent);
        assert!(health.is_silent_at(at(t0, 6200)));
        assert!(!health.silenced(at(t0, 6200)), "already silent");
        assert_eq!(health.since(), at(t0, 3100));
        assert_eq!(health.reconnects(), 1);
    }

    #[test]
    fn a_failed_attempt_after_silence_is_down_and_recovery_counts_reconnects() {
        let t0 = Instant::now();
        let mut health = HealthTracker::new(t0, SILENCE);
        health.subscribed(t0);
        health.heard(at(t0, 10));
        health.silenced(at(t0, 3010));
        assert!(health.lost(at(t0, 4000)), "cannot subscribe: down");
        assert_eq!(health.state(), BrokerState::Down);
        assert!(!health.lost(at(t0, 5000)), "still down");
        assert_eq!(health.since(), at(t0, 4000));

        health.subscribed(at(t0, 6000));
        assert!(health.heard(at(t0, 6001)), "back up");
        assert_eq!(health.reconnects(), 1);
        assert!(health.lost(at(t0, 7000)), "connection lost");
        health.subscribed(at(t0, 7100));
        health.heard(at(t0, 7101));
        assert_eq!(health.reconnects(), 2);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn states_read_as_readyz_reports_them() {
        assert_eq!(BrokerState::Up.to_string(), "up");
        assert_eq!(BrokerState::Down.as_str(), "down");
        assert_eq!(BrokerState::Silent.as_str(), "silent");
    }
}
