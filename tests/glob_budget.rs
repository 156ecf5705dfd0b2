//! The matching budget over the real server: glob subscriptions are capped per
//! connection, per user (across connections) and per node, too complex globs are
//! refused, identical globs share the node's budget, and one user's many adversarial
//! globs never stop anyone else's events.

mod common;

use std::sync::atomic::Ordering;

use common::{
    db::Backend,
    server::{Client, TestServer},
    sse::SseStream,
};
use serde_json::{Value, json};

/// Sends a `subscribe` and returns the answer (`subscribed` or `error`).
async fn try_subscribe(client: &mut Client, id: &str, pattern: &str) -> Value {
    client
        .send(json!({"type": "subscribe", "id": id, "pattern": pattern, "ref": id}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["ref"], id, "{reply}");
    reply
}

/// Asserts `reply` is an `error` with `code` whose message names `setting`.
fn assert_refused(reply: &Value, code: &str, setting: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    let message = reply["message"].as_str().expect("a message");
    assert!(message.contains(setting), "{message} should name {setting}");
}

fn globs(server: &TestServer) -> u64 {
    server
        .realtime
        .metrics()
        .glob_patterns
        .load(Ordering::Relaxed)
}

#[tokio::test]
async fn glob_subscriptions_are_capped_per_connection_per_user_and_per_node() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_glob_subscriptions = 3;
        c.connection.max_glob_subscriptions_per_user = 4;
        c.connection.max_globs_per_node = 6;
    })
    .await;

    // Per connection: three globs, then a refusal; exact patterns are not counted.
    let mut ann_a = server.connect("ann").await;
    for n in 1..=3 {
        let reply = try_subscribe(&mut ann_a, &format!("g{n}"), &format!("todos:a{n}*")).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
    }
    let reply = try_subscribe(&mut ann_a, "g4", "todos:a4*").await;
    assert_refused(
        &reply,
        "limit_exceeded",
        "connection.max_glob_subscriptions",
    );
    assert_eq!(reply["id"], "g4");
    for (id, pattern) in [("e1", "todos:*"), ("e2", "todos:42"), ("e3", "*:*")] {
        let reply = try_subscribe(&mut ann_a, id, pattern).await;
        assert_eq!(reply["type"], "subscribed", "{pattern}: {reply}");
    }

    // Per user, across a second connection of the same user.
    let mut ann_b = server.connect("ann").await;
    let reply = try_subscribe(&mut ann_b, "g1", "notes:b1*").await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let reply = try_subscribe(&mut ann_b, "g2", "notes:b2*").await;
    assert_refused(
        &reply,
        "limit_exceeded",
        "connection.max_glob_subscriptions_per_user",
    );
    assert_eq!(globs(&server), 4);

    // Per node: two more distinct globs fill the node's six; a seventh is refused,
    // but a glob already in use costs nothing and is accepted.
    let mut bob = server.connect("bob").await;
    for (id, pattern) in [("g1", "todos:c1*"), ("g2", "todos:c2*")] {
        let reply = try_subscribe(&mut bob, id, pattern).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
    }
    let reply = try_subscribe(&mut bob, "g3", "todos:c3*").await;
    assert_refused(&reply, "limit_exceeded", "connection.max_globs_per_node");
    let reply = try_subscribe(&mut bob, "g3", "todos:a1*").await;
    assert_eq!(reply["type"], "subscribed", "shared glob: {reply}");
    assert_eq!(globs(&server), 6);

    // Refused subscriptions left nothing behind: ann frees a glob of her own and the
    // refused id and pattern go through.
    ann_a
        .send(json!({"type": "unsubscribe", "id": "g2", "ref": "u"}))
        .await;
    assert_eq!(ann_a.recv().await["type"], "unsubscribed");
    let reply = try_subscribe(&mut ann_a, "g4", "todos:a4*").await;
    assert_eq!(reply["type"], "subscribed", "{reply}");

    // The accepted globs match: a todo with a matching id reaches the glob.
    server
        .realtime
        .broadcast(tidings::Broadcast::new(
            tidings::Target::Topic("todos:a4x".into()),
            "ping",
            json!({}),
        ))
        .await
        .expect("broadcast");
    let event = ann_a.recv_event().await;
    assert_eq!(event["topic"], "todos:a4x");
    let mut subs: Vec<String> = serde_json::from_value(event["subs"].clone()).unwrap();
    subs.sort();
    assert_eq!(subs, ["e1", "e3", "g4"]);
    let refusals = server
        .realtime
        .metrics()
        .glob_refusals
        .load(Ordering::Relaxed);
    assert_eq!(refusals, 3);
}

