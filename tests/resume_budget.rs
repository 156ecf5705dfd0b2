//! The resume budget over the real server, on SQLite and Postgres: a resume whose
//! range holds more rows than `log.resume_scan_budget` answers `recovered:false`,
//! `too_many`, whatever its pattern matches, while a short one still recovers exactly
//! (from the ring or the table); and resumes are rate limited per user on both
//! transports.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{
    backend_tests,
    db::Backend,
    server::{Client, TestServer, seq_of, token},
    sse::SseStream,
};
use serde_json::{Value, json};

/// Sends a `subscribe` with `since` and returns the answer (`subscribed` or `error`).
async fn resume(client: &mut Client, id: &str, pattern: &str, since: &str) -> Value {
    client
        .send(json!({"type": "subscribe", "id": id, "pattern": pattern, "since": since, "ref": id}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["ref"], id, "{reply}");
    reply
}

/// Creates `n` todos as bob and returns the cursor of the last, as `watcher` saw it.
async fn todos(server: &TestServer, watcher: &mut Client, n: usize) -> Value {
    for i in 0..n {
        server
            .create("bob", "todos", json!({"title": format!("t{i}")}))
            .await;
    }
    let mut last = Value::Null;
    for _ in 0..n {
        last = watcher.recv_event().await;
    }
    last
}

backend_tests!(
    async fn a_resume_past_the_scan_budget_is_too_many_and_a_short_one_recovers(backend: Backend) {
        // A ring of 2 sends the 3-event resume below to the table.
        for ring_capacity in [100, 2] {
            let server = TestServer::start(backend, |c| {
                c.log.resume_scan_budget = 5;
                c.log.ring_capacity = ring_capacity;
            })
            .await;
            let mut watcher = server.connect("ann").await;
            let start = watcher.subscribe("w", "todos:*").await;
            let since = start["cursor"].as_str().unwrap().to_owned();
            let epoch = since.rsplit_once(':').unwrap().0.to_owned();
            let last = todos(&server, &mut watcher, 8).await;
            let head = seq_of(&last);

            // Eight rows to read against a budget of five: too many, even for a
            // pattern that matches none of them, and from the log's very start.
            for (pattern, cursor) in [
                ("todos:nothing", since.clone()),
                ("todos:*", since.clone()),
                ("notes:*", format!("{epoch}:0")),
            ] {
                let mut client = server.connect("ann").await;
                let reply = resume(&mut client, "r", pattern, &cursor).await;
                assert_eq!(reply["type"], "subscribed", "{reply}");
                assert_eq!(reply["recovered"], false, "{pattern} {cursor}");
                assert_eq!(reply["reason"], "too_many", "{pattern} {cursor}");
            }

            // Three rows: within the budget, replayed exactly, then live.
            let mut client = server.connect("ann").await;
            let short = format!("{epoch}:{}", head - 3);
            let reply = resume(&mut client, "r", "todos:*", &short).await;
            assert_eq!(reply["recovered"], true, "ring {ring_capacity}: {reply}");
            for (offset, title) in ["t5", "t6", "t7"].iter().enumerate() {
                let event = client.recv_event().await;
                assert_eq!(event["record"]["title"], *title);
                assert_eq!(seq_of(&event), head - 2 + offset as u64);
            }
            server
                .create("bob", "todos", json!({"title": "live"}))
                .await;
            let live = client.recv_event().await;
            assert_eq!(live["record"]["title"], "live");
            assert_eq!(seq_of(&live), head + 1);
        }
    }
);

backend_tests!(
    async fn an_sse_resume_past_the_scan_budget_starts_over(backend: Backend) {
        let server = TestServer::start(backend, |c| c.log.resume_scan_budget = 2).await;
        let mut watcher = server.connect("ann").await;
        let start = watcher.subscribe("w", "todos:*").await;
        let since = start["cursor"].as_str().unwrap().to_owned();
        todos(&server, &mut watcher, 3).await;
        let failed_before = server
            .realtime
            .metrics()
            .resumes_failed
            .load(Ordering::Relaxed);
        // The demo's snapshot answers an unservable resume: the page starts over.
        let mut resumed = server.sse_resume("ann", "todos:nothing", &since).await;
        resumed.next_group().await;
        let failed = server
            .realtime
            .metrics()
            .resumes_failed
            .load(Ordering::Relaxed);
        assert_eq!(failed, failed_before + 1);
    }
);

backend_tests!(
    async fn resumes_are_rate_limited_per_user(backend: Backend) {
        // Two at once, then one an hour: the third is refused whatever the timing.
        let server = TestServer::start(backend, |c| {
            c.log.resume_burst = 2;
            c.log.resume_interval = Duration::from_secs(3600);
        })
        .await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("w", "todos:*").await;
        let since = start["cursor"].as_str().unwrap().to_owned();

        for id in ["r1", "r2"] {
            let reply = resume(&mut ann, id, "todos:*", &since).await;
            assert_eq!(reply["recovered"], true, "{reply}");
        }
        // A second connection of the same user draws on the same allowance.
        let mut ann_again = server.connect("ann").await;
        let reply = resume(&mut ann_again, "r3", "todos:*", &since).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], "rate_limited");
        assert_eq!(reply["id"], "r3");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains("log.resume_interval"), "{message}");
        // A subscription without `since` is not a resume, and the refused id is free.
        let plain = ann_again.subscribe("r3", "todos:*").await;
        assert!(plain.get("recovered").is_none());
        // The Datastar bridge shares the allowance: 429 with a clear body.
        let request = server
            .sse_request("todos:*")
            .bearer_auth(token("ann"))
            .header("last-event-id", since.as_str());
        let refused = SseStream::open(request).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.error_code().await, "rate_limited");

        // Another user's allowance is their own.
        let mut bob = server.connect("bob").await;
        let reply = resume(&mut bob, "r1", "todos:*", &since).await;
        assert_eq!(reply["recovered"], true, "{reply}");
        let limited = server
            .realtime
            .metrics()
            .resumes_rate_limited
            .load(Ordering::Relaxed);
        assert_eq!(limited, 2);
    }
);
