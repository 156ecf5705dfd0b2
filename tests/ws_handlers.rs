//! The app's handlers for client events, over real WebSockets: rejections, transforms,
//! writes through the model layer, request/reply, timeouts and panics, middleware, and
//! every event's `source`.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{
    backend_tests,
    db::Backend,
    server::{Client, Extras, TestServer},
};
use serde_json::{Value, json};
use tidings::{
    Config, ErrorCode, RealtimeBuilder,
    demo::Todo,
    handlers::{Call, Next, Outcome, Reject},
};

/// A server on `backend` whose builder `handlers` registers the test's handlers.
async fn server_on(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
    handlers: impl FnOnce(RealtimeBuilder) -> RealtimeBuilder + Send + 'static,
) -> TestServer {
    let extras = Extras {
        builder: Some(Box::new(handlers)),
        ..Extras::default()
    };
    TestServer::start_with(backend, configure, extras).await
}

/// A server on SQLite with the test's handlers and the default configuration.
async fn server(
    handlers: impl FnOnce(RealtimeBuilder) -> RealtimeBuilder + Send + 'static,
) -> TestServer {
    server_on(Backend::Sqlite, |_| {}, handlers).await
}

fn publish(topic: &str, data: Value, reference: u32) -> Value {
    json!({"type": "publish", "topic": topic, "event": "say", "data": data, "ref": reference})
}

fn request(topic: &str, event: &str, data: Value, reference: &str) -> Value {
    json!({"type": "request", "topic": topic, "event": event, "data": data, "ref": reference})
}

/// Sends a ping and returns the next frame, which must be its pong: proof that the
/// connection is open, reads frames, and had nothing else queued for the client.
async fn assert_quiet_and_open(client: &mut Client) {
    client.send(json!({"type": "ping", "ref": "alive"})).await;
    let pong = client.recv().await;
    assert_eq!(pong, json!({"type": "pong", "ref": "alive"}));
}

/// Chat messages must have a text without "spam"; the text reaches subscribers trimmed
/// and upper-cased.
fn moderated_chat(builder: RealtimeBuilder) -> RealtimeBuilder {
    builder.on_publish("chat:*", |mut call: Call| async move {
        let data = call.take_data();
        let Some(text) = data.get("text").and_then(Value::as_str) else {
            return Err(Reject::bad_request("a message needs a text"));
        };
        if text.contains("spam") {
            return Err(Reject::forbidden("no spam, please"));
        }
        Ok(Outcome::Publish(
            json!({"text": text.trim().to_uppercase()}),
        ))
    })
}

#[tokio::test]
async fn a_rejection_reaches_only_its_sender() {
    let server = server(moderated_chat).await;
    let mut ann = server.connect("ann").await;
    let mut bob = server.connect("bob").await;
    bob.subscribe("c", "chat:*").await;

    ann.send(publish("chat:lobby", json!({"text": "buy spam"}), 1))
        .await;
    let refused = ann.recv().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["ref"], 1);
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["message"], "no spam, please");

    ann.send(publish("chat:lobby", json!({"nope": 1}), 2)).await;
    let refused = ann.recv().await;
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("bad_request"), &json!(2))
    );

    // The first event anyone gets is the accepted message: the refused ones never
    // left the handler, and bob heard of no refusal.
    ann.send(publish("chat:lobby", json!({"text": " hi "}), 3))
        .await;
    assert_eq!(ann.recv_type("published").await["ref"], 3);
    let event = bob.recv_event().await;
    assert_eq!(event["data"], json!({"text": "HI"}));
    assert_quiet_and_open(&mut bob).await;
    assert_quiet_and_open(&mut ann).await;
}

#[tokio::test]
async fn a_transform_changes_what_subscribers_get_and_keeps_the_rest() {
    let server = server(moderated_chat).await;
    let mut ann = server.connect("ann").await;
    let mut bob = server.connect("bob").await;
    bob.subscribe("c", "chat:*").await;

    ann.send(
        json!({"type": "publish", "topic": "chat:lobby", "event": "say",
                    "data": {"text": "  hello "}, "mutation": "m-1", "ref": 9}),
    )
    .await;
    assert_eq!(ann.recv().await, json!({"type": "published", "ref": 9}));
    let event = bob.recv_event().await;
    assert_eq!(event["action"], "broadcast");
    assert_eq!(event["topic"], "chat:lobby");
    assert_eq!(event["event"], "say");
    assert_eq!(event["data"], json!({"text": "HELLO"}));
    assert_eq!(event["mutation"], "m-1");
    // The demo's chat shows who said what.
    assert_eq!(event["source"], json!({"kind": "client", "user_id": "ann"}));
    assert!(event["cursor"].is_string(), "a logged event: {event}");
}

