//! Cluster-wide targets (issue 8, item 5), with two nodes on one log and one broker:
//! user and connection broadcasts reach connections on the other node, and
//! `POST /realtime/disconnect` ends a user's WebSockets (4003) and SSE streams on every
//! node within a second, leaving everyone else's alone.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    backend_tests,
    db::Backend,
    server::{Client, Extras, TestServer, WAIT, token, token_with_roles},
    sse::{End, SseStream},
};
use futures::StreamExt;
use serde_json::json;
use tidings::{Broadcast, Target, broker::MemoryBroker, realtime_broadcast};
use tokio_tungstenite::tungstenite::Message;

/// The bound issue 8 sets for a disconnect to reach every node.
const WITHIN: Duration = Duration::from_secs(1);

fn on_broker(broker: &Arc<MemoryBroker>) -> Extras {
    let broker = broker.clone();
    Extras {
        builder: Some(Box::new(move |builder| builder.broker(broker))),
        ..Extras::default()
    }
}

/// Nodes A and B on one log, sharing one broker.
async fn two_nodes(backend: Backend) -> (TestServer, TestServer) {
    let broker = Arc::new(MemoryBroker::new(1024));
    let a = TestServer::start_with(backend, |_| {}, on_broker(&broker)).await;
    let b = TestServer::start_on_with(&a.database_url, |_| {}, on_broker(&broker)).await;
    (a, b)
}

/// `POST /realtime/disconnect` on `node` with `body`, as the holder of `bearer`.
async fn disconnect(
    node: &TestServer,
    bearer: Option<&str>,
    body: serde_json::Value,
) -> reqwest::StatusCode {
    let mut request = node
        .http()
        .post(node.url("/realtime/disconnect"))
        .json(&body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.expect("POST").status()
}

/// Waits for the server's close frame; its code and reason.
async fn close_frame(client: &mut Client) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(WAIT, client.ws.next())
            .await
            .expect("timed out waiting for the close")
            .expect("the socket ended without a close frame")
            .expect("socket error");
        if let Message::Close(Some(frame)) = message {
            return (frame.code.into(), frame.reason.to_string());
        }
    }
}

/// An SSE stream of `user` on `node`, past its opening.
async fn sse(node: &TestServer, user: &str) -> SseStream {
    let mut stream = node.sse(user, "todos:*").await;
    stream.next_group().await;
    stream
}

fn ping(event: &str) -> Broadcast {
    Broadcast::new(Target::Users(vec!["bob".into()]), event, json!({}))
}

backend_tests!(
    async fn disconnecting_a_user_ends_their_connections_on_every_node(backend: Backend) {
        let (a, b) = two_nodes(backend).await;
        let mut ann_on_a = a.connect("ann").await;
        let mut ann_on_b = b.connect("ann").await;
        let mut ann_stream = sse(&b, "ann").await;
        let mut bob_on_a = a.connect("bob").await;
        let mut bob_on_b = b.connect("bob").await;
        let mut bob_stream = sse(&b, "bob").await;

        let publisher = token_with_roles("ops", &["publisher"]);
        let status = disconnect(&a, Some(&publisher), json!({"user": "ann"})).await;
        assert_eq!(status, 202);

        let all_ended = async {
            tokio::join!(
                close_frame(&mut ann_on_a),
                close_frame(&mut ann_on_b),
                ann_stream.ended(),
            )
        };
        let (on_a, on_b, stream) = tokio::time::timeout(WITHIN, all_ended)
            .await
            .expect("every connection of ann ends within a second");
        assert_eq!(on_a, (4003, "revoked".to_owned()));
        assert_eq!(on_b, (4003, "revoked".to_owned()));
        assert_eq!(stream, End::Clean);

        // Bob's connections, on both nodes and both transports, are still served.
        a.realtime
            .broadcast(ping("still-here"))
            .await
            .expect("send");
        for bob in [&mut bob_on_a, &mut bob_on_b] {
            let event = bob.recv_event().await;
            assert_eq!(event["event"], "still-here", "{event}");
        }
        let signals = bob_stream.next_event().await.signals();
        assert_eq!(signals["tidingsEvent"]["event"], "still-here", "{signals}");
    }
);

backend_tests!(
    async fn user_and_connection_broadcasts_reach_the_other_node(backend: Backend) {
        let (a, b) = two_nodes(backend).await;
        let mut ann_on_b = b.connect("ann").await;
        let mut ann_stream = sse(&b, "ann").await;

        let to_ann = Broadcast::new(Target::Users(vec!["ann".into()]), "hello", json!(1));
        realtime_broadcast(&a.realtime, to_ann).await.expect("send");
        let event = ann_on_b.recv_event().await;
        assert_eq!(
            (&event["event"], &event["data"]),
            (&json!("hello"), &json!(1))
        );
        let signals = ann_stream.next_event().await.signals();
        assert_eq!(signals["tidingsEvent"]["event"], "hello", "{signals}");

        let to_socket = Broadcast::new(
            Target::Connections(vec![ann_on_b.connection_id.clone()]),
            "just-you",
            json!(2),
        );
        realtime_broadcast(&a.realtime, to_socket)
            .await
            .expect("send");
        let event = ann_on_b.recv_event().await;
        assert_eq!(event["event"], "just-you", "{event}");
    }
);

#[tokio::test]
async fn only_publishers_may_disconnect_and_only_a_user() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    let body = json!({"user": "ann"});
    assert_eq!(disconnect(&server, None, body.clone()).await, 401);
    assert_eq!(
        disconnect(&server, Some("not-a-jwt"), body.clone()).await,
        401
    );
    assert_eq!(disconnect(&server, Some(&token("bob")), body).await, 403);
    let publisher = token_with_roles("ops", &["publisher"]);
    for bad in [
        json!({}),
        json!({"user": ""}),
        json!({"user": "ann", "extra": 1}),
    ] {
        assert_eq!(disconnect(&server, Some(&publisher), bad).await, 400);
    }
    // None of those touched ann.
    ann.send(json!({"type": "ping"})).await;
    assert_eq!(ann.recv().await["type"], "pong");

    // The Rust API does the same as the endpoint.
    server.realtime.disconnect_user("ann").await.expect("sent");
    assert_eq!(close_frame(&mut ann).await.0, 4003);
}
