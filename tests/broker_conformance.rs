//! The conformance suite every `Broker` must pass, run against memory, Redis, NATS and
//! Postgres LISTEN/NOTIFY on real servers (`REDIS_URL`, `NATS_URL`, `DATABASE_URL`,
//! defaulting to the local ones). An unreachable server fails the test: never skipped.
//!
//! Brokers are at-most-once doorbells, so the suite asserts only what the log relies
//! on: a live subscriber on any node receives what is published after it subscribed,
//! in each publisher's order, byte for byte (or, when too large, by reference); a lost
//! connection ends the subscription, and subscribing again works once the server is
//! back; a broker opens while its server is down.
//!
//! Tests that kill a server start their own `redis-server` / `nats-server` on a free
//! port; for Postgres they terminate the listening session instead of the server.

// Helpers for the backends a build leaves out go unused in that build.
#![cfg_attr(
    not(all(feature = "redis", feature = "nats", feature = "postgres-notify")),
    allow(dead_code, unused_imports)
)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    brokers::{BrokerKind, BrokerServer, free_port},
    db::{Backend, fresh_database_url, postgres_url},
    server::{Client, serve_gateway, test_config, token},
};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use serde_json::json;
use tidings::{
    __private::{BrokerMessage, DirectEvent, Recipients, fit_payload},
    Broadcast, Db, LogEntry, Realtime, Target,
    broker::{Broker, BrokerError, BrokerOptions, MemoryBroker},
    demo,
};

type Subscription = BoxStream<'static, Bytes>;

/// Bound on one message, subscription or publish on a healthy broker.
const WAIT: Duration = Duration::from_secs(5);
/// Bound on a subscription noticing that its connection is gone.
const END_WAIT: Duration = Duration::from_secs(10);
/// Bound on a broker working again once its server is back.
const RECOVER_WAIT: Duration = Duration::from_secs(20);
/// Options for brokers whose server is down on purpose: fail fast.
const DOWN_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Options with a channel prefix no other test (or app on the shared servers) uses.
fn isolated_options() -> BrokerOptions {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    BrokerOptions::default().with_channel_prefix(format!("test-{}", &unique[..12]))
}

fn fail_fast(options: BrokerOptions) -> BrokerOptions {
    let mut options = options;
    options.connect_timeout = DOWN_TIMEOUT;
    options.publish_timeout = DOWN_TIMEOUT;
    options
}

