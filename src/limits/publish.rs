//! What a client may publish: the size of one payload, and a quota per user of events
//! and bytes per window, shared by all of the user's connections on this node.

use std::{io, sync::Arc, time::Duration};

use serde_json::Value;

use super::keyed_rate::{KeyedRate, RateRefusal};
use crate::config::PublishConfig;

/// Why a publish was refused before it reached the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PublishRefusal {
    /// The payload alone is larger than `publish.max_payload_bytes`.
    #[error("the event data is {size} bytes; at most {limit} are allowed")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The user's quota for the window is spent.
    #[error("publish quota exceeded ({what}); retry in {retry_after_secs} s")]
    Quota {
        /// `events` or `bytes`.
        what: &'static str,
        /// When the quota allows it again.
        retry_after_secs: u64,
    },
}

/// Who a quota is kept for: a user, or every anonymous publisher together.
type QuotaKey = Option<Arc<str>>;

/// The publish limits of one node.
#[derive(Debug)]
pub(crate) struct PublishLimits {
    max_payload_bytes: usize,
    window: Duration,
    events: KeyedRate<QuotaKey>,
    bytes: KeyedRate<QuotaKey>,
}

impl PublishLimits {
    pub(crate) fn new(config: &PublishConfig, max_keys: usize) -> Self {
        let bytes = u32::try_from(config.bytes_per_window).unwrap_or(u32::MAX);
        Self {
            max_payload_bytes: config.max_payload_bytes,
            window: config.window,
            events: KeyedRate::new(config.events_per_window, config.window, max_keys),
            bytes: KeyedRate::new(bytes, config.window, max_keys),
        }
    }

    /// Refuses `data` when it is larger than the payload limit. Counted without
    /// building the JSON text.
    pub(crate) fn check_size(&self, data: &Value) -> Result<usize, PublishRefusal> {
        let size = json_size(data);
        if size > self.max_payload_bytes {
            return Err(PublishRefusal::TooLarge {
                size,
                limit: self.max_payload_bytes,
            });
        }
        Ok(size)
    }

    /// Takes one event and `size` bytes from `user`'s quota (`None`: anonymous).
    pub(crate) fn take(&self, user: Option<&Arc<str>>, size: usize) -> Result<(), PublishRefusal> {
        let key = user.cloned();
        let refused = |what, refusal: RateRefusal| PublishRefusal::Quota {
            what,
            retry_after_secs: refusal.retry_after_secs(self.window),
        };
        self.events.check(&key).map_err(|r| refused("events", r))?;
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.bytes
            .check_n(&key, size)
            .map_err(|r| refused("bytes", r))
    }

    /// Forgets users whose quota is full again.
    pub(crate) fn prune(&self) {
        self.events.prune();
        self.bytes.prune();
    }
}

/// The length of `value` as compact JSON.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> PublishLimits {
        PublishLimits::new(
            &PublishConfig {
                max_payload_bytes: 100,
                events_per_window: 3,
                bytes_per_window: 150,
                window: Duration::from_secs(60),
            },
            1000,
        )
    }

    #[test]
    fn sizes_are_those_of_the_json_text() {
        for value in [json!(null), json!({"a":[1,2,"é"]}), json!("x".repeat(500))] {
            assert_eq!(json_size(&value), value.to_string().len());
        }
    }

    #[test]
    fn too_large_then_quota_in_events_and_bytes_per_user() {
        let limits = limits();
        assert_eq!(
            limits.check_size(&json!("x".repeat(200))),
            Err(PublishRefusal::TooLarge {
                size: 202,
                limit: 100
            })
        );
        let ann: Arc<str> = Arc::from("ann");
        let bob: Arc<str> = Arc::from("bob");
        limits.take(Some(&ann), 60).unwrap();
        limits.take(Some(&ann), 60).unwrap();
        // 150 bytes per window: a third 60-byte event is over, though events remain.
        assert!(matches!(
            limits.take(Some(&ann), 60),
            Err(PublishRefusal::Quota { what: "bytes", .. })
        ));
        // Bob has his own quota; three small events, then the event quota is spent.
        for _ in 0..3 {
            limits.take(Some(&bob), 1).unwrap();
        }
        assert!(matches!(
            limits.take(Some(&bob), 1),
            Err(PublishRefusal::Quota {
                what: "events",
                retry_after_secs: 20
            })
        ));
        limits.take(None, 1).unwrap();
    }
}
