//! Picks the broker backend named by a URL's scheme.

use std::sync::Arc;

use super::{Broker, BrokerError, BrokerOptions, MemoryBroker};

/// A backend this crate knows, whether or not this build includes it.
struct Backend {
    schemes: &'static [&'static str],
    feature: &'static str,
    enabled: bool,
}

const BACKENDS: &[Backend] = &[
    Backend {
        schemes: &["redis"],
        feature: "redis",
        enabled: cfg!(feature = "redis"),
    },
    Backend {
        schemes: &["nats"],
        feature: "nats",
        enabled: cfg!(feature = "nats"),
    },
    Backend {
        schemes: &["postgres", "postgresql"],
        feature: "postgres-notify",
        enabled: cfg!(feature = "postgres-notify"),
    },
];

/// Opens the broker named by `url`:
///
/// - `memory` (or an empty string): one process, see [`MemoryBroker`];
/// - `redis://host:port[/db]`: Redis pub/sub (feature `redis`);
/// - `nats://host:port`: core NATS (feature `nats`);
/// - `postgres://...` or `postgresql://...`: LISTEN/NOTIFY (feature `postgres-notify`).
///
/// Never connects: a broker whose server is down still opens, and connects when it
/// is first used, so a node starts without its broker. Fails only for a URL or
/// option that can never work, or a backend this build does not include.
pub fn from_url(url: &str, options: &BrokerOptions) -> Result<Arc<dyn Broker>, BrokerError> {
    let scheme = scheme_of(url);
    match scheme {
        "memory" => {
            return Ok(Arc::new(
                MemoryBroker::new(options.memory_capacity)
                    .with_buffer_bytes(options.memory_buffer_bytes),
            ));
        }
        #[cfg(feature = "redis")]
        "redis" => return Ok(Arc::new(super::RedisBroker::new(url, options)?)),
        #[cfg(feature = "nats")]
        "nats" => return Ok(Arc::new(super::NatsBroker::new(url, options)?)),
        #[cfg(feature = "postgres-notify")]
        "postgres" | "postgresql" => {
            return Ok(Arc::new(super::PostgresBroker::new(url, options)?));
        }
        _ => {}
    }
    if let Some(backend) = BACKENDS.iter().find(|b| b.schemes.contains(&scheme)) {
        return Err(BrokerError(format!(
            "broker {scheme:?} is not in this build: enable the cargo feature {:?}",
            backend.feature
        )));
    }
    Err(BrokerError(format!(
        "unsupported broker {scheme:?}: this build supports {}",
        supported_schemes().join(", ")
    )))
}

/// The URL schemes this build can open, `memory` first.
pub fn supported_schemes() -> Vec<&'static str> {
    let mut schemes = vec!["memory"];
    for backend in BACKENDS.iter().filter(|b| b.enabled) {
        schemes.extend_from_slice(backend.schemes);
    }
    schemes
}

/// `redis` for `redis://...`; `memory` for the bare words the in-memory broker
/// has always accepted.
fn scheme_of(url: &str) -> &str {
    let url = url.trim();
    if url.is_empty() {
        return "memory";
    }
    url.split_once(':').map_or(url, |(scheme, _)| scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_read_from_urls_and_bare_words() {
        assert_eq!(scheme_of(""), "memory");
        assert_eq!(scheme_of("memory"), "memory");
        assert_eq!(scheme_of("memory://"), "memory");
        assert_eq!(scheme_of("redis://127.0.0.1:6379/2"), "redis");
        assert_eq!(scheme_of("postgresql://u@h/db"), "postgresql");
    }

    #[test]
    fn an_unknown_scheme_lists_the_supported_ones() {
        let error = from_url("kafka://somewhere", &BrokerOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("\"kafka\""), "{error}");
        for scheme in supported_schemes() {
            assert!(error.contains(scheme), "{error}");
        }
    }
}
