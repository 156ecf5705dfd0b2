//! The handshake: every token failure closes 4001; header auth, anonymous access,
//! origins, the auth timeout, the message limit and the heartbeat.

mod common;

use std::time::Duration;

use common::{
    db::Backend,
    server::{Client, Ended, SECRET, TestServer, now, sign, token},
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::http::HeaderValue;

async fn server(configure: impl FnOnce(&mut tidings::Config)) -> TestServer {
    TestServer::start(Backend::Sqlite, configure).await
}

fn sign_with(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Sends `auth` with `token` and expects an error frame and then close 4001.
async fn refused(server: &TestServer, token: Value) {
    let mut client = server.open().await;
    client.send(json!({"type": "auth", "token": token})).await;
    let error = client.recv().await;
    assert_eq!(error["type"], "error", "{token}: {error}");
    assert_eq!(error["code"], "unauthorized");
    assert_eq!(client.ended().await, Ended::Code(4001), "{token}");
}

#[tokio::test]
async fn every_bad_token_closes_4001() {
    let server = server(|c| {
        c.jwt.issuer = Some("tidings-tests".into());
        c.jwt.audience = Some("app".into());
    })
    .await;
    let exp = now() + 600;
    let good = json!({"sub": "ann", "exp": exp, "iss": "tidings-tests", "aud": "app"});
    // The good token passes, so each failure below is due to its one change.
    let mut ok = server.open().await;
    ok.send(json!({"type": "auth", "token": sign(good.clone())}))
        .await;
    assert_eq!(ok.recv().await["type"], "welcome");

    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        sign(claims)
    };
    let without = |key: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(key);
        sign(claims)
    };
    // {"alg":"none"} with the good claims and no signature.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let payload = base64_url_nopad(&serde_json::to_vec(&good).unwrap());
    let cases = [
        (
            "bad signature",
            json!(sign_with(
                "another-secret-of-sufficient-length!!",
                good.clone()
            )),
        ),
        ("alg none", json!(format!("{none_header}.{payload}."))),
        ("expired", json!(with("exp", json!(now() - 3600)))),
        (
            "exp as a string",
            json!(with("exp", json!(exp.to_string()))),
        ),
        ("missing exp", json!(without("exp"))),
        // Valid only from an hour from now, past the 5 s leeway.
        ("nbf ahead", json!(with("nbf", json!(now() + 3600)))),
        ("nbf as a string", json!(with("nbf", json!("tomorrow")))),
        ("missing sub", json!(without("sub"))),
        ("wrong aud", json!(with("aud", json!("other")))),
        ("wrong iss", json!(with("iss", json!("other")))),
        ("garbage", json!("not.a.token")),
        ("anonymous when not allowed", Value::Null),
    ];
    for (name, token) in cases {
        eprintln!("case: {name}");
        refused(&server, token).await;
    }
    assert!(SECRET.len() >= 32);
}

/// Base64url without padding, enough for a test payload.
fn base64_url_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn first_frame_must_be_auth_within_the_timeout() {
    let server = server(|c| c.auth.auth_timeout = Duration::from_millis(300)).await;
    let mut silent = server.open().await;
    assert_eq!(silent.recv().await["code"], "unauthorized");
    assert_eq!(silent.ended().await, Ended::Code(4001));

    let mut wrong_first = server.open().await;
    wrong_first.send(json!({"type": "ping"})).await;
    assert_eq!(wrong_first.recv().await["type"], "error");
    assert_eq!(wrong_first.ended().await, Ended::Code(4001));
}

#[tokio::test]
async fn bearer_header_gets_welcome_without_an_auth_frame() {
    let server = server(|_| {}).await;
    let mut client = server
        .open_with(|r| {
            r.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {}", token("ann"))).unwrap(),
            );
        })
        .await
        .unwrap();
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user_id"], "ann");
    assert_eq!(welcome["protocol"], 1);
    let expires_in = welcome["expires_in"].as_u64().unwrap();
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");

    let mut bad = server
        .open_with(|r| {
            r.headers_mut()
                .insert("authorization", HeaderValue::from_static("Bearer nope"));
        })
        .await
        .unwrap();
    assert_eq!(bad.recv().await["type"], "error");
    assert_eq!(bad.ended().await, Ended::Code(4001));
}

