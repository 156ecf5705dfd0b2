//! `Last-Event-ID` on the Datastar SSE endpoint (protocol sections 4 and 6), on SQLite
//! and Postgres: exact replays from the ring and from the table, and the fresh start
//! (snapshot, or reset patch) when a resume cannot be served.

mod common;

use std::sync::atomic::Ordering;

use common::{
    backend_tests,
    db::Backend,
    server::TestServer,
    sse::{expect_creates, todo},
};
use serde_json::{Value, json};
use tidings::Db;

fn epoch_of(cursor: &str) -> &str {
    cursor.rsplit_once(':').unwrap().0
}

backend_tests!(
    async fn resume_replays_exactly_what_was_missed_then_goes_live(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut first = server.sse("ann", "todos:*").await;
        let opening = first.next_group().await;
        let t1 = todo(&server, "one").await;
        let g1 = expect_creates(&mut first, &[&t1], opening.seq()).await;
        let t2 = todo(&server, "two").await;
        expect_creates(&mut first, &[&t2], g1.seq()).await;
        drop(first);

        let t3 = todo(&server, "three").await;
        let t4 = todo(&server, "four").await;
        // Resume from after t1: t2 again (the page may have lost it), t3, t4, and no
        // snapshot, since the page is only behind, not lost.
        let mut again = server.sse_resume("ann", "todos:*", &g1.id).await;
        let g4 = expect_creates(&mut again, &[&t2, &t3, &t4], g1.seq()).await;
        let t5 = todo(&server, "five").await;
        expect_creates(&mut again, &[&t5], g4.seq()).await;

        // From the newest position there is nothing to replay: the next group is live.
        let mut current = server.sse_resume("ann", "todos:*", &g4.id).await;
        // t5 came after g4, so it is replayed, then live continues.
        let g5 = expect_creates(&mut current, &[&t5], g4.seq()).await;
        let t6 = todo(&server, "six").await;
        expect_creates(&mut current, &[&t6], g5.seq()).await;
        let recovered = server
            .realtime
            .metrics()
            .resumes_recovered
            .load(Ordering::Relaxed);
        assert_eq!(recovered, 2);
    }
);

backend_tests!(
    async fn resume_after_a_restart_replays_from_the_table(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let url = server.database_url.clone();
        let mut stream = server.sse("ann", "todos:*").await;
        let opening = stream.next_group().await;
        let t1 = todo(&server, "before").await;
        let g1 = expect_creates(&mut stream, &[&t1], opening.seq()).await;
        drop(stream);
        assert!(server.realtime.shutdown().await);
        drop(server);

        // A new process on the same log: its ring is empty, so the table serves.
        let server = TestServer::start_on(&url, |_| {}).await;
        let t2 = todo(&server, "after").await;
        let mut resumed = server.sse_resume("ann", "todos:*", &g1.id).await;
        expect_creates(&mut resumed, &[&t2], g1.seq()).await;
    }
);

backend_tests!(
    async fn a_resume_over_the_replay_cap_starts_with_the_snapshot(backend: Backend) {
        let server = TestServer::start(backend, |c| c.log.replay_cap = 2).await;
        let mut stream = server.sse("ann", "todos:*").await;
        let opening = stream.next_group().await;
        let ids = [
            todo(&server, "a").await,
            todo(&server, "b").await,
            todo(&server, "c").await,
        ];
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let last = expect_creates(&mut stream, &refs, opening.seq()).await;
        drop(stream);

        let mut resumed = server.sse_resume("ann", "todos:*", &opening.id).await;
        let snapshot = resumed.next_group().await;
        assert_eq!(snapshot.events.len(), 1, "{snapshot:?}");
        let html = snapshot.text();
        assert!(html.starts_with("elements <ul id=\"todos\">"), "{html}");
        for id in &ids {
            assert!(html.contains(&format!("<li id=\"todo-{id}\"")), "{html}");
        }
        // The snapshot is as new as the stream's start, which is where a resume goes on.
        assert_eq!(snapshot.seq(), last.seq());
        let d = todo(&server, "d").await;
        expect_creates(&mut resumed, &[&d], last.seq()).await;
        let failed = server
            .realtime
            .metrics()
            .resumes_failed
            .load(Ordering::Relaxed);
        assert_eq!(failed, 1);
    }
);

