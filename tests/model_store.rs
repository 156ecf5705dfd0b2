//! The model store writes each record and its outbox event in one transaction, on both
//! backends. Assertions read `realtime_outbox` directly.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tidings::{
    __private::RelaySignal,
    Action, Db, LogEntry,
    model::{Model, Store, StoreError, public_projection},
};

use common::{
    backend_tests,
    db::{Backend, fresh_db},
};

/// How long a test waits for something that should happen at once.
const PROMPTLY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    id: String,
    body: String,
    owner_id: String,
    internal: Option<String>,
}

impl Model for Note {
    const COLLECTION: &'static str = "notes";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn hidden_fields() -> &'static [&'static str] {
        &["internal"]
    }
    fn rule_fields() -> &'static [&'static str] {
        &["owner_id"]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Todo {
    id: String,
    title: String,
    done: bool,
    owner_id: String,
    created_at: String,
}

impl Model for Todo {
    const COLLECTION: &'static str = "todos";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn rule_fields() -> &'static [&'static str] {
        &["owner_id"]
    }
}

/// Exercises the type mapping: an integer key, a column default, a float, JSON and a
/// timestamp (timestamptz on Postgres).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    id: i64,
    hits: Option<i64>,
    ratio: Option<f64>,
    meta: Option<Value>,
    at: Option<DateTime<Utc>>,
}

impl Model for Counter {
    const COLLECTION: &'static str = "counters";
    fn id(&self) -> String {
        self.id.to_string()
    }
}

const SQLITE_TABLES: &str = "
    CREATE TABLE todos (id TEXT PRIMARY KEY, title TEXT NOT NULL,
        done BOOLEAN NOT NULL DEFAULT 0, owner_id TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, owner_id TEXT NOT NULL,
        internal TEXT);
    CREATE TABLE counters (id INTEGER PRIMARY KEY, hits INTEGER DEFAULT 7, ratio REAL,
        meta JSON, at TEXT);
";

const POSTGRES_TABLES: &str = "
    CREATE TABLE todos (id TEXT PRIMARY KEY, title TEXT NOT NULL,
        done BOOLEAN NOT NULL DEFAULT FALSE, owner_id TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, owner_id TEXT NOT NULL,
        internal TEXT);
    CREATE TABLE counters (id BIGINT PRIMARY KEY, hits INTEGER DEFAULT 7,
        ratio DOUBLE PRECISION, meta JSONB, at TIMESTAMPTZ);
";

/// A fresh database with the test tables, a store on it and the store's relay signal.
async fn setup(backend: Backend) -> (Store, RelaySignal) {
    let db = fresh_db(backend).await;
    match &db {
        Db::Sqlite(pool) => sqlx::raw_sql(SQLITE_TABLES).execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::raw_sql(POSTGRES_TABLES).execute(pool).await.map(drop),
    }
    .expect("create test tables");
    let signal = RelaySignal::default();
    (Store::new(db, signal.clone()), signal)
}

/// One `realtime_outbox` row, with its JSON columns both parsed and as raw text.
#[derive(Debug)]
struct OutboxRow {
    collection: String,
    key: Option<String>,
    action: String,
    payload: Value,
    payload_text: String,
    changes: Option<Vec<String>>,
    acl: Map<String, Value>,
    except: Option<String>,
    previous: Option<Map<String, Value>>,
}

type RawOutbox = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