#[tokio::test]
async fn a_clients_handled_events_keep_their_order() {
    // A handler that answers at a varying pace: calls of one connection still run one
    // after the other, so what subscribers get is in the order it was sent.
    let server = server(|builder| {
        builder.on_publish("chat:*", |call: Call| async move {
            let n = call.data()["n"].as_u64().unwrap_or(0);
            for _ in 0..(n % 4) * 10 {
                tokio::task::yield_now().await;
            }
            Ok(Outcome::Publish(call.data().clone()))
        })
    })
    .await;
    let mut ann = server.connect("ann").await;
    let mut bob = server.connect("bob").await;
    bob.subscribe("c", "chat:*").await;
    let sent: Vec<u64> = (0..12).collect();
    for &n in &sent {
        ann.send(publish("chat:lobby", json!({"n": n}), 100 + n as u32))
            .await;
    }
    for &n in &sent {
        assert_eq!(
            ann.recv().await,
            json!({"type": "published", "ref": 100 + n})
        );
    }
    let mut received = Vec::new();
    for _ in &sent {
        received.push(bob.recv_event().await["data"]["n"].as_u64().unwrap_or(99));
    }
    assert_eq!(received, sent);
}

backend_tests!(
    /// A handler that writes through the model layer: the write's own event is what
    /// subscribers get (durable, resumable, attributed to the client), and nothing
    /// else is published.
    async fn a_handler_writing_through_the_model_yields_a_durable_event(backend: Backend) {
        let server = server_on(
            backend,
            |_| {},
            |builder| {
                builder.on_publish("todos", |mut call: Call| async move {
                    let data = call.take_data();
                    let title = data["title"].as_str().unwrap_or("untitled").to_owned();
                    let owner_id = call.user_id().unwrap_or("nobody").to_owned();
                    let todo = Todo {
                        id: uuid::Uuid::new_v4().simple().to_string(),
                        title,
                        done: false,
                        owner_id,
                        created_at: chrono::Utc::now().to_rfc3339(),
                    };
                    let mut tx = call
                        .begin()
                        .await
                        .map_err(|e| Reject::internal(e.to_string()))?;
                    tx.insert(&todo)
                        .await
                        .map_err(|e| Reject::internal(e.to_string()))?;
                    tx.commit()
                        .await
                        .map_err(|e| Reject::internal(e.to_string()))?;
                    Ok(Outcome::Done)
                })
            },
        )
        .await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("t", "todos:*").await["cursor"]
            .as_str()
            .expect("cursor")
            .to_owned();
        let mut bob = server.connect("bob").await;
        bob.send(json!({"type": "publish", "topic": "todos", "event": "add",
                        "data": {"title": "milk"}, "mutation": "m-7", "ref": 1}))
            .await;
        assert_eq!(bob.recv().await, json!({"type": "published", "ref": 1}));

        let created = ann.recv_event().await;
        assert_eq!(created["action"], "create");
        assert_eq!(created["record"]["title"], "milk");
        assert_eq!(created["record"]["owner_id"], "bob");
        assert_eq!(created["mutation"], "m-7");
        // `todos` does not show its publishers: a client event, nothing more.
        assert_eq!(created["source"], json!({"kind": "client"}));
        // No `add` broadcast follows: the marker is the next event.
        server.broadcast_to("todos", "marker", json!({})).await;
        let marker = ann.recv_event().await;
        assert_eq!(marker["event"], "marker");
        assert_eq!(marker["source"], json!({"kind": "server"}));

        // Durable: a client resuming from before it gets the same event from the log.
        let mut carol = server.connect("carol").await;
        carol
            .send(json!({"type": "subscribe", "id": "r", "pattern": "todos:*", "since": start}))
            .await;
        let subscribed = carol.recv().await;
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        let replayed = carol.recv_event().await;
        assert_eq!(replayed["cursor"], created["cursor"]);
        assert_eq!(replayed["source"], created["source"]);
        assert_eq!(replayed["mutation"], "m-7");
    }
);

