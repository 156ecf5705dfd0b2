//! `Config::validate`: every range checked once, at startup.

use std::time::Duration;

use super::Config;

/// Longest `log.relay_linger` and `log.relay_settle` accepted: past it either wait
/// would be a poll interval.
const MAX_RELAY_WAIT: Duration = Duration::from_secs(1);
/// Longest `handlers.timeout` accepted.
const MAX_HANDLER_TIMEOUT: Duration = Duration::from_secs(300);
/// Most `handlers.max_pending` accepted.
const MAX_HANDLER_PENDING: usize = 1024;

/// A setting outside its allowed range. Names the setting and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {setting} = {value}: {why}")]
pub struct ConfigError {
    /// Dotted name of the setting.
    pub setting: &'static str,
    /// The offending value.
    pub value: String,
    /// What is allowed.
    pub why: &'static str,
}

impl Config {
    /// Checks every range once. Key material is checked when the verifier is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |setting, value: String, why| {
            Err(ConfigError {
                setting,
                value,
                why,
            })
        };
        if self.jwt.leeway > Duration::from_secs(30) {
            return fail(
                "jwt.leeway",
                format!("{:?}", self.jwt.leeway),
                "at most 30s",
            );
        }
        let c = &self.connection;
        let t = &self.transport;
        let positive: &[(&str, usize)] = &[
            ("jwt.jwks_max_bytes", self.jwt.jwks_max_bytes),
            (
                "connection.max_connections_per_user",
                c.max_connections_per_user,
            ),
            (
                "connection.max_connections_per_ip",
                c.max_connections_per_ip,
            ),
            ("transport.max_sockets_per_ip", t.max_sockets_per_ip),
            ("transport.max_header_bytes", t.max_header_bytes),
            ("transport.max_tracked_keys", t.max_tracked_keys),
            ("publish.max_payload_bytes", self.publish.max_payload_bytes),
            ("connection.max_message_size", c.max_message_size),
            (
                "connection.max_glob_subscriptions",
                c.max_glob_subscriptions,
            ),
            (
                "connection.max_glob_subscriptions_per_user",
                c.max_glob_subscriptions_per_user,
            ),
            ("connection.max_globs_per_node", c.max_globs_per_node),
            ("connection.max_glob_wildcards", c.max_glob_wildcards),
            ("connection.max_glob_length", c.max_glob_length),
            ("connection.send_queue_capacity", c.send_queue_capacity),
            ("connection.send_queue_bytes", c.send_queue_bytes),
            ("connection.max_subscriptions", c.max_subscriptions),
            ("connection.max_connections", c.max_connections),
            ("log.ring_capacity", self.log.ring_capacity),
            ("log.catch_up_max_events", self.log.catch_up_max_events),
            ("sse.queue_capacity", self.sse.queue_capacity),
            ("presence.queue_capacity", self.presence.queue_capacity),
            ("handlers.max_pending", self.handlers.max_pending),
        ];
        for &(setting, value) in positive {
            if value == 0 {
                return fail(setting, "0".into(), "must be at least 1");
            }
        }
        let rates: [(&'static str, u32); 3] = [
            ("connection.messages_per_second", c.messages_per_second),
            (
                "transport.connects_per_second_per_ip",
                t.connects_per_second_per_ip,
            ),
            ("publish.events_per_window", self.publish.events_per_window),
        ];
        for (setting, value) in rates {
            if value == 0 {
                return fail(setting, "0".into(), "must be at least 1");
            }
        }
        if c.read_buffer_size < 256 || c.write_buffer_size < 256 {
            return fail(
                "connection.read_buffer_size/write_buffer_size",
                format!("{}/{}", c.read_buffer_size, c.write_buffer_size),
                "at least 256 bytes",
            );
        }
        let b = &self.broker;
        let j = &self.jwt;
        let durations: &[(&str, Duration)] = &[
            ("jwt.jwks_refresh_interval", j.jwks_refresh_interval),
            ("jwt.jwks_min_refetch_interval", j.jwks_min_refetch_interval),
            ("jwt.jwks_fetch_timeout", j.jwks_fetch_timeout),
            ("transport.header_read_timeout", t.header_read_timeout),
            ("transport.idle_timeout", t.idle_timeout),
            ("transport.prune_interval", t.prune_interval),
            ("publish.window", self.publish.window),
            ("log.resume_interval", self.log.resume_interval),
            ("auth.auth_timeout", self.auth.auth_timeout),
            ("connection.write_timeout", c.write_timeout),
            (
                "connection.max_connection_age",
                c.max_connection_age.unwrap_or(Duration::MAX),
            ),
            ("connection.ping_interval", c.ping_interval),
            ("connection.ping_timeout", c.ping_timeout),
            ("log.poll_interval", self.log.poll_interval),
            ("log.sequencer_timeout", self.log.sequencer_timeout),
            ("sse.keep_alive", self.sse.keep_alive),
            ("broker.heartbeat_interval", b.heartbeat_interval),
            ("broker.silence_timeout", b.silence_timeout),
            ("broker.fallback_poll_interval", b.fallback_poll_interval),
            ("broker.reconnect_backoff", b.reconnect_backoff),
            ("broker.reconnect_backoff_max", b.reconnect_backoff_max),
            ("presence.sync_interval", self.presence.sync_interval),
            ("handlers.timeout", self.handlers.timeout),
        ];
        for &(setting, value) in durations {
            if value.is_zero() {
                return fail(setting, "0s".into(), "must be positive");
            }
        }
        let relay_waits = [
            ("log.relay_linger", self.log.relay_linger),
            ("log.relay_settle", self.log.relay_settle),
        ];
        for (setting, value) in relay_waits {
            if value > MAX_RELAY_WAIT {
                return fail(setting, format!("{value:?}"), "at most 1 s");
            }
        }
        if self.handlers.timeout > MAX_HANDLER_TIMEOUT {
            return fail(
                "handlers.timeout",
                format!("{:?}", self.handlers.timeout),
                "at most 5 min",
            );
        }
        if self.handlers.max_pending > MAX_HANDLER_PENDING {
            return fail(
                "handlers.max_pending",
                self.handlers.max_pending.to_string(),
                "at most 1024",
            );
        }
        if self.sse.keep_alive > Duration::from_secs(15) {
            return fail(
                "sse.keep_alive",
                format!("{:?}", self.sse.keep_alive),
                "at most 15s",
            );
        }
        let minimums: [(&'static str, u64, u64, &'static str); 4] = [
            (
                "log.ring_max_bytes",
                self.log.ring_max_bytes as u64,
                64 * 1024,
                "at least 64 KiB",
            ),
            ("log.retention", self.log.retention, 1, "must be at least 1"),
            (
                "log.retention_bytes",
                self.log.retention_bytes,
                1024 * 1024,
                "at least 1 MiB",
            ),
            (
                "broker.memory_buffer_bytes",
                self.broker.memory_buffer_bytes as u64,
                64 * 1024,
                "at least 64 KiB",
            ),
        ];
        for (setting, value, minimum, why) in minimums {
            if value < minimum {
                return fail(setting, value.to_string(), why);
            }
        }
        self.validate_publish()?;
        let l = &self.log;
        let at_least_one: [(&'static str, u64); 3] = [
            ("log.relay_batch", u64::from(l.relay_batch)),
            ("log.resume_scan_budget", l.resume_scan_budget),
            ("log.resume_burst", u64::from(l.resume_burst)),
        ];
        for (setting, value) in at_least_one {
            if value == 0 {
                return fail(setting, "0".into(), "must be at least 1");
            }
        }
        let p = &self.presence;
        if p.node_ttl <= p.sync_interval {
            return fail(
                "presence.node_ttl",
                format!("{:?}", p.node_ttl),
                "must exceed presence.sync_interval (3x is a good choice)",
            );
        }
        if p.max_message_bytes < 1024 {
            return fail(
                "presence.max_message_bytes",
                p.max_message_bytes.to_string(),
                "at least 1024 bytes",
            );
        }
        self.validate_broker()
    }

    fn validate_publish(&self) -> Result<(), ConfigError> {
        let p = &self.publish;
        // One payload must fit the byte quota, or no publish could ever pass. (The
        // frame limit needs no check: a payload is never larger than its frame.)
        if p.max_payload_bytes as u64 > p.bytes_per_window {
            return Err(ConfigError {
                setting: "publish.max_payload_bytes",
                value: p.max_payload_bytes.to_string(),
                why: "at most publish.bytes_per_window",
            });
        }
        if p.bytes_per_window > u64::from(u32::MAX) {
            return Err(ConfigError {
                setting: "publish.bytes_per_window",
                value: p.bytes_per_window.to_string(),
                why: "at most 4294967295",
            });
        }
        Ok(())
    }

    fn validate_broker(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        // Otherwise a working broker would be taken for silent between heartbeats.
        if b.silence_timeout <= b.heartbeat_interval {
            return Err(ConfigError {
                setting: "broker.silence_timeout",
                value: format!("{:?}", b.silence_timeout),
                why: "must exceed broker.heartbeat_interval (3x is a good choice)",
            });
        }
        if b.reconnect_backoff > b.reconnect_backoff_max {
            return Err(ConfigError {
                setting: "broker.reconnect_backoff",
                value: format!("{:?}", b.reconnect_backoff),
                why: "at most broker.reconnect_backoff_max",
            });
        }
        let options =
            crate::broker::BrokerOptions::default().with_channel_prefix(b.channel_prefix.clone());
        if options.channel().is_err() {
            return Err(ConfigError {
                setting: "broker.channel_prefix",
                value: format!("{:?}", b.channel_prefix),
                why: "ASCII letters, digits, '-', '_' and single inner dots",
            });
        }
        Ok(())
    }
}
