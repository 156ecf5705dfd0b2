//! A broker failure costs latency, never events: a node notices a broker that is down
//! (its server killed, or not there at startup) or silent (paused, or a broker that
//! never delivers), says so in `Realtime::broker_status`, `/metrics` and `/readyz`,
//! keeps delivering from the log by polling it faster, and comes back up when the
//! broker does. Also: SQLite with a broker that connects several nodes is refused.
//!
//! The tests that kill or pause Redis start their own `redis-server` on a free port.

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    db::{Backend, fresh_database_url, sqlite_pool},
    server::{Client, Extras, TestServer, seq_of, test_config},
};
use futures::{FutureExt, future::BoxFuture, stream::BoxStream};
use serde_json::{Value, json};
use tidings::{
    Broadcast, BuildError, Config, Db, Realtime, Target,
    broker::{Broker, BrokerError, BrokerOptions, BrokerState},
};

/// Bound on the broker's state changing after its server did.
const STATE_WAIT: Duration = Duration::from_secs(15);
/// Bound on one redis-server starting to listen.
const START_WAIT: Duration = Duration::from_secs(5);
/// Bound on one HTTP request or one binary run.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Settings that notice a broker failure quickly. The normal poll is far beyond
/// every bound here, so while the broker is up only doorbells deliver, and while it
/// is not only the fallback poll does.
fn quick_to_notice(config: &mut Config) {
    config.log.poll_interval = Duration::from_secs(600);
    config.broker.heartbeat_interval = Duration::from_millis(100);
    config.broker.silence_timeout = Duration::from_millis(500);
    config.broker.fallback_poll_interval = Duration::from_millis(50);
    config.broker.reconnect_backoff = Duration::from_millis(50);
    config.broker.reconnect_backoff_max = Duration::from_millis(500);
}

/// A Redis broker on `port` with a channel no other test uses, failing fast while
/// its server is down.
fn redis_broker(port: u16) -> Arc<dyn Broker> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let mut options = BrokerOptions::default().with_channel_prefix(format!("outage-{unique}"));
    options.connect_timeout = Duration::from_secs(1);
    options.publish_timeout = Duration::from_secs(1);
    tidings::broker::from_url(&format!("redis://127.0.0.1:{port}"), &options)
        .expect("opening the Redis broker")
}

/// A node (the demo app and the gateway, on HTTP) with `broker`, on a fresh
/// database of `backend`.
async fn node(backend: Backend, broker: Arc<dyn Broker>) -> TestServer {
    let url = fresh_database_url(backend).await;
    let extras = Extras {
        builder: Some(Box::new(move |builder| builder.broker(broker))),
        ..Extras::default()
    };
    tokio::time::timeout(
        STATE_WAIT,
        TestServer::start_on_with(&url, quick_to_notice, extras),
    )
    .await
    .expect("the node did not start in time")
}

