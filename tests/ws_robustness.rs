//! Bad input never panics or closes the connection; a slow consumer is closed 4008
//! while everybody else keeps receiving; repeated misuse closes 4400.

mod common;

use std::time::Duration;

use common::{
    db::Backend,
    server::{Ended, TestServer, WAIT, sign},
};
use futures::SinkExt;
use serde_json::json;
use tidings::{Broadcast, Target};
use tokio_tungstenite::tungstenite::Message;

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
    ann.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
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
    slow_consumer_is_closed_4008(|c| c.connection.send_queue_capacity = 4).await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_4008_by_the_bytes_it_has_queued() {
    // Room for 1,000 frames but only 600 KiB: two of the 256 KiB events fit.
    slow_consumer_is_closed_4008(|c| {
        c.connection.send_queue_capacity = 1000;
        c.connection.send_queue_bytes = 600 * 1024;
    })
    .await;
}

async fn slow_consumer_is_closed_4008(configure: fn(&mut tidings::Config)) {
    let server = TestServer::start(Backend::Sqlite, configure).await;
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
            .broadcast_to("todos", "big", json!({"n": n, "p": payload}))
            .await;
        let event = fast.recv_event().await;
        assert_eq!(event["data"]["n"], n);
    }
    assert!(overflowed(), "200 large events never overflowed the queue");
    // The slow client now reads: the events that were in flight, then the 4008 close.
    assert_eq!(slow.ended().await, Ended::Code(4008));
    // The fast client is still connected and receiving.
    server.broadcast_to("todos", "after", json!(null)).await;
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

/// Waits (bounded) until the node counts `open` WebSocket connections.
async fn open_connections_reach(server: &TestServer, open: u64) {
    let gauge = format!("tidings_connections {open}\n");
    let counted = tokio::time::timeout(WAIT, async {
        while !server.realtime.metrics().render().contains(&gauge) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "the node never got back to {open} connections"
    );
}

#[tokio::test]
async fn far_future_exp_never_panics_nor_leaks_a_slot() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.max_connections = 2).await;
    // exp near 2^63 seconds: no Instant can hold it (an unchecked add panics).
    let tokens = [
        sign(json!({"sub": "ann", "exp": 1u64 << 63})),
        sign(json!({"sub": "ann", "exp": u64::MAX})),
    ];
    // Three times the node's limit: a leaked slot per connection would refuse the
    // last ones with 4029.
    for round in 0..6 {
        let far = &tokens[round % 2];
        let mut ann = server.open().await;
        ann.send(json!({"type": "auth", "token": far})).await;
        let welcome = ann.recv_type("welcome").await;
        assert!(
            welcome["expires_in"].as_u64().unwrap() > 1 << 62,
            "{welcome}"
        );
        // A refresh to a far-future token takes the same path.
        ann.send(json!({"type": "auth", "token": tokens[(round + 1) % 2], "ref": round}))
            .await;
        assert_eq!(ann.recv_type("refreshed").await["ref"], round);
        ann.send(json!({"type": "ping", "ref": "alive"})).await;
        assert_eq!(ann.recv_type("pong").await["ref"], "alive");
        // A header token too.
        let mut header = server
            .open_with(|request| {
                let value = format!("Bearer {far}").parse().unwrap();
                request.headers_mut().insert("authorization", value);
            })
            .await
            .unwrap();
        header.recv_type("welcome").await;
        drop((ann, header));
        open_connections_reach(&server, 0).await;
    }
    // A normal client still gets in.
    let mut bob = server.connect("bob").await;
    bob.send(json!({"type": "ping", "ref": 1})).await;
    assert_eq!(bob.recv().await["ref"], 1);
}

#[tokio::test]
async fn binary_frames_count_as_misuse() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.misuse_limit = 2).await;
    let mut ann = server.connect("ann").await;
    for _ in 0..3 {
        ann.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(ann.recv().await["code"], "bad_request");
    }
    assert_eq!(ann.ended().await, Ended::Code(4400));
}

#[tokio::test]
async fn binary_floods_are_rate_limited_and_closed_4029() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.messages_per_second = 1;
        c.connection.rate_limit_tolerance = 5;
    })
    .await;
    let mut ann = server.connect("ann").await;
    for _ in 0..20 {
        // Sends after the close may fail: the close is what the test waits for.
        let _ = ann.ws.send(Message::binary(vec![0])).await;
    }
    assert_eq!(ann.ended().await, Ended::Code(4029));
}

#[tokio::test]
async fn sustained_flooding_closes_4029_not_4400() {
    // A misuse limit of 1: were rate refusals counted as misuse, this would be 4400.
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.messages_per_second = 1;
        c.connection.rate_limit_tolerance = 5;
        c.connection.misuse_limit = 1;
    })
    .await;
    let mut ann = server.connect("ann").await;
    for _ in 0..20 {
        let _ = ann
            .ws
            .send(Message::text(json!({"type": "ping"}).to_string()))
            .await;
    }
    // The burst is answered, then refused with rate_limited, then closed "back off".
    assert_eq!(ann.recv().await["type"], "pong");
    assert_eq!(ann.recv().await["type"], "pong");
    assert_eq!(ann.recv().await["code"], "rate_limited");
    assert_eq!(ann.ended().await, Ended::Code(4029));
    // Control frames count too.
    let mut bob = server.connect("bob").await;
    for _ in 0..20 {
        let _ = bob.ws.send(Message::Ping(vec![0; 125].into())).await;
    }
    assert_eq!(bob.ended().await, Ended::Code(4029));
}

#[tokio::test]
async fn old_connections_are_asked_to_reconnect_with_1012_and_resume_without_a_gap() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.connection.max_connection_age = Some(Duration::from_secs(1));
    })
    .await;
    let mut ann = server.connect("ann").await;
    let cursor = ann.subscribe("s", "todos").await["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = std::time::Instant::now();
    assert_eq!(ann.ended().await, Ended::Code(1012));
    let age = started.elapsed();
    // At most 10% early (the jitter), and not much later than the age.
    assert!(age >= Duration::from_millis(800), "closed after {age:?}");
    assert!(age <= Duration::from_secs(5), "closed after {age:?}");
    // What happens while the client is away is replayed when it resumes.
    server
        .create("bob", "todos", json!({"title": "while away"}))
        .await;
    let mut again = server.connect("ann").await;
    again
        .send(json!({"type": "subscribe", "id": "s", "pattern": "todos", "since": cursor}))
        .await;
    let subscribed = again.recv().await;
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    assert_eq!(again.recv_event().await["record"]["title"], "while away");
}
