//! On SQLite the store keeps the declared column types of model tables between
//! transactions (reading them costs a round trip on every write). A table changed
//! while the app runs, by another connection or by the app's own SQL inside a store
//! transaction, must be seen at once: its events carry values read by the new types.

mod common;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings::{
    __private::RelaySignal,
    model::{Field, FieldKind, Model, Store, StoreError, Tx},
};

use common::db::{Backend, fresh_db, sqlite_pool};

/// `flag` holds whatever the table's column type makes of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Gadget {
    id: String,
    flag: Value,
}

impl Model for Gadget {
    const COLLECTION: &'static str = "gadgets";
    fn id(&self) -> String {
        self.id.clone()
    }
    // For the capture trigger some tests install.
    fn fields() -> &'static [Field] {
        const FIELDS: [Field; 2] = [
            Field::new("id", FieldKind::Text),
            Field::new("flag", FieldKind::Other),
        ];
        &FIELDS
    }
}

/// Rebuilds `gadgets` with `flag` declared as `kind`, keeping its rows: the way SQLite
/// changes a column's type, and the column keeps its name.
fn rebuild(kind: &str) -> String {
    format!(
        "CREATE TABLE gadgets_new (id TEXT PRIMARY KEY, flag {kind});
         INSERT INTO gadgets_new SELECT id, flag FROM gadgets;
         DROP TABLE gadgets;
         ALTER TABLE gadgets_new RENAME TO gadgets;"
    )
}

async fn setup() -> (Store, sqlx::SqlitePool) {
    let db = fresh_db(Backend::Sqlite).await;
    let pool = sqlite_pool(&db).clone();
    sqlx::raw_sql("CREATE TABLE gadgets (id TEXT PRIMARY KEY, flag TEXT)")
        .execute(&pool)
        .await
        .expect("create the table");
    (Store::new(db, RelaySignal::default()), pool)
}

/// A gadget whose flag is `true`.
fn flagged(id: &str) -> Gadget {
    Gadget {
        id: id.to_owned(),
        flag: json!(true),
    }
}

/// Inserts a gadget whose flag is `true` and returns its `flag` as stored.
async fn insert_true(store: &Store, id: &str) -> Value {
    let mut tx = store.begin().await.expect("begin");
    let stored = tx.insert(&flagged(id)).await.expect("insert");
    tx.commit().await.expect("commit");
    stored.flag
}

async fn event_flag(pool: &sqlx::SqlitePool, id: &str) -> Value {
    let payload: String =
        sqlx::query_scalar("SELECT payload FROM realtime_outbox WHERE record_key = ?")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("the event row");
    serde_json::from_str::<Value>(&payload).expect("payload is JSON")["flag"].clone()
}

#[tokio::test]
async fn a_table_rebuilt_by_another_connection_is_read_by_its_new_types() {
    let (store, pool) = setup().await;
    // A TEXT column turns the 1 SQLite makes of `true` into text.
    assert_eq!(insert_true(&store, "g1").await, json!("1"));
    assert_eq!(event_flag(&pool, "g1").await, json!("1"));

    sqlx::raw_sql(sqlx::AssertSqlSafe(rebuild("BOOLEAN")))
        .execute(&pool)
        .await
        .expect("rebuild the table");
    assert_eq!(
        insert_true(&store, "g2").await,
        json!(true),
        "the store must not keep the TEXT type it read before the rebuild"
    );
    assert_eq!(event_flag(&pool, "g2").await, json!(true));
}

#[tokio::test]
async fn a_table_rebuilt_inside_the_transaction_is_read_by_its_new_types() {
    let (store, pool) = setup().await;
    assert_eq!(insert_true(&store, "g1").await, json!("1"));

    let mut tx = store.begin().await.expect("begin");
    // Written before the change: the type is still TEXT.
    let before = tx
        .insert(&flagged("g2"))
        .await
        .expect("insert before the rebuild");
    assert_eq!(before.flag, json!("1"));
    let conn = tx.sqlite().expect("a SQLite transaction");
    sqlx::raw_sql(sqlx::AssertSqlSafe(rebuild("BOOLEAN")))
        .execute(&mut *conn)
        .await
        .expect("rebuild the table in the transaction");
    let after = tx
        .insert(&flagged("g3"))
        .await
        .expect("insert after the rebuild");
    tx.commit().await.expect("commit");
    assert_eq!(after.flag, json!(true));
    assert_eq!(event_flag(&pool, "g3").await, json!(true));
}

