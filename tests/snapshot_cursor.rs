//! Snapshot and cursor in one step: `GET /api/{collection}` answers with
//! `X-Tidings-Cursor`, the log position the list is at; subscribing with `since` = that
//! cursor yields exactly the changes after the list, never one it already shows and
//! never a gap, however writes race with the read.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use common::{
    backend_tests,
    db::Backend,
    server::{TestServer, token},
    sse::SseStream,
};
use serde_json::{Value, json};

/// Iterations of the race loop per backend.
const ROUNDS: usize = 25;
/// The racing writer stops after this many todos, so every list (capped at 1000 by
/// the demo API) holds them all.
const MAX_WRITES: u64 = 800;

/// `GET path` as ann: the JSON body and the cursor header.
async fn read_with_cursor(server: &TestServer, path: &str) -> (Value, String) {
    let response = server
        .http()
        .get(server.url(path))
        .bearer_auth(token("ann"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200, "GET {path}");
    let cursor = response
        .headers()
        .get("x-tidings-cursor")
        .unwrap_or_else(|| panic!("GET {path} has no X-Tidings-Cursor"))
        .to_str()
        .expect("ASCII cursor")
        .to_owned();
    (response.json().await.expect("JSON"), cursor)
}

/// The writer's number in a title `w-<n>`.
fn written(title: &Value) -> Option<u64> {
    title.as_str()?.strip_prefix("w-")?.parse().ok()
}

backend_tests!(
    /// A writer creates todos `w-1`, `w-2`, ... one after the other while, in a loop,
    /// a reader lists them and subscribes from the list's cursor. The list always holds
    /// `w-1..w-a` (a consistent read), and the events from its cursor up to a marker
    /// are exactly the creates of `w-(a+1)..w-b`: nothing the list showed, no gap.
    async fn snapshot_then_subscribe_never_misses_or_doubles(backend: Backend) {
        let server = Arc::new(TestServer::start(backend, |_| {}).await);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let writer = {
            let (server, stop, count) = (server.clone(), stop.clone(), count.clone());
            tokio::spawn(async move {
                for n in 1..=MAX_WRITES {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    server
                        .create("bob", "todos", json!({"title": format!("w-{n}")}))
                        .await;
                    count.store(n, Ordering::Relaxed);
                }
            })
        };
        let mut raced = 0;
        for round in 0..ROUNDS {
            let (list, cursor) = read_with_cursor(&server, "/api/todos").await;
            let mut shown: Vec<u64> = list
                .as_array()
                .expect("a list")
                .iter()
                .filter_map(|t| written(&t["title"]))
                .collect();
            shown.sort_unstable();
            let a = shown.len() as u64;
            assert_eq!(
                shown,
                (1..=a).collect::<Vec<_>>(),
                "round {round}: the list is not a consistent read"
            );

            let mut ann = server.connect("ann").await;
            ann.send(
                json!({"type": "subscribe", "id": "s", "pattern": "todos:*", "since": cursor}),
            )
            .await;
            let subscribed = ann.recv().await;
            assert_eq!(subscribed["recovered"], true, "round {round}: {subscribed}");
            let marker = format!("m-{round}");
            server
                .create("ann", "todos", json!({"title": marker}))
                .await;
            let mut after = Vec::new();
            loop {
                let event = ann.recv_event().await;
                assert_eq!(event["action"], "create", "{event}");
                let title = &event["record"]["title"];
                if title == marker.as_str() {
                    break;
                }
                if let Some(n) = written(title) {
                    after.push(n);
                }
            }
            let b = a + after.len() as u64;
            assert_eq!(
                after,
                (a + 1..=b).collect::<Vec<_>>(),
                "round {round}: events after the list's cursor {cursor} (list had w-1..w-{a})"
            );
            if !after.is_empty() {
                raced += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.await.expect("writer");
        assert!(
            raced > 0 && count.load(Ordering::Relaxed) > 0,
            "the writer never raced the reads"
        );
    }
);

backend_tests!(
    /// One record's read carries its cursor too, and the Datastar bridge starts from a
    /// cursor given as `since` (a page rendered at that position).
    async fn record_reads_and_sse_start_from_the_cursor(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let todo = server.create("ann", "todos", json!({"title": "one"})).await;
        let id = todo["id"].as_str().unwrap();
        let (read, cursor) = read_with_cursor(&server, &format!("/api/todos/{id}")).await;
        assert_eq!(read["title"], "one");
        let seq = common::server::seq_of_cursor(&cursor);

        let later = server.create("ann", "todos", json!({"title": "two"})).await;
        let later_id = later["id"].as_str().unwrap();
        let mut stream = SseStream::open(
            server
                .sse_request("todos:*")
                .query(&[("since", cursor.as_str())])
                .bearer_auth(token("ann")),
        )
        .await;
        assert_eq!(stream.status, 200);
        let group = stream.next_group().await;
        assert_eq!(common::sse::seq_of(&group.id), seq + 1, "{}", group.text());
        assert!(group.text().contains(later_id), "{}", group.text());
        assert!(
            !group.text().contains(&format!("todo-{id}")),
            "{}",
            group.text()
        );

        // A cursor from a later read of the same list moves on.
        let (_, again) = read_with_cursor(&server, "/api/todos").await;
        assert_eq!(common::server::seq_of_cursor(&again), seq + 1);
    }
);
