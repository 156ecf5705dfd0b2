//! Presence across nodes, with the broker played by hand (state) or by an in-memory
//! broker under paused time (node and sync task).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    PresenceNode, PresenceUser,
    outlets::{PresenceFrames, queue},
    state::PresenceState,
};
use crate::{
    broker::{Broker, BrokerMessage, MemoryBroker},
    config::PresenceConfig,
};

fn config() -> PresenceConfig {
    PresenceConfig {
        grace: Duration::from_secs(3),
        sync_interval: Duration::from_secs(2),
        node_ttl: Duration::from_secs(6),
        ..PresenceConfig::default()
    }
}

fn state(name: &str) -> PresenceState {
    PresenceState::new(Arc::from(name), &config())
}

fn s(text: &str) -> Arc<str> {
    Arc::from(text)
}

/// Hands `messages` to `to`, as the broker would.
fn deliver(messages: Vec<BrokerMessage>, to: &mut PresenceState) {
    for message in messages {
        if let BrokerMessage::Presence { node, seq, update } = message {
            to.receive(&node, seq, update, Instant::now());
        }
    }
}

/// Connection `key` of `user` subscribes to `chat` with presence as `sub`.
fn join(state: &mut PresenceState, key: u64, sub: &str, user: Option<&str>) -> PresenceFrames {
    let (outlet, frames) = queue(64);
    state.join(key, s(sub), s("chat"), user.map(s), outlet, Instant::now());
    frames
}

fn frames(queue: &mut PresenceFrames) -> Vec<Value> {
    queue
        .drain()
        .iter()
        .map(|text| serde_json::from_str(text).unwrap())
        .collect()
}

fn users(state: &PresenceState) -> Vec<(String, usize)> {
    state
        .listing("chat", usize::MAX)
        .presence
        .users
        .into_iter()
        .map(
            |PresenceUser {
                 user_id,
                 connections,
             }| (user_id, connections),
        )
        .collect()
}

#[tokio::test(start_paused = true)]
async fn two_nodes_see_each_others_members_once_with_their_connections() {
    let (mut a, mut b) = (state("a"), state("b"));
    let mut ann_tab1 = join(&mut a, 1, "p", Some("ann"));
    let mut ann_tab2 = join(&mut a, 2, "p", Some("ann"));
    join(&mut a, 3, "p", None);
    let mut bob = join(&mut b, 1, "p", Some("bob"));
    assert!(
        frames(&mut ann_tab1).is_empty(),
        "ann's second tab is no join"
    );
    deliver(a.take_delta(), &mut b);
    deliver(b.take_delta(), &mut a);

    let join = |user: &str| json!({"type":"join","id":"p","topic":"chat","user_id":user});
    assert_eq!(frames(&mut bob), [join("ann")]);
    assert_eq!(frames(&mut ann_tab1), [join("bob")]);
    assert_eq!(frames(&mut ann_tab2), [join("bob")]);
    for node in [&a, &b] {
        assert_eq!(users(node), [("ann".into(), 2), ("bob".into(), 1)]);
        assert_eq!(node.listing("chat", 10).presence.connections, 4);
    }
    let cut = b.listing("chat", 1);
    assert!(cut.truncated);
    assert_eq!(cut.presence.users.len(), 1);
    assert_eq!(cut.presence.connections, 4, "the count covers everyone");
}

