//! On SQLite a node's broadcasts are written by one task, as many as are waiting in
//! one statement (`src/log/appender.rs`): broadcasts made at once, more than fit one
//! batch, each arrive once, numbered without a gap and in the order each caller made
//! them; a broadcast whose caller stopped waiting is still written; a batch that cannot
//! be written tells every caller in it why. The task keeps its pool connection between
//! batches, but never while it waits for a turn or sits idle. Callers past its queue
//! wait for room within the same bound as the queued ones.

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::SqlitePool;
use tidings::{DbOptions, Realtime};

use common::{
    db::{Backend, sqlite_pool},
    server::{TestServer, seq_of},
    sqlite_writes::{node_with, sqlite_server_watching_todos, todos_event},
    tasks::join_all_within,
};

/// Bounds each wait below the 10 s a writer waits for its turn by default.
const BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn broadcasts_made_at_once_arrive_once_each_without_gaps_in_each_callers_order() {
    // More callers than one batch holds (64), so full batches form and the rest wait
    // for the next one.
    const CALLERS: usize = 100;
    const EACH: usize = 4;
    let (server, mut ann) = sqlite_server_watching_todos().await;

    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let realtime = server.realtime.clone();
        callers.spawn(async move {
            for n in 0..EACH {
                realtime
                    .broadcast(todos_event(format!("{caller}:{n}")))
                    .await
                    .expect("broadcast");
            }
        });
    }
    join_all_within(callers, BOUND * 4).await;

    let mut next_of_caller: HashMap<usize, usize> = HashMap::new();
    let mut last_seq = None;
    let mut delivered = Vec::new();
    for _ in 0..CALLERS * EACH {
        let event = ann.recv_event().await;
        let seq = seq_of(&event);
        delivered.push((seq, event["event"].as_str().unwrap_or_default().to_owned()));
        if let Some(last) = last_seq {
            assert_eq!(
                seq,
                last + 1,
                "seqs follow each other without a gap: {event}"
            );
        }
        last_seq = Some(seq);
        let name = event["event"].as_str().expect("an event name");
        let (caller, n) = name.split_once(':').expect("caller:n");
        let caller: usize = caller.parse().expect("caller");
        let n: usize = n.parse().expect("n");
        let expected = next_of_caller.entry(caller).or_default();
        assert_eq!(
            n, *expected,
            "caller {caller}'s events arrive once, in order"
        );
        *expected += 1;
    }
    assert!(
        next_of_caller.values().all(|&count| count == EACH),
        "{next_of_caller:?}"
    );
    // The seqs delivered live (handed to the relay with the seqs the batch's insert
    // gave its rows) are the log's: a client that resumes reads the same events.
    assert_eq!(
        logged_names(&server).await,
        delivered,
        "the log holds each event under the seq it was delivered with"
    );
}

/// Every event in `server`'s log, as (seq, event name) in seq order.
async fn logged_names(server: &TestServer) -> Vec<(u64, String)> {
    let pool = sqlite_pool(server.realtime.db());
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, event_name FROM realtime_outbox ORDER BY seq")
            .fetch_all(pool)
            .await
            .expect("the log");
    rows.into_iter()
        .map(|(seq, name)| (u64::try_from(seq).expect("a positive seq"), name))
        .collect()
}

#[tokio::test]
async fn a_broadcast_whose_caller_stopped_waiting_is_still_written() {
    let (server, mut ann) = sqlite_server_watching_todos().await;

    // A transaction holds the write turn, so the broadcast is queued but not written
    // when its caller gives up on it (an HTTP client that hung up, say).
    let tx = server.realtime.store().begin().await.expect("begin");
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        server.realtime.broadcast(todos_event("abandoned")),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the turn was held, so it was still waiting"
    );
    tx.rollback().await.expect("rollback");

    let event = tokio::time::timeout(BOUND, ann.recv_event())
        .await
        .expect("the abandoned broadcast arrives");
    assert_eq!(event["event"], "abandoned");
}

#[tokio::test]
async fn every_caller_of_a_batch_that_cannot_be_written_is_told_why() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let pool = sqlite_pool(server.realtime.db());
    // The log cannot take rows: every broadcast of the batch fails alike.
    sqlx::query(
        "CREATE TRIGGER refuse_events BEFORE INSERT ON realtime_outbox \
         BEGIN SELECT RAISE(ABORT, 'the log is closed for this test'); END",
    )
    .execute(pool)
    .await
    .expect("trigger");

    let mut callers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let realtime = server.realtime.clone();
        callers.spawn(async move {
            realtime
                .broadcast(todos_event(format!("refused-{n}")))
                .await
        });
    }
    let answers = join_all_within(callers, BOUND).await;
    assert_eq!(answers.len(), 8, "every caller is answered");
    for answer in answers {
        let message = answer.expect_err("refused").to_string();
        assert!(
            message.contains("the log is closed for this test"),
            "{message}"
        );
    }

    // Once the log takes rows again, so does the appender.
    sqlx::query("DROP TRIGGER refuse_events")
        .execute(pool)
        .await
        .expect("drop trigger");
    tokio::time::timeout(BOUND, server.realtime.broadcast(todos_event("after")))
        .await
        .expect("answered")
        .expect("written");
}