#[tokio::test]
async fn query_token_only_when_allowed() {
    let plain = server(|_| {}).await;
    let url = format!("{}?token={}", plain.ws_url(), token("ann"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Ignored: the server waits for an auth frame instead.
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"type":"ping"}"#,
    ))
    .await
    .unwrap();
    let mut client = Client {
        ws,
        connection_id: String::new(),
    };
    assert_eq!(client.recv().await["type"], "error");
    assert_eq!(client.ended().await, Ended::Code(4001));

    let allowing = server(|c| c.auth.allow_query_token = true).await;
    let url = format!("{}?token={}", allowing.ws_url(), token("ann"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client {
        ws,
        connection_id: String::new(),
    };
    assert_eq!(client.recv().await["type"], "welcome");
}

#[tokio::test]
async fn anonymous_reads_public_collections_only() {
    let server = server(|c| c.auth.allow_anonymous = true).await;
    let mut anon = server.open().await;
    anon.send(json!({"type": "auth", "token": null})).await;
    let welcome = anon.recv().await;
    assert_eq!(welcome["user_id"], Value::Null);
    assert_eq!(welcome["expires_in"], Value::Null);
    anon.send(json!({"type": "subscribe", "id": "t", "pattern": "todos:*", "ref": 1}))
        .await;
    // The same answer as the SSE endpoint's 401: signing in could change it.
    let refused = anon.recv().await;
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(refused["id"], "t");
    assert_eq!(refused["ref"], 1);
}

#[tokio::test]
async fn origins_are_checked_before_the_upgrade() {
    let listed = server(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let ok = listed
        .open_with(|r| Client::origin(r, "https://app.example"))
        .await;
    assert!(ok.is_ok());
    let denied = listed
        .open_with(|r| Client::origin(r, "https://evil.example"))
        .await;
    match denied {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    // Non-browser clients send no Origin and are allowed.
    assert!(listed.open_with(|_| {}).await.is_ok());

    // Without a list: the server's own origins only.
    let own = server(|_| {}).await;
    let port = own.addr.port();
    assert!(
        own.open_with(|r| Client::origin(r, &format!("http://localhost:{port}")))
            .await
            .is_ok()
    );
    assert!(
        own.open_with(|r| Client::origin(r, &format!("http://{}", own.addr)))
            .await
            .is_ok()
    );
    assert!(
        own.open_with(|r| Client::origin(r, "http://localhost:1"))
            .await
            .is_err()
    );
    assert!(
        own.open_with(|r| Client::origin(r, &format!("http://evil.example:{port}")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn oversized_frames_close_1009() {
    let server = server(|c| c.connection.max_message_size = 1024).await;
    let mut client = server.connect("ann").await;
    // Just under the limit is fine.
    let small = json!({"type": "ping", "ref": "x".repeat(900)});
    client.send(small).await;
    assert_eq!(client.recv().await["type"], "pong");
    client
        .send_text(&format!(
            r#"{{"type":"ping","ref":"{}"}}"#,
            "x".repeat(2000)
        ))
        .await;
    assert_eq!(client.ended().await, Ended::Code(1009));
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_closed() {
    let server = server(|c| {
        c.connection.ping_interval = Duration::from_millis(200);
        c.connection.ping_timeout = Duration::from_millis(200);
    })
    .await;
    // A raw TCP peer that completes the upgrade and authenticates, then never reads
    // again, so it never answers a ping.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /realtime/subscribe HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        server.addr,
        token("ann")
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // The server must end the TCP connection by itself: read until EOF, bounded.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue, // welcome, pings, the close frame
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent peer was not closed");
    // A peer that does answer (tungstenite replies to pings while reading) stays.
    let mut alive = server.connect("bob").await;
    tokio::time::timeout(Duration::from_millis(800), alive.recv())
        .await
        .expect_err("no frame expected; the connection must simply stay open");
    alive.send(json!({"type": "ping"})).await;
    assert_eq!(alive.recv().await["type"], "pong");
}

#[tokio::test]
async fn requests_that_are_not_websocket_upgrades_are_told_what_to_send() {
    let server = server(|_| {}).await;
    let url = format!("http://{}/realtime/subscribe", server.addr);
    let http = reqwest::Client::new();
    let upgrade_headers = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    let plain = http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), 426);
    assert_eq!(plain.headers()["upgrade"], "websocket");
    assert!(plain.text().await.unwrap().contains("WebSocket"));

    let mut old_version = http.get(&url).header("sec-websocket-version", "8");
    for (name, value) in upgrade_headers {
        old_version = old_version.header(name, value);
    }
    let old_version = old_version.send().await.unwrap();
    assert_eq!(old_version.status(), 426);
    assert_eq!(old_version.headers()["sec-websocket-version"], "13");

    let mut no_key = http.get(&url).header("sec-websocket-version", "13");
    for (name, value) in &upgrade_headers[..2] {
        no_key = no_key.header(*name, *value);
    }
    assert_eq!(no_key.send().await.unwrap().status(), 400);

    // The endpoint still serves WebSocket clients.
    let mut ann = server.connect("ann").await;
    ann.send(json!({"type": "ping"})).await;
    assert_eq!(ann.recv().await["type"], "pong");
}
