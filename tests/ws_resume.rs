//! Resume: `since` replays exactly what was missed (from the ring or the table), or
//! answers `recovered:false` with a reason and replays nothing.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{Client, TestServer, seq_of, seq_of_cursor},
};
use serde_json::{Value, json};

async fn resume(client: &mut Client, id: &str, pattern: &str, since: &str) -> Value {
    client
        .send(
            json!({"type": "subscribe", "id": id, "pattern": pattern, "since": since, "ref": "r"}),
        )
        .await;
    let subscribed = client.recv().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["ref"], "r");
    subscribed
}

async fn titles(server: &TestServer, sub: &str, titles: &[&str]) {
    for title in titles {
        server.create(sub, "todos", json!({"title": title})).await;
    }
}

backend_tests!(
    async fn resume_replays_exactly_the_missed_events_then_goes_live(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("s", "todos:*").await;
        titles(&server, "bob", &["a", "b"]).await;
        ann.recv_event().await;
        let last = ann.recv_event().await;
        let cursor = last["cursor"].as_str().unwrap().to_owned();
        drop(ann);

        titles(&server, "bob", &["c", "d", "e"]).await;
        let mut again = server.connect("ann").await;
        let subscribed = resume(&mut again, "s", "todos:*", &cursor).await;
        assert_eq!(subscribed["recovered"], true);
        assert!(subscribed.get("reason").is_none());
        for (offset, title) in ["c", "d", "e"].iter().enumerate() {
            let event = again.recv_event().await;
            assert_eq!(event["record"]["title"], *title);
            assert_eq!(event["subs"], json!(["s"]));
            assert_eq!(seq_of(&event), seq_of(&last) + 1 + offset as u64);
        }
        // Live events follow without a gap.
        titles(&server, "bob", &["f"]).await;
        let live = again.recv_event().await;
        assert_eq!(live["record"]["title"], "f");
        assert_eq!(seq_of(&live), seq_of(&last) + 4);

        // Resuming at the current position replays nothing and is recovered.
        let mut current = server.connect("ann").await;
        let at = resume(
            &mut current,
            "s",
            "todos:*",
            live["cursor"].as_str().unwrap(),
        )
        .await;
        assert_eq!(at["recovered"], true);
        assert_eq!(at["cursor"], live["cursor"]);
    }
);

backend_tests!(
    async fn resume_after_a_restart_reads_the_table(backend: Backend) {
        let first = TestServer::start(backend, |_| {}).await;
        let mut ann = first.connect("ann").await;
        let start = ann.subscribe("s", "todos:*").await;
        let since = start["cursor"].as_str().unwrap().to_owned();
        titles(&first, "bob", &["a", "b", "c"]).await;
        for _ in 0..3 {
            ann.recv_event().await;
        }
        let url = first.database_url.clone();
        drop(ann);
        drop(first);
        // A new node on the same log: its ring is empty, the table serves the resume.
        let second = TestServer::start_on(&url, |_| {}).await;
        let mut again = second.connect("ann").await;
        let subscribed = resume(&mut again, "s", "todos:*", &since).await;
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        for title in ["a", "b", "c"] {
            assert_eq!(again.recv_event().await["record"]["title"], title);
        }
    }
);

backend_tests!(
    async fn resumes_that_cannot_be_served_say_why_and_replay_nothing(backend: Backend) {
        let server = TestServer::start(backend, |c| {
            c.log.replay_cap = 2;
            c.log.ring_capacity = 2;
        })
        .await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("s", "todos:*").await;
        let since = start["cursor"].as_str().unwrap().to_owned();
        let epoch = since.rsplit_once(':').unwrap().0.to_owned();
        titles(&server, "bob", &["a", "b", "c"]).await;
        let mut last = Value::Null;
        for _ in 0..3 {
            last = ann.recv_event().await;
        }
        let head = seq_of(&last);

        let cases = [
            (since.clone(), "too_many"),
            (format!("otherepoch:{}", head), "epoch_changed"),
            (format!("{epoch}:{}", head + 100), "unknown_position"),
            ("garbage".to_owned(), "unknown_position"),
        ];
        for (cursor, reason) in cases {
            let mut client = server.connect("ann").await;
            let subscribed = resume(&mut client, "s", "todos:*", &cursor).await;
            assert_eq!(subscribed["recovered"], false, "{cursor}");
            assert_eq!(subscribed["reason"], reason, "{cursor}");
            // Nothing was replayed: the next frame is the next live event.
            titles(&server, "bob", &["live"]).await;
            let next = client.recv_event().await;
            assert_eq!(next["record"]["title"], "live");
        }

        // Within the cap, but the rows were pruned from the table: too old.
        let with_pattern = {
            let mut c = server.connect("ann").await;
            // Only one matching event (key "none") so the cap is not the reason.
            let sub = resume(&mut c, "k", "todos:none", &since).await;
            sub["recovered"].clone()
        };
        assert_eq!(
            with_pattern, true,
            "few matching events resume from the table"
        );
        match server.realtime.db() {
            tidings::Db::Sqlite(pool) => {
                sqlx::query("DELETE FROM realtime_outbox WHERE seq <= 2")
                    .execute(pool)
                    .await
                    .unwrap();
            }
            tidings::Db::Postgres(pool) => {
                sqlx::query("DELETE FROM realtime_outbox WHERE seq <= 2")
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        let mut client = server.connect("ann").await;
        let subscribed = resume(&mut client, "k", "todos:none", &since).await;
        assert_eq!(subscribed["reason"], "too_old");
    }
);

backend_tests!(
    async fn resume_under_concurrent_writes_has_no_gap_and_no_duplicate(backend: Backend) {
        let server = TestServer::start(backend, |c| c.log.ring_capacity = 8).await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("s", "todos:*").await;
        let since = start["cursor"].as_str().unwrap().to_owned();
        let base: u64 = seq_of_cursor(&since);
        drop(ann);
        titles(
            &server,
            "bob",
            &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        )
        .await;
        // Keep writing while the client resumes, so replay and live overlap in time.
        let writer = {
            let url = server.url("/api/todos");
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 10..40 {
                    let response = http
                        .post(&url)
                        .bearer_auth(common::server::token("bob"))
                        .json(&json!({"title": i.to_string()}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        };
        let mut again = server.connect("ann").await;
        let subscribed = resume(&mut again, "s", "todos:*", &since).await;
        assert_eq!(subscribed["recovered"], true);
        for expected in 1..=40u64 {
            let event = again.recv_event().await;
            assert_eq!(
                seq_of(&event),
                base + expected,
                "gap or duplicate at {expected}"
            );
        }
        writer.await.unwrap();
    }
);

backend_tests!(
    async fn the_relay_prunes_past_the_retention_and_old_resumes_are_too_old(backend: Backend) {
        let server = TestServer::start(backend, |c| {
            c.log.retention = 3;
            c.log.ring_capacity = 1;
        })
        .await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("s", "todos").await["cursor"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut cursors = Vec::new();
        for n in 0..12 {
            server.broadcast_to("todos", "n", json!(n)).await;
            // One event per relay batch: each batch prunes what the previous left.
            cursors.push(
                ann.recv_event().await["cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let mut old = server.connect("ann").await;
        assert_eq!(
            resume(&mut old, "s", "todos", &start).await["reason"],
            "too_old"
        );
        // The last events are still in the table (the ring holds only one).
        let mut recent = server.connect("ann").await;
        let subscribed = resume(&mut recent, "s", "todos", &cursors[8]).await;
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        for n in 9..12 {
            assert_eq!(recent.recv_event().await["data"], n);
        }
    }
);
