//! Read rules on delivery: owner-only records through wide subscriptions, hidden
//! fields, forbidden subscriptions. Marker events prove that nothing else arrived.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{TestServer, token},
};
use serde_json::json;

backend_tests!(
    async fn owner_rule_through_a_star_subscription_leaks_nothing(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut bob = server.connect("bob").await;
        bob.subscribe("all", "*").await;
        bob.subscribe("notes", "notes:*").await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("mine", "notes:*").await;

        let note = server
            .create(
                "ann",
                "notes",
                json!({"body": "ann's secret", "internal": "HIDDEN-VALUE"}),
            )
            .await;
        assert!(
            note.get("internal").is_none(),
            "REST hides the hidden field: {note}"
        );
        let id = note["id"].as_str().unwrap();
        let http = server.http();
        let patched = server
            .patch(
                "ann",
                "notes",
                id,
                json!({"internal": "HIDDEN-CHANGED", "body": "v2"}),
            )
            .await;
        assert_eq!(patched.status(), 200);
        assert!(!patched.text().await.unwrap().contains("HIDDEN"));
        assert_eq!(server.delete("ann", "notes", id).await, 204);
        // A todo everybody may read marks the end of the stream for bob.
        server
            .create("ann", "todos", json!({"title": "marker"}))
            .await;

        // The owner sees create, update, delete; no frame carries the hidden field.
        for action in ["create", "update", "delete"] {
            let event = ann.recv_event().await;
            assert_eq!(event["action"], action);
            assert_eq!(event["key"], id);
            let text = event.to_string();
            assert!(
                !text.contains("HIDDEN") && !text.contains("internal"),
                "{text}"
            );
        }
        // Bob sees only the marker: the note's events never reached him.
        let first = bob.recv_event().await;
        assert_eq!(first["collection"], "todos", "bob received {first}");
        assert_eq!(first["subs"], json!(["all"]));

        // Reads over REST obey the same rule.
        let other = http
            .get(server.url(&format!("/api/notes/{id}")))
            .bearer_auth(token("bob"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404);
    }
);

backend_tests!(
    async fn one_frame_per_event_listing_every_matching_subscription(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("a", "todos:*").await;
        ann.subscribe("b", "todos").await;
        ann.subscribe("c", "*").await;
        ann.subscribe("d", "notes:*").await;
        server.create("bob", "todos", json!({"title": "x"})).await;
        server
            .create("bob", "todos", json!({"title": "marker"}))
            .await;
        let event = ann.recv_event().await;
        assert_eq!(event["subs"], json!(["a", "b", "c"]));
        assert_eq!(event["record"]["title"], "x");
        // The next frame is the marker, not a duplicate.
        assert_eq!(ann.recv_event().await["record"]["title"], "marker");
    }
);

#[tokio::test]
async fn subscriptions_are_validated() {
    let server = TestServer::start(common::db::Backend::Sqlite, |c| {
        c.connection.max_subscriptions = 2
    })
    .await;
    let mut ann = server.connect("ann").await;
    let cases = [
        (
            json!({"type": "subscribe", "id": "x", "pattern": "todos:[", "ref": 1}),
            "invalid_pattern",
        ),
        (
            json!({"type": "subscribe", "id": "x", "pattern": "a".repeat(300), "ref": 1}),
            "invalid_pattern",
        ),
        (
            json!({"type": "subscribe", "id": "x", "pattern": "secrets:*", "ref": 1}),
            "forbidden",
        ),
        (
            json!({"type": "subscribe", "id": "", "pattern": "todos", "ref": 1}),
            "bad_request",
        ),
        (
            json!({"type": "unsubscribe", "id": "nope", "ref": 1}),
            "not_found",
        ),
    ];
    for (frame, code) in cases {
        ann.send(frame.clone()).await;
        let reply = ann.recv().await;
        assert_eq!(reply["type"], "error", "{frame}");
        assert_eq!(reply["code"], code, "{frame}: {reply}");
        assert_eq!(reply["ref"], 1);
    }
    ann.subscribe("one", "todos:1").await;
    ann.send(json!({"type": "subscribe", "id": "one", "pattern": "todos:2"}))
        .await;
    assert_eq!(ann.recv().await["code"], "bad_request", "duplicate id");
    ann.subscribe("two", "todos:2").await;
    ann.send(json!({"type": "subscribe", "id": "three", "pattern": "todos:3"}))
        .await;
    assert_eq!(ann.recv().await["code"], "limit_exceeded");
    ann.send(json!({"type": "unsubscribe", "id": "one", "ref": "u"}))
        .await;
    let done = ann.recv().await;
    assert_eq!(
        (
            done["type"].as_str(),
            done["id"].as_str(),
            done["ref"].as_str()
        ),
        (Some("unsubscribed"), Some("one"), Some("u"))
    );
    ann.subscribe("three", "todos:3").await;
}

#[tokio::test]
async fn subscription_hooks_see_every_websocket_subscription_start_and_end() {
    use common::server::Extras;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String, String)>();
    let (on_sub, on_unsub) = (tx.clone(), tx);
    let extras = Extras {
        builder: Some(Box::new(move |builder: tidings::RealtimeBuilder| {
            builder
                .on_subscribe(move |pattern, id| {
                    let _ = on_sub.send(("sub".into(), pattern.into(), id.into()));
                })
                .on_unsubscribe(move |pattern, id| {
                    let _ = on_unsub.send(("unsub".into(), pattern.into(), id.into()));
                })
        })),
        ..Extras::default()
    };
    let server = TestServer::start_with(common::db::Backend::Sqlite, |_| {}, extras).await;
    let mut next = async || {
        tokio::time::timeout(common::server::WAIT, rx.recv())
            .await
            .expect("hook call")
            .expect("open")
    };
    let mut ann = server.connect("ann").await;
    let id = ann.connection_id.clone();
    ann.subscribe("a", "todos:*").await;
    assert_eq!(next().await, ("sub".into(), "todos:*".into(), id.clone()));
    ann.subscribe("b", "chat:lobby").await;
    assert_eq!(
        next().await,
        ("sub".into(), "chat:lobby".into(), id.clone())
    );
    ann.send(json!({"type": "unsubscribe", "id": "a"})).await;
    assert_eq!(ann.recv().await["type"], "unsubscribed");
    assert_eq!(next().await, ("unsub".into(), "todos:*".into(), id.clone()));
    // Refused subscriptions call nothing; the connection's end ends the rest.
    ann.send(json!({"type": "subscribe", "id": "x", "pattern": "secret:*"}))
        .await;
    assert_eq!(ann.recv().await["code"], "forbidden");
    drop(ann);
    assert_eq!(next().await, ("unsub".into(), "chat:lobby".into(), id));
}