/// A node on a pool of two connections (one for a transaction, one the appender may
/// keep) whose appender has just written a broadcast, so it keeps its connection while
/// more keep coming.
async fn node_whose_appender_keeps_a_connection() -> (Realtime, SqlitePool) {
    let mut options = DbOptions::default();
    options.max_connections = Some(2);
    let (realtime, pool) = node_with(&options).await;
    realtime
        .broadcast(todos_event("first"))
        .await
        .expect("broadcast");
    (realtime, pool)
}

#[tokio::test]
async fn the_appender_gives_its_connection_back_while_it_waits_for_a_turn() {
    let (realtime, pool) = node_whose_appender_keeps_a_connection().await;
    // The turn and the pool's other connection.
    let tx = realtime.store().begin().await.expect("begin");
    let waiting = tokio::spawn({
        let realtime = realtime.clone();
        async move { realtime.broadcast(todos_event("second")).await }
    });
    // A read on the pool while the transaction is open (the app's own query, say)
    // needs the appender's connection: kept while the appender waited for the turn,
    // the transaction could not go on until the broadcast gave up.
    let read = tokio::time::timeout(BOUND, pool.acquire())
        .await
        .expect("the appender does not hold a connection while it waits for a turn")
        .expect("a connection");
    drop(read);
    tx.commit().await.expect("commit");
    tokio::time::timeout(BOUND, waiting)
        .await
        .expect("the broadcast gets its turn after the commit")
        .expect("the broadcast task")
        .expect("the broadcast is written");
}

#[tokio::test]
async fn an_idle_appender_gives_its_connection_back() {
    // The node stays up (and its appender running) to the end of the test.
    let (_node, pool) = node_whose_appender_keeps_a_connection().await;
    // Both connections at once: the appender must have given its own back.
    let both = tokio::time::timeout(BOUND, async {
        let first = pool.acquire().await?;
        let second = pool.acquire().await?;
        Ok::<_, sqlx::Error>((first, second))
    })
    .await
    .expect("an idle appender keeps no connection")
    .expect("two connections");
    drop(both);
}

#[tokio::test]
async fn a_pool_closed_while_broadcasts_keep_coming_gets_the_appenders_connection_back() {
    let (realtime, pool) = node_whose_appender_keeps_a_connection().await;
    let closed = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (realtime, closed) = (realtime.clone(), closed.clone());
        async move {
            while !closed.load(Ordering::Relaxed) {
                // Once the pool is closed these fail; the loop only keeps them coming.
                let _ = realtime.broadcast(todos_event("steady")).await;
            }
        }
    });
    tokio::time::timeout(BOUND, pool.close())
        .await
        .expect("the appender gives its connection back to a pool being closed");
    closed.store(true, Ordering::Relaxed);
    tokio::time::timeout(BOUND, publisher)
        .await
        .expect("the publisher stops")
        .expect("the publisher task");
}

#[tokio::test]
async fn broadcasts_past_the_appenders_queue_fail_like_the_queued_ones_when_no_turn_comes() {
    // More callers than the appender holds (a batch of 64 and 1,024 queued) while a
    // transaction holds the turn: those past the queue wait for room, and every caller,
    // queued or not, gives up after the busy timeout with the same error.
    const CALLERS: usize = 1_200;
    let mut options = DbOptions::default();
    options.sqlite_busy_timeout = Duration::from_millis(300);
    let (realtime, _pool) = node_with(&options).await;
    let tx = realtime.store().begin().await.expect("begin");

    let mut callers = tokio::task::JoinSet::new();
    for n in 0..CALLERS {
        let realtime = realtime.clone();
        callers.spawn(async move { realtime.broadcast(todos_event(format!("late-{n}"))).await });
    }
    let answers = join_all_within(callers, BOUND).await;
    assert_eq!(answers.len(), CALLERS, "every caller is answered");
    for answer in answers {
        let message = answer.expect_err("no turn came").to_string();
        assert!(
            message.contains("no turn to write to SQLite within 300ms"),
            "{message}"
        );
    }

    tx.rollback().await.expect("rollback");
    tokio::time::timeout(BOUND, realtime.broadcast(todos_event("after")))
        .await
        .expect("the turn is free again")
        .expect("the broadcast is written");
}
