//! Presence across nodes: two in-process nodes on one database, with a shared
//! in-memory broker and with a real Redis (`REDIS_URL`). Members are users, once each
//! however many tabs; `join`/`leave` cross nodes; a reload within the grace is
//! silent; a node that dies takes its members with it within `node_ttl` + `grace`;
//! only those who may read a topic see its presence.

mod common;

use std::{
    collections::BTreeMap,
    future::ready,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    db::{Backend, fresh_database_url},
    server::{Client, WAIT, serve_gateway, test_config, token, token_with_roles},
};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use serde_json::{Value, json};
use tidings::{
    Config, Db, Presence, Realtime, Rule, Rules,
    broker::{Broker, BrokerError, BrokerOptions, MemoryBroker},
};

const TOPIC: &str = "chat:lobby";
/// Slack for a loaded machine on top of a bound the design promises.
const SLACK: Duration = Duration::from_secs(2);

fn rules() -> Rules {
    Rules::new()
        .collection("chat", Rule::Authenticated, Rule::Authenticated)
        .collection("staff", Rule::Role("staff".into()), Rule::Deny)
        .collection("lounge", Rule::Public, Rule::Deny)
}

/// Short presence timings, so the tests take seconds.
fn fast(config: &mut Config) {
    config.auth.allow_anonymous = true;
    config.presence.grace = Duration::from_millis(1000);
    config.presence.sync_interval = Duration::from_millis(250);
    config.presence.node_ttl = Duration::from_millis(1000);
}

/// A running node.
struct Node {
    realtime: Realtime,
    url: String,
}

impl Node {
    async fn start(
        database_url: &str,
        broker: Arc<dyn Broker>,
        configure: fn(&mut Config),
    ) -> Self {
        let mut config = test_config();
        configure(&mut config);
        let db = Db::connect(database_url).await.expect("connect");
        let realtime = Realtime::builder(config, db)
            .rules(rules())
            .broker(broker)
            .build()
            .await
            .expect("build");
        let url = serve_gateway(&realtime).await;
        Self { realtime, url }
    }

    async fn connect(&self, user: &str) -> Client {
        Client::authenticated(&self.url, &token(user)).await
    }

    /// Waits (bounded) until this node's view of the topic satisfies `done`.
    async fn eventually(&self, what: &str, done: impl Fn(&Presence) -> bool) -> Presence {
        let deadline = Instant::now() + WAIT;
        loop {
            let presence = self.realtime.presence(TOPIC);
            if done(&presence) {
                return presence;
            }
            assert!(Instant::now() < deadline, "{what}: still {presence:?}");
            // No event tells a test that a remote count changed: poll briefly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.realtime.shutdown_token().cancel();
    }
}

/// Subscribes to `topic` with presence; returns the listing that starts it.
async fn present(client: &mut Client, id: &str, topic: &str) -> Value {
    client
        .send(json!({"type":"subscribe","id":id,"pattern":topic,"presence":true}))
        .await;
    let subscribed = client.recv().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let listing = client.recv().await;
    assert_eq!(listing["type"], "presence", "{listing}");
    assert_eq!(listing["id"], id);
    listing
}

/// Asks for the presence of `topic`; the reply (or error) with `ref`.
async fn query(client: &mut Client, topic: &str, reference: u64) -> Value {
    client
        .send(json!({"type":"presence","topic":topic,"ref":reference}))
        .await;
    loop {
        let frame = client.recv().await;
        if frame["ref"] == reference {
            return frame;
        }
    }
}

/// A client's picture of who is on the topic, from its listing and the frames after.
#[derive(Debug, Default)]
struct View(BTreeMap<String, ()>);

impl View {
    fn from_listing(listing: &Value) -> Self {
        let mut view = Self::default();
        for user in listing["users"].as_array().expect("users") {
            view.0
                .insert(user["user_id"].as_str().expect("id").into(), ());
        }
        view
    }

    fn has(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }

    /// Reads presence frames until `done`; returns the join/leave frames read.
    async fn follow(&mut self, client: &mut Client, done: impl Fn(&Self) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        while !done(self) {
            let frame = client.recv().await;
            let user = frame["user_id"].as_str().unwrap_or_default().to_owned();
            match frame["type"].as_str() {
                Some("join") => {
                    self.0.insert(user, ());
                }
                Some("leave") => {
                    self.0.remove(&user);
                }
                _ => continue,
            }
            seen.push(frame);
        }
        seen
    }
}

fn connections_of(presence: &Presence, user: &str) -> Option<usize> {
    presence
        .users
        .iter()
        .find(|u| u.user_id == user)
        .map(|u| u.connections)
}

/// Ann (two tabs) on A and Bob on B see each other join; both nodes count ann once
/// with two connections; Bob's closed socket is his `leave` on A, after the grace.
async fn join_count_and_leave(a: &Node, b: &Node) {
    let mut ann1 = a.connect("ann").await;
    let listing = present(&mut ann1, "p", TOPIC).await;
    assert_eq!(
        listing["users"],
        json!([{"user_id":"ann","connections":1}]),
        "a subscriber is in its own listing"
    );
    let mut ann2 = a.connect("ann").await;
    present(&mut ann2, "p", TOPIC).await;
    let mut bob = b.connect("bob").await;
    let mut bob_view = View::from_listing(&present(&mut bob, "p", TOPIC).await);

    bob_view.follow(&mut bob, |v| v.has("ann")).await;
    for tab in [&mut ann1, &mut ann2] {
        let mut view = View::from_listing(&json!({"users":[{"user_id":"ann"}]}));
        let frames = view.follow(tab, |v| v.has("bob")).await;
        assert_eq!(
            frames,
            [json!({"type":"join","id":"p","topic":TOPIC,"user_id":"bob"})]
        );
    }
    for node in [a, b] {
        node.eventually("ann twice, bob once", |p| {
            connections_of(p, "ann") == Some(2) && connections_of(p, "bob") == Some(1)
        })
        .await;
    }
    let reply = query(&mut bob, TOPIC, 7).await;
    assert_eq!(
        reply,
        json!({"type":"presence","topic":TOPIC,"users":[
            {"user_id":"ann","connections":2},{"user_id":"bob","connections":1}
        ],"connections":3,"ref":7})
    );

    let closed = Instant::now();
    drop(bob);
    let mut view = View::from_listing(&json!({"users":[{"user_id":"bob"}]}));
    view.follow(&mut ann1, |v| !v.has("bob")).await;
    let grace = a.realtime.config().presence.grace;
    let took = closed.elapsed();
    assert!(
        took >= grace,
        "the leave came before the grace ended: {took:?}"
    );
    assert!(took <= grace + SLACK, "{took:?}");
    assert!(connections_of(&a.realtime.presence(TOPIC), "bob").is_none());
}

#[tokio::test]
async fn members_cross_nodes_through_a_shared_memory_broker() {
    let url = fresh_database_url(Backend::Sqlite).await;
    let shared = Arc::new(MemoryBroker::new(1024));
    let a = Node::start(&url, shared.clone(), fast).await;
    let b = Node::start(&url, shared, fast).await;
    join_count_and_leave(&a, &b).await;
}

#[tokio::test]
async fn members_cross_nodes_through_redis() {
    let url = fresh_database_url(Backend::Postgres).await;
    let redis = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let options = BrokerOptions::default().with_channel_prefix(format!("presence-{unique}"));
    let open = || tidings::broker::from_url(&redis, &options).expect("redis broker");
    let a = Node::start(&url, open(), fast).await;
    let b = Node::start(&url, open(), fast).await;
    join_count_and_leave(&a, &b).await;
}

#[tokio::test]
async fn a_reload_within_the_grace_sends_neither_leave_nor_join() {
    let url = fresh_database_url(Backend::Sqlite).await;
    let shared = Arc::new(MemoryBroker::new(1024));
    let a = Node::start(&url, shared.clone(), fast).await;
    let b = Node::start(&url, shared, fast).await;
    let mut ann = a.connect("ann").await;
    present(&mut ann, "p", TOPIC).await;
    let mut bob = b.connect("bob").await;
    let mut view = View::from_listing(&present(&mut bob, "p", TOPIC).await);
    view.follow(&mut bob, |v| v.has("ann")).await;

    // The reload: the old page's socket closes, the new page subscribes again.
    drop(ann);
    let mut ann = a.connect("ann").await;
    present(&mut ann, "p", TOPIC).await;
    // Carol joins after it, so her join is the next thing Bob hears unless the
    // reload was announced.
    let mut carol = a.connect("carol").await;
    present(&mut carol, "p", TOPIC).await;
    let frames = view.follow(&mut bob, |v| v.has("carol")).await;
    assert_eq!(
        frames,
        [json!({"type":"join","id":"p","topic":TOPIC,"user_id":"carol"})]
    );
    // Nothing about ann comes later either: a leave left pending would be sent when
    // the grace ends, long before the pong of a ping sent well after that. (Waiting
    // is the point here: the test is that no frame comes.)
    tokio::time::sleep(a.realtime.config().presence.grace + Duration::from_millis(300)).await;
    bob.send(json!({"type":"ping","ref":"after"})).await;
    assert_eq!(bob.recv().await, json!({"type":"pong","ref":"after"}));
    let reply = query(&mut bob, TOPIC, 1).await;
    assert_eq!(reply["users"][0], json!({"user_id":"ann","connections":1}));
    assert!(view.has("ann"));
}

/// A broker that can be cut off for one node: from then on it neither sends nor
/// hears anything, as if the node had died.
struct Severable {
    inner: Arc<MemoryBroker>,
    cut: Arc<AtomicBool>,
}

impl Broker for Severable {
    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        if self.cut.load(Ordering::SeqCst) {
            return ready(Ok(())).boxed();
        }
        self.inner.publish(payload)
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        let cut = self.cut.clone();
        async move {
            let stream = self.inner.subscribe().await?;
            Ok(stream
                .filter(move |_| ready(!cut.load(Ordering::SeqCst)))
                .boxed())
        }
        .boxed()
    }
}

