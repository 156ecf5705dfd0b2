//! Limits in bytes, not only in events: the size of a client's `publish`, each user's
//! publish quota, and the log's retention on both databases.

mod common;

use std::time::Duration;

use common::{backend_tests, db::Backend, server::TestServer};
use serde_json::json;

fn publish(data: serde_json::Value, reference: u32) -> serde_json::Value {
    json!({"type": "publish", "topic": "chat", "event": "say", "data": data, "ref": reference})
}

#[tokio::test]
async fn a_publish_over_the_payload_limit_is_refused_and_the_connection_stays() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.publish.max_payload_bytes = 1000;
    })
    .await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "chat").await;
    // Within the frame limit (64 KiB), over the payload limit.
    ann.send(publish(json!("x".repeat(5000)), 1)).await;
    let refused = ann.recv().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "limit_exceeded");
    assert_eq!(refused["ref"], 1);
    assert!(
        refused["message"].as_str().unwrap().contains("1000"),
        "{refused}"
    );
    // Nothing was published; a payload within the limit is.
    ann.send(publish(json!("x".repeat(900)), 2)).await;
    let mut published = false;
    let mut event = None;
    while !(published && event.is_some()) {
        let frame = ann.recv().await;
        match frame["type"].as_str() {
            Some("published") => published = true,
            Some("event") => event = Some(frame),
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(event.unwrap()["data"].as_str().unwrap().len(), 900);
}

#[tokio::test]
async fn each_user_has_a_publish_quota_in_events_and_bytes_across_connections() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.publish.events_per_window = 3;
        c.publish.bytes_per_window = 100_000;
        c.publish.max_payload_bytes = 60_000;
        c.publish.window = Duration::from_secs(600);
    })
    .await;
    let mut first = server.connect("ann").await;
    let mut second = server.connect("ann").await;
    // Events: three in the window, on whichever connection.
    for reference in 1..=3 {
        let client = if reference == 2 {
            &mut second
        } else {
            &mut first
        };
        client.send(publish(json!("hi"), reference)).await;
        assert_eq!(client.recv_type("published").await["ref"], reference);
    }
    second.send(publish(json!("hi"), 4)).await;
    let refused = second.recv().await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["ref"], 4);
    // Bob's quota is his own; bytes run out before events do. The quota refills
    // steadily (100,000 bytes per 600 s, 167 bytes a second), so the second payload
    // overshoots it by 9 kB, which takes nearly a minute to refill: by a few bytes
    // only, it was accepted whenever the two publishes were 25 ms apart.
    let mut bob = server.connect("bob").await;
    bob.send(publish(json!("x".repeat(50_000)), 5)).await;
    assert_eq!(bob.recv_type("published").await["ref"], 5);
    bob.send(publish(json!("x".repeat(59_000)), 6)).await;
    let refused = bob.recv().await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("bytes"),
        "{refused}"
    );
}

backend_tests!(
    async fn the_log_is_pruned_past_its_byte_retention(backend: Backend) {
        // 40 events of 60 KB (2.4 MB) through a log that keeps 1 MiB.
        let server = TestServer::start(backend, |c| {
            c.log.retention_bytes = 1024 * 1024;
            c.log.ring_capacity = 1;
        })
        .await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("s", "todos").await["cursor"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut cursors = Vec::new();
        for n in 0..40 {
            server
                .broadcast_to("todos", "n", json!({"n": n, "pad": incompressible(60_000)}))
                .await;
            cursors.push(
                ann.recv_event().await["cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let stored = stored_bytes(&server).await;
        // Pruning runs every tenth of the budget: at most ~110% of it, plus a batch.
        assert!(stored <= 1_300_000, "{stored} bytes kept");
        assert!(
            stored >= 500_000,
            "pruned far more than needed: {stored} bytes kept"
        );
        let mut old = server.connect("ann").await;
        let refused = resume(&mut old, &start).await;
        assert_eq!(refused["recovered"], false, "{refused}");
        assert_eq!(refused["reason"], "too_old");
        // The most recent events are all still there.
        let mut recent = server.connect("ann").await;
        let subscribed = resume(&mut recent, &cursors[35]).await;
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        for n in 36..40 {
            assert_eq!(recent.recv_event().await["data"]["n"], n);
        }
    }
);

/// `len` characters that Postgres cannot compress away (it stores large JSONB values
/// compressed, and the retention counts what is stored).
fn incompressible(len: usize) -> String {
    let mut text = String::with_capacity(len + 32);
    while text.len() < len {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(len);
    text
}

async fn resume(client: &mut common::server::Client, since: &str) -> serde_json::Value {
    client
        .send(json!({"type": "subscribe", "id": "s", "pattern": "todos", "since": since}))
        .await;
    client.recv_type("subscribed").await
}

/// The bytes the log's rows hold, measured as the relay measures them.
async fn stored_bytes(server: &TestServer) -> i64 {
    match server.realtime.db() {
        tidings::Db::Sqlite(pool) => sqlx::query_scalar(
            "SELECT coalesce(sum(length(CAST(payload AS BLOB)) + length(CAST(acl AS BLOB))), 0) \
             FROM realtime_outbox WHERE seq IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
        tidings::Db::Postgres(pool) => sqlx::query_scalar(
            "SELECT coalesce(sum(pg_column_size(payload) + pg_column_size(acl)), 0)::bigint \
             FROM realtime_outbox WHERE seq IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
    }
}
