//! The deadlines of one connection: heartbeat and token lifetime. Pure state: the
//! connection task asks which deadline comes next and what to do when it passes.

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
}

impl Timers {
    /// Timers starting now.
    pub(super) fn new(ping_interval: Duration, ping_timeout: Duration) -> Self {
        Self {
            ping_interval,
            ping_timeout,
            next_ping: Instant::now() + ping_interval,
            pong_deadline: None,
            refresh_at: None,
            expire_at: None,
        }
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
                self.refresh_at = Some(now + left.saturating_sub(notice));
                self.expire_at = Some(now + left + grace);
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
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            return Some(Due::RefreshNotice);
        }
        if self.next_ping <= now {
            self.next_ping = now + self.ping_interval;
            if self.pong_deadline.is_none() {
                self.pong_deadline = Some(now + self.ping_timeout);
            }
            return Some(Due::Ping);
        }
        None
    }
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
}
