//! Resuming on another node (issue 8, item 4): a client that was on node A resumes on
//! node B, which has not heard of A's latest events yet (its broker hears nothing from
//! A and it polls the log only every 30 s). B catches up with the log first and
//! answers `recovered:true` with exactly the missed events, promptly; a cursor the log
//! never had still answers `unknown_position` at once. Over WebSocket `since` and SSE
//! `Last-Event-ID`, on SQLite and Postgres.

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::{
    backend_tests,
    db::Backend,
    server::{Client, TestServer, seq_of, seq_of_cursor},
    sse::{expect_creates, todo},
};
use serde_json::{Value, json};
use tidings::{Broadcast, Config, Target};

/// B's poll interval: far longer than any test waits, so only a catch-up can explain
/// B serving A's events.
const SLOW_POLL: Duration = Duration::from_secs(30);
/// B's catch-up bound: longer still, so a resume that merely waited for the poll
/// would show as slow rather than as a failure that hides why.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// What "promptly" means here: well under B's poll interval.
const PROMPTLY: Duration = Duration::from_secs(5);

fn slow_node(config: &mut Config) {
    config.log.poll_interval = SLOW_POLL;
    config.log.catch_up_timeout = CATCH_UP_TIMEOUT;
}

/// Node A (its own broker), and node B on the same log with a broker of its own that
/// hears nothing from A.
async fn two_nodes(backend: Backend) -> (TestServer, TestServer) {
    let a = TestServer::start(backend, |_| {}).await;
    let b = TestServer::start_on(&a.database_url, slow_node).await;
    relay_settled(&a, &b).await;
    (a, b)
}

