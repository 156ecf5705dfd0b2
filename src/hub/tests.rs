//! Fan-out through a whole hub: receivers, rules, queues and the delivery position,
//! without a database or a socket.

use std::sync::{Arc, atomic::Ordering::Relaxed};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{fan_out::CHUNK, *};
use crate::{
    close::Closer,
    event::{Action, Cursor, DirectEvent, LogEntry, Recipients},
    rules::Rule,
};

fn hub() -> Hub {
    let rules = Rules::new()
        .collection("todos", Rule::Public, Rule::Deny)
        .collection("notes", Rule::Public, Rule::Deny)
        .collection("secrets", Rule::Authenticated, Rule::Deny);
    // Two shards, as on a two-core node: every test crosses them.
    Hub::new(Arc::new(rules), Arc::new(Metrics::default()), 0).with_shards(2)
}

fn principal(user: Option<&str>) -> Arc<Principal> {
    Arc::new(Principal {
        user_id: user.map(Arc::from),
        ..Principal::anonymous()
    })
}

/// A registered receiver's far ends: its queue and the closer the hub calls.
struct Client {
    key: ReceiverKey,
    queue: mpsc::Receiver<Delivery>,
    closer: Closer,
}

impl Client {
    /// Subscription ids of every delivery queued so far, one entry per delivery.
    fn received(&mut self) -> Vec<Vec<String>> {
        let mut got = Vec::new();
        while let Ok(delivery) = self.queue.try_recv() {
            got.push(delivery.subs.iter().map(|s| s.to_string()).collect());
        }
        got
    }
}

fn connect(hub: &Hub, id: &str, user: Option<&str>, kind: ReceiverKind, capacity: usize) -> Client {
    let (queue, far_end) = mpsc::channel(capacity);
    let closer = Closer::default();
    let key = hub.connect_as(
        Receiver {
            id: Arc::from(id),
            principal: principal(user),
            inbox: Inbox::Queue(queue),
            closer: closer.clone(),
        },
        kind,
    );
    Client {
        key,
        queue: far_end,
        closer,
    }
}

fn client(hub: &Hub, id: &str, patterns: &[(&str, &str)]) -> Client {
    let client = connect(hub, id, None, ReceiverKind::WebSocket, 8);
    for (sub, pattern) in patterns {
        subscribe(hub, &client, sub, pattern).expect("fresh subscription");
    }
    client
}

fn subscribe(hub: &Hub, client: &Client, sub: &str, pattern: &str) -> Option<u64> {
    let pattern = Pattern::parse(pattern).expect("test patterns are valid");
    hub.subscribe(client.key, Arc::from(sub), Arc::new(pattern))
        .ok()
}

fn record(collection: &str, key: Option<&str>) -> LogEntry {
    LogEntry {
        collection: collection.to_owned(),
        key: key.map(str::to_owned),
        action: Action::Update,
        event: None,
        payload: json!({}),
        changes: None,
        acl: Map::new(),
        previous: None,
        mutation: None,
        source: Default::default(),
        except: None,
        ts: chrono::DateTime::UNIX_EPOCH,
    }
}

fn logged(seq: u64, event: LogEntry) -> Arc<Event> {
    let cursor = Cursor {
        epoch: Arc::from("e1"),
        seq,
    };
    Event::logged(&cursor, event)
}

fn direct(target: Recipients) -> Arc<Event> {
    Event::direct(DirectEvent {
        target,
        event: "ping".to_owned(),
        data: Value::Null,
        except: None,
        ts: chrono::DateTime::UNIX_EPOCH,
    })
}

fn delivered(count: usize) -> FanOut {
    FanOut {
        delivered: count,
        overflowed: 0,
    }
}

