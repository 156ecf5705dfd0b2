//! The per-user resume rate limit: a resume reads the log (the ring, or the table), so
//! a client that resumes in a loop is refused before it costs anything.
//!
//! One bucket per user ([`KeyedRate`], whose memory stays bounded: buckets of users
//! who have not resumed lately are forgotten); anonymous clients share one, since
//! nothing tells them apart.

use std::{sync::Arc, time::Duration};

use crate::{auth::Principal, config::LogConfig, limits::keyed_rate::KeyedRate};

/// Users with a bucket past which the gate forgets the idle ones (at most once a
/// second; see [`KeyedRate`]).
const MAX_TRACKED_USERS: usize = 10_000;

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
    rate: KeyedRate<Resumer>,
    refusal: ResumeRateLimited,
}

impl ResumeGate {
    /// A gate allowing one resume per `config.resume_interval` per user, bursting to
    /// `config.resume_burst`.
    pub(crate) fn new(config: &LogConfig) -> Self {
        let burst = config.resume_burst.max(1);
        // `burst` resumes per `burst` intervals: one comes back every interval.
        let window = config.resume_interval.saturating_mul(burst);
        Self {
            rate: KeyedRate::new(burst, window, MAX_TRACKED_USERS),
            refusal: ResumeRateLimited {
                interval: config.resume_interval,
                burst,
            },
        }
    }

    /// Takes one resume from `principal`'s allowance, or refuses.
    pub(crate) fn admit(&self, principal: &Principal) -> Result<(), ResumeRateLimited> {
        let key = principal
            .user_id
            .clone()
            .map_or(Resumer::Anonymous, Resumer::User);
        self.rate.check(&key).map_err(|_| self.refusal.clone())
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
}