/// Waits until `node`'s relay has made a pass after startup. Every node relays, and a
/// relay's first pass runs whenever its task gets to it: one that came after A's first
/// writes would sequence them on B and make B deliver them, so B would not be behind.
/// A write through B wakes B's relay; once B has sequenced it, B's relay sleeps for
/// its (slow) poll interval and only A's relay sequences A's writes. Then both nodes
/// have delivered that write, so the tests' streams start after it.
async fn relay_settled(a: &TestServer, node: &TestServer) {
    node.realtime
        .broadcast(Broadcast::new(
            Target::Collection("notes".into()),
            "warm-up",
            json!(null),
        ))
        .await
        .expect("broadcast");
    let published = || {
        node.realtime
            .metrics()
            .events_published
            .load(Ordering::Relaxed)
    };
    let deadline = Instant::now() + PROMPTLY;
    while published() == 0 {
        assert!(Instant::now() < deadline, "B's relay never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for server in [node, a] {
        while position_of(server).await == 0 {
            assert!(
                Instant::now() < deadline,
                "the warm-up write was never delivered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The seq B's hub has delivered up to: a fresh subscription's start cursor.
async fn position_of(node: &TestServer) -> u64 {
    let mut probe = node.connect("probe").await;
    seq_of(&probe.subscribe("probe", "todos").await)
}

async fn broadcast(node: &TestServer, n: u64) {
    node.realtime
        .broadcast(Broadcast::new(
            Target::Collection("todos".into()),
            "n",
            json!(n),
        ))
        .await
        .expect("broadcast");
}

/// Subscribes to `todos` from `since`; the `subscribed` frame.
async fn resume(client: &mut Client, since: &str) -> Value {
    client
        .send(json!({"type": "subscribe", "id": "s", "pattern": "todos", "since": since}))
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["type"], "subscribed", "{frame}");
    frame
}

/// Nothing else is queued: the next frame answers a ping.
async fn nothing_more(client: &mut Client) {
    client.send(json!({"type": "ping", "ref": "p"})).await;
    let frame = client.recv().await;
    assert_eq!(frame["type"], "pong", "an unexpected frame: {frame}");
}

backend_tests!(
    async fn a_websocket_resumes_on_a_node_that_is_behind(backend: Backend) {
        let (a, b) = two_nodes(backend).await;
        let mut on_a = a.connect("ann").await;
        on_a.subscribe("s", "todos").await;
        for n in 0..5 {
            broadcast(&a, n).await;
        }
        let mut cursors = Vec::new();
        for n in 0..5 {
            let event = on_a.recv_event().await;
            assert_eq!(event["data"], n);
            cursors.push(event["cursor"].as_str().expect("cursor").to_owned());
        }
        drop(on_a);
        let since = &cursors[1];
        let behind = position_of(&b).await;
        assert!(behind < seq_of_cursor(since), "B is behind");

        let mut on_b = b.connect("ann").await;
        let started = Instant::now();
        let subscribed = resume(&mut on_b, since).await;
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        for (n, cursor) in cursors.iter().enumerate().skip(2) {
            let event = on_b.recv_event().await;
            assert_eq!(event["data"], n, "{event}");
            assert_eq!(event["cursor"], cursor.as_str(), "the same event as on A");
        }
        assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
        nothing_more(&mut on_b).await;
        assert_eq!(seq_of(&subscribed), seq_of_cursor(&cursors[4]));
    }
);

backend_tests!(
    async fn a_cursor_the_log_never_had_is_an_unknown_position_at_once(backend: Backend) {
        let a = TestServer::start(backend, |_| {}).await;
        let mut on_a = a.connect("ann").await;
        on_a.subscribe("s", "todos").await;
        broadcast(&a, 0).await;
        let last = seq_of(&on_a.recv_event().await);
        let epoch = a.realtime.epoch();
        // B starts once that event is sequenced, so its delivery position starts past
        // it: whichever relay sequenced it, nothing can reach B's subscription later.
        let b = TestServer::start_on(&a.database_url, slow_node).await;

        let mut on_b = b.connect("ann").await;
        let started = Instant::now();
        let ahead = format!("{epoch}:{}", last + 100);
        let subscribed = resume(&mut on_b, &ahead).await;
        assert_eq!(subscribed["recovered"], false, "{subscribed}");
        assert_eq!(subscribed["reason"], "unknown_position");
        assert!(
            started.elapsed() < PROMPTLY,
            "no wait for what the log never had: {:?}",
            started.elapsed()
        );
        // The subscription is live all the same.
        nothing_more(&mut on_b).await;
        let failed = b.realtime.metrics().resumes_failed.load(Ordering::Relaxed);
        assert_eq!(failed, 1);
    }
);

backend_tests!(
    async fn an_sse_stream_resumes_on_a_node_that_is_behind(backend: Backend) {
        let (a, b) = two_nodes(backend).await;
        let mut on_a = a.sse("ann", "todos:*").await;
        let opening = on_a.next_group().await;
        let ids = [
            todo(&a, "one").await,
            todo(&a, "two").await,
            todo(&a, "three").await,
        ];
        let g1 = expect_creates(&mut on_a, &[&ids[0]], opening.seq()).await;
        let g3 = expect_creates(&mut on_a, &[&ids[1], &ids[2]], g1.seq()).await;
        drop(on_a);
        assert!(position_of(&b).await < g1.seq(), "B is behind");

        let started = Instant::now();
        let mut on_b = b.sse_resume("ann", "todos:*", &g1.id).await;
        // No snapshot: exactly the two creates the page missed.
        let last = expect_creates(&mut on_b, &[&ids[1], &ids[2]], g1.seq()).await;
        assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
        assert_eq!(last.id, g3.id);
        let recovered = b
            .realtime
            .metrics()
            .resumes_recovered
            .load(Ordering::Relaxed);
        assert_eq!(recovered, 1);
    }
);

backend_tests!(
    async fn an_sse_cursor_the_log_never_had_starts_over_at_once(backend: Backend) {
        let (a, b) = two_nodes(backend).await;
        let id = todo(&a, "one").await;
        let epoch = a.realtime.epoch();

        let started = Instant::now();
        let ahead = format!("{epoch}:1000");
        let mut on_b = b.sse_resume("ann", "todos:*", &ahead).await;
        let snapshot = on_b.next_group().await;
        assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
        let html = snapshot.text();
        assert!(html.starts_with("elements <ul id=\"todos\">"), "{html}");
        assert!(html.contains(&format!("<li id=\"todo-{id}\"")), "{html}");
        let failed = b.realtime.metrics().resumes_failed.load(Ordering::Relaxed);
        assert_eq!(failed, 1);
    }
);