#[tokio::test]
async fn requests_are_answered_with_their_ref() {
    let server = server(|builder| {
        builder.on_request("todos", |call: Call| async move {
            match call.event() {
                "whoami" => Ok(Outcome::Reply(json!({
                    "user": call.user_id(),
                    "connection": call.connection_id(),
                    "asked": call.data(),
                }))),
                other => Err(Reject::new(
                    ErrorCode::NotFound,
                    format!("no method {other}"),
                )),
            }
        })
    })
    .await;
    let mut ann = server.connect("ann").await;
    ann.send(request("todos", "whoami", json!({"x": 1}), "r1"))
        .await;
    let reply = ann.recv().await;
    assert_eq!(
        reply,
        json!({"type": "reply", "ref": "r1", "data": {
            "user": "ann", "connection": ann.connection_id, "asked": {"x": 1}}})
    );

    ann.send(request("todos", "frobnicate", json!(null), "r2"))
        .await;
    let refused = ann.recv().await;
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("not_found"), &json!("r2"))
    );

    // No handler for the topic: `not_found`, and a bad request is a `bad_request`.
    ann.send(request("notes", "whoami", json!(null), "r3"))
        .await;
    let refused = ann.recv().await;
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("not_found"), &json!("r3"))
    );
    ann.send(request("no:such:topic", "whoami", json!(null), "r4"))
        .await;
    let refused = ann.recv().await;
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("bad_request"), &json!("r4"))
    );
    assert_quiet_and_open(&mut ann).await;
}

#[tokio::test]
async fn a_timeout_or_a_panic_answers_internal_to_that_client_only() {
    let server = server_on(
        Backend::Sqlite,
        |config| config.handlers.timeout = Duration::from_secs(2),
        |builder| {
            builder
                .on_request("slow", |_call: Call| async move {
                    std::future::pending::<()>().await;
                    Ok(Outcome::Done)
                })
                .on_request("boom", |call: Call| async move {
                    tokio::task::yield_now().await;
                    panic!("handler bug on {}", call.topic());
                })
                .on_request(
                    "sudden",
                    |_call: Call| -> std::future::Ready<Result<Outcome, Reject>> {
                        panic!("handler bug before its future")
                    },
                )
                .on_request("echo", |call: Call| async move {
                    Ok(Outcome::Reply(call.data().clone()))
                })
        },
    )
    .await;
    let mut ann = server.connect("ann").await;
    let mut bob = server.connect("bob").await;

    ann.send(request("slow", "wait", json!(null), "slow")).await;
    // The slow call runs off the read loop: the connection answers at once meanwhile,
    // and so does everyone else's.
    ann.send(json!({"type": "ping", "ref": "meanwhile"})).await;
    assert_eq!(
        ann.recv().await,
        json!({"type": "pong", "ref": "meanwhile"})
    );
    bob.send(request("echo", "e", json!(1), "b1")).await;
    assert_eq!(
        bob.recv().await,
        json!({"type": "reply", "ref": "b1", "data": 1})
    );
    let timed_out = ann.recv().await;
    assert_eq!(timed_out["type"], "error");
    assert_eq!(
        (&timed_out["code"], &timed_out["ref"]),
        (&json!("internal"), &json!("slow"))
    );

    for topic in ["boom", "sudden"] {
        ann.send(request(topic, "go", json!(null), topic)).await;
        let failed = ann.recv().await;
        assert_eq!(
            (&failed["code"], &failed["ref"], &failed["message"]),
            (
                &json!("internal"),
                &json!(topic),
                &json!("the handler failed")
            ),
        );
    }
    let failures = &server.realtime.metrics().handler_failures;
    assert_eq!(
        failures.load(Ordering::SeqCst),
        3,
        "a timeout and two panics"
    );
    // The connection keeps working, handlers included; bob saw none of it.
    ann.send(request("echo", "e", json!("still here"), "after"))
        .await;
    assert_eq!(
        ann.recv().await,
        json!({"type": "reply", "ref": "after", "data": "still here"})
    );
    assert_quiet_and_open(&mut bob).await;
}

