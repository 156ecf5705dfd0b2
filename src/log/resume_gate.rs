//! The per-user resume rate limit: a resume reads the log (the ring, or the table), so
//! a client that resumes in a loop is refused before it costs anything.
//!
//! One governor bucket per user; anonymous clients share one, since nothing tells
//! them apart. The buckets of users who have not resumed lately are indistinguishable
//! from fresh ones and are dropped whenever the map has doubled since the last
//! pruning, so memory follows the users who resumed within the last
//! `resume_burst x resume_interval`, not every user ever seen.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{auth::Principal, config::LogConfig};

/// Whose allowance a resume draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Resumer {
    User(Arc<str>),
    Anonymous,
}

/// A resume refused by the rate limit. The message names the settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many resumes: a user may resume {burst} times at once, then once every {interval:?} \
     (log.resume_burst, log.resume_interval); retry later"
)]
pub(crate) struct ResumeRateLimited {
    interval: Duration,
    burst: u32,
}

/// Counts resumes per user.
#[derive(Debug)]
pub(crate) struct ResumeGate {
    limiter: DefaultKeyedRateLimiter<Resumer>,
    refusal: ResumeRateLimited,
    /// Buckets after the last pruning (at least a floor, so small maps never prune).
    pruned_at: AtomicUsize,
}

/// Below this many buckets the map is never pruned.
const PRUNE_FLOOR: usize = 1024;

impl ResumeGate {
    /// A gate allowing one resume per `config.resume_interval` per user, bursting to
    /// `config.resume_burst`.
    pub(crate) fn new(config: &LogConfig) -> Self {
        let burst = NonZeroU32::new(config.resume_burst).unwrap_or(NonZeroU32::MIN);
        // A zero interval is refused by `Config::validate`; the fallback only keeps a
        // hand-built config from panicking.
        let quota = Quota::with_period(config.resume_interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
        Self {
            limiter: RateLimiter::keyed(quota.allow_burst(burst)),
            refusal: ResumeRateLimited {
                interval: config.resume_interval,
                burst: burst.get(),
            },
            pruned_at: AtomicUsize::new(PRUNE_FLOOR),
        }
    }

    /// Takes one resume from `principal`'s allowance, or refuses.
    pub(crate) fn admit(&self, principal: &Principal) -> Result<(), ResumeRateLimited> {
        let key = principal
            .user_id
            .clone()
            .map_or(Resumer::Anonymous, Resumer::User);
        let admitted = self.limiter.check_key(&key).is_ok();
        self.prune();
        if admitted {
            Ok(())
        } else {
            Err(self.refusal.clone())
        }
    }

    /// Drops idle buckets once the map has doubled since the last time: amortized
    /// constant work per resume.
    fn prune(&self) {
        let len = self.limiter.len();
        if len < self.pruned_at.load(Relaxed).saturating_mul(2) {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.pruned_at
            .store(self.limiter.len().max(PRUNE_FLOOR), Relaxed);
    }

    /// Buckets held (tests check that idle ones go).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(interval: Duration, burst: u32) -> ResumeGate {
        ResumeGate::new(&LogConfig {
            resume_interval: interval,
            resume_burst: burst,
            ..LogConfig::default()
        })
    }

    #[test]
    fn each_user_has_a_burst_of_their_own() {
        let gate = gate(Duration::from_secs(3600), 3);
        let ann = Principal::user("ann", &[]);
        let bob = Principal::user("bob", &[]);
        for _ in 0..3 {
            gate.admit(&ann).unwrap();
        }
        let refused = gate.admit(&ann).unwrap_err();
        assert!(refused.to_string().contains("log.resume_interval"));
        gate.admit(&bob).expect("bob's allowance is his own");
        let anonymous = Principal::anonymous();
        for _ in 0..3 {
            gate.admit(&anonymous).unwrap();
        }
        assert!(
            gate.admit(&Principal::anonymous()).is_err(),
            "anonymous clients share one allowance"
        );
    }

    #[test]
    fn idle_buckets_are_pruned_as_the_map_grows() {
        // A bucket is back to full (idle) a microsecond after use.
        let gate = gate(Duration::from_micros(1), 1);
        for i in 0..(PRUNE_FLOOR * 8) {
            gate.admit(&Principal::user(&format!("u{i}"), &[])).unwrap();
        }
        assert!(
            gate.buckets() < PRUNE_FLOOR * 4,
            "{} buckets kept",
            gate.buckets()
        );
    }
}