/// Polls the node's broker state until it is `state`, within [`STATE_WAIT`].
async fn wait_for_state(realtime: &Realtime, state: BrokerState) {
    let deadline = Instant::now() + STATE_WAIT;
    loop {
        let status = realtime.broker_status();
        if status.state == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker is still {} after {STATE_WAIT:?}, expected {state}: {status:?}",
            status.state
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    tokio::time::timeout(REQUEST_WAIT, server.http().get(server.url(path)).send())
        .await
        .unwrap_or_else(|_| panic!("GET {path} timed out"))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn metrics(server: &TestServer) -> String {
    get(server, "/metrics").await.text().await.expect("body")
}

/// `/readyz`: its status and JSON body.
async fn readiness(server: &TestServer) -> (u16, Value) {
    let response = get(server, "/readyz").await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn broadcast(realtime: &Realtime, n: u64) {
    let event = Broadcast::new(Target::Collection("todos".into()), "n", json!(n));
    realtime.broadcast(event).await.expect("broadcast");
}

/// A client subscribed to `todos` on `server`.
async fn subscriber(server: &TestServer) -> Client {
    let mut client = server.connect("ann").await;
    client.subscribe("s", "todos").await;
    client
}

/// Receives the events `numbers`, in order, each exactly once: their seqs follow
/// `after` without a gap or a repeat. Returns the last seq.
async fn expect_in_order(
    client: &mut Client,
    numbers: std::ops::RangeInclusive<u64>,
    after: u64,
) -> u64 {
    let mut last = after;
    for n in numbers {
        let event = client.recv_event().await;
        assert_eq!(event["data"], n, "event {n} in order: {event}");
        assert_eq!(seq_of(&event), last + 1, "no gap, no repeat: {event}");
        last = seq_of(&event);
    }
    last
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A `redis-server` this test started; killed (SIGKILL) when dropped, panics
/// included, never the machine's shared one.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let port_arg = port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port_arg, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server (is it installed?): {e}"));
        let server = Self { child };
        let deadline = Instant::now() + START_WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port} within {START_WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Down: the server is killed, and comes back
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_killed_broker_costs_latency_not_events() {
    let port = free_port();
    let redis = OwnRedis::start(port).await;
    let server = node(Backend::Postgres, redis_broker(port)).await;
    let realtime = &server.realtime;
    wait_for_state(realtime, BrokerState::Up).await;
    assert!(metrics(&server).await.contains("\ntidings_broker_up 1\n"));
    let mut client = subscriber(&server).await;

    broadcast(realtime, 0).await;
    let first = client.recv_event().await;
    assert_eq!(first["data"], 0);
    let mut last = seq_of(&first);

    drop(redis);
    wait_for_state(realtime, BrokerState::Down).await;
    let text = metrics(&server).await;
    assert!(text.contains("\ntidings_broker_up 0\n"), "{text}");
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 200, "the node serves from the log: {body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["database"], "up");
    assert_eq!(body["broker"]["kind"], "redis");
    assert_eq!(body["broker"]["state"], "down");
    assert!(
        body["broker"]["since_ms"].as_u64().unwrap_or(0) > 0,
        "{body}"
    );

    // Written while the broker is down: delivered by the fallback poll.
    let recovered_before = realtime.broker_status().recovered_by_poll;
    for n in 1..=5 {
        broadcast(realtime, n).await;
    }
    last = expect_in_order(&mut client, 1..=5, last).await;
    let status = realtime.broker_status();
    assert!(
        status.recovered_by_poll >= recovered_before + 5,
        "events found by polling are counted: {status:?}"
    );
    let text = metrics(&server).await;
    let recovered = format!(
        "\ntidings_events_recovered_by_poll_total {}\n",
        status.recovered_by_poll
    );
    assert!(text.contains(&recovered), "{text}");

    // The server comes back on the same port: up again, after reconnecting.
    let _redis = OwnRedis::start(port).await;
    wait_for_state(realtime, BrokerState::Up).await;
    let status = realtime.broker_status();
    assert!(status.reconnects >= 1, "{status:?}");
    let text = metrics(&server).await;
    assert!(text.contains("\ntidings_broker_up 1\n"), "{text}");
    assert!(
        text.contains(&format!(
            "\ntidings_broker_reconnects_total {}\n",
            status.reconnects
        )),
        "{text}"
    );
    let (_, body) = readiness(&server).await;
    assert_eq!(body["broker"]["state"], "up");

    // Doorbells ring again, and nothing from the outage comes twice.
    for n in 6..=8 {
        broadcast(realtime, n).await;
    }
    expect_in_order(&mut client, 6..=8, last).await;
}

#[tokio::test]
async fn a_node_whose_broker_is_down_at_startup_starts_and_serves_from_the_log() {
    let port = free_port();
    let server = node(Backend::Postgres, redis_broker(port)).await;
    let realtime = &server.realtime;
    assert_ne!(realtime.broker_status().state, BrokerState::Up);
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["broker"]["state"], "down");

    let mut client = subscriber(&server).await;
    broadcast(realtime, 0).await;
    let first = client.recv_event().await;
    assert_eq!(first["data"], 0);

    let _redis = OwnRedis::start(port).await;
    wait_for_state(realtime, BrokerState::Up).await;
    broadcast(realtime, 1).await;
    expect_in_order(&mut client, 1..=1, seq_of(&first)).await;
}

// ---------------------------------------------------------------------------
// Silent: subscribed, but nothing arrives
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_paused_broker_is_detected_as_silent() {
    let port = free_port();
    let redis = OwnRedis::start(port).await;
    let server = node(Backend::Postgres, redis_broker(port)).await;
    let realtime = &server.realtime;
    wait_for_state(realtime, BrokerState::Up).await;

    // Paused, the server keeps its connections open but answers nothing.
    redis.signal("STOP");
    wait_for_state(realtime, BrokerState::Silent).await;
    assert!(metrics(&server).await.contains("\ntidings_broker_up 0\n"));

    redis.signal("CONT");
    wait_for_state(realtime, BrokerState::Up).await;
    assert!(realtime.broker_status().reconnects >= 1);
}

/// A broker whose subscriptions never deliver anything, heartbeats included.
struct MuteBroker;

impl Broker for MuteBroker {
    fn publish(&self, _payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        let silence: BoxStream<'static, Bytes> = Box::pin(futures::stream::pending());
        futures::future::ready(Ok(silence)).boxed()
    }
}

#[tokio::test]
async fn a_broker_that_never_delivers_is_silent_and_the_log_still_delivers() {
    let server = node(Backend::Sqlite, Arc::new(MuteBroker)).await;
    let realtime = &server.realtime;
    let mut client = subscriber(&server).await;
    wait_for_state(realtime, BrokerState::Silent).await;
    assert_eq!(realtime.broker_status().kind, "custom");

    // Each silent subscription is replaced.
    let deadline = Instant::now() + STATE_WAIT;
    while realtime.broker_status().reconnects < 2 {
        assert!(Instant::now() < deadline, "no resubscription after silence");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(realtime.broker_status().state, BrokerState::Silent);
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["broker"]["state"], "silent");

    for n in 0..3 {
        broadcast(realtime, n).await;
    }
    let first = client.recv_event().await;
    assert_eq!(first["data"], 0);
    expect_in_order(&mut client, 1..=2, seq_of(&first)).await;
    assert!(realtime.broker_status().recovered_by_poll >= 3);
}

// ---------------------------------------------------------------------------
// Readiness follows the database
// ---------------------------------------------------------------------------

#[tokio::test]
async fn readyz_is_503_only_when_the_database_does_not_answer() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    wait_for_state(&server.realtime, BrokerState::Up).await;
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["broker"]["kind"], "memory");
    assert_eq!(body["broker"]["state"], "up");

    sqlite_pool(server.realtime.db()).close().await;
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["database"], "down");
}

