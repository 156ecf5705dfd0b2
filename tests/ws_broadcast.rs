//! Custom events: every target (collection, topic, connections, users), `except`,
//! the HTTP endpoint's auth, client `publish` frames, and read rules on broadcasts.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{TestServer, token, token_with_roles},
};
use serde_json::{Value, json};
use tidings::{Broadcast, Target};

async fn post(server: &TestServer, bearer: Option<String>, body: Value) -> reqwest::Response {
    let mut request = server
        .http()
        .post(server.url("/realtime/broadcast"))
        .json(&body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.unwrap()
}

backend_tests!(
    async fn every_target_reaches_exactly_its_receivers(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("all", "todos").await;
        let mut ann2 = server.connect("ann").await; // ann's second tab, no subscription
        let mut bob = server.connect("bob").await;
        bob.subscribe("one", "todos:42").await;
        let publisher = Some(token_with_roles("svc", &["publisher"]));

        // Collection-wide: every todos subscription, key patterns included.
        let response = post(
            &server,
            publisher.clone(),
            json!({"target": {"collection": "todos"}, "event": "celebrate", "data": {"n": 1}}),
        )
        .await;
        assert_eq!(response.status(), 202);
        for client in [&mut ann, &mut bob] {
            let event = client.recv_event().await;
            assert_eq!(event["action"], "broadcast");
            assert_eq!(event["event"], "celebrate");
            assert_eq!(event["data"], json!({"n": 1}));
            assert_eq!(event["topic"], "todos");
            assert_eq!(event["key"], Value::Null);
            assert!(event["cursor"].is_string());
            assert!(event.get("record").is_none());
        }

        // Topic: todos:42 reaches bob's todos:42 and ann's collection subscription,
        // but not ann's excluded connection when `except` names it.
        let response = post(&server, publisher.clone(), json!({"target": {"topic": "todos:42"}, "event": "poke", "data": null, "except": ann.connection_id})).await;
        assert_eq!(response.status(), 202);
        let poke = bob.recv_event().await;
        assert_eq!(
            (poke["topic"].as_str(), poke["key"].as_str()),
            (Some("todos:42"), Some("42"))
        );

        // Users: both of ann's connections, no cursor, no subs.
        server
            .realtime
            .broadcast(Broadcast::new(
                Target::Users(vec!["ann".into()]),
                "dm",
                json!("hi"),
            ))
            .await
            .unwrap();
        for client in [&mut ann, &mut ann2] {
            let dm = client.recv_event().await;
            assert_eq!(dm["event"], "dm");
            assert_eq!(dm["subs"], json!([]));
            for field in ["cursor", "topic", "collection", "key"] {
                assert_eq!(dm[field], Value::Null, "{field}");
            }
        }
        // Connections: just ann2.
        server
            .realtime
            .broadcast(Broadcast::new(
                Target::Connections(vec![ann2.connection_id.clone()]),
                "only-you",
                json!(1),
            ))
            .await
            .unwrap();
        assert_eq!(ann2.recv_event().await["event"], "only-you");
        // Users with except: ann's first tab skipped.
        server
            .realtime
            .broadcast(
                Broadcast::new(
                    Target::Users(vec!["ann".into(), "bob".into()]),
                    "final",
                    json!(2),
                )
                .except(ann.connection_id.clone()),
            )
            .await
            .unwrap();
        assert_eq!(ann2.recv_event().await["event"], "final");
        assert_eq!(bob.recv_event().await["event"], "final");
        // ann (the excluded connection) got neither `poke` nor `final`: its next
        // frame is this marker.
        server.broadcast_to("todos", "marker", json!(0)).await;
        assert_eq!(ann.recv_event().await["event"], "marker");
    }
);

#[tokio::test]
async fn http_endpoint_needs_a_publisher_token_and_valid_input() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let body = json!({"target": {"collection": "todos"}, "event": "x", "data": 1});
    assert_eq!(post(&server, None, body.clone()).await.status(), 401);
    assert_eq!(
        post(&server, Some("bad".into()), body.clone())
            .await
            .status(),
        401
    );
    assert_eq!(
        post(&server, Some(token("ann")), body.clone())
            .await
            .status(),
        403
    );
    let publisher = Some(token_with_roles("svc", &["publisher"]));
    for bad in [
        json!({"target": {"collection": "bad name"}, "event": "x"}),
        json!({"target": {"topic": "todos:"}, "event": "x"}),
        json!({"target": {"users": []}, "event": "x"}),
        json!({"target": {"planet": "mars"}, "event": "x"}),
        json!({"target": {"collection": "todos"}, "event": ""}),
        json!({"event": "x"}),
        json!("not an object"),
    ] {
        let response = post(&server, publisher.clone(), bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "bad_request");
    }
}

