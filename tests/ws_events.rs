//! Record events and broadcasts reach WebSocket subscribers, on SQLite and Postgres.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{TestServer, seq_of},
};
use serde_json::json;

backend_tests!(
    async fn crud_events_reach_subscribers_in_order(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        let subscribed = ann.subscribe("s1", "todos:*").await;
        assert!(subscribed["cursor"].as_str().unwrap().contains(':'));
        assert!(
            subscribed.get("recovered").is_none(),
            "recovered only with since"
        );

        let todo = server
            .create("bob", "todos", json!({"title": "milk"}))
            .await;
        let id = todo["id"].as_str().unwrap();
        let created = ann.recv_event().await;
        assert_eq!(created["action"], "create");
        assert_eq!(created["subs"], json!(["s1"]));
        assert_eq!(created["topic"], format!("todos:{id}"));
        assert_eq!(created["collection"], "todos");
        assert_eq!(created["key"], id);
        assert_eq!(created["record"]["title"], "milk");
        assert_eq!(created["changes"], json!(null));
        assert!(created["ts"].as_str().unwrap().ends_with('Z'));

        let patched = server
            .patch("bob", "todos", id, json!({"done": true}))
            .await;
        assert_eq!(patched.status(), 200);
        let updated = ann.recv_event().await;
        assert_eq!(updated["action"], "update");
        assert_eq!(updated["changes"], json!(["done"]));
        assert_eq!(updated["record"]["done"], true);

        // Only the owner may change it.
        assert_eq!(server.delete("ann", "todos", id).await, 403);
        assert_eq!(server.delete("bob", "todos", id).await, 204);
        let gone = ann.recv_event().await;
        assert_eq!(gone["action"], "delete");
        assert_eq!(gone["record"]["id"], id);

        let seqs: Vec<u64> = [&created, &updated, &gone]
            .iter()
            .map(|e| seq_of(e))
            .collect();
        assert_eq!(seqs[1], seqs[0] + 1);
        assert_eq!(seqs[2], seqs[1] + 1);
    }
);