async fn outbox(store: &Store) -> Vec<OutboxRow> {
    let rows: Vec<RawOutbox> =
        match store.db() {
            Db::Sqlite(pool) => sqlx::query_as(
                "SELECT collection, record_key, action, payload, changes, acl, except_connection, \
                 previous FROM realtime_outbox ORDER BY seq",
            )
            .fetch_all(pool)
            .await,
            Db::Postgres(pool) => sqlx::query_as(
                "SELECT collection, record_key, action, payload::text, changes::text, acl::text, \
                 except_connection, previous::text FROM realtime_outbox ORDER BY id",
            )
            .fetch_all(pool)
            .await,
        }
        .expect("read outbox");
    rows.into_iter()
        .map(
            |(collection, key, action, payload, changes, acl, except, previous)| OutboxRow {
                collection,
                key,
                action,
                payload: serde_json::from_str(&payload).expect("payload is JSON"),
                payload_text: payload,
                changes: changes.map(|c| serde_json::from_str(&c).expect("changes is JSON")),
                acl: serde_json::from_str(&acl).expect("acl is JSON"),
                except,
                previous: previous.map(|p| serde_json::from_str(&p).expect("previous is JSON")),
            },
        )
        .collect()
}

async fn count(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match store.db() {
        Db::Sqlite(pool) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
        }
        Db::Postgres(pool) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
        }
    }
    .expect("count rows")
}

/// The stored value of the hidden column, read around the model layer.
async fn stored_internal(store: &Store, id: &str) -> Option<String> {
    let sql = "SELECT internal FROM notes WHERE id = ";
    match store.db() {
        Db::Sqlite(pool) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql}?")))
                .bind(id)
                .fetch_one(pool)
                .await
        }
        Db::Postgres(pool) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql}$1")))
                .bind(id)
                .fetch_one(pool)
                .await
        }
    }
    .expect("read hidden column")
}

fn note(id: &str, body: &str) -> Note {
    Note {
        id: id.to_owned(),
        body: body.to_owned(),
        owner_id: "u1".to_owned(),
        internal: Some("top-secret".to_owned()),
    }
}

fn todo(id: &str, done: bool) -> Todo {
    Todo {
        id: id.to_owned(),
        title: "write tests".to_owned(),
        done,
        owner_id: "u2".to_owned(),
        created_at: "2026-11-24T16:00:00.000Z".to_owned(),
    }
}

/// Inserts and commits fixtures, then forgets the wake-up that commit caused.
async fn seed<M: Model>(store: &Store, signal: &RelaySignal, records: &[M]) {
    let mut tx = store.begin().await.expect("begin");
    for record in records {
        tx.insert(record).await.expect("seed insert");
    }
    tx.commit().await.expect("seed commit");
    tokio::time::timeout(PROMPTLY, signal.woken())
        .await
        .expect("seed commit wakes the relay");
}

fn assert_no_hidden(row: &OutboxRow) {
    assert!(row.payload.get("internal").is_none(), "{row:?}");
    assert!(!row.payload_text.contains("internal"), "{row:?}");
    assert!(!row.payload_text.contains("top-secret"), "{row:?}");
}

backend_tests!(
    async fn insert_stores_the_record_and_writes_one_create_event(backend: Backend) {
        let (store, _signal) = setup(backend).await;
        let mut tx = store.begin().await.unwrap();
        let stored = tx.insert(&note("n1", "hello")).await.unwrap();
        assert_eq!(stored, note("n1", "hello"), "{backend:?}");
        tx.commit().await.unwrap();

        let rows = outbox(&store).await;
        assert_eq!(rows.len(), 1, "{backend:?}: {rows:?}");
        let row = &rows[0];
        assert_eq!(row.collection, "notes");
        assert_eq!(row.key.as_deref(), Some("n1"));
        assert_eq!(row.action, "create");
        assert_eq!(
            row.payload,
            json!({"id": "n1", "body": "hello", "owner_id": "u1"})
        );
        assert_eq!(row.changes, None);
        assert_eq!(row.previous, None, "only updates carry previous values");
        assert_eq!(Value::Object(row.acl.clone()), json!({"owner_id": "u1"}));
        assert_eq!(row.except, None);
        assert_no_hidden(row);

        assert_eq!(
            stored_internal(&store, "n1").await.as_deref(),
            Some("top-secret"),
            "{backend:?}: the hidden field is stored"
        );
        assert_eq!(
            store.get::<Note>("n1").await.unwrap(),
            Some(note("n1", "hello"))
        );
    }
);

