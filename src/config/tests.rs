//! Parsing the configuration and checking its ranges.

use std::time::Duration;

use super::{Config, JwtAlgorithm};

/// The setting `validate` names when the defaults are changed by `edit`.
fn rejected_setting(edit: impl FnOnce(&mut Config)) -> &'static str {
    let mut config = Config::default();
    edit(&mut config);
    config.validate().unwrap_err().setting
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn bad_values_name_the_setting() {
    assert_eq!(
        rejected_setting(|c| c.jwt.leeway = Duration::from_secs(60)),
        "jwt.leeway"
    );
    assert_eq!(
        rejected_setting(|c| c.connection.send_queue_capacity = 0),
        "connection.send_queue_capacity"
    );
}

#[test]
fn hardening_limits_are_checked() {
    type Edit = fn(&mut Config);
    let cases: [(Edit, &str); 10] = [
        (|c| c.handlers.timeout = Duration::ZERO, "handlers.timeout"),
        (
            |c| c.handlers.timeout = Duration::from_secs(301),
            "handlers.timeout",
        ),
        (|c| c.handlers.max_pending = 1025, "handlers.max_pending"),
        (
            |c| c.transport.header_read_timeout = Duration::ZERO,
            "transport.header_read_timeout",
        ),
        (
            |c| c.transport.connects_per_second_per_ip = 0,
            "transport.connects_per_second_per_ip",
        ),
        (
            |c| c.connection.max_connections_per_user = 0,
            "connection.max_connections_per_user",
        ),
        (
            |c| c.publish.max_payload_bytes = 5_000_000,
            "publish.max_payload_bytes",
        ),
        (|c| c.log.retention_bytes = 1000, "log.retention_bytes"),
        (|c| c.log.ring_max_bytes = 1000, "log.ring_max_bytes"),
        (
            |c| c.jwt.jwks_min_refetch_interval = Duration::ZERO,
            "jwt.jwks_min_refetch_interval",
        ),
    ];
    for (edit, setting) in cases {
        assert_eq!(rejected_setting(edit), setting);
    }
    let parsed: Config = toml::from_str(
        "[transport]\nidle_timeout = \"5s\"\n[publish]\nwindow = \"10s\"\n\
         [handlers]\ntimeout = \"2s\"\nmax_pending = 4\n\
         [[jwt.jwks]]\nissuer = \"https://idp\"\nfile = \"/k.json\"\nalgorithms = [\"EdDSA\"]",
    )
    .unwrap();
    assert_eq!(parsed.transport.idle_timeout, Duration::from_secs(5));
    assert_eq!(parsed.handlers.timeout, Duration::from_secs(2));
    assert_eq!(parsed.handlers.max_pending, 4);
    assert_eq!(parsed.jwt.jwks[0].algorithms, [JwtAlgorithm::EdDSA]);
    parsed.validate().unwrap();
}

#[test]
fn broker_settings_are_checked() {
    assert_eq!(
        rejected_setting(|c| c.broker.silence_timeout = c.broker.heartbeat_interval),
        "broker.silence_timeout"
    );
    assert_eq!(
        rejected_setting(|c| c.broker.fallback_poll_interval = Duration::ZERO),
        "broker.fallback_poll_interval"
    );
    assert_eq!(
        rejected_setting(|c| c.broker.reconnect_backoff = Duration::from_secs(10)),
        "broker.reconnect_backoff"
    );
    for prefix in ["", "has space", "a..b", "x.*"] {
        assert_eq!(
            rejected_setting(|c| c.broker.channel_prefix = prefix.into()),
            "broker.channel_prefix",
            "{prefix:?}"
        );
    }
    let parsed: Config =
        toml::from_str("[broker]\nsilence_timeout = \"10s\"\nchannel_prefix = \"app-1\"").unwrap();
    assert_eq!(parsed.broker.silence_timeout, Duration::from_secs(10));
    assert_eq!(parsed.broker.channel_prefix, "app-1");
    parsed.validate().unwrap();
}

#[test]
fn relay_linger_and_settle_parse_and_are_bounded() {
    let parsed: Config =
        toml::from_str("[log]\nrelay_linger = \"0s\"\nrelay_settle = \"0s\"").unwrap();
    assert_eq!(parsed.log.relay_linger, Duration::ZERO);
    assert_eq!(parsed.log.relay_settle, Duration::ZERO);
    parsed.validate().unwrap();
    assert_eq!(
        rejected_setting(|c| c.log.relay_linger = Duration::from_millis(1001)),
        "log.relay_linger"
    );
    assert_eq!(
        rejected_setting(|c| c.log.relay_settle = Duration::from_millis(1001)),
        "log.relay_settle"
    );
}

#[test]
fn presence_node_ttl_must_outlast_a_sync() {
    assert_eq!(
        rejected_setting(|c| c.presence.node_ttl = c.presence.sync_interval),
        "presence.node_ttl"
    );
    let parsed: Config = toml::from_str("[presence]\ngrace = \"1s\"").unwrap();
    assert_eq!(parsed.presence.grace, Duration::from_secs(1));
}

#[test]
fn write_timeout_and_connection_age_parse_and_are_checked() {
    let parsed: Config =
        toml::from_str("[connection]\nwrite_timeout = \"3s\"\nmax_connection_age = \"1h\"")
            .unwrap();
    assert_eq!(parsed.connection.write_timeout, Duration::from_secs(3));
    assert_eq!(
        parsed.connection.max_connection_age,
        Some(Duration::from_secs(3600))
    );
    parsed.validate().unwrap();
    assert_eq!(Config::default().connection.max_connection_age, None);
    assert_eq!(
        rejected_setting(|c| c.connection.max_connection_age = Some(Duration::ZERO)),
        "connection.max_connection_age"
    );
    assert_eq!(
        rejected_setting(|c| c.connection.write_timeout = Duration::ZERO),
        "connection.write_timeout"
    );
}

#[test]
fn matching_and_resume_limits_must_be_positive() {
    type BreakIt = fn(&mut Config);
    let cases: [(&str, BreakIt); 5] = [
        ("connection.max_globs_per_node", |c| {
            c.connection.max_globs_per_node = 0;
        }),
        ("connection.max_glob_wildcards", |c| {
            c.connection.max_glob_wildcards = 0;
        }),
        ("log.resume_scan_budget", |c| c.log.resume_scan_budget = 0),
        ("log.resume_burst", |c| c.log.resume_burst = 0),
        ("log.resume_interval", |c| {
            c.log.resume_interval = Duration::ZERO
        }),
    ];
    for (setting, break_it) in cases {
        assert_eq!(rejected_setting(break_it), setting);
    }
    let parsed: Config =
        toml::from_str("[connection]\nmax_glob_subscriptions = 5\n[log]\nresume_interval = \"1s\"")
            .unwrap();
    assert_eq!(parsed.connection.max_glob_subscriptions, 5);
    assert_eq!(parsed.log.resume_interval, Duration::from_secs(1));
}

#[test]
fn toml_with_unknown_field_is_refused() {
    let parsed: Result<Config, _> = toml::from_str("nonsense = 1");
    assert!(parsed.is_err());
    let parsed: Config = toml::from_str("[auth]\nauth_timeout = \"3s\"").unwrap();
    assert_eq!(parsed.auth.auth_timeout, Duration::from_secs(3));
}
