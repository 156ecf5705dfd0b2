//! The WebSocket protocol itself (RFC 6455), below the JSON frames: a client's close
//! gets a close back, and a protocol violation gets the close code that names it
//! (1002 protocol error, 1007 invalid UTF-8, 1009 too big) instead of a dropped TCP
//! connection. Frames a client library would refuse to send are written by hand.

mod common;

use std::time::Duration;

use common::{
    db::Backend,
    raw_ws::{RawEnd, RawWs, close_payload, frame},
    server::{TestServer, WAIT, token},
};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

/// Reads until the close frame echoing the client's; fails on an unclean end.
async fn close_reply(ws: &mut common::server::Client) -> CloseFrame {
    loop {
        let message = tokio::time::timeout(WAIT, ws.ws.next())
            .await
            .expect("timed out waiting for the close reply");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return frame,
            Some(Ok(Message::Close(None))) => panic!("close reply without a code"),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close reply: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_close_gets_a_close_reply_before_and_after_auth() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    // After auth: the server echoes the client's code, a clean close (not 1006).
    let mut ann = server.connect("ann").await;
    ann.ws
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "tab closed".into(),
        }))
        .await
        .unwrap();
    assert_eq!(close_reply(&mut ann).await.code, CloseCode::Away);
    // Before auth too.
    let mut early = server.open().await;
    early
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    assert_eq!(close_reply(&mut early).await.code, CloseCode::Normal);
    // The server then closes TCP: the stream ends cleanly.
    let end = tokio::time::timeout(WAIT, early.ws.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
}

/// Each violation and the close code it must get (RFC 6455 sections 5 and 7.4.1).
fn violations() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        (
            "reserved bit RSV1",
            frame(0x80 | 0x40 | 0x1, b"{}", true),
            1002,
        ),
        (
            "reserved bit RSV3",
            frame(0x80 | 0x10 | 0x1, b"{}", true),
            1002,
        ),
        ("unknown data opcode 3", frame(0x83, b"x", true), 1002),
        ("unknown control opcode 11", frame(0x8b, b"", true), 1002),
        ("unmasked client frame", frame(0x81, b"{}", false), 1002),
        ("fragmented ping", frame(0x09, b"x", true), 1002),
        ("ping over 125 bytes", frame(0x89, &[0; 126], true), 1002),
        (
            "continuation with nothing to continue",
            frame(0x80, b"x", true),
            1002,
        ),
        ("close with a 1-byte payload", frame(0x88, &[3], true), 1002),
        (
            "close with code 1005",
            frame(0x88, &close_payload(1005, b""), true),
            1002,
        ),
        (
            "close with code 999",
            frame(0x88, &close_payload(999, b""), true),
            1002,
        ),
        (
            "text of invalid UTF-8",
            frame(0x81, &[0xce, 0xba, 0xff, 0xfe], true),
            1007,
        ),
        (
            "close reason of invalid UTF-8",
            frame(0x88, &close_payload(1000, &[0xff, 0xfe]), true),
            1007,
        ),
        (
            "frame over the message limit",
            frame(0x82, &[0; 70_000], true),
            1009,
        ),
    ]
}

/// Every violation on an authenticated connection gets its close code, and the server
/// then ends the TCP connection. (No database is involved: SQLite only.)
#[tokio::test]
async fn violations_get_the_close_code_that_names_them() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    for (what, bytes, code) in violations() {
        let mut ws = RawWs::authenticated(server.addr, &token("ann"), None).await;
        ws.send_raw(&bytes).await;
        assert_eq!(ws.ended().await, RawEnd::Close(Some(code)), "{what}");
        assert!(
            ws.tcp_closed_within(Duration::from_secs(5)).await,
            "{what}: TCP left open"
        );
    }
    // Operators see them in /metrics; a forbidden close code is the one violation the
    // close handshake itself answers (tungstenite replies 1002 for the peer's close).
    let detected = violations()
        .iter()
        .filter(|(what, _, _)| !what.starts_with("close with code"))
        .count();
    let metrics = server.realtime.metrics().render();
    let counted = format!("tidings_protocol_errors_total {detected}\n");
    assert!(metrics.contains(&counted), "{metrics}");
    // The node is unharmed: a normal client connects and is served.
    let mut ann = server.connect("ann").await;
    ann.send(serde_json::json!({"type": "ping", "ref": 1}))
        .await;
    assert_eq!(ann.recv().await["ref"], 1);
}

#[tokio::test]
async fn violations_before_auth_get_their_close_code_too() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    for (what, bytes, code) in violations() {
        let mut ws = RawWs::connect(server.addr, "/realtime/subscribe", &[], None).await;
        ws.send_raw(&bytes).await;
        assert_eq!(ws.ended().await, RawEnd::Close(Some(code)), "{what}");
    }
}