#[tokio::test]
async fn a_node_that_dies_takes_its_members_within_the_ttl() {
    let url = fresh_database_url(Backend::Sqlite).await;
    let shared = Arc::new(MemoryBroker::new(1024));
    let cut = Arc::new(AtomicBool::new(false));
    let a = Node::start(&url, shared.clone(), fast).await;
    let severable = Severable {
        inner: shared,
        cut: cut.clone(),
    };
    let b = Node::start(&url, Arc::new(severable), fast).await;
    let mut ann = a.connect("ann").await;
    let mut view = View::from_listing(&present(&mut ann, "p", TOPIC).await);
    let mut bob = b.connect("bob").await;
    present(&mut bob, "p", TOPIC).await;
    view.follow(&mut ann, |v| v.has("bob")).await;

    // B dies without a goodbye (its socket to Bob stays open, it just goes silent).
    let died = Instant::now();
    cut.store(true, Ordering::SeqCst);
    let presence = &a.realtime.config().presence;
    a.eventually("bob's connections gone", |p| {
        connections_of(p, "bob").is_none_or(|n| n == 0)
    })
    .await;
    let dropped = died.elapsed();
    assert!(dropped <= presence.node_ttl + SLACK, "{dropped:?}");
    view.follow(&mut ann, |v| !v.has("bob")).await;
    let left = died.elapsed();
    assert!(
        left <= presence.node_ttl + presence.grace + SLACK,
        "{left:?}"
    );
    assert_eq!(
        a.realtime.presence(TOPIC).users,
        [tidings::PresenceUser {
            user_id: "ann".into(),
            connections: 1
        }]
    );
}

#[tokio::test]
async fn a_node_shutting_down_takes_its_members_without_waiting_for_the_ttl() {
    fn slow_ttl(config: &mut Config) {
        fast(config);
        config.presence.sync_interval = Duration::from_secs(20);
        config.presence.node_ttl = Duration::from_secs(60);
    }
    let url = fresh_database_url(Backend::Sqlite).await;
    let shared = Arc::new(MemoryBroker::new(1024));
    let a = Node::start(&url, shared.clone(), slow_ttl).await;
    let b = Node::start(&url, shared, slow_ttl).await;
    let mut ann = a.connect("ann").await;
    let mut view = View::from_listing(&present(&mut ann, "p", TOPIC).await);
    let mut bob = b.connect("bob").await;
    present(&mut bob, "p", TOPIC).await;
    view.follow(&mut ann, |v| v.has("bob")).await;

    let stopped = Instant::now();
    assert!(b.realtime.shutdown().await);
    view.follow(&mut ann, |v| !v.has("bob")).await;
    let took = stopped.elapsed();
    assert!(
        took <= a.realtime.config().presence.grace + SLACK,
        "{took:?}"
    );
}

#[tokio::test]
async fn only_who_may_read_a_topic_sees_its_presence() {
    let url = fresh_database_url(Backend::Sqlite).await;
    let node = Node::start(&url, Arc::new(MemoryBroker::new(1024)), fast).await;
    let mut ann = node.connect("ann").await;
    let refused = query(&mut ann, "staff:room", 1).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    let mut boss = Client::authenticated(&node.url, &token_with_roles("boss", &["staff"])).await;
    present(&mut boss, "s", "staff:room").await;
    let reply = query(&mut boss, "staff:room", 2).await;
    assert_eq!(reply["users"], json!([{"user_id":"boss","connections":1}]));

    // Anonymous: refused where signing in could help, counted as a connection only.
    let (ws, _) = tokio_tungstenite::connect_async(&node.url)
        .await
        .expect("upgrade");
    let mut anonymous = Client {
        ws,
        connection_id: String::new(),
    };
    anonymous.send(json!({"type":"auth","token":null})).await;
    anonymous.recv_type("welcome").await;
    let refused = query(&mut anonymous, TOPIC, 3).await;
    assert_eq!(refused["code"], "unauthorized");
    let listing = present(&mut anonymous, "l", "lounge:main").await;
    assert_eq!(listing["users"], json!([]));
    assert_eq!(listing["connections"], 1);
    let reply = query(&mut ann, "lounge:main", 4).await;
    assert_eq!(
        reply,
        json!({"type":"presence","topic":"lounge:main","users":[],"connections":1,"ref":4})
    );
}