backend_tests!(
    async fn an_unservable_resume_without_snapshot_gets_the_reset_patch(backend: Backend) {
        let server = TestServer::start(backend, |c| c.log.replay_cap = 1).await;
        let mut stream = server.sse("ann", "notes:*").await;
        let opening = stream.next_group().await;
        assert!(opening.events.is_empty(), "no snapshot for notes");
        for body in ["a", "b"] {
            server.create("ann", "notes", json!({"body": body})).await;
            stream.next_group().await;
        }
        drop(stream);
        let epoch = epoch_of(&opening.id).to_owned();
        let future = format!("{epoch}:{}", opening.seq() + 1000);
        let reset = json!({"tidings": {"notes": null}});
        for last_event_id in [
            opening.id.as_str(), // too many (cap 1)
            "another-epoch:1",   // epoch changed
            "not a cursor",      // unknown position
            future.as_str(),     // ahead of the log
        ] {
            let mut resumed = server.sse_resume("ann", "notes:*", last_event_id).await;
            let first = resumed.next_group().await;
            assert_eq!(first.events.len(), 1, "{last_event_id}: {first:?}");
            assert_eq!(first.events[0].signals(), reset, "{last_event_id}");
            assert_eq!(epoch_of(&first.id), epoch);
        }
        // A pattern naming the todos too: the demo snapshot answers for it, and the
        // snapshot replaces the reset patch.
        let mut both = server
            .sse_resume("ann", "notes:*,todos:*", "another-epoch:1")
            .await;
        let first = both.next_group().await;
        assert!(
            first.text().starts_with("elements <ul id=\"todos\">"),
            "{first:?}"
        );
    }
);

backend_tests!(
    async fn a_resume_older_than_the_log_gets_the_reset_patch(backend: Backend) {
        let server = TestServer::start(backend, |c| c.log.ring_capacity = 1).await;
        let mut stream = server.sse("ann", "notes:*").await;
        let opening = stream.next_group().await;
        let mut last = opening.clone();
        for body in ["a", "b", "c"] {
            server.create("ann", "notes", json!({"body": body})).await;
            last = stream.next_group().await;
        }
        drop(stream);
        // Retention pruned everything but the newest event.
        let horizon = last.seq() - 1;
        let sql = "DELETE FROM realtime_outbox WHERE seq <= ";
        match server.realtime.db() {
            Db::Sqlite(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{sql}{horizon}")))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Db::Postgres(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{sql}{horizon}")))
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        let mut resumed = server.sse_resume("ann", "notes:*", &opening.id).await;
        let first = resumed.next_group().await;
        assert_eq!(
            first.events[0].signals(),
            json!({"tidings": {"notes": null}})
        );
        // The newest event is still in the ring: a resume from just before it works.
        let before_last = format!("{}:{}", epoch_of(&last.id), last.seq() - 1);
        let mut recent = server.sse_resume("ann", "notes:*", &before_last).await;
        let replayed = recent.next_group().await;
        assert_eq!(replayed.id, last.id);
        assert!(
            replayed.events[0].signals()["tidings"]["notes"].is_object(),
            "{replayed:?}"
        );
    }
);

backend_tests!(
    async fn a_new_stream_starts_at_a_position_it_can_resume_from(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        // An event before the stream, seen through another stream so that it is
        // known to be delivered (the relay runs on its own).
        let mut watcher = server.sse("ann", "notes:*").await;
        watcher.next_group().await;
        server.create("ann", "notes", json!({"body": "old"})).await;
        let old = watcher.next_group().await;
        let mut stream = server.sse("ann", "notes:*").await;
        let opening = stream.next_group().await;
        assert_eq!(opening.seq(), old.seq());
        drop(stream);
        // Nothing was received but the start; what happens next is not lost.
        let note = server.create("ann", "notes", json!({"body": "new"})).await;
        let mut resumed = server.sse_resume("ann", "notes:*", &opening.id).await;
        let first = resumed.next_group().await;
        assert_eq!(first.seq(), opening.seq() + 1);
        let signals: Value = first.events[0].signals();
        assert_eq!(
            signals["tidings"]["notes"][note["id"].as_str().unwrap()]["body"],
            "new"
        );
    }
);
