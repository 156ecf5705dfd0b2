//! Real `tidings` processes on one Postgres event log, for each broker between them
//! (Redis, NATS, Postgres LISTEN/NOTIFY; `memory` is one process, not a cluster):
//! writes on one node reach WebSocket and Datastar SSE clients on the others once, in
//! seq order; a broker killed (-9) for 5 s during writes loses nothing; a node killed
//! (-9) lets its clients resume on another node without a gap; killing the node that
//! is sequencing leaves every committed event exactly one seq, without gaps. And, for
//! any broker, a node that stalls while holding the log's lock holds up sequencing for
//! no longer than `log.sequencer_timeout`.
//!
//! Each test starts its own broker (a `redis-server` or `nats-server` on a free port,
//! or a TCP proxy to the tests' Postgres for LISTEN/NOTIFY), so killing it touches no
//! shared service. The truth every client is checked against is the
//! `realtime_outbox` table itself.

mod common;

use std::time::{Duration, Instant};

use common::brokers::BrokerKind;
use common::cluster::{
    Cluster, ClusterOptions, Writer, assert_all_logged, assert_consecutive, expect_sse, expect_ws,
    sse_until_end, wait_sequenced, ws_until_end,
};

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(5);
/// Time between two writes of a [`Writer`].
const PACE: Duration = Duration::from_millis(40);

/// One test per broker and scenario, so the output names the broker.
macro_rules! for_each_broker {
    ($($scenario:ident),* $(,)?) => {
        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::BrokerKind::Redis).await;
                }
            )*
        }
        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::BrokerKind::Nats).await;
                }
            )*
        }
        #[cfg(feature = "postgres-notify")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::BrokerKind::Postgres).await;
                }
            )*
        }
    };
}

for_each_broker!(
    a_write_on_one_node_reaches_ws_and_sse_clients_on_the_others_once_in_order,
    a_broker_killed_for_5s_during_writes_costs_no_event,
    clients_of_a_killed_node_resume_on_another_node_without_a_gap,
    killing_the_node_that_is_sequencing_leaves_no_gap,
);

async fn a_write_on_one_node_reaches_ws_and_sse_clients_on_the_others_once_in_order(
    kind: BrokerKind,
) {
    // Nodes poll the log only every 30 s, longer than any wait below: b and c learn of
    // a's writes through the broker.
    let options = ClusterOptions {
        poll_interval: Duration::from_secs(30),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(kind, options).await;
    let db = cluster.db().await;
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let mut ws_b = b.ws("todos:*").await;
    let mut ws_c = c.ws("todos:*").await;
    let mut sse_b = b.sse("todos:*", None).await;
    let mut sse_c = c.sse("todos:*", None).await;
    for stream in [&mut sse_b, &mut sse_c] {
        assert_eq!(stream.next_group().await.seq(), 0, "the opening snapshot");
    }

    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            a.create_todo(&format!("t{n}"))
                .await
                .expect("write through a"),
        );
    }
    let keys = wait_sequenced(&db).await;
    assert_eq!(keys, ids, "one after another, so in write order");
    expect_ws(&mut ws_b, 0, &keys, "WebSocket on b").await;
    expect_ws(&mut ws_c, 0, &keys, "WebSocket on c").await;
    expect_sse(&mut sse_b, 0, &keys, "SSE on b").await;
    expect_sse(&mut sse_c, 0, &keys, "SSE on c").await;

    // Nothing twice: the next event every client gets is the next write.
    let last = a.create_todo("last").await.expect("write through a");
    let keys = wait_sequenced(&db).await;
    assert_eq!(keys.last(), Some(&last));
    let after = ids.len() as u64;
    expect_ws(&mut ws_b, after, &keys, "WebSocket on b").await;
    expect_ws(&mut ws_c, after, &keys, "WebSocket on c").await;
    expect_sse(&mut sse_b, after, &keys, "SSE on b").await;
    expect_sse(&mut sse_c, after, &keys, "SSE on c").await;
}

