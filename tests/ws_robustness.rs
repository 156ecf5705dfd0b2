//! Bad input never panics or closes the connection; a slow consumer is closed 4008
//! while everybody else keeps receiving; repeated misuse closes 4400.

mod common;

use common::{
    db::Backend,
    server::{Ended, TestServer},
};
use serde_json::json;
use tidings::{Broadcast, Target};

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays_open() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    let garbage = [
        "",
        "{",
        "null",
        "[]",
        "42",
        "\"text\"",
        r#"{"type":"nope"}"#,
        r#"{"no_type":1}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","id":5,"pattern":"todos"}"#,
        r#"{"type":"subscribe","id":"a","pattern":"todos","since":7}"#,
        r#"{"type":"publish","topic":"chat","event":"x","data":1,"extra":true}"#,
        r#"{"type":"ping","ref":[1]}"#,
        r#"{"type":"ping","ref":{"deep":{"deeper":[1,2,3]}}}"#,
        "\u{0}\u{1}\u{2}",
        "{\"type\":\"subscribe\",\"id\":\"\u{202e}\",\"pattern\":\"\u{0}\"}",
        &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
    ];
    for text in garbage {
        ann.send_text(text).await;
        let reply = ann.recv().await;
        assert_eq!(reply["type"], "error", "{text:?} -> {reply}");
    }
    // Binary frames are refused the same way.
    use futures::SinkExt;
    ann.ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    assert_eq!(ann.recv().await["code"], "bad_request");
    // Still open and working.
    ann.send(json!({"type": "ping", "ref": "still-here"})).await;
    assert_eq!(ann.recv().await["ref"], "still-here");
}

#[tokio::test]
async fn repeated_misuse_closes_4400() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.misuse_limit = 3).await;
    let mut ann = server.connect("ann").await;
    for _ in 0..3 {
        ann.send_text("{").await;
        assert_eq!(ann.recv().await["type"], "error");
    }
    ann.send_text("{").await;
    assert_eq!(ann.recv().await["type"], "error");
    assert_eq!(ann.ended().await, Ended::Code(4400));
}

#[tokio::test]
async fn frames_beyond_the_rate_are_refused() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.messages_per_second = 1).await;
    let mut ann = server.connect("ann").await;
    // Burst is twice the rate: two pings pass, the third is refused.
    for _ in 0..3 {
        ann.send(json!({"type": "ping"})).await;
    }
    assert_eq!(ann.recv().await["type"], "pong");
    assert_eq!(ann.recv().await["type"], "pong");
    assert_eq!(ann.recv().await["code"], "rate_limited");
}

#[tokio::test]
async fn a_slow_consumer_is_closed_4008_and_others_keep_receiving() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.send_queue_capacity = 4).await;
    let mut fast = server.connect("fast").await;
    fast.subscribe("s", "todos").await;
    let mut slow = server.connect("slow").await;
    slow.subscribe("s", "todos").await;
    // The slow client stops reading. Large events fill its TCP buffers, then its
    // queue of 4, then it is closed. The fast one reads each event before the next is
    // sent, so its queue never holds more than one.
    let payload = "x".repeat(256 * 1024);
    let overflowed = || {
        server
            .realtime
            .metrics()
            .render()
            .contains("tidings_queue_overflows_total 1")
    };
    for n in 0..200 {
        if overflowed() {
            break;
        }
        server
            .realtime
            .broadcast(Broadcast::new(
                Target::Collection("todos".into()),
                "big",
                json!({"n": n, "p": payload}),
            ))
            .await
            .unwrap();
        let event = fast.recv_event().await;
        assert_eq!(event["data"]["n"], n);
    }
    assert!(
        overflowed(),
        "200 large events never overflowed a queue of 4"
    );
    // The slow client now reads: the events that were in flight, then the 4008 close.
    assert_eq!(slow.ended().await, Ended::Code(4008));
    // The fast client is still connected and receiving.
    server
        .realtime
        .broadcast(Broadcast::new(
            Target::Collection("todos".into()),
            "after",
            json!(null),
        ))
        .await
        .unwrap();
    assert_eq!(fast.recv_event().await["event"], "after");
}

#[tokio::test]
async fn connections_over_the_node_limit_are_closed_4029() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.max_connections = 2).await;
    let _first = server.connect("ann").await;
    let mut second = server.connect("bob").await;
    let mut third = server.open().await;
    assert_eq!(third.ended().await, Ended::Code(4029));
    // The ones within the limit are unaffected.
    second.send(json!({"type": "ping", "ref": 1})).await;
    assert_eq!(second.recv().await["ref"], 1);
}

#[test]
fn broadcasts_name_at_most_a_thousand_ids() {
    let ids: Vec<String> = (0..1001).map(|n| n.to_string()).collect();
    let too_many = Broadcast::new(Target::Users(ids.clone()), "x", json!(null)).prepare();
    assert!(too_many.unwrap_err().to_string().contains("1001"));
    let ok = Broadcast::new(Target::Connections(ids[..1000].to_vec()), "x", json!(null)).prepare();
    assert!(ok.is_ok());
}