#[test]
fn events_reach_matching_receivers_only_with_their_matching_ids_sorted() {
    let hub = hub();
    let mut all = client(
        &hub,
        "c1",
        &[("b", "todos:*"), ("a", "todos:1"), ("c", "notes:*")],
    );
    let mut other_key = client(&hub, "c2", &[("s1", "todos:2")]);
    let mut other_collection = client(&hub, "c3", &[("s1", "notes:*")]);

    let fan_out = hub.publish(&logged(1, record("todos", Some("1"))));

    assert_eq!(fan_out, delivered(1));
    assert_eq!(all.received(), [["a", "b"]]);
    assert!(other_key.received().is_empty());
    assert!(other_collection.received().is_empty());
}

#[test]
fn read_rules_and_the_excluded_connection_are_judged_per_receiver() {
    let hub = hub();
    let mut anonymous = client(&hub, "c1", &[("s1", "*:*")]);
    let mut user = connect(&hub, "c2", Some("u1"), ReceiverKind::WebSocket, 8);
    subscribe(&hub, &user, "s1", "*:*").expect("fresh subscription");

    assert_eq!(
        hub.publish(&logged(1, record("secrets", None))),
        delivered(1)
    );
    assert!(anonymous.received().is_empty());
    assert_eq!(user.received(), [["s1"]]);

    let mut from_user = record("todos", Some("1"));
    from_user.except = Some("c2".to_owned());
    assert_eq!(hub.publish(&logged(2, from_user)), delivered(1));
    assert_eq!(anonymous.received(), [["s1"]]);
    assert!(user.received().is_empty());
}

#[test]
fn local_events_reach_only_receivers_of_their_kind_and_keep_the_position() {
    let hub = hub();
    let mut websocket = client(&hub, "c1", &[("s1", "todos:*")]);
    let mut sse = connect(&hub, "c2", None, ReceiverKind::Sse, 8);
    subscribe(&hub, &sse, "s1", "todos:*").expect("fresh subscription");

    let event = Event::local(record("todos", None), bytes::Bytes::new());
    assert_eq!(hub.publish_local(&event, ReceiverKind::Sse), delivered(1));

    assert_eq!(sse.received(), [["s1"]]);
    assert!(websocket.received().is_empty());
    assert_eq!(hub.position(), 0);
}