async fn a_broker_killed_for_5s_during_writes_costs_no_event(kind: BrokerKind) {
    let mut cluster = Cluster::start(kind, ClusterOptions::default()).await;
    let db = cluster.db().await;
    let mut ws = Vec::new();
    let mut sse = Vec::new();
    for node in &cluster.nodes {
        ws.push((
            node.ws("todos:*").await,
            format!("WebSocket on {}", node.name),
        ));
        let mut stream = node.sse("todos:*", None).await;
        assert_eq!(stream.next_group().await.seq(), 0, "the opening snapshot");
        sse.push((stream, format!("SSE on {}", node.name)));
    }
    let bases = cluster.nodes.iter().map(|n| n.base.clone()).collect();
    let mut writer = Writer::start(bases, PACE);
    writer.wait_for(10).await;

    cluster.broker.kill().await;
    let before = writer.acked();
    // The outage itself: writes go on for its whole length.
    tokio::time::sleep(OUTAGE).await;
    let during = writer.acked() - before;
    cluster.broker.restart().await;
    let back = writer.acked();
    writer.wait_for(back + 20).await;
    let log = writer.finish().await;
    assert!(log.failed.is_empty(), "writes failed: {:?}", log.failed);
    assert!(during >= 20, "only {during} writes during the outage");

    let keys = wait_sequenced(&db).await;
    assert_all_logged(&log.acked, &keys);
    for (client, who) in &mut ws {
        expect_ws(client, 0, &keys, who).await;
    }
    for (stream, who) in &mut sse {
        expect_sse(stream, 0, &keys, who).await;
    }
}

async fn clients_of_a_killed_node_resume_on_another_node_without_a_gap(kind: BrokerKind) {
    let mut cluster = Cluster::start(kind, ClusterOptions::default()).await;
    let db = cluster.db().await;
    let mut ws_a = cluster.node(0).ws("todos:*").await;
    let mut sse_a = cluster.node(0).sse("todos:*", None).await;
    assert_eq!(sse_a.next_group().await.seq(), 0, "the opening snapshot");
    let bases = vec![cluster.node(1).base.clone(), cluster.node(2).base.clone()];
    let mut writer = Writer::start(bases, PACE);
    writer.wait_for(10).await;
    // a has delivered some events to both clients before it dies.
    let first = ws_a.recv_event().await;
    assert_eq!(common::server::seq_of(&first), 1);
    let epoch = first["cursor"]
        .as_str()
        .expect("cursor")
        .rsplit_once(':')
        .expect("epoch")
        .0
        .to_owned();
    assert_eq!(sse_a.next_group().await.seq(), 1);

    cluster.kill(0);
    let mut ws_seen = vec![1];
    ws_seen.extend(ws_until_end(&mut ws_a).await);
    assert_consecutive(&ws_seen, 0, "WebSocket on a before it died");
    let ws_last = *ws_seen.last().expect("one event at least");
    let sse_groups = sse_until_end(&mut sse_a).await;
    let sse_seqs: Vec<u64> = sse_groups.iter().map(|g| g.seq()).collect();
    assert_consecutive(&sse_seqs, 1, "SSE on a before it died");
    let sse_last_id = sse_groups
        .last()
        .map_or_else(|| format!("{epoch}:1"), |g| g.id.clone());
    let sse_last = common::sse::seq_of(&sse_last_id);

    // At once, while writes go on: the WebSocket client on b, the page on c.
    let since = format!("{epoch}:{ws_last}");
    let (mut ws, subscribed) = cluster.node(1).ws_resume("todos:*", &since).await;
    assert_eq!(
        subscribed["recovered"], true,
        "a resume on b from {since}: {subscribed}"
    );
    let mut sse = cluster.node(2).sse("todos:*", Some(&sse_last_id)).await;

    let now = writer.acked();
    writer.wait_for(now + 10).await;
    let log = writer.finish().await;
    assert!(log.failed.is_empty(), "writes failed: {:?}", log.failed);
    let keys = wait_sequenced(&db).await;
    assert_all_logged(&log.acked, &keys);
    expect_ws(&mut ws, ws_last, &keys, "WebSocket resumed on b").await;
    expect_sse(&mut sse, sse_last, &keys, "SSE resumed on c").await;

    // a comes back with an empty ring: a resume there is served from the table.
    cluster.restart(0).await;
    let (mut again, subscribed) = cluster
        .node(0)
        .ws_resume("todos:*", &format!("{epoch}:1"))
        .await;
    assert_eq!(
        subscribed["recovered"], true,
        "a resume on the restarted a: {subscribed}"
    );
    expect_ws(&mut again, 1, &keys, "WebSocket resumed on the restarted a").await;
}

