//! A hub whose shards are run by runners, as in a node: what is queued, when the
//! positions move, and how the feeder is held back.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::{client, connect, hub, logged, record, subscribe};
use crate::hub::{CloseReason, Hub, ReceiverKind, runners::QUEUED_JOBS};

/// A two-shard hub with runners attached, and the wakers they would wait on.
fn run_hub() -> (Arc<Hub>, Vec<Arc<Notify>>) {
    let hub = Arc::new(hub());
    let wakes: Vec<Arc<Notify>> = (0..hub.shard_count()).map(|_| Arc::default()).collect();
    hub.attach_runners(wakes.clone());
    (hub, wakes)
}

/// Whether `wake` holds a notification (without waiting for one).
async fn woken(wake: &Notify) -> bool {
    tokio::time::timeout(Duration::ZERO, wake.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn each_shard_fans_out_when_its_runner_runs_and_the_node_position_is_the_lowest() {
    let (hub, wakes) = run_hub();
    // Round robin: the first client goes to shard 0, the second to shard 1.
    let mut first = client(&hub, "c1", &[("s", "todos:*")]);
    let mut second = client(&hub, "c2", &[("s", "todos:*")]);

    hub.publish(&logged(1, record("todos", Some("1"))));

    assert!(woken(&wakes[0]).await && woken(&wakes[1]).await);
    assert_eq!(hub.handed(), 1, "the feeder's position moves at once");
    assert_eq!(hub.position(), 0, "nothing fanned out yet");
    assert!(first.received().is_empty());

    assert!(hub.run_queued(0));
    assert_eq!(first.received(), [["s"]]);
    assert!(second.received().is_empty(), "shard 1's runner has not run");
    assert_eq!(
        hub.position(),
        0,
        "the node's position is the lowest shard's"
    );
    // A subscription gets its own shard's position: its shard delivers after it live.
    let late = client(&hub, "c3", &[]);
    assert_eq!(subscribe(&hub, &late, "s", "todos:*"), Some(1), "shard 0");
    let later = client(&hub, "c4", &[]);
    assert_eq!(subscribe(&hub, &later, "s", "todos:*"), Some(0), "shard 1");

    assert!(hub.run_queued(1));
    assert!(!hub.run_queued(1), "each job runs once");
    assert_eq!(second.received(), [["s"]]);
    assert_eq!(hub.position(), 1);
    assert!(hub.reach_position(1, Duration::ZERO).await);
}

#[tokio::test]
async fn a_reset_is_run_in_turn_with_the_events_around_it() {
    let (hub, _wakes) = run_hub();
    let mut ws = client(&hub, "c1", &[("s", "todos:*")]);
    hub.publish(&logged(1, record("todos", Some("1"))));
    hub.reset(0);
    assert_eq!(hub.handed(), 0);

    assert!(hub.run_queued(0));
    assert_eq!(
        ws.received(),
        [["s"]],
        "the event before the reset came first"
    );
    assert_eq!(ws.closer.reason(), Some(CloseReason::ContinuityLost));
    assert!(hub.run_queued(1));
    assert_eq!(hub.position(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_feeder_waits_for_room_and_not_once_a_runner_stopped() {
    let (hub, _wakes) = run_hub();
    let mut sse = connect(&hub, "c1", None, ReceiverKind::Sse, 1);
    subscribe(&hub, &sse, "s", "notes:*").expect("fresh subscription");
    for seq in 1..=QUEUED_JOBS as u64 {
        hub.room().await;
        hub.publish(&logged(seq, record("todos", None)));
    }
    let waiting = tokio::time::timeout(Duration::from_secs(1), hub.room()).await;
    assert!(waiting.is_err(), "a full queue holds the feeder back");

    let room = tokio::spawn({
        let hub = hub.clone();
        async move { hub.room().await }
    });
    hub.run_queued(0);
    hub.run_queued(1);
    tokio::time::timeout(Duration::from_secs(1), room)
        .await
        .expect("drained queues make room")
        .expect("the waiter");
    assert_eq!(hub.position(), QUEUED_JOBS as u64);

    // A runner stopped (the node shuts down): the work is done at once.
    hub.detach_runners();
    let seq = QUEUED_JOBS as u64 + 1;
    hub.publish(&logged(seq, record("notes", None)));
    assert_eq!(hub.position(), seq);
    assert_eq!(sse.received(), [["s"]]);
}