#[tokio::test(start_paused = true)]
async fn a_reload_within_the_grace_is_neither_a_leave_nor_a_join() {
    let (mut a, mut b) = (state("a"), state("b"));
    join(&mut a, 1, "p", Some("ann"));
    let mut bob = join(&mut b, 1, "p", Some("bob"));
    deliver(a.take_delta(), &mut b);
    frames(&mut bob);

    a.disconnect(1, Instant::now());
    deliver(a.take_delta(), &mut b);
    assert_eq!(
        users(&b),
        [("ann".into(), 0), ("bob".into(), 1)],
        "listed until the leave"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    join(&mut a, 2, "p", Some("ann"));
    deliver(a.take_delta(), &mut b);
    tokio::time::advance(Duration::from_secs(5)).await;
    b.tick(Instant::now());
    assert!(frames(&mut bob).is_empty());
    assert_eq!(users(&b), [("ann".into(), 1), ("bob".into(), 1)]);

    // Gone for good: the leave comes once the grace has passed.
    a.leave(2, "p", Instant::now());
    deliver(a.take_delta(), &mut b);
    tokio::time::advance(Duration::from_millis(2999)).await;
    b.tick(Instant::now());
    assert!(frames(&mut bob).is_empty());
    assert_eq!(
        b.next_deadline().map(|d| d - Instant::now()),
        Some(Duration::from_millis(1))
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    b.tick(Instant::now());
    assert_eq!(
        frames(&mut bob),
        [json!({"type":"leave","id":"p","topic":"chat","user_id":"ann"})]
    );
    assert_eq!(users(&b), [("bob".into(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn the_full_state_repairs_lost_deltas_and_silent_nodes_expire() {
    let (mut a, mut b) = (state("a"), state("b"));
    let mut bob = join(&mut b, 1, "p", Some("bob"));
    deliver(a.take_sync(), &mut b);
    assert!(
        b.take_sync_request(),
        "a new node gets the full state at once"
    );
    join(&mut a, 1, "p", Some("ann"));
    join(&mut a, 2, "q", Some("cy"));
    drop(a.take_delta()); // lost
    assert_eq!(users(&b), [("bob".into(), 1)]);
    deliver(a.take_sync(), &mut b);
    assert_eq!(
        users(&b),
        [("ann".into(), 1), ("bob".into(), 1), ("cy".into(), 1)]
    );
    assert_eq!(frames(&mut bob).len(), 2);
    // A stale message (an old delta arriving late) changes nothing.
    a.leave(2, "q", Instant::now());
    let late = a.take_delta();
    deliver(a.take_sync(), &mut b);
    deliver(late, &mut b);
    tokio::time::advance(Duration::from_secs(3)).await;
    b.tick(Instant::now());
    assert_eq!(users(&b), [("ann".into(), 1), ("bob".into(), 1)]);
    frames(&mut bob);

    // A goes silent: its members go after node_ttl, their leave after the grace.
    let silent_since = Instant::now();
    tokio::time::advance(Duration::from_secs(6)).await;
    b.tick(Instant::now());
    assert_eq!(users(&b), [("ann".into(), 0), ("bob".into(), 1)]);
    tokio::time::advance(Duration::from_secs(3)).await;
    b.tick(Instant::now());
    assert_eq!(frames(&mut bob)[0]["type"], "leave");
    assert_eq!(Instant::now() - silent_since, Duration::from_secs(9));
    assert_eq!(users(&b), [("bob".into(), 1)]);
    assert_eq!(b.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn a_goodbye_drops_the_nodes_members_and_own_messages_are_ignored() {
    let (mut a, mut b) = (state("a"), state("b"));
    join(&mut a, 1, "p", Some("ann"));
    deliver(a.take_delta(), &mut b);
    deliver(b.take_delta(), &mut b);
    deliver(vec![a.goodbye()], &mut b);
    assert_eq!(users(&b), [("ann".into(), 0)]);
    let mut own = state("b");
    join(&mut own, 1, "p", Some("bob"));
    let echo = own.take_sync();
    deliver(echo, &mut own);
    assert_eq!(users(&own), [("bob".into(), 1)]);
    assert!(!own.take_sync_request());
}

/// A node's sync task, with the broker's messages handed to the node as the ingest
/// would. Returns the task, to abort it (a node that dies without a goodbye).
fn start(
    node: &Arc<PresenceNode>,
    broker: &Arc<MemoryBroker>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let listener = node.clone();
    let subscribed = broker.clone();
    tokio::spawn(async move {
        let Ok(mut stream) = subscribed.subscribe().await else {
            return;
        };
        while let Some(bytes) = stream.next().await {
            if let Some(BrokerMessage::Presence { node, seq, update }) =
                BrokerMessage::decode(&bytes)
            {
                listener.receive(&node, seq, update);
            }
        }
    });
    let broker: Arc<dyn Broker> = broker.clone();
    tokio::spawn(super::run_sync(node.clone(), broker, stop.clone()))
}

async fn next_frame(frames: &mut PresenceFrames) -> Value {
    let batch = tokio::time::timeout(Duration::from_secs(60), frames.next(1))
        .await
        .expect("a presence frame")
        .expect("no overflow");
    serde_json::from_str(&batch[0]).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_sync_task_carries_joins_and_a_dead_node_leaves_within_ttl_plus_grace() {
    let broker = Arc::new(MemoryBroker::new(1024));
    let (a, b) = (
        Arc::new(PresenceNode::new(config())),
        Arc::new(PresenceNode::new(config())),
    );
    let stop = CancellationToken::new();
    start(&a, &broker, &stop);
    let b_task = start(&b, &broker, &stop);

    let (outlet, mut ann) = a.queue();
    a.join(1, s("p"), "chat", Some(s("ann")), outlet);
    let (outlet, _bob) = b.queue();
    let listing = b.join(1, s("p"), "chat", Some(s("bob")), outlet);
    assert!(matches!(
        listing,
        crate::protocol::ServerFrame::Presence { .. }
    ));
    assert_eq!(next_frame(&mut ann).await["user_id"], "bob");
    assert_eq!(b.presence("chat").users.len(), 2);

    // Bob closes: his leave reaches ann when the grace is over, not before.
    let closed = Instant::now();
    b.disconnect(1);
    let leave = next_frame(&mut ann).await;
    assert_eq!(
        (leave["type"].as_str(), leave["user_id"].as_str()),
        (Some("leave"), Some("bob"))
    );
    assert!(Instant::now() - closed >= config().grace);

    // Bob is back, then B dies without a word: gone within node_ttl + grace.
    let (outlet, _bob) = b.queue();
    b.join(2, s("p"), "chat", Some(s("bob")), outlet);
    assert_eq!(next_frame(&mut ann).await["type"], "join");
    b_task.abort();
    let died = Instant::now();
    let leave = next_frame(&mut ann).await;
    assert_eq!(leave["type"], "leave");
    let took = Instant::now() - died;
    assert!(took <= config().node_ttl + config().grace, "{took:?}");
    assert!(took >= config().grace, "{took:?}");
    assert_eq!(
        a.presence("chat").users,
        [PresenceUser {
            user_id: "ann".into(),
            connections: 1
        }]
    );
    stop.cancel();
}