#[tokio::test]
async fn too_complex_globs_are_refused_as_invalid_patterns() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_glob_wildcards = 10;
        c.connection.max_glob_length = 40;
    })
    .await;
    let mut ann = server.connect("ann").await;
    let reply = try_subscribe(&mut ann, "w", "*:*a*a*a*a*a*a*a*a*a*b").await;
    assert_refused(&reply, "invalid_pattern", "connection.max_glob_wildcards");
    let long_glob = format!("todos:{}*", "k".repeat(40));
    let reply = try_subscribe(&mut ann, "l", &long_glob).await;
    assert_refused(&reply, "invalid_pattern", "connection.max_glob_length");
    // Within the limits, and a long exact key (a lookup, whatever its length).
    let reply = try_subscribe(&mut ann, "w", "*:*a*a*a*a*a*a*a*b").await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let reply = try_subscribe(&mut ann, "l", &format!("todos:{}", "k".repeat(200))).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

#[tokio::test]
async fn sse_streams_obey_the_same_glob_limits() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_glob_subscriptions = 2;
    })
    .await;
    let token = common::server::token("ann");
    let too_many = SseStream::open(
        server
            .sse_request("todos:a*,todos:b*,todos:c*")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(too_many.status, 429);
    assert_eq!(too_many.error_code().await, "limit_exceeded");
    let complex = SseStream::open(
        server
            .sse_request("*:*a*a*a*a*a*a*a*a*a*a*b")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(complex.status, 400);
    assert_eq!(complex.error_code().await, "invalid_pattern");
    // Refused streams left no glob behind; two globs and any exact pattern pass.
    assert_eq!(globs(&server), 0);
    server.sse("ann", "todos:a*,todos:b*,todos:*").await;
}

#[tokio::test]
async fn a_canary_gets_its_events_while_one_user_floods_the_node_with_globs() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let per_user = tidings::Config::default()
        .connection
        .max_glob_subscriptions_per_user;
    let mut canary = server.connect("canary").await;
    canary.subscribe("s", "todos:*").await;

    // Mallory opens ten connections and tries 20 distinct adversarial globs on each.
    let mut mallory = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for conn in 0..10 {
        let mut client = server.connect("mallory").await;
        for n in 0..20 {
            let pattern = format!("*:*a*a*a*a*a*a*a*b{conn}x{n}");
            let reply = try_subscribe(&mut client, &format!("g{n}"), &pattern).await;
            match reply["type"].as_str() {
                Some("subscribed") => accepted += 1,
                _ => {
                    assert_refused(
                        &reply,
                        "limit_exceeded",
                        "connection.max_glob_subscriptions_per_user",
                    );
                    refused += 1;
                }
            }
        }
        mallory.push(client);
    }
    assert_eq!(accepted, per_user);
    assert_eq!(refused, 200 - per_user);
    assert_eq!(globs(&server), per_user as u64, "the node's budget held");

    // The canary gets every event, in order.
    for n in 0..30 {
        server
            .create("bob", "todos", json!({"title": format!("t{n}")}))
            .await;
    }
    for n in 0..30 {
        let event = canary.recv_event().await;
        assert_eq!(event["record"]["title"], format!("t{n}"));
    }
}
