//! Live views that stay correct: filtered subscriptions, and updates that move a
//! record into (`enter`) or out of (`leave`) what a subscriber sees, because a filtered
//! field or a rule field changed; live and in replay, over WebSocket and SSE. Marker
//! events prove that nothing else arrived.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{Client, TestServer},
    sse::SseStream,
};
use serde_json::{Value, json};

/// Subscribes with a filter (and a resume position) and returns the reply.
async fn subscribe_filtered(
    client: &mut Client,
    id: &str,
    pattern: &str,
    filter: Value,
    since: Option<&str>,
) -> Value {
    let mut frame = json!({"type": "subscribe", "id": id, "pattern": pattern, "filter": filter});
    if let Some(since) = since {
        frame["since"] = json!(since);
    }
    client.send(frame).await;
    client.recv().await
}

/// The (action, subs, title) of the next event frame.
async fn next(client: &mut Client) -> (String, Value, Value) {
    let event = client.recv_event().await;
    (
        event["action"].as_str().unwrap_or_default().to_owned(),
        event["subs"].clone(),
        event["record"]["title"].clone(),
    )
}

async fn patch_ok(server: &TestServer, sub: &str, collection: &str, id: &str, body: Value) {
    let response = server.patch(sub, collection, id, body.clone()).await;
    assert_eq!(response.status(), 200, "PATCH {collection}/{id} {body}");
}

backend_tests!(
    /// Every operator, and type mismatches, against real todos: each subscription
    /// receives exactly the creates its filter admits.
    async fn filters_select_record_events(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        let filters = [
            ("eq", json!({"title": "b"})),
            ("eq_op", json!({"title": {"eq": "b"}})),
            ("neq", json!({"title": {"neq": "b"}})),
            ("lt", json!({"title": {"lt": "b"}})),
            ("lte", json!({"title": {"lte": "b"}})),
            ("gt", json!({"title": {"gt": "b"}})),
            ("gte", json!({"title": {"gte": "b"}})),
            ("in", json!({"title": {"in": ["a", "c"]}})),
            ("open", json!({"done": false})),
            ("and", json!({"done": true, "title": "c"})),
            ("string_vs_bool", json!({"done": "false"})),
            ("number_vs_string", json!({"title": {"gt": 5}})),
            ("missing", json!({"nope": {"neq": 1}})),
            ("missing_is_null", json!({"nope": null})),
        ];
        for (id, filter) in &filters {
            let reply = subscribe_filtered(&mut ann, id, "todos:*", filter.clone(), None).await;
            assert_eq!(reply["type"], "subscribed", "{id}: {reply}");
        }
        server.create("bob", "todos", json!({"title": "a"})).await;
        server.create("bob", "todos", json!({"title": "b"})).await;
        server
            .create("bob", "todos", json!({"title": "c", "done": true}))
            .await;
        let expected = [
            (
                "a",
                json!(["in", "lt", "lte", "missing_is_null", "neq", "open"]),
            ),
            (
                "b",
                json!(["eq", "eq_op", "gte", "lte", "missing_is_null", "open"]),
            ),
            (
                "c",
                json!(["and", "gt", "gte", "in", "missing_is_null", "neq"]),
            ),
        ];
        // Sorted `subs` (the server sorts them) compare as lists.
        for (title, subs) in expected {
            let (action, got, record_title) = next(&mut ann).await;
            assert_eq!((action.as_str(), &record_title), ("create", &json!(title)));
            let mut got: Vec<String> = serde_json::from_value(got).unwrap();
            got.sort();
            assert_eq!(json!(got), subs, "todo {title}");
        }
    }
);