#[tokio::test]
async fn client_publish_obeys_the_publish_rule() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("chat", "chat:*").await;
    let mut bob = server.connect("bob").await;
    bob.subscribe("chat", "chat:lobby").await;
    ann.send(json!({"type": "publish", "topic": "chat:lobby", "event": "typing", "data": {"user": "ann"}, "ref": 9})).await;
    let published = ann.recv().await;
    assert_eq!(
        (published["type"].as_str(), published["ref"].as_i64()),
        (Some("published"), Some(9))
    );
    let typing = bob.recv_event().await;
    assert_eq!(typing["event"], "typing");
    assert_eq!(typing["data"], json!({"user": "ann"}));
    // The sender's own subscription receives it too.
    assert_eq!(ann.recv_event().await["event"], "typing");

    for (frame, code) in [
        (
            json!({"type": "publish", "topic": "notes:1", "event": "x", "data": 1, "ref": 1}),
            "forbidden",
        ),
        (
            json!({"type": "publish", "topic": "secret", "event": "x", "data": 1, "ref": 1}),
            "forbidden",
        ),
        (
            json!({"type": "publish", "topic": "bad topic", "event": "x", "data": 1, "ref": 1}),
            "bad_request",
        ),
        (
            json!({"type": "publish", "topic": "chat", "event": "", "data": 1, "ref": 1}),
            "bad_request",
        ),
    ] {
        ann.send(frame.clone()).await;
        let reply = ann.recv().await;
        assert_eq!(reply["code"], code, "{frame}: {reply}");
        assert_eq!(reply["ref"], 1);
    }
}

#[tokio::test]
async fn owner_rules_apply_to_broadcast_data() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("n", "notes").await;
    let mut bob = server.connect("bob").await;
    bob.subscribe("n", "notes").await;
    let send = |data: Value| {
        let realtime = server.realtime.clone();
        async move {
            realtime
                .broadcast(Broadcast::new(
                    Target::Collection("notes".into()),
                    "changed",
                    data,
                ))
                .await
                .unwrap()
        }
    };
    send(json!({"owner_id": "ann", "n": 1})).await; // ann only
    send(json!({"n": 2})).await; // no owner field: nobody
    send(json!({"owner_id": "bob", "n": 3})).await; // bob only
    // Markers: each side's next event proves nothing else reached it.
    send(json!({"owner_id": "ann", "n": 4})).await;
    send(json!({"owner_id": "bob", "n": 5})).await;
    assert_eq!(ann.recv_event().await["data"]["n"], 1);
    assert_eq!(ann.recv_event().await["data"]["n"], 4);
    assert_eq!(bob.recv_event().await["data"]["n"], 3);
    assert_eq!(bob.recv_event().await["data"]["n"], 5);
}

backend_tests!(
    async fn broadcasts_in_a_transaction_are_sent_only_on_commit(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("s", "todos").await;
        let realtime = &server.realtime;
        let store = realtime.store();
        let to_todos =
            |name: &str| Broadcast::new(Target::Collection("todos".into()), name, json!(null));
        let to_ann =
            |name: &str| Broadcast::new(Target::Users(vec!["ann".into()]), name, json!(null));

        let mut rolled_back = store.begin().await.unwrap();
        realtime
            .broadcast_in(&mut rolled_back, to_todos("never-logged"))
            .await
            .unwrap();
        realtime
            .broadcast_in(&mut rolled_back, to_ann("never-direct"))
            .await
            .unwrap();
        rolled_back.rollback().await.unwrap();

        let mut dropped = store.begin().await.unwrap();
        realtime
            .broadcast_in(&mut dropped, to_ann("never-dropped"))
            .await
            .unwrap();
        drop(dropped);

        let mut committed = store.begin().await.unwrap();
        realtime
            .broadcast_in(&mut committed, to_ann("direct-after-commit"))
            .await
            .unwrap();
        committed.commit().await.unwrap();
        assert_eq!(ann.recv_event().await["event"], "direct-after-commit");

        let mut committed = store.begin().await.unwrap();
        realtime
            .broadcast_in(&mut committed, to_todos("logged-after-commit"))
            .await
            .unwrap();
        committed.commit().await.unwrap();
        assert_eq!(ann.recv_event().await["event"], "logged-after-commit");
    }
);
