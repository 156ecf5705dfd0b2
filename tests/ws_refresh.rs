//! Token refresh on a live connection, the refresh notice, and closing at expiry.

mod common;

use std::time::Duration;

use common::{
    db::Backend,
    server::{Client, Ended, TestServer, now, sign, token},
};
use serde_json::json;

#[tokio::test]
async fn refresh_keeps_the_connection_and_its_subscriptions() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s1", "todos:*").await;

    ann.send(json!({"type": "auth", "token": token("ann"), "ref": "r1"}))
        .await;
    let refreshed = ann.recv().await;
    assert_eq!(refreshed["type"], "refreshed");
    assert_eq!(refreshed["ref"], "r1");

    // Another sub is refused; an invalid token is refused and the old one stays.
    ann.send(json!({"type": "auth", "token": token("bob"), "ref": 2}))
        .await;
    let mismatch = ann.recv().await;
    assert_eq!(
        (mismatch["code"].as_str(), mismatch["ref"].as_i64()),
        (Some("auth_mismatch"), Some(2))
    );
    ann.send(json!({"type": "auth", "token": "garbage", "ref": 3}))
        .await;
    assert_eq!(ann.recv().await["code"], "unauthorized");

    // The subscription still delivers.
    server
        .create("bob", "todos", json!({"title": "after refresh"}))
        .await;
    assert_eq!(ann.recv_event().await["record"]["title"], "after refresh");
}

/// Connects as `ann` with a token expiring in 2 s. Less than the refresh notice remains
/// at connect, so `refresh_required` must come at once, right after `welcome`.
async fn connect_expiring_soon(server: &TestServer) -> Client {
    let mut ann = server.open().await;
    ann.send(json!({"type": "auth", "token": sign(json!({"sub": "ann", "exp": now() + 2}))}))
        .await;
    assert_eq!(ann.recv().await["type"], "welcome");
    let notice = ann.recv().await;
    assert_eq!(notice["type"], "refresh_required");
    assert!(notice["expires_in"].as_u64().unwrap() <= 2);
    ann
}

#[tokio::test]
async fn refresh_notice_then_close_4001_at_expiry_plus_grace() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.auth.refresh_notice = Duration::from_secs(30);
        c.auth.expiry_grace = Duration::from_millis(500);
        c.jwt.leeway = Duration::ZERO;
    })
    .await;
    let mut ann = connect_expiring_soon(&server).await;
    // No refresh: closed 4001 after expiry + grace.
    assert_eq!(ann.ended().await, Ended::Code(4001));
}

#[tokio::test]
async fn a_timely_refresh_prevents_the_expiry_close() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.auth.expiry_grace = Duration::from_millis(200);
        c.jwt.leeway = Duration::ZERO;
    })
    .await;
    let mut ann = connect_expiring_soon(&server).await;
    ann.send(json!({"type": "auth", "token": token("ann")}))
        .await;
    assert_eq!(ann.recv().await["type"], "refreshed");
    // Past the old expiry + grace, the connection still answers.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    ann.send(json!({"type": "ping", "ref": "alive"})).await;
    assert_eq!(ann.recv().await["ref"], "alive");
}

#[tokio::test]
async fn refresh_ends_subscriptions_the_new_claims_no_longer_allow() {
    use tidings::{Rule, Rules};
    let url = common::db::fresh_database_url(Backend::Sqlite).await;
    let db = tidings::Db::connect(&url).await.unwrap();
    let mut config = common::server::test_config();
    config.auth.allow_anonymous = true;
    let realtime = tidings::Realtime::builder(config, db)
        .rules(Rules::new().collection("reports", Rule::Role("auditor".into()), Rule::Deny))
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = realtime.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let auditor = sign(json!({"sub": "ann", "exp": now() + 600, "roles": ["auditor"]}));
    let url = format!("ws://{addr}/realtime/subscribe");
    let mut client = Client::authenticated(&url, &auditor).await;
    client.subscribe("r", "reports:*").await;
    client
        .send(json!({"type": "auth", "token": token("ann")}))
        .await;
    let ended = client.recv().await;
    assert_eq!(ended["type"], "unsubscribed");
    assert_eq!(ended["id"], "r");
    assert_eq!(ended["reason"], "forbidden");
    assert_eq!(client.recv().await["type"], "refreshed");
}