#[tokio::test]
async fn public_projection_drops_hidden_fields() {
    assert_eq!(
        public_projection(&note("n1", "hi")),
        json!({"id": "n1", "body": "hi", "owner_id": "u1"})
    );
}

backend_tests!(
    async fn column_types_and_defaults_round_trip(backend: Backend) {
        let (store, _signal) = setup(backend).await;
        let at: DateTime<Utc> = "2026-11-24T16:00:00.250Z".parse().unwrap();
        let counter = Counter {
            id: 42,
            hits: None,
            ratio: Some(0.5),
            meta: Some(json!({"tags": ["a", "b"], "n": 1})),
            at: Some(at),
        };
        let mut tx = store.begin().await.unwrap();
        let stored = tx.insert(&counter).await.unwrap();
        assert_eq!(
            stored,
            Counter {
                hits: Some(7),
                ..counter.clone()
            },
            "{backend:?}: the column default is returned"
        );
        let todo_stored = tx.insert(&todo("t1", true)).await.unwrap();
        assert_eq!(todo_stored, todo("t1", true), "{backend:?}: booleans");
        // The timestamp comes back in the database's spelling; unchanged all the same.
        let (_, changes) = tx.update(&stored).await.unwrap();
        assert_eq!(changes, Vec::<String>::new(), "{backend:?}");
        tx.commit().await.unwrap();

        assert_eq!(
            store.get::<Counter>("42").await.unwrap(),
            Some(stored.clone())
        );
        let payload = &outbox(&store).await[0].payload;
        assert_eq!(
            payload["hits"],
            json!(7),
            "{backend:?}: defaults reach the event"
        );
        assert_eq!(payload["meta"], json!({"tags": ["a", "b"], "n": 1}));
    }
);

backend_tests!(
    async fn list_returns_records_in_id_order_up_to_the_limit(backend: Backend) {
        let (store, signal) = setup(backend).await;
        seed(
            &store,
            &signal,
            &[note("b", "2"), note("c", "3"), note("a", "1")],
        )
        .await;
        let ids: Vec<String> = store
            .list::<Note>(2)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, ["a", "b"], "{backend:?}");
        assert!(store.get::<Note>("zzz").await.unwrap().is_none());
    }
);

backend_tests!(
    async fn update_writes_one_event_listing_changed_public_fields(backend: Backend) {
        let (store, signal) = setup(backend).await;
        seed(&store, &signal, &[note("n1", "hello")]).await;
        seed(&store, &signal, &[todo("t1", false)]).await;
        let before = outbox(&store).await.len();

        let mut tx = store.begin().await.unwrap();
        let edited = Note {
            body: "edited".to_owned(),
            internal: Some("top-secret v2".to_owned()),
            ..note("n1", "")
        };
        let (stored, changes) = tx.update(&edited).await.unwrap();
        assert_eq!(stored, edited, "{backend:?}");
        assert_eq!(
            changes,
            ["body"],
            "{backend:?}: hidden fields are not listed"
        );
        let (_, changes) = tx.update(&todo("t1", true)).await.unwrap();
        assert_eq!(changes, ["done"], "{backend:?}");
        tx.commit().await.unwrap();

        let rows = outbox(&store).await;
        assert_eq!(rows.len(), before + 2, "{backend:?}");
        let row = &rows[before];
        assert_eq!(row.action, "update");
        assert_eq!(row.key.as_deref(), Some("n1"));
        assert_eq!(
            row.payload,
            json!({"id": "n1", "body": "edited", "owner_id": "u1"})
        );
        assert_eq!(row.changes.as_deref(), Some(&["body".to_owned()][..]));
        assert_eq!(Value::Object(row.acl.clone()), json!({"owner_id": "u1"}));
        // The values before the update of what it changed: the public `body`, not the
        // hidden `internal`, and no unchanged rule field.
        assert_eq!(
            row.previous.clone().map(Value::Object),
            Some(json!({"body": "hello"})),
            "{backend:?}"
        );
        assert_no_hidden(row);
        assert_eq!(rows[before + 1].payload["done"], json!(true));
        assert_eq!(
            stored_internal(&store, "n1").await.as_deref(),
            Some("top-secret v2")
        );
    }
);

