//! No bearer token reaches the reference server's log, at any level: the real binary
//! with `RUST_LOG=trace`, a token in a WebSocket `auth` frame, in an upgrade's
//! `Authorization` header, in a query string, on an SSE request and on a REST call.

mod common;

use std::time::Duration;

use common::{
    binary::{Binary, TempDir},
    server::{Client, SECRET, WAIT, sign},
};
use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A token no other test uses, so finding its signature in the log means it leaked.
fn distinctive_token(sub: &str) -> String {
    sign(
        json!({"sub": sub, "exp": common::server::now() + 3600, "jti": uuid::Uuid::new_v4().to_string()}),
    )
}

#[cfg(unix)]
#[tokio::test]
async fn no_token_reaches_the_log_with_rust_log_trace() {
    let dir = TempDir::new();
    let log_path = dir.0.join("stderr.log");
    let stderr = std::fs::File::create(&log_path).unwrap();
    let env = [
        ("TIDINGS_JWT_SECRET", SECRET),
        ("TIDINGS_ALLOW_QUERY_TOKEN", "true"),
        ("TIDINGS_SHUTDOWN_TIMEOUT", "3s"),
        ("RUST_LOG", "trace"),
    ];
    let mut server = Binary::start(dir, &env, stderr.into()).await;
    let (base, ws) = (server.base.clone(), server.ws_url());

    let tokens: Vec<String> = (0..5)
        .map(|n| distinctive_token(&format!("user{n}")))
        .collect();
    // 1. The first frame (what tungstenite logs at trace).
    let mut framed = Client::authenticated(&ws, &tokens[0]).await;
    framed.subscribe("s", "todos:*").await;
    // 2. The upgrade's Authorization header.
    let mut request = ws.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", tokens[1]).parse().unwrap(),
    );
    let _header = welcomed(request).await;
    // 3. A query-string token (allowed by configuration here).
    let _query = welcomed(format!("{ws}?token={}", tokens[2])).await;
    // 4. REST and 5. SSE with a bearer header.
    let http = reqwest::Client::new();
    let list = http
        .get(format!("{base}/api/todos"))
        .bearer_auth(&tokens[3])
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let sse = http
        .get(format!("{base}/realtime/sse?topics=todos"))
        .bearer_auth(&tokens[4])
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    drop(sse);
    // A refreshed token goes through the same frame path.
    let refreshed = distinctive_token("user0");
    framed
        .send(json!({"type": "auth", "token": refreshed}))
        .await;
    framed.recv_type("refreshed").await;

    let pid = server.child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("exited")
        .unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    // Trace logging was really on (the test would prove nothing otherwise): the
    // gateway logs each accepted socket at trace level.
    assert!(
        log.contains("TRACE") && log.contains("socket accepted"),
        "no trace output at all:\n{log}"
    );
    for token in tokens.iter().chain([&refreshed]) {
        // The signature is the part no other string shares; the payload too.
        let mut parts = token.split('.');
        let (_, payload, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        assert!(
            !log.contains(signature) && !log.contains(payload),
            "a token reached the log"
        );
    }
}

/// Opens a WebSocket authenticated by the upgrade request itself and waits for its
/// `welcome`.
async fn welcomed(
    request: impl IntoClientRequest + Unpin,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    let welcome = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
    assert!(
        welcome
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("welcome")
    );
    socket
}
