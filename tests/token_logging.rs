//! No bearer token reaches the reference server's log, at any level: the real binary
//! with `RUST_LOG=trace`, a token in a WebSocket `auth` frame, in an upgrade's
//! `Authorization` header, in a query string, on an SSE request and on a REST call.

mod common;

use std::{process::Stdio, time::Duration};

use common::server::{Client, SECRET, WAIT, sign};
use futures::StreamExt;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
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
    let dir = std::env::temp_dir().join(format!("tidings-log-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TIDINGS_BIND", "127.0.0.1:0")
        .env("TIDINGS_JWT_SECRET", SECRET)
        .env("TIDINGS_ALLOW_QUERY_TOKEN", "true")
        .env("TIDINGS_SHUTDOWN_TIMEOUT", "3s")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tidings");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
        panic!("the server exited before listening")
    })
    .await
    .expect("the server did not print its URL");
    let ws = format!("{}/realtime/subscribe", base.replace("http://", "ws://"));

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
    let (mut header, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    let welcome = tokio::time::timeout(WAIT, header.next()).await.unwrap();
    assert!(
        welcome
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("welcome")
    );
    // 3. A query-string token (allowed by configuration here).
    let (mut query, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("{ws}?token={}", tokens[2])),
    )
    .await
    .unwrap()
    .unwrap();
    let welcome = tokio::time::timeout(WAIT, query.next()).await.unwrap();
    assert!(
        welcome
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("welcome")
    );
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

    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited")
        .unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
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
