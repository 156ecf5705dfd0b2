//! Client mutation ids round-trip: from `X-Tidings-Mutation` on the REST API, from the
//! model API (`Tx::set_mutation`), from a `publish` frame and from
//! `realtime_broadcast`, each event carries `"mutation"`; live and in replay. Bad ids
//! are refused with a reason.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{TestServer, token},
};
use serde_json::{Value, json};
use tidings::{Broadcast, MutationId, Target, demo::Todo};

/// A REST write as `sub` with a mutation id; the response.
async fn write(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    mutation: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = server
        .http()
        .request(method, server.url(path))
        .bearer_auth(token("ann"))
        .header("x-tidings-mutation", mutation);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

backend_tests!(
    async fn mutation_ids_round_trip(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("todos", "todos:*").await;
        let since = start["cursor"].as_str().unwrap().to_owned();

        // REST: POST, PATCH, DELETE.
        let created = write(
            &server,
            reqwest::Method::POST,
            "/api/todos",
            "rest-create",
            Some(json!({"title": "t"})),
        )
        .await;
        assert_eq!(created.status(), 201);
        let id = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/api/todos/{id}");
        let patched = write(
            &server,
            reqwest::Method::PATCH,
            &path,
            "rest-patch",
            Some(json!({"done": true})),
        )
        .await;
        assert_eq!(patched.status(), 200);
        let deleted = write(&server, reqwest::Method::DELETE, &path, "rest-delete", None).await;
        assert_eq!(deleted.status(), 204);

        // The model API: every event of the transaction carries it.
        let store = server.realtime.store();
        let mut tx = store.begin().await.unwrap();
        tx.set_mutation(MutationId::new("model-tx").unwrap());
        tx.insert(&Todo {
            id: "m1".into(),
            title: "from rust".into(),
            done: false,
            owner_id: "ann".into(),
            created_at: "2026-11-30T00:00:00.000Z".into(),
        })
        .await
        .unwrap();
        server
            .realtime
            .broadcast_in(
                &mut tx,
                Broadcast::new(Target::Collection("todos".into()), "in-tx", json!(null)),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // realtime_broadcast and a client publish frame.
        server
            .realtime
            .broadcast(
                Broadcast::new(Target::Collection("todos".into()), "direct", json!(1))
                    .mutation("api-broadcast"),
            )
            .await
            .unwrap();
        let mut chat = server.connect("ann").await;
        chat.send(
            json!({"type": "publish", "topic": "todos", "event": "typing",
                         "data": {}, "mutation": "frame-1", "ref": 1}),
        )
        .await;
        assert_eq!(chat.recv_type("published").await["ref"], 1);
        // Without an id, no `mutation` field at all.
        server
            .create("ann", "todos", json!({"title": "untagged"}))
            .await;

        let expected = [
            Some("rest-create"),
            Some("rest-patch"),
            Some("rest-delete"),
            Some("model-tx"),
            Some("model-tx"),
            Some("api-broadcast"),
            Some("frame-1"),
            None,
        ];
        let check = |frames: &[Value]| {
            for (frame, mutation) in frames.iter().zip(expected) {
                assert_eq!(frame["mutation"].as_str(), mutation, "{frame}");
                if mutation.is_none() {
                    assert!(frame.get("mutation").is_none(), "{frame}");
                }
            }
        };
        let mut live = Vec::new();
        for _ in expected {
            live.push(ann.recv_event().await);
        }
        check(&live);

        // A replay carries them too (read back from the log's `mutation` column).
        let mut again = server.connect("ann").await;
        again
            .send(json!({"type": "subscribe", "id": "r", "pattern": "todos:*", "since": since}))
            .await;
        assert_eq!(again.recv().await["recovered"], true);
        let mut replayed = Vec::new();
        for _ in expected {
            replayed.push(again.recv_event().await);
        }
        check(&replayed);
    }
);

#[tokio::test]
async fn bad_mutation_ids_are_refused() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let too_long = "x".repeat(129);
    let refused = write(
        &server,
        reqwest::Method::POST,
        "/api/todos",
        &too_long,
        Some(json!({"title": "t"})),
    )
    .await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("mutation id"),
        "{body}"
    );
    let list: Value = server
        .http()
        .get(server.url("/api/todos"))
        .bearer_auth(token("ann"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]), "a refused write wrote nothing");

    let mut ann = server.connect("ann").await;
    ann.send(json!({"type": "publish", "topic": "todos", "event": "x",
                    "mutation": too_long, "ref": 2}))
        .await;
    let error = ann.recv().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "bad_request");
    assert!(
        error["message"].as_str().unwrap().contains("mutation id"),
        "{error}"
    );
    assert!(
        server
            .realtime
            .broadcast(
                Broadcast::new(Target::Collection("todos".into()), "x", json!(1)).mutation("")
            )
            .await
            .is_err()
    );
}