// ---------------------------------------------------------------------------
// SQLite is one node
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_with_a_broker_for_several_nodes_is_refused_at_build() {
    let url = fresh_database_url(Backend::Sqlite).await;
    for (broker_url, kind) in [
        (format!("redis://127.0.0.1:{}", free_port()), "redis"),
        (format!("nats://127.0.0.1:{}", free_port()), "nats"),
        (
            format!("postgres://u@127.0.0.1:{}/db", free_port()),
            "postgres",
        ),
    ] {
        let db = Db::connect(&url).await.expect("SQLite");
        let broker = tidings::broker::from_url(&broker_url, &BrokerOptions::default())
            .expect("opening never connects");
        let built = tokio::time::timeout(
            REQUEST_WAIT,
            Realtime::builder(test_config(), db).broker(broker).build(),
        )
        .await
        .expect("refused at once");
        let error = built.expect_err("refused");
        assert!(
            matches!(error, BuildError::SqliteWithSharedBroker { broker } if broker == kind),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("SQLite") && message.contains(kind) && message.contains("memory"),
            "{message}"
        );
    }
}

/// Runs the reference server in a fresh directory with `env` and expects it to
/// refuse to start with one line on stderr containing `says`.
async fn assert_binary_refuses(env: &[(&str, &str)], says: &str) {
    let dir = std::env::temp_dir()
        .join("tidings-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TIDINGS_BIND", "127.0.0.1:0")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let output = tokio::time::timeout(REQUEST_WAIT, command.output())
        .await
        .expect("the server did not stop in time")
        .expect("running the server");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{env:?} should fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("tidings: error: "), "{stderr}");
    assert!(lines[0].contains(says), "{says:?} missing: {stderr}");
}

#[tokio::test]
async fn the_reference_server_refuses_sqlite_with_redis_and_a_bad_prefix() {
    let redis = format!("redis://127.0.0.1:{}", free_port());
    assert_binary_refuses(
        &[("TIDINGS_BROKER_URL", &redis)],
        "the redis broker connects several nodes, but the event log is on SQLite",
    )
    .await;
    assert_binary_refuses(
        &[("TIDINGS_BROKER_PREFIX", "has space")],
        "broker.channel_prefix",
    )
    .await;
    assert_binary_refuses(
        &[("TIDINGS_BROKER_SILENCE_TIMEOUT", "1ms")],
        "broker.silence_timeout",
    )
    .await;
}