backend_tests!(
    async fn update_without_changes_gives_an_empty_change_list(backend: Backend) {
        let (store, signal) = setup(backend).await;
        seed(&store, &signal, &[note("n1", "hello")]).await;
        let mut tx = store.begin().await.unwrap();
        let (stored, changes) = tx.update(&note("n1", "hello")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(stored, note("n1", "hello"));
        assert!(changes.is_empty(), "{backend:?}: {changes:?}");
        let rows = outbox(&store).await;
        assert_eq!(rows.len(), 2, "{backend:?}");
        assert_eq!(rows[1].action, "update");
        assert_eq!(rows[1].changes, Some(vec![]));
    }
);

backend_tests!(
    async fn delete_emits_the_record_as_it_was(backend: Backend) {
        let (store, signal) = setup(backend).await;
        seed(&store, &signal, &[note("n1", "hello")]).await;
        let mut tx = store.begin().await.unwrap();
        let old = tx.delete::<Note>("n1").await.unwrap();
        assert_eq!(old, note("n1", "hello"), "{backend:?}");
        assert!(tx.get::<Note>("n1").await.unwrap().is_none());
        tx.commit().await.unwrap();

        assert_eq!(count(&store, "notes").await, 0);
        let rows = outbox(&store).await;
        assert_eq!(rows.len(), 2, "{backend:?}");
        let row = &rows[1];
        assert_eq!(row.action, "delete");
        assert_eq!(row.key.as_deref(), Some("n1"));
        assert_eq!(
            row.payload,
            json!({"id": "n1", "body": "hello", "owner_id": "u1"})
        );
        assert_eq!(row.changes, None);
        assert_eq!(Value::Object(row.acl.clone()), json!({"owner_id": "u1"}));
        assert_no_hidden(row);

        // Integer keys are looked up from their text form too.
        seed(
            &store,
            &signal,
            &[Counter {
                id: 5,
                hits: Some(1),
                ratio: None,
                meta: None,
                at: None,
            }],
        )
        .await;
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.delete::<Counter>("5").await.unwrap().hits, Some(1));
        tx.commit().await.unwrap();
    }
);

backend_tests!(
    async fn missing_ids_are_not_found_and_write_nothing(backend: Backend) {
        let (store, _signal) = setup(backend).await;
        let mut tx = store.begin().await.unwrap();
        let err = tx.update(&note("ghost", "boo")).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { collection, id } if collection == "notes" && id == "ghost"),
            "{backend:?}: {err}"
        );
        let err = tx.delete::<Note>("ghost").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { id, .. } if id == "ghost"),
            "{backend:?}: {err}"
        );
        tx.commit().await.unwrap();
        assert_eq!(count(&store, "notes").await, 0);
        assert!(outbox(&store).await.is_empty(), "{backend:?}");
    }
);

backend_tests!(
    async fn rolled_back_or_dropped_transactions_leave_nothing(backend: Backend) {
        let (store, signal) = setup(backend).await;
        let mut tx = store.begin().await.unwrap();
        tx.insert(&note("n1", "hello")).await.unwrap();
        tx.rollback().await.unwrap();

        {
            let mut tx = store.begin().await.unwrap();
            tx.insert(&note("n2", "hello")).await.unwrap();
            // Dropped without commit.
        }

        // The dropped transaction's connection must be usable again (and its write lock
        // released on SQLite) before this one can write.
        let mut tx = store.begin().await.unwrap();
        tx.insert(&todo("t1", false)).await.unwrap();
        tx.rollback().await.unwrap();

        assert_eq!(count(&store, "notes").await, 0, "{backend:?}");
        assert_eq!(count(&store, "todos").await, 0, "{backend:?}");
        assert!(outbox(&store).await.is_empty(), "{backend:?}");
        assert!(
            signal.woken().now_or_never().is_none(),
            "{backend:?}: nothing committed, nothing to wake for"
        );
    }
);