async fn killing_the_node_that_is_sequencing_leaves_no_gap(kind: BrokerKind) {
    let mut cluster = Cluster::start(kind, ClusterOptions::default()).await;
    let db = cluster.db().await;
    // a's relay holds the log's lock for half a second whenever it sequences, so it can
    // be killed in the middle of it.
    let hold = Duration::from_millis(500);
    cluster.slow_sequencing(0, hold).await;
    let mut clients = Vec::new();
    for node in &cluster.nodes[1..] {
        let ws = node.ws("todos:*").await;
        let mut sse = node.sse("todos:*", None).await;
        assert_eq!(sse.next_group().await.seq(), 0, "the opening snapshot");
        clients.push((ws, sse, node.name.clone()));
    }
    let a = cluster.node(0).base.clone();
    let bases = cluster.nodes.iter().map(|n| n.base.clone()).collect();
    let mut writer = Writer::start(bases, PACE);
    assert!(
        cluster
            .wait_sequencing(&db, 0, hold / 2, Duration::from_secs(20))
            .await,
        "a never sequenced"
    );
    cluster.kill(0);
    let killed = writer.acked();
    writer.wait_for(killed + 20).await;
    let log = writer.finish().await;
    for (base, error) in &log.failed {
        assert_eq!(
            base, &a,
            "only writes through the killed a may fail: {error}"
        );
    }

    let keys = wait_sequenced(&db).await;
    assert!(keys.len() > killed, "sequencing went on after a died");
    assert_all_logged(&log.acked, &keys);
    for (ws, sse, name) in &mut clients {
        expect_ws(ws, 0, &keys, &format!("WebSocket on {name}")).await;
        expect_sse(sse, 0, &keys, &format!("SSE on {name}")).await;
    }
}

/// A node stopped (SIGSTOP) in the middle of sequencing keeps its connection, and the
/// log's lock with it, while its sequencing statement runs on (here it runs longer than
/// the timeout). Postgres cancels the statement after `log.sequencer_timeout`, and the
/// transaction it leaves (the stopped node cannot roll it back) ends within the same
/// bound; then another node sequences, every row exactly once. The broker plays no
/// part: `memory` (each node polls the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_while_sequencing_holds_it_up_for_no_longer_than_the_sequencer_timeout() {
    let timeout = Duration::from_secs(2);
    let hold = timeout + Duration::from_millis(1500);
    let options = ClusterOptions {
        nodes: 2,
        sequencer_timeout: timeout,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(BrokerKind::Memory, options).await;
    let db = cluster.db().await;
    cluster.slow_sequencing(0, hold).await;

    // A write through a wakes a's relay at once; b's may still win the lock by
    // polling first, then try again.
    let mut caught = false;
    for n in 0..10 {
        cluster
            .node(0)
            .create_todo(&format!("a{n}"))
            .await
            .expect("write through a");
        if cluster
            .wait_sequencing(&db, 0, hold / 4, Duration::from_secs(3))
            .await
        {
            caught = true;
            break;
        }
    }
    assert!(caught, "a's relay was never seen sequencing");
    cluster.pause(0);
    let stopped = Instant::now();

    let id = cluster
        .node(1)
        .create_todo("through b")
        .await
        .expect("write through b");
    let deadline = stopped + Duration::from_secs(30);
    loop {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM realtime_outbox WHERE record_key = $1")
                .bind(&id)
                .fetch_one(&db)
                .await
                .expect("reading the outbox");
        if seq.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "sequencing never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = stopped.elapsed();
    // The stopped node held the lock until Postgres cancelled its statement...
    assert!(
        waited >= timeout * 9 / 10,
        "sequenced after {waited:?}: the stopped node did not hold the lock"
    );
    // ... and ended the transaction it left, each within the bound (plus b's next
    // turn).
    assert!(
        waited <= timeout * 2 + Duration::from_secs(2),
        "sequencing resumed only after {waited:?}"
    );
    let keys = wait_sequenced(&db).await;
    assert_eq!(keys.last(), Some(&id));
}
