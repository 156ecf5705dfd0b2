//! A rate per key (a user, an IP address) whose memory stays bounded: the limiter
//! forgets keys whose state is back to "fresh" when pruned, and prunes itself when it
//! holds too many keys between two scheduled prunes.

use std::{
    hash::Hash,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

/// How often a limiter over its key budget may prune on its own, so a flood of new
/// keys costs one sweep per interval, not one per check.
const FORCED_PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Why a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateRefusal {
    /// Out of budget; this much later it would pass.
    Wait(Duration),
    /// More than the burst at once: it can never pass.
    NeverFits,
}

impl RateRefusal {
    /// Whole seconds to wait (at least 1), for a `Retry-After` header or a message.
    pub(crate) fn retry_after_secs(self, fallback: Duration) -> u64 {
        let wait = match self {
            Self::Wait(wait) => wait,
            Self::NeverFits => fallback,
        };
        let rounded_up = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        rounded_up.max(1)
    }
}

/// `n` cells per `window` for each key, all of them available at once (burst `n`).
pub(crate) struct KeyedRate<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    /// Past this many keys, a check prunes (at most every `FORCED_PRUNE_EVERY`).
    max_keys: usize,
    last_forced_prune: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedRate<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRate")
            .field("keys", &self.limiter.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    /// `per_window` cells per `window` and key (both at least 1; zero counts as 1).
    pub(crate) fn new(per_window: u32, window: Duration, max_keys: usize) -> Self {
        let burst = NonZeroU32::new(per_window).unwrap_or(NonZeroU32::MIN);
        // One cell comes back every window / n; governor wants a positive period.
        let period = (window / burst.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            max_keys,
            last_forced_prune: Mutex::new(Instant::now()),
        }
    }

    /// Takes one cell for `key`.
    pub(crate) fn check(&self, key: &K) -> Result<(), RateRefusal> {
        self.check_n(key, 1)
    }

    /// Takes `n` cells for `key` at once, or none.
    pub(crate) fn check_n(&self, key: &K, n: u32) -> Result<(), RateRefusal> {
        self.prune_if_crowded();
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RateRefusal::Wait(
                not_until.wait_time_from(self.clock.now()),
            )),
            Err(_) => Err(RateRefusal::NeverFits),
        }
    }

    /// Forgets every key whose budget is full again (it would behave as a new key
    /// anyway) and gives the memory back.
    pub(crate) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }

    fn prune_if_crowded(&self) {
        if self.limiter.len() <= self.max_keys {
            return;
        }
        let mut last = self
            .last_forced_prune
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= FORCED_PRUNE_EVERY {
            *last = Instant::now();
            drop(last);
            self.prune();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_budget_and_a_wait_when_out() {
        let rate = KeyedRate::new(2, Duration::from_secs(60), 1000);
        assert_eq!(rate.check(&"a"), Ok(()));
        assert_eq!(rate.check(&"a"), Ok(()));
        let Err(RateRefusal::Wait(wait)) = rate.check(&"a") else {
            panic!("a third cell in the window must be refused");
        };
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(rate.check(&"b"), Ok(()));
        assert_eq!(rate.check_n(&"c", 3), Err(RateRefusal::NeverFits));
        assert_eq!(
            RateRefusal::Wait(Duration::from_millis(1500)).retry_after_secs(Duration::ZERO),
            2
        );
        assert_eq!(
            RateRefusal::Wait(Duration::ZERO).retry_after_secs(Duration::ZERO),
            1
        );
        assert_eq!(
            RateRefusal::NeverFits.retry_after_secs(Duration::from_secs(60)),
            60
        );
    }

    #[test]
    fn a_hundred_thousand_keys_are_forgotten_once_their_budget_is_back() {
        // A key's budget is back 1 ms after its one cell (1000 per second).
        let rate = KeyedRate::new(1000, Duration::from_secs(1), usize::MAX);
        for ip in 0..100_000u32 {
            rate.check(&ip).unwrap();
        }
        assert_eq!(rate.len(), 100_000);
        std::thread::sleep(Duration::from_millis(20));
        rate.prune();
        assert_eq!(rate.len(), 0);
    }

    #[test]
    fn too_many_keys_prune_without_waiting_for_the_schedule() {
        let rate = KeyedRate::new(1000, Duration::from_secs(1), 10);
        for key in 0..100u32 {
            rate.check(&key).unwrap();
        }
        std::thread::sleep(FORCED_PRUNE_EVERY + Duration::from_millis(20));
        rate.check(&1000).unwrap();
        assert!(rate.len() <= 1, "{}", rate.len());
    }
}