#[test]
fn a_full_queue_closes_its_receiver_as_a_slow_consumer() {
    let hub = hub();
    let mut slow = connect(&hub, "slow", None, ReceiverKind::WebSocket, 1);
    subscribe(&hub, &slow, "s1", "todos:*").expect("fresh subscription");
    let mut fast = client(&hub, "fast", &[("s1", "todos:*")]);

    assert_eq!(
        hub.publish(&logged(1, record("todos", Some("1")))),
        delivered(2)
    );
    let second = hub.publish(&logged(2, record("todos", Some("1"))));

    assert_eq!(
        second,
        FanOut {
            delivered: 1,
            overflowed: 1
        }
    );
    assert_eq!(slow.closer.reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(fast.closer.reason(), None);
    assert_eq!(slow.received().len(), 1);
    assert_eq!(fast.received().len(), 2);
    // The slow receiver is gone, subscriptions and all.
    assert_eq!(hub.count_matching("todos", Some("1")), 1);
    assert_eq!(hub.metrics.subscriptions.load(Relaxed), 1);
    assert_eq!(hub.metrics.queue_overflows.load(Relaxed), 1);
    assert_eq!(subscribe(&hub, &slow, "s2", "todos:*"), None);
}

#[test]
fn direct_events_reach_connections_and_users_without_subscriptions() {
    let hub = hub();
    let mut first_tab = connect(&hub, "c1", Some("u1"), ReceiverKind::WebSocket, 8);
    let mut second_tab = connect(&hub, "c2", Some("u1"), ReceiverKind::Sse, 8);
    let mut someone_else = connect(&hub, "c3", Some("u2"), ReceiverKind::WebSocket, 8);
    let no_subs: [[&str; 0]; 1] = [[]];

    let to_user = direct(Recipients::Users(vec![
        "u1".to_owned(),
        "nobody".to_owned(),
    ]));
    assert_eq!(hub.publish_direct(&to_user), delivered(2));
    assert_eq!(first_tab.received(), no_subs);
    assert_eq!(second_tab.received(), no_subs);
    assert!(someone_else.received().is_empty());

    // Named twice, delivered once; unknown ids are skipped. `publish` hands direct
    // events on too.
    let to_connection = direct(Recipients::Connections(vec![
        "c3".to_owned(),
        "c3".to_owned(),
        "gone".to_owned(),
    ]));
    assert_eq!(hub.publish(&to_connection), delivered(1));
    assert_eq!(someone_else.received(), no_subs);
    assert!(first_tab.received().is_empty());

    hub.disconnect(first_tab.key);
    assert_eq!(hub.publish_direct(&to_user), delivered(1));
    assert_eq!(second_tab.received(), no_subs);
}

#[test]
fn subscribing_reports_the_position_which_logged_events_advance() {
    let hub = Hub::new(Arc::new(Rules::new()), Arc::new(Metrics::default()), 5);
    let watcher = client(&hub, "c1", &[]);
    assert_eq!(subscribe(&hub, &watcher, "s1", "todos:*"), Some(5));

    hub.publish(&logged(7, record("todos", Some("1"))));
    assert_eq!(hub.position(), 7);
    assert_eq!(subscribe(&hub, &watcher, "s2", "notes:*"), Some(7));
    // An event nobody may read still moves the position.
    hub.publish(&logged(8, record("unknown", None)));
    assert_eq!(hub.position(), 8);
    // Direct events are not in the log.
    hub.publish(&direct(Recipients::Users(vec!["u1".to_owned()])));
    assert_eq!(hub.position(), 8);
}

#[test]
fn subscription_ids_are_unique_per_receiver() {
    let hub = hub();
    let first = client(&hub, "c1", &[("s1", "todos:*")]);
    let second = client(&hub, "c2", &[]);
    let pattern = |text: &str| Arc::new(Pattern::parse(text).expect("valid"));

    assert_eq!(subscribe(&hub, &first, "s1", "notes:*"), None);
    assert_eq!(subscribe(&hub, &second, "s1", "todos:*"), Some(0));
    assert_eq!(
        hub.subscribe_all(
            first.key,
            &[
                (Arc::from("s2"), pattern("notes:*")),
                (Arc::from("s2"), pattern("notes:1")),
            ],
        )
        .ok(),
        None,
        "repeated id"
    );
    assert_eq!(
        hub.subscribe_all(
            first.key,
            &[
                (Arc::from("s3"), pattern("notes:*")),
                (Arc::from("s1"), pattern("notes:1")),
            ],
        )
        .ok(),
        None,
        "id in use"
    );
    assert_eq!(hub.count_matching("notes", None), 0, "all or nothing");
    assert_eq!(
        hub.subscribe_all(
            first.key,
            &[
                (Arc::from("s2"), pattern("notes:*")),
                (Arc::from("s3"), pattern("notes:1")),
            ],
        )
        .ok(),
        Some(0)
    );
    assert_eq!(hub.count_matching("notes", Some("1")), 2);
    assert_eq!(hub.metrics.subscriptions.load(Relaxed), 4);

    assert!(hub.unsubscribe(first.key, "s3"));
    assert!(!hub.unsubscribe(first.key, "s3"));
    assert_eq!(hub.count_matching("notes", Some("1")), 1);
    hub.disconnect(first.key);
    assert_eq!(hub.count_matching("todos", Some("1")), 1);
    assert_eq!(hub.metrics.subscriptions.load(Relaxed), 1);
    assert_eq!(
        subscribe(&hub, &first, "s9", "todos:*"),
        None,
        "receiver gone"
    );
}

#[test]
fn reset_closes_every_receiver_and_moves_the_position() {
    let hub = hub();
    let first = client(&hub, "c1", &[("s1", "todos:*")]);
    let second = connect(&hub, "c2", Some("u1"), ReceiverKind::Sse, 8);
    hub.publish(&logged(4, record("todos", Some("1"))));

    hub.reset(2);

    assert_eq!(hub.position(), 2);
    assert_eq!(first.closer.reason(), Some(CloseReason::ContinuityLost));
    assert_eq!(second.closer.reason(), Some(CloseReason::ContinuityLost));
    assert_eq!(hub.count_matching("todos", Some("1")), 0);
    assert_eq!(hub.metrics.subscriptions.load(Relaxed), 0);
    let to_user = direct(Recipients::Users(vec!["u1".to_owned()]));
    assert_eq!(hub.publish_direct(&to_user), FanOut::default());
}

#[test]
fn disconnecting_a_user_ends_all_their_receivers_and_only_theirs() {
    let hub = hub();
    let websocket = client(&hub, "c1", &[]);
    let ann_socket = connect(&hub, "c2", Some("ann"), ReceiverKind::WebSocket, 8);
    let ann_stream = connect(&hub, "c3", Some("ann"), ReceiverKind::Sse, 8);
    let mut bob = connect(&hub, "c4", Some("bob"), ReceiverKind::WebSocket, 8);
    subscribe(&hub, &ann_socket, "s1", "todos:*").expect("fresh");
    subscribe(&hub, &bob, "s1", "todos:*").expect("fresh");

    assert_eq!(hub.disconnect_user("ann"), 2);

    assert_eq!(ann_socket.closer.reason(), Some(CloseReason::Revoked));
    assert_eq!(ann_stream.closer.reason(), Some(CloseReason::Revoked));
    assert_eq!(CloseReason::Revoked.code(), 4003);
    assert_eq!(bob.closer.reason(), None);
    assert_eq!(websocket.closer.reason(), None);
    // Gone from the hub at once: nothing more is queued for them.
    assert_eq!(hub.count_matching("todos", Some("1")), 1);
    hub.publish(&logged(1, record("todos", Some("1"))));
    assert_eq!(bob.received(), [["s1"]]);
    assert_eq!(hub.disconnect_user("ann"), 0, "a repeat finds nobody");
}

#[tokio::test(start_paused = true)]
async fn reaching_a_position_asks_the_feeder_and_waits_boundedly() {
    let hub = Arc::new(hub());
    hub.publish(&logged(2, record("todos", None)));
    assert!(
        hub.reach_position(2, Duration::ZERO).await,
        "already there: no wait"
    );

    // A feeder that delivers only when asked, as the ingest does between polls.
    let feeder = {
        let hub = hub.clone();
        tokio::spawn(async move {
            hub.catch_up_requested().await;
            hub.publish(&logged(3, record("todos", None)));
            hub.publish(&logged(4, record("todos", None)));
        })
    };
    assert!(hub.reach_position(4, Duration::from_secs(5)).await);
    feeder.await.expect("feeder");

    // Nobody delivers seq 9: the wait gives up after its bound.
    let started = tokio::time::Instant::now();
    assert!(!hub.reach_position(9, Duration::from_secs(2)).await);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[test]
fn glob_slots_come_back_when_their_holders_go() {
    let limits = GlobLimits {
        per_connection: 2,
        per_user: 3,
        per_node: 4,
        ..GlobLimits::default()
    };
    let hub = hub().with_glob_limits(limits);
    let glob = |hub: &Hub, client: &Client, id: &str, text: &str| {
        let pattern = Arc::new(Pattern::parse(text).expect("valid"));
        hub.subscribe(client.key, Arc::from(id), pattern)
    };
    let first = connect(&hub, "c1", Some("ann"), ReceiverKind::WebSocket, 8);
    let second = connect(&hub, "c2", Some("ann"), ReceiverKind::Sse, 8);
    let anonymous = connect(&hub, "c3", None, ReceiverKind::WebSocket, 8);
    glob(&hub, &first, "a", "todos:a*").expect("first glob");
    glob(&hub, &first, "b", "todos:b*").expect("second glob");
    assert_eq!(
        glob(&hub, &first, "c", "todos:c*"),
        Err(SubscribeError::GlobsPerConnection { limit: 2 })
    );
    glob(&hub, &second, "c", "todos:c*").expect("ann's third");
    assert_eq!(
        glob(&hub, &second, "d", "todos:d*"),
        Err(SubscribeError::GlobsPerUser { limit: 3 })
    );
    // A batch is judged whole: one distinct glob too many refuses all of it.
    let batch = [
        (
            Arc::from("x"),
            Arc::new(Pattern::parse("notes:x*").unwrap()),
        ),
        (
            Arc::from("y"),
            Arc::new(Pattern::parse("notes:y*").unwrap()),
        ),
    ];
    assert_eq!(
        hub.subscribe_all(anonymous.key, &batch),
        Err(SubscribeError::GlobsPerNode { limit: 4 })
    );
    assert_eq!(hub.count_matching("notes", Some("x1")), 0, "all or nothing");
    glob(&hub, &anonymous, "x", "notes:x*").expect("the node's fourth");
    // A later subscriber of the same text gets the compiled pattern already held.
    let held = hub.shared_pattern(Arc::new(Pattern::parse("notes:x*").unwrap()));
    let again = hub.shared_pattern(Arc::new(Pattern::parse("notes:x*").unwrap()));
    assert!(Arc::ptr_eq(&held, &again), "one compiled pattern per text");
    let exact = Arc::new(Pattern::parse("notes:*").unwrap());
    assert!(Arc::ptr_eq(&hub.shared_pattern(exact.clone()), &exact));
    assert_eq!(hub.metrics.glob_patterns.load(Relaxed), 4);

    // A disconnect gives back its connection's, its user's and the node's slots.
    hub.disconnect(first.key);
    assert_eq!(hub.metrics.glob_patterns.load(Relaxed), 2);
    glob(&hub, &second, "d", "todos:d*").expect("ann has room again");
    glob(&hub, &anonymous, "y", "notes:y*").expect("the node has room again");
    hub.disconnect(second.key);
    hub.disconnect(anonymous.key);
    assert_eq!(hub.metrics.glob_patterns.load(Relaxed), 0);
    assert_eq!(hub.metrics.subscriptions.load(Relaxed), 0);
}

#[test]
fn a_glob_held_on_one_shard_is_accepted_on_another_and_counts_once() {
    let limits = GlobLimits {
        per_node: 1,
        ..GlobLimits::default()
    };
    let hub = hub().with_glob_limits(limits);
    // Round robin: the two clients sit in different shards.
    let first = client(&hub, "c1", &[("s", "todos:a*")]);
    let second = client(&hub, "c2", &[]);
    assert!(!std::ptr::eq(
        hub.shard_of(first.key),
        hub.shard_of(second.key)
    ));

    subscribe(&hub, &second, "s", "todos:a*").expect("in use on the node");
    let pattern = Arc::new(Pattern::parse("todos:b*").expect("valid"));
    assert_eq!(
        hub.subscribe(second.key, Arc::from("t"), pattern),
        Err(SubscribeError::GlobsPerNode { limit: 1 })
    );
    assert_eq!(hub.metrics.glob_patterns.load(Relaxed), 1);

    hub.disconnect(first.key);
    assert_eq!(hub.metrics.glob_patterns.load(Relaxed), 1, "still held");
    hub.disconnect(second.key);
    assert_eq!(hub.metrics.glob_patterns.load(Relaxed), 0);
}

/// Subscriptions of one connection that judge an update differently get one delivery
/// per outcome (update, enter, leave), each naming its subscriptions; an unfiltered
/// receiver of a collection whose rule reads no changed field keeps the single
/// delivery of the event as logged.
#[test]
fn one_delivery_per_view_of_an_update() {
    let hub = hub();
    let mut ann = client(&hub, "c1", &[("all", "todos:*")]);
    let limits = crate::filter::FilterLimits {
        max_conditions: 4,
        max_values: 4,
        max_bytes: 1024,
    };
    for (id, filter) in [
        ("open", json!({"done": false})),
        ("done", json!({"done": true})),
    ] {
        let filter = Arc::new(crate::filter::Filter::parse(&filter, limits).unwrap());
        let pattern = Arc::new(Pattern::parse("todos:*").unwrap());
        hub.subscribe_filtered(ann.key, Arc::from(id), pattern, Some(filter))
            .expect("fresh subscription");
    }
    let mut plain = client(&hub, "c2", &[("all", "todos:*")]);
    let previous = json!({"done": false}).as_object().cloned();
    let update = LogEntry::record(
        "todos",
        "1",
        Action::Update,
        json!({"id": "1", "done": true}),
    )
    .with_changes(Some(vec!["done".into()]))
    .with_previous(previous);
    hub.publish(&logged(1, update));

    let mut got: Vec<(Action, Vec<String>)> = Vec::new();
    while let Ok(delivery) = ann.queue.try_recv() {
        let EventContent::Logged(entry) = &delivery.event.data else {
            panic!("a logged event")
        };
        let subs = delivery.subs.iter().map(|s| s.to_string()).collect();
        got.push((entry.action, subs));
    }
    assert_eq!(
        got,
        [
            (Action::Update, vec!["all".to_owned()]),
            (Action::Enter, vec!["done".to_owned()]),
            (Action::Leave, vec!["open".to_owned()]),
        ]
    );
    assert_eq!(plain.received(), [vec!["all".to_owned()]]);
}

#[test]
fn receivers_share_one_copy_of_each_subscription_id_until_none_holds_it() {
    // Each shard keeps its own copies: one shard, so both receivers share it.
    let hub = hub().with_shards(1);
    let mut first = client(&hub, "c1", &[("s", "todos:*")]);
    let mut second = client(&hub, "c2", &[("s", "todos:*")]);
    hub.publish(&logged(1, record("todos", Some("1"))));
    let (one, two) = (
        first.queue.try_recv().unwrap(),
        second.queue.try_recv().unwrap(),
    );
    assert!(Arc::ptr_eq(&one.subs[0], &two.subs[0]));
    drop((one, two));

    // A refused subscription (its id is in use) leaves nothing behind.
    assert!(subscribe(&hub, &first, "s", "notes:*").is_none());
    assert!(subscribe(&hub, &first, "fresh", "notes:*").is_some());
    assert!(hub.unsubscribe(first.key, "fresh"));
    assert_eq!(hub.shards[0].lock().ids.len(), 1);

    hub.unsubscribe(first.key, "s");
    assert_eq!(
        hub.shards[0].lock().ids.len(),
        1,
        "the second receiver still holds it"
    );
    hub.disconnect(second.key);
    assert!(hub.shards[0].lock().ids.is_empty());
}

#[test]
fn fan_outs_around_the_lookup_chunk_reach_every_receiver_once() {
    // The fan-out looks receivers up `CHUNK` at a time: fewer, exactly one or two
    // chunks, and a part chunk after whole ones.
    for count in [2, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 3] {
        let hub = hub();
        let mut clients: Vec<Client> = (0..count)
            .map(|i| connect(&hub, &format!("c{i}"), None, ReceiverKind::WebSocket, 1))
            .collect();
        for client in &clients {
            subscribe(&hub, client, "s1", "todos:*").expect("fresh subscription");
        }
        // The last receiver of the first chunk has its one slot taken already, and
        // the first is the connection the event came from.
        let full = CHUNK.min(count) - 1;
        let to_full = direct(Recipients::Connections(vec![format!("c{full}")]));
        assert_eq!(hub.publish_direct(&to_full), delivered(1));
        let mut event = record("todos", Some("1"));
        event.except = Some("c0".to_owned());

        let fan_out = hub.publish(&logged(1, event));

        assert_eq!(
            fan_out,
            FanOut {
                delivered: count - 2,
                overflowed: 1
            },
            "{count} receivers"
        );
        for (i, client) in clients.iter_mut().enumerate() {
            let expected: Vec<Vec<String>> = match i {
                0 => vec![],
                _ if i == full => vec![vec![]],
                _ => vec![vec!["s1".to_owned()]],
            };
            assert_eq!(client.received(), expected, "receiver {i} of {count}");
        }
        assert_eq!(
            clients[full].closer.reason(),
            Some(CloseReason::SlowConsumer)
        );
        assert_eq!(hub.count_matching("todos", Some("1")), count - 1);
    }
}

mod runners;
