//! The deadlines of one connection: heartbeat, token lifetime and connection age. Pure
//! state: the connection task asks which deadline comes next and what to do when it
//! passes.
//!
//! A token's `exp` is client-supplied: a deadline too far ahead to be an `Instant`
//! (`exp` near 2^63 seconds) means no deadline, never an overflow panic. Every sum
//! here is `checked_add`.

use std::time::Duration;

use tokio::time::Instant;

/// What a passed deadline asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Send a ping.
    Ping,
    /// The peer did not answer in time.
    PeerTimeout,
    /// Send `refresh_required`.
    RefreshNotice,
    /// The token expired and the grace passed.
    Expired,
    /// The connection reached its maximum age.
    MaxAge,
}

/// Heartbeat and token deadlines.
#[derive(Debug)]
pub(super) struct Timers {
    ping_interval: Duration,
    ping_timeout: Duration,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    refresh_at: Option<Instant>,
    expire_at: Option<Instant>,
    max_age_at: Option<Instant>,
}

/// `now + after`, or `None` when that is beyond what an `Instant` can hold.
fn later(now: Instant, after: Duration) -> Option<Instant> {
    now.checked_add(after)
}

impl Timers {
    /// Timers starting now.
    pub(super) fn new(ping_interval: Duration, ping_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            ping_interval,
            ping_timeout,
            // Configured values, validated; a year stands in if one is absurd.
            next_ping: later(now, ping_interval).unwrap_or_else(|| far_future(now)),
            pong_deadline: None,
            refresh_at: None,
            expire_at: None,
            max_age_at: None,
        }
    }

    /// Closes the connection (with 1012) once it is `age` old.
    pub(super) fn set_max_age(&mut self, age: Duration) {
        self.max_age_at = later(Instant::now(), age);
    }

    /// Any traffic from the peer proves it is alive.
    pub(super) fn heard_from_peer(&mut self) {
        self.pong_deadline = None;
    }

    /// Sets the token deadlines for a token expiring in `expires_in` seconds (`None`:
    /// anonymous, no expiry).
    pub(super) fn set_token(&mut self, expires_in: Option<u64>, notice: Duration, grace: Duration) {
        let now = Instant::now();
        match expires_in {
            Some(secs) => {
                let left = Duration::from_secs(secs);
                self.refresh_at = later(now, left.saturating_sub(notice));
                self.expire_at = left.checked_add(grace).and_then(|t| later(now, t));
            }
            None => {
                self.refresh_at = None;
                self.expire_at = None;
            }
        }
    }

    /// The next deadline.
    pub(super) fn next(&self) -> Instant {
        [
            Some(self.next_ping),
            self.pong_deadline,
            self.refresh_at,
            self.expire_at,
            self.max_age_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_ping)
    }

    /// What is due at `now`, updating the state as if it was done.
    pub(super) fn due(&mut self, now: Instant) -> Option<Due> {
        if self.expire_at.is_some_and(|t| t <= now) {
            self.expire_at = None;
            return Some(Due::Expired);
        }
        if self.pong_deadline.is_some_and(|t| t <= now) {
            self.pong_deadline = None;
            return Some(Due::PeerTimeout);
        }
        if self.max_age_at.is_some_and(|t| t <= now) {
            self.max_age_at = None;
            return Some(Due::MaxAge);
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            return Some(Due::RefreshNotice);
        }
        if self.next_ping <= now {
            self.next_ping = later(now, self.ping_interval).unwrap_or_else(|| far_future(now));
            if self.pong_deadline.is_none() {
                self.pong_deadline = later(now, self.ping_timeout);
            }
            return Some(Due::Ping);
        }
        None
    }
}

/// A year from `now` (or `now` itself on a clock that cannot go that far): "not soon".
fn far_future(now: Instant) -> Instant {
    later(now, Duration::from_secs(365 * 24 * 3600)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out_after_interval_plus_timeout() {
        let mut t = Timers::new(Duration::from_secs(25), Duration::from_secs(10));
        let start = Instant::now();
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::Ping));
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::PeerTimeout));
        assert_eq!(Instant::now() - start, Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_the_peer_alive() {
        let mut t = Timers::new(Duration::from_secs(25), Duration::from_secs(10));
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::Ping));
        t.heard_from_peer();
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::Ping));
    }

    #[tokio::test(start_paused = true)]
    async fn token_notice_then_expiry() {
        let mut t = Timers::new(Duration::from_secs(3600), Duration::from_secs(10));
        t.set_token(Some(60), Duration::from_secs(30), Duration::from_secs(10));
        let start = Instant::now();
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::RefreshNotice));
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::Expired));
        assert_eq!(Instant::now() - start, Duration::from_secs(70));
        // Less time left than the notice: the notice is due at once.
        t.set_token(Some(5), Duration::from_secs(30), Duration::from_secs(10));
        assert_eq!(t.due(Instant::now()), Some(Due::RefreshNotice));
    }

    #[tokio::test(start_paused = true)]
    async fn a_far_future_exp_means_no_deadline_not_a_panic() {
        let mut t = Timers::new(Duration::from_secs(25), Duration::from_secs(10));
        for secs in [u64::MAX, 1 << 63, (1 << 63) - 1, u64::MAX - 5] {
            t.set_token(Some(secs), Duration::from_secs(30), Duration::MAX);
            t.set_token(Some(secs), Duration::ZERO, Duration::from_secs(10));
            // Only the heartbeat is left.
            tokio::time::sleep_until(t.next()).await;
            assert_eq!(t.due(Instant::now()), Some(Due::Ping));
            t.heard_from_peer();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_comes_after_its_duration() {
        let mut t = Timers::new(Duration::from_secs(3600), Duration::from_secs(10));
        let start = Instant::now();
        t.set_max_age(Duration::from_secs(90));
        tokio::time::sleep_until(t.next()).await;
        assert_eq!(t.due(Instant::now()), Some(Due::MaxAge));
        assert_eq!(Instant::now() - start, Duration::from_secs(90));
        t.set_max_age(Duration::MAX);
        assert_eq!(t.due(Instant::now()), None);
    }
}
