//! Every write to a client has a deadline (`connection.write_timeout`): a client that
//! stops reading is cut off within it, on WebSocket and on Datastar SSE, while a
//! client that reads keeps receiving; shutdown does not wait for such a client.

mod common;

use std::time::{Duration, Instant};

use common::{
    db::Backend,
    raw_ws::{RawWs, raw_tcp, read_head},
    server::{Client, TestServer, WAIT, token},
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// The deadline the tests configure.
const DEADLINE: Duration = Duration::from_secs(1);
/// Scheduling slack on top of it.
const SLACK: Duration = Duration::from_secs(3);
/// Receive buffer of a client that stops reading: it fills after a few kilobytes.
const SMALL_RCVBUF: u32 = 4096;

fn gauge(server: &TestServer, name: &str) -> u64 {
    let metrics = server.realtime.metrics().render();
    let line = metrics
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().expect("a number")
}

/// Waits (bounded by `within`) until `name` reads `value`; false if it never did.
async fn gauge_reaches(server: &TestServer, name: &str, value: u64, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        while gauge(server, name) != value {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
}

/// Sends large events to `todos` until a reading canary has received `count` of them
/// (about 10 MB: more than any socket buffer holds).
async fn flood(server: &TestServer, canary: &mut Client, count: usize) {
    let payload = "x".repeat(256 * 1024);
    for n in 0..count {
        server
            .broadcast_to("todos", "big", json!({"n": n, "p": payload}))
            .await;
        assert_eq!(canary.recv_event().await["data"]["n"], n);
    }
}

/// A WebSocket subscribed to `todos` over a small receive buffer, for a client that
/// will read nothing after `subscribed`.
async fn stalled_ws_client(server: &TestServer) -> RawWs {
    let mut stalled =
        RawWs::authenticated(server.addr, &token("stalled"), Some(SMALL_RCVBUF)).await;
    stalled
        .send_json(json!({"type": "subscribe", "id": "s", "pattern": "todos"}))
        .await;
    assert_eq!(stalled.recv_json().await["type"], "subscribed");
    stalled
}

/// A Datastar stream on `todos` over a small receive buffer, for a client that will
/// not read past the response head.
async fn stalled_sse_client(server: &TestServer) -> tokio::net::TcpStream {
    let mut stalled = raw_tcp(server.addr, Some(SMALL_RCVBUF)).await;
    let request = format!(
        "GET /realtime/sse?topics=todos HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        server.addr,
        token("stalled")
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_head(&mut stalled).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(gauge(server, "tidings_sse_streams"), 1);
    stalled
}

async fn canary(server: &TestServer) -> Client {
    let mut canary = server.connect("canary").await;
    canary.subscribe("s", "todos").await;
    canary
}

async fn still_receives(server: &TestServer, canary: &mut Client) {
    server.broadcast_to("todos", "after", json!(null)).await;
    assert_eq!(canary.recv_event().await["event"], "after");
}

fn configure(config: &mut tidings::Config) {
    config.connection.write_timeout = DEADLINE;
    // Large queues: a queue overflow (4008 too) must not be what ends the client.
    config.connection.send_queue_capacity = 100_000;
    config.connection.send_queue_bytes = 1 << 30;
    config.sse.queue_capacity = 100_000;
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_closed_within_the_deadline() {
    let server = TestServer::start(Backend::Sqlite, configure).await;
    let mut canary = canary(&server).await;
    let mut stalled = stalled_ws_client(&server).await;
    // From here on the stalled client reads nothing.
    flood(&server, &mut canary, 40).await;
    let flooded = Instant::now();
    assert!(
        gauge_reaches(&server, "tidings_connections", 1, DEADLINE + SLACK).await,
        "the stalled client was still connected {:?} after the flood",
        flooded.elapsed()
    );
    assert_eq!(gauge(&server, "tidings_queue_overflows_total"), 0);
    still_receives(&server, &mut canary).await;
    // The server has let go of the TCP connection: reading drains to EOF.
    assert!(stalled.tcp_closed_within(WAIT).await);
}

#[tokio::test]
async fn server_pings_that_cannot_be_written_close_the_client_too() {
    // A client that floods large pings and never reads: tungstenite queues the pongs
    // (never blocking), but the server's own heartbeat pings then cannot be written.
    let server = TestServer::start(Backend::Sqlite, |c| {
        configure(c);
        c.connection.ping_interval = Duration::from_millis(100);
        c.connection.messages_per_second = 1_000_000;
    })
    .await;
    let mut canary = canary(&server).await;
    let mut stalled =
        RawWs::authenticated(server.addr, &token("stalled"), Some(SMALL_RCVBUF)).await;
    let ping = common::raw_ws::frame(0x89, &[7; 125], true);
    let pings: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 500)
        .collect();
    let started = Instant::now();
    let mut closed = false;
    // About 6 MB/s of pings until the server gives up on the client (60 s at most).
    // The pace only keeps the server's queued pongs, and this test's memory, small.
    while started.elapsed() < Duration::from_secs(60) {
        let written = stalled.tcp.write_all(&pings).await;
        if written.is_err() || gauge(&server, "tidings_connections") == 1 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        closed,
        "the server never closed a client that does not read"
    );
    still_receives(&server, &mut canary).await;
}

#[tokio::test]
async fn an_sse_client_that_stops_reading_is_cut_off_within_the_deadline() {
    let server = TestServer::start(Backend::Sqlite, configure).await;
    let mut canary = canary(&server).await;
    let _stalled = stalled_sse_client(&server).await;
    // From here on the stalled client reads nothing.
    flood(&server, &mut canary, 40).await;
    let flooded = Instant::now();
    assert!(
        gauge_reaches(&server, "tidings_sse_streams", 0, DEADLINE + SLACK).await,
        "the stalled stream was still open {:?} after the flood",
        flooded.elapsed()
    );
    still_receives(&server, &mut canary).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_stops_reading() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        configure(c);
        // Neither deadline would end them in time: shutdown itself must.
        c.connection.write_timeout = Duration::from_secs(60);
        c.shutdown_timeout = Duration::from_secs(30);
    })
    .await;
    let mut canary = canary(&server).await;
    let _stalled = stalled_ws_client(&server).await;
    let stalled_sse = stalled_sse_client(&server).await;
    flood(&server, &mut canary, 40).await;
    let started = Instant::now();
    assert!(server.realtime.shutdown().await, "shutdown timed out");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The stalled stream's write fails within a second of shutdown, which ends it.
    assert!(
        gauge_reaches(&server, "tidings_sse_streams", 0, SLACK).await,
        "the stalled stream outlived shutdown by {:?}",
        started.elapsed()
    );
    drop(stalled_sse);
}