fn own_sql_event(id: &str) -> LogEntry {
    LogEntry {
        collection: "notes".to_owned(),
        key: Some(id.to_owned()),
        action: Action::Create,
        event: None,
        payload: json!({"id": id, "body": "own sql", "owner_id": "u3"}),
        changes: None,
        acl: Map::new(),
        previous: None,
        mutation: None,
        source: Default::default(),
        except: None,
        ts: Utc::now(),
    }
}

backend_tests!(
    async fn recorded_events_are_emitted_only_on_commit(backend: Backend) {
        let (store, signal) = setup(backend).await;
        for commit in [false, true] {
            let mut tx = store.begin().await.unwrap();
            // A write the model layer knows nothing about, on the transaction's connection.
            let own_sql = "INSERT INTO notes (id, body, owner_id) VALUES ('n9', 'own sql', 'u3')";
            if let Some(conn) = tx.sqlite() {
                sqlx::query(own_sql).execute(conn).await.expect("own SQL");
            } else {
                let conn = tx.postgres().expect("the other backend");
                sqlx::query(own_sql).execute(conn).await.expect("own SQL");
            }
            tx.record(&own_sql_event("n9")).await.unwrap();
            assert!(
                outbox(&store).await.is_empty(),
                "{backend:?}: not visible before commit"
            );
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
        }
        tokio::time::timeout(PROMPTLY, signal.woken())
            .await
            .expect("commit wakes the relay");
        let rows = outbox(&store).await;
        assert_eq!(rows.len(), 1, "{backend:?}: only the committed one");
        assert_eq!(rows[0].key.as_deref(), Some("n9"));
        assert_eq!(rows[0].payload["body"], json!("own sql"));
        assert_eq!(count(&store, "notes").await, 1);
    }
);

backend_tests!(
    async fn store_record_writes_directly_and_wakes_the_relay(backend: Backend) {
        let (store, signal) = setup(backend).await;
        let mut event = own_sql_event("n1");
        event.action = Action::Broadcast;
        event.key = None;
        event.event = Some("celebrate".to_owned());
        event.except = Some("conn-7".to_owned());
        store.record(&event).await.unwrap();
        tokio::time::timeout(PROMPTLY, signal.woken())
            .await
            .expect("record wakes the relay");
        let rows = outbox(&store).await;
        assert_eq!(rows.len(), 1, "{backend:?}");
        assert_eq!(rows[0].action, "broadcast");
        assert_eq!(rows[0].key, None);
        assert_eq!(rows[0].except.as_deref(), Some("conn-7"));
    }
);

backend_tests!(
    async fn commit_wakes_the_relay_only_after_writing_events(backend: Backend) {
        let (store, signal) = setup(backend).await;
        let mut tx = store.begin().await.unwrap();
        tx.insert(&note("n1", "hello")).await.unwrap();
        assert!(
            signal.woken().now_or_never().is_none(),
            "{backend:?}: no wake-up before commit"
        );
        tx.commit().await.unwrap();
        tokio::time::timeout(PROMPTLY, signal.woken())
            .await
            .expect("commit wakes the relay");

        let mut tx = store.begin().await.unwrap();
        assert!(tx.get::<Note>("n1").await.unwrap().is_some());
        tx.commit().await.unwrap();
        assert!(
            signal.woken().now_or_never().is_none(),
            "{backend:?}: a read-only transaction does not wake the relay"
        );
    }
);

/// A model whose names would be spliced into SQL unquoted if they were not checked.
#[derive(Debug, Serialize, Deserialize)]
struct Hostile {
    id: String,
    #[serde(rename = "body\"; DROP TABLE notes; --")]
    body: String,
}

