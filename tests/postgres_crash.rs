//! Postgres crashes right after the relay numbered events without a flush of its own
//! (it numbers settled rows with `synchronous_commit` off, see `src/log/relay.rs`).
//! The crash loses that numbering, never a committed write, and the restarted node
//! numbers the same rows again with the same seqs, so what a client saw before the
//! crash is what the log holds after it, and the client resumes without a gap.
//!
//! Real processes: a Postgres of the test's own (`common::private_postgres`, crashed
//! with `pg_ctl stop -m immediate`) and a `tidings` node killed with -9 at the same
//! moment.

mod common;

use common::{
    brokers::BrokerKind,
    cluster::{Cluster, ClusterOptions, assert_all_logged, wait_sequenced},
    private_postgres::PrivatePostgres,
    server::seq_of,
};
use sqlx::PgPool;

/// Writes sent at once per attempt, so that the relay numbers several rows in one
/// batch whose numbering the crash loses: numbering them again the same way depends
/// on the order it gives them, not only on where it starts.
const WRITES: usize = 4;

/// Attempts at crashing while the last numbering is still in the WAL buffers. The
/// WAL writer hands them to the kernel every 10 s (the private server's setting), so
/// an attempt misses only when it wakes in the few milliseconds between a write's
/// event reaching the client and the check.
const ATTEMPTS: usize = 5;

/// Whole crashes tried, each on a fresh server. The check above sees only that some
/// WAL is still in the buffers, not that the numbering is: the WAL writer may still
/// hand the numbering to the kernel before the crash, after a later record, and then
/// the crash loses nothing and proves nothing.
const CRASHES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_that_loses_the_last_numbering_gives_the_same_rows_the_same_seqs() {
    for crash in 1..=CRASHES {
        if crash_and_check().await {
            return;
        }
        eprintln!("crash {crash}: the last numbering reached the kernel first; again");
    }
    panic!("none of {CRASHES} crashes lost the last numbering: this test proved nothing");
}

/// A fresh Postgres and node, writes, a crash, and every check of what follows it;
/// false if the crash lost no numbering (so there was nothing to check).
async fn crash_and_check() -> bool {
    let postgres = PrivatePostgres::start();
    let options = ClusterOptions {
        nodes: 1,
        database_url: Some(postgres.url()),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(BrokerKind::Memory, options).await;
    let mut ann = cluster.node(0).ws("todos:*").await;

    // Each write commits with a flush (`synchronous_commit` is on, and the outbox's
    // trigger keeps a transaction that writes events from turning it off); the
    // relay's numbering of it commits without one. Once the client has the write's event,
    // that numbering is committed; the check then says whether it is still in the
    // buffers, where the crash will lose it.
    let db = postgres.pool().await;
    let mut acked = Vec::new();
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut last_cursor = String::new();
    let mut in_buffers = false;
    for _ in 0..ATTEMPTS {
        let node = cluster.node(0);
        let writes = (0..WRITES).map(|_| node.create_todo("before the crash"));
        for id in futures::future::join_all(writes).await {
            acked.push(id.unwrap());
        }
        while seen.len() < acked.len() {
            let event = ann.recv_event().await;
            let key = event["key"].as_str().expect("a record key").to_owned();
            seen.push((seq_of(&event), key));
            event["cursor"]
                .as_str()
                .unwrap()
                .clone_into(&mut last_cursor);
        }
        if PrivatePostgres::unwritten_wal(&db).await {
            in_buffers = true;
            break;
        }
    }
    assert!(
        in_buffers,
        "the WAL writer had written the last numbering out at each of {ATTEMPTS} checks"
    );
    db.close().await;

    cluster.kill(0);
    postgres.crash();
    postgres.restart();

    let db = postgres.pool().await;
    let (rows, numbered) = counts(&db).await;
    assert_eq!(
        rows,
        acked.len(),
        "every write committed before the crash survived it"
    );
    if numbered == rows {
        return false;
    }

    cluster.restart(0).await;
    let keys = wait_sequenced(&db).await;
    assert_all_logged(&acked, &keys);
    for (seq, key) in &seen {
        assert_eq!(
            &keys[usize::try_from(*seq).unwrap() - 1],
            key,
            "seq {seq} names the record the client saw under it before the crash"
        );
    }

    // The client resumes on the restarted node from the last event it had (the crash
    // left the log's epoch as it was): recovered, nothing again, and the next write
    // follows on.
    let last = seen.iter().map(|(seq, _)| *seq).max().expect("events seen");
    assert_eq!(common::server::seq_of_cursor(&last_cursor), last);
    let (mut resumed, subscribed) = cluster.node(0).ws_resume("todos:*", &last_cursor).await;
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    let next = cluster
        .node(0)
        .create_todo("after the crash")
        .await
        .unwrap();
    let event = resumed.recv_event().await;
    assert_eq!(seq_of(&event), last + 1, "the next seq follows on: {event}");
    assert_eq!(event["key"].as_str(), Some(next.as_str()));
    true
}

/// Rows in the log, and how many of them have a seq.
async fn counts(db: &PgPool) -> (usize, usize) {
    let (rows, numbered): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(seq) FROM realtime_outbox")
            .fetch_one(db)
            .await
            .expect("reading the outbox");
    (
        usize::try_from(rows).unwrap(),
        usize::try_from(numbered).unwrap(),
    )
}