#[tokio::test]
async fn middleware_run_in_order_and_each_can_stop_the_chain() {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let server = server(move |builder| {
        builder
            .middleware(|mut call: Call, next: Next| async move {
                trail(&mut call, "first");
                next.run(call).await
            })
            .middleware(|mut call: Call, next: Next| async move {
                if call.data()["quota_left"] == 0 {
                    return Err(Reject::rate_limited("daily quota used up"));
                }
                if call.data()["cached"] == true {
                    return Ok(Outcome::Reply(json!("from cache")));
                }
                trail(&mut call, "second");
                next.run(call).await
            })
            .on_request("todos", move |call: Call| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok(Outcome::Reply(call.data()["trail"].clone()))
                }
            })
    })
    .await;
    let mut ann = server.connect("ann").await;

    ann.send(request("todos", "go", json!({"quota_left": 3}), "1"))
        .await;
    assert_eq!(ann.recv().await["data"], json!(["first", "second"]));

    ann.send(request("todos", "go", json!({"quota_left": 0}), "2"))
        .await;
    let stopped = ann.recv().await;
    assert_eq!(
        (&stopped["code"], &stopped["ref"]),
        (&json!("rate_limited"), &json!("2"))
    );
    ann.send(request(
        "todos",
        "go",
        json!({"quota_left": 1, "cached": true}),
        "3",
    ))
    .await;
    assert_eq!(
        ann.recv().await,
        json!({"type": "reply", "ref": "3", "data": "from cache"})
    );
    // Only the first request reached the handler.
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

/// Appends `name` to the call's `data.trail`.
fn trail(call: &mut Call, name: &str) {
    let data = call.data_mut();
    if !data["trail"].is_array() {
        data["trail"] = json!([]);
    }
    if let Some(trail) = data["trail"].as_array_mut() {
        trail.push(json!(name));
    }
}

#[tokio::test]
async fn a_connection_may_not_pile_up_calls() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let opened = gate.clone();
    let server = server_on(
        Backend::Sqlite,
        |config| config.handlers.max_pending = 1,
        move |builder| {
            builder.on_request("gate", move |call: Call| {
                let gate = gate.clone();
                async move {
                    let _permit = gate.acquire().await;
                    Ok(Outcome::Reply(call.data().clone()))
                }
            })
        },
    )
    .await;
    let mut ann = server.connect("ann").await;
    // One runs, one waits, the third is refused.
    for n in 1..=3 {
        ann.send(request("gate", "go", json!(n), &n.to_string()))
            .await;
    }
    let refused = ann.recv().await;
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("rate_limited"), &json!("3"))
    );
    opened.add_permits(2);
    // Answers come in the order the frames were sent.
    assert_eq!(
        ann.recv().await,
        json!({"type": "reply", "ref": "1", "data": 1})
    );
    assert_eq!(
        ann.recv().await,
        json!({"type": "reply", "ref": "2", "data": 2})
    );
}

#[tokio::test]
async fn every_event_says_who_caused_it() {
    // No handlers: client publishes go straight to subscribers, and still carry it.
    let server = server(|builder| builder).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("c", "chat:*").await;
    ann.subscribe("t", "todos:*").await;

    server.broadcast_to("chat", "notice", json!({})).await;
    assert_eq!(ann.recv_event().await["source"], json!({"kind": "server"}));

    ann.send(publish("chat:lobby", json!({"text": "hi"}), 1))
        .await;
    assert_eq!(ann.recv_type("published").await["ref"], 1);
    let said = ann.recv_event().await;
    assert_eq!(said["source"], json!({"kind": "client", "user_id": "ann"}));

    // `todos` does not show publishers.
    ann.send(publish("todos", json!({}), 2)).await;
    assert_eq!(ann.recv_type("published").await["ref"], 2);
    assert_eq!(ann.recv_event().await["source"], json!({"kind": "client"}));

    // A model write made by the app (the demo API) is the server's.
    server
        .create("bob", "todos", json!({"title": "milk"}))
        .await;
    let created = ann.recv_event().await;
    assert_eq!(created["action"], "create");
    assert_eq!(created["source"], json!({"kind": "server"}));
}