#[tokio::test]
async fn bad_filters_are_refused_with_a_reason() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_filter_conditions = 2;
        c.connection.max_filter_values = 3;
    })
    .await;
    let mut ann = server.connect("ann").await;
    let cases = [
        ("notes:*", json!({"internal": "x"}), "hides that field"),
        ("*", json!({"internal": {"neq": null}}), "hides that field"),
        (
            "todos:*",
            json!({"title": {"like": "x"}}),
            "unknown operator",
        ),
        ("todos:*", json!({"title": {"eq": ["x"]}}), "scalars"),
        ("todos:*", json!({"title": {"eq": {"a": 1}}}), "scalars"),
        ("todos:*", json!({"title": {"in": "x"}}), "list of scalars"),
        (
            "todos:*",
            json!({"title": {"in": [1, 2, 3, 4]}}),
            "at most 3",
        ),
        ("todos:*", json!({"a": 1, "b": 2, "c": 3}), "at most 2"),
        (
            "todos:*",
            json!({"title": {"eq": 1, "neq": 2}}),
            "2 operators",
        ),
        ("todos:*", json!(["done"]), "JSON object"),
        (
            "todos:*",
            json!({"title": "x".repeat(5000)}),
            "at most 4096 are allowed",
        ),
    ];
    for (n, (pattern, filter, reason)) in cases.into_iter().enumerate() {
        let id = format!("s{n}");
        let reply = subscribe_filtered(&mut ann, &id, pattern, filter.clone(), None).await;
        assert_eq!(reply["type"], "error", "{filter}: {reply}");
        assert_eq!(reply["code"], "bad_request", "{filter}");
        assert_eq!(reply["id"], json!(id));
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(reason), "{filter}: {message}");
    }
    // The connection stays usable, and the refused ids are free.
    let reply = subscribe_filtered(&mut ann, "s0", "notes:*", json!({"body": "x"}), None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

backend_tests!(
    /// A filter on `done`: an update that changes `done` moves the todo in or out;
    /// other updates reach only those who see the todo; live and in replay.
    async fn filtered_field_changes_enter_and_leave(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        let open = json!({"done": false});
        let start = subscribe_filtered(&mut ann, "open", "todos:*", open.clone(), None).await;
        let since = start["cursor"].as_str().unwrap().to_owned();
        let todo = server.create("bob", "todos", json!({"title": "t"})).await;
        let id = todo["id"].as_str().unwrap();
        patch_ok(&server, "bob", "todos", id, json!({"done": true})).await;
        patch_ok(&server, "bob", "todos", id, json!({"title": "unseen"})).await;
        patch_ok(&server, "bob", "todos", id, json!({"done": false})).await;
        patch_ok(&server, "bob", "todos", id, json!({"title": "seen"})).await;
        server
            .create("bob", "todos", json!({"title": "marker"}))
            .await;

        let expected = [
            ("create", json!("t")),
            ("leave", Value::Null),
            ("enter", json!("unseen")),
            ("update", json!("seen")),
            ("create", json!("marker")),
        ];
        let check = |frames: Vec<Value>, sub: &str| {
            for (frame, (action, title)) in frames.iter().zip(&expected) {
                assert_eq!(frame["action"], *action, "{sub}: {frame}");
                assert_eq!(frame["record"]["title"], *title, "{sub}: {frame}");
                assert_eq!(frame["subs"], json!([sub]));
                if *action == "leave" {
                    assert_eq!(frame["record"], Value::Null, "leave carries the id only");
                    assert_eq!(frame["key"], id);
                }
                if *action == "enter" {
                    // The whole public record, not a change list.
                    assert_eq!(frame["record"]["done"], false);
                    assert_eq!(frame["record"]["owner_id"], "bob");
                    assert!(frame.get("changes").is_none(), "{frame}");
                }
            }
        };
        let mut live = Vec::new();
        for _ in &expected {
            live.push(ann.recv_event().await);
        }
        check(live, "open");

        // A resume from before all of it gets the same table.
        let mut again = server.connect("ann").await;
        let reply = subscribe_filtered(&mut again, "r", "todos:*", open, Some(&since)).await;
        assert_eq!(reply["recovered"], true, "{reply}");
        let mut replayed = Vec::new();
        for _ in &expected {
            replayed.push(again.recv_event().await);
        }
        check(replayed, "r");
    }
);

backend_tests!(
    /// A note handed from ann to bob: ann's view loses it (the id only, no field),
    /// bob's gains it whole; live, in replay, and on SSE.
    async fn rule_field_changes_enter_and_leave(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        let mut bob = server.connect("bob").await;
        let since = ann.subscribe("mine", "notes:*").await["cursor"]
            .as_str()
            .unwrap()
            .to_owned();
        bob.subscribe("mine", "notes:*").await;
        let mut ann_sse = server.sse("ann", "notes:*").await;
        ann_sse.next_event().await; // the opening: the stream's cursor
        let mut bob_sse = server.sse("bob", "notes:*").await;
        bob_sse.next_event().await;

        let note = server
            .create(
                "ann",
                "notes",
                json!({"body": "ANN-SECRET", "internal": "HIDDEN"}),
            )
            .await;
        let id = note["id"].as_str().unwrap();
        patch_ok(&server, "ann", "notes", id, json!({"owner_id": "bob"})).await;
        patch_ok(&server, "bob", "notes", id, json!({"body": "bob's now"})).await;
        // Ann may no longer touch it: it is invisible to her.
        assert_eq!(
            server
                .patch("ann", "notes", id, json!({"body": "x"}))
                .await
                .status(),
            404
        );
        let marker = server
            .create("ann", "notes", json!({"body": "marker"}))
            .await;
        let marker_id = marker["id"].as_str().unwrap();

        let ann_expected = [("create", id), ("leave", id), ("create", marker_id)];
        let check_ann = |frames: &[Value]| {
            for (frame, (action, key)) in frames.iter().zip(&ann_expected) {
                assert_eq!(
                    (frame["action"].as_str(), frame["key"].as_str()),
                    (Some(*action), Some(*key))
                );
            }
            let leave = frames[1].to_string();
            assert!(
                !leave.contains("ANN-SECRET")
                    && !leave.contains("bob")
                    && !leave.contains("HIDDEN"),
                "a user who loses access learns the id only: {leave}"
            );
        };
        let mut frames = Vec::new();
        for _ in &ann_expected {
            frames.push(ann.recv_event().await);
        }
        check_ann(&frames);

        let enter = bob.recv_event().await;
        assert_eq!(enter["action"], "enter", "{enter}");
        assert_eq!(enter["record"]["body"], "ANN-SECRET");
        assert_eq!(enter["record"]["owner_id"], "bob");
        assert!(!enter.to_string().contains("HIDDEN"), "{enter}");
        let update = bob.recv_event().await;
        assert_eq!(update["action"], "update", "{update}");
        assert_eq!(update["changes"], json!(["body"]));
        // The marker is ann's: bob's next frame is whatever comes after it.
        let bob_marker = server
            .create("bob", "notes", json!({"body": "bob marker"}))
            .await;
        let next = bob.recv_event().await;
        assert_eq!(next["key"], bob_marker["id"], "bob received {next}");

        // Replay applies the same table.
        let mut again = server.connect("ann").await;
        again
            .send(json!({"type": "subscribe", "id": "r", "pattern": "notes:*", "since": since}))
            .await;
        let reply = again.recv().await;
        assert_eq!(reply["recovered"], true, "{reply}");
        let mut frames = Vec::new();
        for _ in &ann_expected {
            frames.push(again.recv_event().await);
        }
        check_ann(&frames);

        // SSE (the default signal mapping): ann's signal goes to null on leave, bob's
        // is set to the record on enter.
        let signals = |group: common::sse::Group| group.events[0].signals();
        let created = signals(ann_sse.next_group().await);
        assert_eq!(created["tidings"]["notes"][id]["body"], "ANN-SECRET");
        let left = ann_sse.next_group().await;
        assert_eq!(
            left.events[0].signals()["tidings"]["notes"][id],
            Value::Null
        );
        assert!(!left.text().contains("ANN-SECRET"), "{}", left.text());
        let entered = signals(bob_sse.next_group().await);
        assert_eq!(entered["tidings"]["notes"][id]["body"], "ANN-SECRET");
        let updated = signals(bob_sse.next_group().await);
        assert_eq!(updated["tidings"]["notes"][id]["body"], "bob's now");
    }
);

backend_tests!(
    /// `GET /realtime/sse?filter=`: the stream sees only open todos, and a todo that is
    /// done leaves it; a resume applies the same filter and table.
    async fn sse_filter_and_resume(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let filter = json!({"done": false}).to_string();
        let request = || {
            server
                .sse_request("notes:*")
                .query(&[("filter", filter.as_str())])
                .bearer_auth(common::server::token("ann"))
        };
        let mut stream = SseStream::open(request()).await;
        assert_eq!(stream.status, 200);
        let opening = stream.next_event().await;
        let since = opening.id.expect("the opening carries the cursor");

        // Notes have no `done`: `{"done": false}` never matches them (missing is
        // null, and null is not false).
        let skipped = server
            .create("ann", "notes", json!({"body": "no done field"}))
            .await;
        let bodies = json!({"body": {"in": ["a", "b"]}}).to_string();
        let mut by_body = SseStream::open(
            server
                .sse_request("notes:*")
                .query(&[("filter", bodies.as_str())])
                .bearer_auth(common::server::token("ann")),
        )
        .await;
        by_body.next_event().await;
        let note = server.create("ann", "notes", json!({"body": "a"})).await;
        let id = note["id"].as_str().unwrap();
        patch_ok(&server, "ann", "notes", id, json!({"body": "z"})).await;
        patch_ok(&server, "ann", "notes", id, json!({"body": "b"})).await;
        let group = by_body.next_group().await;
        assert_eq!(
            group.events[0].signals()["tidings"]["notes"][id]["body"],
            "a"
        );
        let group = by_body.next_group().await;
        assert_eq!(
            group.events[0].signals()["tidings"]["notes"][id],
            Value::Null
        );
        let group = by_body.next_group().await;
        assert_eq!(
            group.events[0].signals()["tidings"]["notes"][id]["body"],
            "b"
        );

        // A resume of the same filtered stream replays the same three, and not the
        // note without the field.
        let mut resumed = SseStream::open(
            server
                .sse_request("notes:*")
                .query(&[("filter", bodies.as_str())])
                .bearer_auth(common::server::token("ann"))
                .header("last-event-id", since.as_str()),
        )
        .await;
        assert_eq!(resumed.status, 200);
        for body in [json!("a"), Value::Null, json!("b")] {
            let group = resumed.next_group().await;
            let signal = &group.events[0].signals()["tidings"]["notes"][id];
            assert_eq!(
                if body.is_null() {
                    signal.clone()
                } else {
                    signal["body"].clone()
                },
                body
            );
            assert!(!group.text().contains(skipped["id"].as_str().unwrap()));
        }
        drop(stream);

        // Bad filters are refused before the stream starts.
        for bad in [
            "{nope",
            "[1]",
            r#"{"internal":"x"}"#,
            r#"{"body":{"like":"x"}}"#,
        ] {
            let refused = SseStream::open(
                server
                    .sse_request("notes:*")
                    .query(&[("filter", bad)])
                    .bearer_auth(common::server::token("ann")),
            )
            .await;
            assert_eq!(refused.status, 400, "{bad}");
            assert_eq!(refused.error_code().await, "bad_request", "{bad}");
        }
    }
);