impl Model for Hostile {
    const COLLECTION: &'static str = "notes";
    fn id(&self) -> String {
        self.id.clone()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct BadTable {
    id: String,
}

impl Model for BadTable {
    const COLLECTION: &'static str = "bad";
    const TABLE: &'static str = "notes; DROP TABLE notes";
    fn id(&self) -> String {
        self.id.clone()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct BadId {
    id: String,
}

impl Model for BadId {
    const COLLECTION: &'static str = "notes";
    const ID_FIELD: &'static str = "";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// A table that does not exist, and a field the notes table does not have.
#[derive(Debug, Serialize, Deserialize)]
struct Missing {
    id: String,
}

impl Model for Missing {
    const COLLECTION: &'static str = "no_such_table";
    fn id(&self) -> String {
        self.id.clone()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ExtraField {
    id: String,
    body: String,
    owner_id: String,
    colour: String,
}

impl Model for ExtraField {
    const COLLECTION: &'static str = "notes";
    fn id(&self) -> String {
        self.id.clone()
    }
}

backend_tests!(
    async fn bad_names_are_errors_not_panics(backend: Backend) {
        let (store, signal) = setup(backend).await;
        seed(&store, &signal, &[note("n1", "hello")]).await;
        let mut tx = store.begin().await.unwrap();

        let hostile = Hostile {
            id: "h".to_owned(),
            body: "x".to_owned(),
        };
        let err = tx.insert(&hostile).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidIdentifier { kind: "column", name, .. } if name.contains("DROP")),
            "{backend:?}: {err}"
        );
        let err = tx.update(&hostile).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidIdentifier { .. }), "{err}");

        let err = tx.get::<BadTable>("n1").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidIdentifier { kind: "table", .. }),
            "{backend:?}: {err}"
        );
        assert!(store.list::<BadTable>(10).await.is_err());
        assert!(store.get::<BadId>("n1").await.is_err());
        let err = tx.delete::<BadId>("n1").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidIdentifier { kind: "column", .. }),
            "{backend:?}: {err}"
        );
        tx.commit().await.unwrap();

        // Names that are valid but absent are database-level errors, not panics.
        assert!(store.get::<Missing>("x").await.is_err(), "{backend:?}");
        let extra = ExtraField {
            id: "n1".to_owned(),
            body: "b".to_owned(),
            owner_id: "u1".to_owned(),
            colour: "red".to_owned(),
        };
        let mut tx = store.begin().await.unwrap();
        let err = tx.update(&extra).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::UnknownColumn { column, .. } if column == "colour"),
            "{backend:?}: {err}"
        );
        tx.rollback().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert!(tx.insert(&extra).await.is_err(), "{backend:?}");
        tx.rollback().await.unwrap();

        assert_eq!(count(&store, "notes").await, 1, "{backend:?}: table intact");
        assert_eq!(outbox(&store).await.len(), 1, "{backend:?}: only the seed");
    }
);

backend_tests!(
    async fn write_transactions_hold_their_locks_until_commit(backend: Backend) {
        let (store, signal) = setup(backend).await;
        seed(&store, &signal, &[note("n1", "hello")]).await;
        let mut tx = store.begin().await.unwrap();
        if let Db::Sqlite(pool) = store.db() {
            // BEGIN IMMEDIATE takes the write lock before any statement, so a second
            // writer that will not wait is refused rather than deadlocking later.
            let mut other = pool.acquire().await.unwrap().detach();
            sqlx::query("PRAGMA busy_timeout = 0")
                .execute(&mut other)
                .await
                .unwrap();
            let err = sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("locked"), "{err}");
            sqlx::Connection::close(other).await.unwrap();
        }
        // Even an update that changes nothing locks the row it compared against.
        tx.update(&note("n1", "hello")).await.unwrap();
        if let Db::Postgres(pool) = store.db() {
            let err = sqlx::query("SELECT id FROM notes WHERE id = 'n1' FOR UPDATE NOWAIT")
                .execute(pool)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("lock"), "{err}");
        }
        tx.commit().await.unwrap();
    }
);