/// How many outbox rows name this record.
async fn events_of(pool: &sqlx::SqlitePool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM realtime_outbox WHERE record_key = ?")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("count the event rows")
}

// The store skips its capture check while its cache says no trigger heeds the mute; a
// trigger installed since must still be muted, or a store write would be logged twice.
#[tokio::test]
async fn a_capture_trigger_installed_since_the_last_transaction_is_muted() {
    let (store, pool) = setup().await;
    insert_true(&store, "g1").await;
    insert_true(&store, "g2").await;
    store
        .install_capture::<Gadget>()
        .await
        .expect("install capture");

    insert_true(&store, "g3").await;
    let mut tx = store.begin().await.expect("begin");
    tx.delete::<Gadget>("g1").await.expect("delete");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    tx.update(&Gadget {
        id: "g2".to_owned(),
        flag: json!("changed"),
    })
    .await
    .expect("update");
    tx.commit().await.expect("commit");

    assert_eq!(events_of(&pool, "g3").await, 1, "one event for the insert");
    assert_eq!(
        events_of(&pool, "g1").await,
        2,
        "insert and delete, once each"
    );
    assert_eq!(
        events_of(&pool, "g2").await,
        2,
        "insert and update, once each"
    );
    // Capture itself still works for plain SQL.
    sqlx::query("INSERT INTO gadgets (id, flag) VALUES ('g4', 'plain')")
        .execute(&pool)
        .await
        .expect("plain insert");
    assert_eq!(
        events_of(&pool, "g4").await,
        1,
        "the plain write is captured"
    );
}

// The app's own SQL carries no guard: when a capture trigger appeared since the cache
// was filled, that SQL ran unmuted, and the commit refuses rather than log it twice.
#[tokio::test]
async fn own_sql_under_a_capture_trigger_the_store_did_not_know_is_not_committed() {
    let (store, pool) = trigger_unknown_to_the_store().await;

    let refused = own_insert_then_commit(&store)
        .await
        .expect_err("the commit must refuse");
    assert!(matches!(refused, StoreError::CaptureAppeared), "{refused}");
    assert_eq!(events_of(&pool, "g9").await, 0, "nothing was committed");

    // Run again, the transaction is muted from its start.
    own_insert_then_commit(&store).await.expect("commit");
    assert_eq!(
        events_of(&pool, "g9").await,
        0,
        "muted: the app records its own SQL"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM gadgets WHERE id = 'g9'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 1);
}

/// A store whose cache says no trigger heeds the mute, and a capture trigger installed
/// since (on a pooled connection, as another process would).
async fn trigger_unknown_to_the_store() -> (Store, sqlx::SqlitePool) {
    let (store, pool) = setup().await;
    insert_true(&store, "g1").await;
    store
        .install_capture::<Gadget>()
        .await
        .expect("install capture");
    (store, pool)
}

/// A store transaction whose only write is the app's own SQL, committed.
async fn own_insert_then_commit(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.begin().await.expect("begin");
    own_insert(&mut tx, "g9").await;
    tx.commit().await
}

/// The app's own SQL in a store transaction: a gadget inserted without the store.
async fn own_insert(tx: &mut Tx, id: &str) {
    let conn = tx.sqlite().expect("a SQLite transaction");
    sqlx::query("INSERT INTO gadgets (id, flag) VALUES (?, 'own')")
        .bind(id)
        .execute(&mut *conn)
        .await
        .expect("own insert");
}

// The same when a model statement follows the app's SQL: its guard fails, the store
// checks and mutes from then on, but the SQL before it already ran unmuted.
#[tokio::test]
async fn own_sql_before_a_model_statement_that_finds_a_new_trigger_is_not_committed() {
    let (store, pool) = trigger_unknown_to_the_store().await;

    let mut tx = store.begin().await.expect("begin");
    own_insert(&mut tx, "g8").await;
    tx.insert(&flagged("g7")).await.expect("store insert");
    let refused = tx.commit().await.expect_err("the commit must refuse");
    assert!(matches!(refused, StoreError::CaptureAppeared), "{refused}");
    assert_eq!(
        events_of(&pool, "g8").await + events_of(&pool, "g7").await,
        0
    );
}
