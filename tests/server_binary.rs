//! The reference server as a user runs it: the real binary, no configuration beyond a
//! free port, demo mode, REST, health endpoints, startup errors, graceful shutdown.

mod common;

use std::{process::Stdio, time::Duration};

use common::{
    binary::{Binary, TempDir},
    server::{Client, Ended, SECRET, WAIT, token},
};
use serde_json::{Value, json};
use tokio::process::Command;

/// Starts the binary in a fresh directory with `env`; waits for its URL line.
async fn start(env: &[(&str, &str)]) -> Binary {
    Binary::start(TempDir::new(), env, Stdio::null()).await
}

#[tokio::test]
async fn starts_with_no_configuration_in_demo_mode() {
    let server = start(&[]).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        server.dir.0.join("tidings.db").exists(),
        "./tidings.db is created"
    );

    // Demo mode mints tokens; they work for REST and WebSocket.
    let minted: Value = http
        .post(format!("{}/demo/token", server.base))
        .json(&json!({"sub": "ann"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = minted["token"].as_str().unwrap().to_owned();
    let ws_url = format!(
        "{}/realtime/subscribe",
        server.base.replace("http://", "ws://")
    );
    let mut client = Client::authenticated(&ws_url, &jwt).await;
    client.subscribe("s", "todos:*").await;

    let unauthorized = http
        .get(format!("{}/api/todos", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let created = http
        .post(format!("{}/api/todos", server.base))
        .bearer_auth(&jwt)
        .json(&json!({"title": "from the binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let event = client.recv_event().await;
    assert_eq!(event["record"]["title"], "from the binary");
    assert_eq!(event["record"]["owner_id"], "ann");

    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tidings_connections 1",
        "tidings_subscriptions 1",
        "tidings_events_published_total 1",
        "tidings_events_delivered_total 1",
        "tidings_queue_overflows_total 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    assert!(
        http.get(format!("{}/realtime/client.js", server.base))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

#[tokio::test]
async fn with_a_key_configured_demo_minting_is_off() {
    let server = start(&[("TIDINGS_JWT_SECRET", SECRET)]).await;
    let http = reqwest::Client::new();
    let mint = http
        .post(format!("{}/demo/token", server.base))
        .json(&json!({"sub": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mint.status(), 404);
    let list = http
        .get(format!("{}/api/todos", server.base))
        .bearer_auth(token("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
}

/// Runs the binary in a fresh directory with `args` and `env` (nothing else inherited,
/// `RUST_BACKTRACE=1` set) and expects it to refuse to start, within a bounded time,
/// with exactly one line on stderr that says each of `says` and leaks nothing.
async fn assert_refused(args: &[&str], env: &[(&str, &str)], says: &[&str]) {
    let dir = TempDir::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .current_dir(&dir.0)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        .env("TIDINGS_BIND", "127.0.0.1:0")
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} {env:?}: still running after {WAIT:?}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{args:?} {env:?} should fail: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let [line] = lines[..] else {
        panic!("{args:?} {env:?}: one line expected on stderr:\n{stderr}");
    };
    assert!(line.starts_with("tidings: error: "), "{line}");
    for needle in says {
        assert!(
            line.contains(needle),
            "{args:?} {env:?}: {needle:?} missing: {line}"
        );
    }
    for leak in ["stack backtrace", "panicked", "hunter2"] {
        assert!(!stderr.contains(leak), "{args:?} {env:?}: {stderr}");
    }
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn bad_settings_are_refused_in_one_line() {
    for (name, value, says) in [
        (
            "TIDINGS_AUTH_TIMEOUT",
            "soon",
            ["TIDINGS_AUTH_TIMEOUT", "duration"],
        ),
        (
            "TIDINGS_PING_INTERVAL",
            "often",
            ["TIDINGS_PING_INTERVAL", "duration"],
        ),
        ("TIDINGS_BIND", "nowhere", ["TIDINGS_BIND", "nowhere"]),
        ("TIDINGS_REPLAY_CAP", "-1", ["TIDINGS_REPLAY_CAP", "-1"]),
        (
            "TIDINGS_WRITE_TIMEOUT",
            "never",
            ["TIDINGS_WRITE_TIMEOUT", "duration"],
        ),
        (
            "TIDINGS_RATE_LIMIT_TOLERANCE",
            "-1",
            ["TIDINGS_RATE_LIMIT_TOLERANCE", "-1"],
        ),
        (
            "TIDINGS_MAX_CONNECTION_AGE",
            "0s",
            ["connection.max_connection_age", "must be positive"],
        ),
        (
            "TIDINGS_DATABASE_MAX_CONNECTIONS",
            "many",
            ["TIDINGS_DATABASE_MAX_CONNECTIONS", "many"],
        ),
        (
            "TIDINGS_DATABASE_MAX_CONNECTIONS",
            "0",
            ["database_max_connections", "must be 1 to 1024, not 0"],
        ),
        (
            "TIDINGS_SQLITE_BUSY_TIMEOUT",
            "1h",
            ["sqlite_busy_timeout", "must be 1ms to 600s, not 3600s"],
        ),
        // Checked by the library, which names the setting by its TOML key.
        (
            "TIDINGS_JWT_SECRET",
            "short",
            ["jwt.secret", "at least 32 bytes"],
        ),
    ] {
        assert_refused(&[], &[(name, value)], &says).await;
    }
    assert_refused(&["--verbose"], &[], &["unknown argument \"--verbose\""]).await;
}

#[tokio::test]
async fn an_unparsable_config_file_is_refused_in_one_line() {
    let dir = TempDir::new();
    let file = dir.0.join("tidings.toml");
    std::fs::write(&file, "bind = \"127.0.0.1:0\"\n[realtime\n").unwrap();
    let file = file.to_str().unwrap();
    assert_refused(
        &["--config", file],
        &[],
        &[&format!("cannot parse {file} at line 2")],
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_database_is_refused_in_one_line_without_its_password() {
    let url = format!(
        "postgres://tidings:hunter2@127.0.0.1:{}/test",
        closed_port()
    );
    let shown = url.replace("hunter2", "***");
    assert_refused(
        &[],
        &[("TIDINGS_DATABASE_URL", &url)],
        &[&format!("cannot open the database at {shown}: "), "refused"],
    )
    .await;
    assert_refused(
        &[],
        &[("TIDINGS_DATABASE_URL", "mysql://x")],
        &["cannot open the database at mysql://x: ", "unsupported"],
    )
    .await;
}

#[tokio::test]
async fn an_unknown_broker_scheme_is_refused_in_one_line() {
    assert_refused(
        &[],
        &[("TIDINGS_BROKER_URL", "carrier-pigeon://x")],
        &[
            "cannot use the broker at carrier-pigeon://x: ",
            "unsupported broker \"carrier-pigeon\"",
        ],
    )
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_exits_in_time() {
    let mut server = start(&[
        ("TIDINGS_JWT_SECRET", SECRET),
        ("TIDINGS_SHUTDOWN_TIMEOUT", "3s"),
    ])
    .await;
    let ws_url = format!(
        "{}/realtime/subscribe",
        server.base.replace("http://", "ws://")
    );
    let mut client = Client::authenticated(&ws_url, &token("ann")).await;

    let pid = server.child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(client.ended().await, Ended::Code(1001));
    let exit = tokio::time::timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("exited within the shutdown deadline")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