fn env_url(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn redis_url() -> String {
    env_url("REDIS_URL", "redis://127.0.0.1:6379")
}

fn nats_url() -> String {
    env_url("NATS_URL", "nats://127.0.0.1:4222")
}

fn open(url: &str, options: &BrokerOptions) -> Arc<dyn Broker> {
    tidings::broker::from_url(url, options)
        .unwrap_or_else(|e| panic!("opening the broker {url}: {e}"))
}

async fn subscribe(broker: &dyn Broker) -> Subscription {
    tokio::time::timeout(WAIT, broker.subscribe())
        .await
        .expect("subscribing timed out")
        .expect("subscribe")
}

async fn publish(broker: &dyn Broker, payload: impl Into<Bytes>) {
    tokio::time::timeout(WAIT, broker.publish(payload.into()))
        .await
        .expect("publishing timed out")
        .expect("publish");
}

async fn next(stream: &mut Subscription) -> Bytes {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("timed out waiting for a message")
        .expect("stream ended")
}

/// Fails with a message naming the server when the broker cannot subscribe.
async fn reachable(broker: &dyn Broker, what: &str, env: &str) -> Subscription {
    match tokio::time::timeout(WAIT, broker.subscribe()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => panic!("{what} is unreachable ({e}); start it or set {env}"),
        Err(_) => panic!("{what} did not answer within {WAIT:?}; start it or set {env}"),
    }
}

/// Asserts the subscription ends (messages still in flight are skipped).
async fn assert_ends(stream: &mut Subscription, why: &str) {
    let ended =
        tokio::time::timeout(END_WAIT, async { while stream.next().await.is_some() {} }).await;
    assert!(
        ended.is_ok(),
        "the subscription did not end within {END_WAIT:?} after {why}"
    );
}

/// Subscribes again and publishes probes until one comes back, within
/// [`RECOVER_WAIT`]: at-most-once brokers may drop probes while reconnecting.
async fn assert_works_again(broker: &dyn Broker) {
    let deadline = Instant::now() + RECOVER_WAIT;
    let mut stream = loop {
        match tokio::time::timeout(WAIT, broker.subscribe()).await {
            Ok(Ok(stream)) => break stream,
            Ok(Err(_)) | Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "could not subscribe again within {RECOVER_WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let probe = Bytes::from_static(b"probe");
    loop {
        assert!(
            Instant::now() < deadline,
            "no probe came back within {RECOVER_WAIT:?}"
        );
        // A failed publish is fine here: the publish connection may still be reconnecting.
        let _ = tokio::time::timeout(WAIT, broker.publish(probe.clone())).await;
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        {
            assert_eq!(got, probe);
            return;
        }
    }
}

/// Asserts that using a broker whose server is down fails or returns within a bound,
/// and never hangs (the relay publishes in order and must go on).
async fn assert_fails_fast_while_down(broker: &dyn Broker) {
    let bound = DOWN_TIMEOUT * 3;
    let subscribed = tokio::time::timeout(bound, broker.subscribe())
        .await
        .expect("subscribe must not hang while the server is down");
    assert!(
        subscribed.is_err(),
        "subscribing to a server that is down succeeded"
    );
    tokio::time::timeout(bound, broker.publish(Bytes::from_static(b"lost")))
        .await
        .expect("publish must not hang while the server is down")
        .ok();
}

/// The whole suite against the shared server at `url` (`what`, set by `env`), after
/// checking it answers at all, so an unreachable server fails with a clear message.
async fn conforms_at(url: &str, what: &str, env: &str) {
    let options = isolated_options();
    drop(reachable(&*open(url, &options), &format!("{what} at {url}"), env).await);
    conformance(|| open(url, &options)).await;
}

/// A broker of `kind` on a private server: killed, its subscription ends and using it
/// fails fast; started again on the same port, it works again.
async fn restart_resubscribes(kind: BrokerKind, what: &str) {
    let mut server = BrokerServer::start(kind).await;
    let broker = open(&server.url(), &fail_fast(isolated_options()));
    let mut stream = subscribe(&*broker).await;
    publish(&*broker, "before").await;
    assert_eq!(next(&mut stream).await, Bytes::from_static(b"before"));

    server.kill().await;
    assert_ends(&mut stream, &format!("{what} was killed")).await;
    assert_fails_fast_while_down(&*broker).await;

    server.restart().await;
    assert_works_again(&*broker).await;
}

/// A broker of `kind` opened while its server is down fails fast, and works once the
/// server is up.
async fn down_at_startup_works_later(kind: BrokerKind) {
    let mut server = BrokerServer::start(kind).await;
    server.kill().await;
    let broker = open(&server.url(), &fail_fast(isolated_options()));
    assert_fails_fast_while_down(&*broker).await;
    server.restart().await;
    assert_works_again(&*broker).await;
}

/// A logged message whose encoding is about `size` bytes.
fn logged(epoch: &str, seq: u64, size: usize) -> BrokerMessage {
    BrokerMessage::Logged {
        epoch: epoch.to_owned(),
        seq,
        event: LogEntry::broadcast("blobs", None, "blob", json!({ "blob": "x".repeat(size) })),
    }
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/// Runs the whole suite. Each call of `make` opens another instance on the same
/// backend, standing for another node.
async fn conformance(make: impl Fn() -> Arc<dyn Broker>) {
    let node_a = make();
    let node_b = make();
    let mut a1 = subscribe(&*node_a).await;
    let mut a2 = subscribe(&*node_a).await;
    let mut b1 = subscribe(&*node_b).await;

    // Every subscriber on every node receives each publisher's messages in order.
    let from = |node: &'static str| (0..100).map(move |n| Bytes::from(format!("{node}:{n}")));
    let publish_all = |broker: Arc<dyn Broker>, node: &'static str| async move {
        for payload in from(node) {
            publish(&*broker, payload).await;
        }
    };
    tokio::join!(
        publish_all(node_a.clone(), "a"),
        publish_all(node_b.clone(), "b")
    );
    for stream in [&mut a1, &mut a2, &mut b1] {
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let message = next(stream).await;
            if message.starts_with(b"a:") {
                got_a.push(message);
            } else {
                got_b.push(message);
            }
        }
        assert_eq!(
            got_a,
            from("a").collect::<Vec<_>>(),
            "node A's messages in order"
        );
        assert_eq!(
            got_b,
            from("b").collect::<Vec<_>>(),
            "node B's messages in order"
        );
    }

    // Binary-safe: every byte value, NULs, invalid UTF-8.
    let binary = Bytes::from(
        (0..=255u8)
            .chain([0, 0, 0xc3, 0x28, 0xff])
            .collect::<Vec<_>>(),
    );
    publish(&*node_a, binary.clone()).await;
    for stream in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(next(stream).await, binary, "binary payload intact");
    }

    // Larger than any backend's limit: whole, or by reference to the same position.
    let big = logged("big-epoch", 42, 2 * 1024 * 1024).encode();
    publish(&*node_b, big.clone()).await;
    for stream in [&mut a1, &mut a2, &mut b1] {
        let got = next(stream).await;
        if got != big {
            let doorbell = BrokerMessage::Doorbell {
                epoch: "big-epoch".into(),
                seq: 42,
            };
            assert_eq!(
                BrokerMessage::decode(&got),
                Some(doorbell),
                "whole or a doorbell"
            );
        }
    }

    // A late subscriber sees what comes after it subscribed.
    let mut late = subscribe(&*node_b).await;
    publish(&*node_a, Bytes::from_static(b"after")).await;
    for stream in [&mut a1, &mut a2, &mut b1, &mut late] {
        assert_eq!(next(stream).await, Bytes::from_static(b"after"));
    }

    // Dropping subscribers does not disturb the others.
    drop(a2);
    drop(late);
    publish(&*node_b, Bytes::from_static(b"still")).await;
    for stream in [&mut a1, &mut b1] {
        assert_eq!(next(stream).await, Bytes::from_static(b"still"));
    }
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

#[tokio::test]
async fn memory_conforms() {
    // One process: the "nodes" share the one in-memory broker.
    let shared: Arc<dyn Broker> = Arc::new(MemoryBroker::new(1024));
    conformance(|| shared.clone()).await;
}

#[tokio::test]
async fn memory_skips_rather_than_blocks_a_lagging_subscriber() {
    let broker = MemoryBroker::new(4);
    let mut slow = subscribe(&broker).await;
    for n in 0..10u32 {
        // Publishing never waits for the slow subscriber.
        publish(&broker, n.to_string()).await;
    }
    // It lost the oldest messages and continues with the newest ones.
    assert_ne!(next(&mut slow).await, Bytes::from_static(b"0"));
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_conforms() {
    conforms_at(&redis_url(), "Redis", "REDIS_URL").await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_restart_resubscribes() {
    restart_resubscribes(BrokerKind::Redis, "Redis").await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_down_at_startup_works_later() {
    down_at_startup_works_later(BrokerKind::Redis).await;
}

// ---------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------

#[cfg(feature = "nats")]
#[tokio::test]
async fn nats_conforms() {
    conforms_at(&nats_url(), "NATS", "NATS_URL").await;
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn nats_restart_resubscribes() {
    restart_resubscribes(BrokerKind::Nats, "NATS").await;
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn nats_down_at_startup_works_later() {
    down_at_startup_works_later(BrokerKind::Nats).await;
}

// ---------------------------------------------------------------------------
// Postgres LISTEN/NOTIFY
// ---------------------------------------------------------------------------

#[cfg(feature = "postgres-notify")]
#[tokio::test]
async fn postgres_conforms() {
    conforms_at(&postgres_url(), "Postgres", "DATABASE_URL").await;
}

#[cfg(feature = "postgres-notify")]
#[tokio::test]
async fn postgres_lost_listener_resubscribes() {
    let (url, options) = (postgres_url(), isolated_options());
    let broker = open(&url, &options);
    let mut stream = reachable(&*broker, &format!("Postgres at {url}"), "DATABASE_URL").await;
    publish(&*broker, "before").await;
    assert_eq!(next(&mut stream).await, Bytes::from_static(b"before"));

    // Only this test's listening session runs `LISTEN "<its unique channel>"`.
    let listen = format!("LISTEN \"{}\"", options.channel().expect("channel"));
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("connecting to Postgres");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&listen)
    .fetch_all(&admin)
    .await
    .expect("terminating the listener");
    assert_eq!(terminated, [true], "exactly one listening session");

    assert_ends(&mut stream, "its session was terminated").await;
    assert_works_again(&*broker).await;
}

#[cfg(feature = "postgres-notify")]
#[tokio::test]
async fn postgres_down_at_startup_works_later() {
    // The broker reaches the tests' Postgres through a proxy of its own, closed at
    // first: a database that comes up later (the shared server itself never stops).
    down_at_startup_works_later(BrokerKind::Postgres).await;
}

// ---------------------------------------------------------------------------
// By reference, URLs
// ---------------------------------------------------------------------------

#[test]
fn logged_events_too_large_go_by_reference_and_others_are_refused() {
    let small = logged("e1", 7, 10).encode();
    assert_eq!(
        fit_payload(small.clone(), 1000).expect("fits"),
        small,
        "small ones go whole"
    );

    let large = logged("e1", 7, 5000).encode();
    let sent = fit_payload(large, 1000).expect("goes by reference");
    assert_eq!(
        BrokerMessage::decode(&sent),
        Some(BrokerMessage::Doorbell {
            epoch: "e1".into(),
            seq: 7
        })
    );

    let direct = BrokerMessage::Direct {
        event: DirectEvent {
            target: Recipients::Users(vec!["ann".into()]),
            event: "big".into(),
            data: json!("x".repeat(5000)),
            except: None,
            ts: chrono::Utc::now(),
        },
    };
    assert!(
        fit_payload(direct.encode(), 1000).is_err(),
        "not in the log"
    );
    assert!(
        fit_payload(Bytes::from(vec![0u8; 2000]), 1000).is_err(),
        "not a message"
    );
}

#[test]
fn broker_urls_pick_a_backend_or_say_what_is_supported() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let _inside = runtime.enter();
    let options = BrokerOptions::default();
    let error = tidings::broker::from_url("kafka://somewhere", &options)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("kafka"), "{error}");
    for scheme in tidings::broker::supported_schemes() {
        assert!(error.to_string().contains(scheme), "{error}");
        if scheme != "memory" {
            // Opening never connects, so no server is needed here.
            let url = format!("{scheme}://127.0.0.1:{}", free_port());
            assert!(tidings::broker::from_url(&url, &options).is_ok(), "{url}");
        }
    }
    assert!(tidings::broker::from_url("memory", &options).is_ok());
    let bad_prefix = options.with_channel_prefix("has space");
    assert!(
        tidings::broker::from_url("memory", &bad_prefix).is_ok(),
        "memory has no channel"
    );
    #[cfg(feature = "redis")]
    assert!(tidings::broker::from_url("redis://127.0.0.1:1", &bad_prefix).is_err());
}

#[cfg(not(all(feature = "redis", feature = "nats", feature = "postgres-notify")))]
#[test]
fn a_backend_left_out_of_the_build_names_its_feature() {
    for (url, feature) in [
        ("redis://127.0.0.1:6379", "redis"),
        ("nats://127.0.0.1:4222", "nats"),
        ("postgres://u@127.0.0.1/db", "postgres-notify"),
    ] {
        if let Err(error) = tidings::broker::from_url(url, &BrokerOptions::default()) {
            assert!(error.to_string().contains(feature), "{error}");
        }
    }
}

// ---------------------------------------------------------------------------
// A node delivers events that arrive only by reference
// ---------------------------------------------------------------------------

/// The in-memory broker with a tiny size limit: every logged event goes by reference.
struct TinyBroker(MemoryBroker);

impl Broker for TinyBroker {
    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        async move { self.0.publish(fit_payload(payload, 64)?).await }.boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BrokerError>> {
        self.0.subscribe()
    }
}

#[tokio::test]
async fn a_node_reads_events_sent_by_reference_from_the_log() {
    let mut config = test_config();
    // Far beyond the test's bounds: only the doorbells can deliver in time.
    config.log.poll_interval = Duration::from_secs(600);
    let db = Db::connect(&fresh_database_url(Backend::Sqlite).await)
        .await
        .expect("database");
    demo::migrate(&db).await.expect("migrate");
    let realtime = Realtime::builder(config, db)
        .rules(demo::rules())
        .broker(Arc::new(TinyBroker(MemoryBroker::new(64))))
        .build()
        .await
        .expect("node");
    let url = serve_gateway(&realtime).await;
    let mut client = Client::authenticated(&url, &token("ann")).await;
    client.subscribe("s", "todos").await;
    for n in 0..3 {
        let event = Broadcast::new(Target::Collection("todos".into()), "n", json!(n));
        realtime.broadcast(event).await.expect("broadcast");
    }
    for n in 0..3 {
        assert_eq!(client.recv_event().await["data"], n);
    }
}
