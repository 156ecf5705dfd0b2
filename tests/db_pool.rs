//! The Postgres pool pings a connection before handing it out only once it has sat idle
//! for a second (src/db.rs): hot connections skip the round trip, and one that a server
//! restart or a dropped link cut off while it was idle is replaced, not handed to the
//! application.

mod common;

use std::time::Duration;

use sqlx::PgPool;
use tidings::Db;

use common::db::{named_postgres_url, postgres_url};

#[tokio::test]
async fn postgres_a_connection_ended_while_idle_is_replaced_before_use() {
    // The pool's sessions carry a name of their own, so this test ends only them.
    let (name, url) = named_postgres_url("tidings_pool").await;
    let db = Db::connect(&url).await.expect("connect");
    let Db::Postgres(pool) = &db else {
        panic!("a Postgres pool");
    };
    let first: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(pool)
        .await
        .expect("a first query");
    assert_eq!(first, 1);

    // Another session ends the pooled one, as a server restart would, and waits
    // (at most 5 s) until it is gone.
    let admin = PgPool::connect(&postgres_url()).await.expect("connect");
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) \
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_one(&admin)
    .await
    .expect("end the pool's sessions");
    assert!(ended >= 1, "the pool's session was found and ended");

    // Idle for longer than the threshold: the condition under test, not a wait for an
    // event.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let second: i32 = sqlx::query_scalar("SELECT 2")
        .fetch_one(pool)
        .await
        .expect("the ended connection was pinged, found dead and replaced");
    assert_eq!(second, 2);
}
