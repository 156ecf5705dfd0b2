//! Limits before the upgrade, against the real server over loopback with raw TCP
//! sockets where a well-behaved client would not do: header-read and idle timeouts,
//! sockets and connects per address (429 with `Retry-After`), and the WebSocket and
//! SSE connection caps per node, user and address.

mod common;

use std::time::{Duration, Instant};

use common::{
    db::Backend,
    server::{Client, Ended, TestServer, WAIT, token},
    sse::SseStream,
};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

const GET_CLIENT_JS: &[u8] =
    b"GET /realtime/client.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Everything the server sends on `socket` until it closes it; panics after `WAIT`.
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the socket");
    String::from_utf8_lossy(&received).into_owned()
}

/// Connects to `server` and sends a complete GET; returns the whole answer.
async fn get_raw(server: &TestServer) -> String {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(GET_CLIENT_JS).await.unwrap();
    read_until_closed(&mut socket).await
}

fn bearer(request: &mut tokio_tungstenite::tungstenite::handshake::client::Request, sub: &str) {
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", token(sub))).unwrap(),
    );
}

/// The HTTP status of a refused upgrade.
fn refused_status(result: Result<Client, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

#[tokio::test]
async fn silent_and_trickling_sockets_are_closed_at_the_header_timeout() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.transport.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    // A socket that sends nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let answer = read_until_closed(&mut silent).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
    assert!(!answer.contains("200 OK"), "{answer}");

    // A socket that sends one header byte every 50 ms: the whole request would take
    // about 3.5 s, the deadline is 300 ms from the start.
    let started = Instant::now();
    let socket = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let trickle = tokio::spawn(async move {
        for byte in GET_CLIENT_JS {
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    });
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, reader.read_to_end(&mut answer))
        .await
        .expect("the trickling socket was never closed")
        .ok();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "closed only after {elapsed:?}"
    );
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    trickle.abort();

    // A prompt client is served.
    assert!(get_raw(&server).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_stalled_request_body_is_closed_at_the_idle_timeout_but_streams_are_not() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.transport.idle_timeout = Duration::from_millis(300);
    })
    .await;
    // Headers complete, body promised and never sent.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/todos HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        token("ann")
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
    assert!(!answer.contains("201"), "{answer}");

    // A WebSocket and an SSE stream quiet for several idle timeouts stay open.
    let mut ws = server.connect("ann").await;
    let mut sse = server.sse("bob", "todos").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ws.send(json!({"type": "ping", "ref": 1})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    server.broadcast_to("todos", "after", json!(1)).await;
    // The stream opens with the demo's snapshot; the broadcast follows it.
    while !sse.next_event().await.text().contains("after") {}
}

#[tokio::test]
async fn too_many_connects_per_second_from_one_address_get_429_with_retry_after() {
    // One per second, bursts of two.
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.transport.connects_per_second_per_ip = 1;
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let refused = read_until_closed(&mut third).await;
    assert!(
        refused.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{refused}"
    );
    assert!(refused.contains("retry-after: 1\r\n"), "{refused}");
    assert!(refused.contains(r#""code":"rate_limited""#), "{refused}");
    let metrics = server.realtime.metrics();
    assert_eq!(
        metrics
            .sockets_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The two within the budget are served.
    for socket in [&mut first, &mut second] {
        socket.write_all(GET_CLIENT_JS).await.unwrap();
        assert!(read_until_closed(socket).await.starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test]
async fn open_sockets_per_address_are_capped_and_freed_on_close() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.transport.max_sockets_per_ip = 2;
    })
    .await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    let refused = get_raw(&server).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("retry-after: 1\r\n"), "{refused}");
    drop(first);
    // The server notices the close when it reads the socket's end; until then the
    // slot is taken. Poll, bounded.
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get_raw(&server).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(
            Instant::now() < deadline,
            "the closed socket's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_per_user_are_capped_for_websocket_and_sse_alike() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_connections_per_user = 2;
    })
    .await;
    let header = server.open_with(|r| bearer(r, "ann")).await.unwrap();
    let _framed = server.connect("ann").await;
    // Known before the upgrade (bearer header): 429.
    assert_eq!(
        refused_status(server.open_with(|r| bearer(r, "ann")).await),
        429
    );
    // Known only from the first frame: the upgrade is done, so 4029.
    let mut late = server.open().await;
    late.send(json!({"type": "auth", "token": token("ann")}))
        .await;
    assert_eq!(late.ended().await, Ended::Code(4029));
    // SSE counts against the same cap.
    let stream = SseStream::open(server.sse_request("todos").bearer_auth(token("ann"))).await;
    assert_eq!(stream.status, 429);
    assert_eq!(stream.error_code().await, "limit_exceeded");
    // Counted: the upgrade refusal, the 4029 and the stream.
    let refused = &server.realtime.metrics().connections_refused;
    assert_eq!(refused.load(std::sync::atomic::Ordering::Relaxed), 3);
    // Others are unaffected.
    let _bob = server.connect("bob").await;
    let _bob_stream = server.sse("bob", "todos").await;
    // A connection that ends frees its place.
    drop(header);
    let deadline = Instant::now() + WAIT;
    loop {
        let stream = SseStream::open(server.sse_request("todos").bearer_auth(token("ann"))).await;
        if stream.status == 200 {
            break;
        }
        assert_eq!(stream.status, 429);
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_per_address_are_capped_before_the_upgrade() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_connections_per_ip = 2;
    })
    .await;
    let _ann = server.connect("ann").await;
    let _bob = server.sse("bob", "todos").await;
    assert_eq!(refused_status(server.open_with(|_| {}).await), 429);
    let stream = SseStream::open(server.sse_request("todos").bearer_auth(token("carl"))).await;
    assert_eq!(stream.status, 429);
    assert_eq!(stream.error_code().await, "limit_exceeded");
    // Plain requests are not connections.
    assert!(get_raw(&server).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn the_node_cap_holds_under_concurrent_connects() {
    const CAP: usize = 5;
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.max_connections = CAP).await;
    let url = server.ws_url();
    let attempts = (0..4 * CAP).map(|n| {
        let url = url.clone();
        tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap();
            let auth = json!({"type": "auth", "token": token(&format!("user{n}"))});
            let _ = ws.send(Message::text(auth.to_string())).await;
            let first = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("no answer");
            let admitted = match first {
                Some(Ok(Message::Text(text))) => {
                    assert!(text.contains("welcome"), "{text}");
                    true
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 4029);
                    false
                }
                other => panic!("unexpected {other:?}"),
            };
            (admitted, ws)
        })
    });
    let results = futures::future::join_all(attempts).await;
    // Every connection is still open while counting, so none gave its place back.
    let admitted = results.iter().filter(|r| r.as_ref().unwrap().0).count();
    assert_eq!(admitted, CAP);
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = TestServer::start(Backend::Sqlite, |c| c.transport.max_header_bytes = 8192).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /realtime/client.js HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(20_000)
    );
    // The server may stop reading (and close) before the whole head is written.
    let _ = socket.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut socket).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(get_raw(&server).await.starts_with("HTTP/1.1 200"));
}
