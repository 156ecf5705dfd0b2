//! Capture of plain-SQL writes (src/capture): a raw INSERT, UPDATE or DELETE on a
//! captured table emits the very event a store write of the same change emits, once,
//! and only if its transaction commits. Checked through a real gateway and a real
//! WebSocket subscriber, on SQLite and Postgres.

mod common;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings::{Action, Db, LogEntry, Rule, Rules, model::Model};

use common::{
    backend_tests,
    db::Backend,
    server::{Client, Extras, TestServer},
};

/// One field of every type capture supports (docs/models.md), nullable and not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[tidings(collection = "samples")]
struct Sample {
    id: String,
    label: String,
    note: Option<String>,
    n: i64,
    small: Option<i32>,
    ratio: f64,
    maybe_ratio: Option<f64>,
    flag: bool,
    maybe_flag: Option<bool>,
    at: DateTime<Utc>,
    maybe_at: Option<DateTime<Utc>>,
    meta: Value,
    maybe_meta: Option<Value>,
    #[tidings(rule)]
    owner_id: String,
    #[tidings(hidden)]
    secret: Option<String>,
}

const COLUMNS: &str = "id, label, note, n, small, ratio, maybe_ratio, flag, maybe_flag, at, maybe_at, meta, maybe_meta, owner_id, secret";

const SQLITE_TABLE: &str = "CREATE TABLE samples (id TEXT PRIMARY KEY, label TEXT NOT NULL, \
    note TEXT, n INTEGER NOT NULL, small INTEGER, ratio REAL NOT NULL, maybe_ratio REAL, \
    flag BOOLEAN NOT NULL, maybe_flag BOOLEAN, at TEXT NOT NULL, maybe_at TEXT, \
    meta JSON NOT NULL, maybe_meta JSON, owner_id TEXT NOT NULL, secret TEXT)";

const POSTGRES_TABLE: &str = "CREATE TABLE samples (id TEXT PRIMARY KEY, label TEXT NOT NULL, \
    note TEXT, n BIGINT NOT NULL, small INTEGER, ratio DOUBLE PRECISION NOT NULL, \
    maybe_ratio DOUBLE PRECISION, flag BOOLEAN NOT NULL, maybe_flag BOOLEAN, \
    at TIMESTAMPTZ NOT NULL, maybe_at TIMESTAMPTZ, meta JSONB NOT NULL, maybe_meta JSONB, \
    owner_id TEXT NOT NULL, secret TEXT)";

fn ts(text: &str) -> DateTime<Utc> {
    text.parse().expect("timestamp")
}

/// Values that each backend's default JSON spelling gets wrong: whole floats (`3`
/// instead of `3.0`), 17-digit floats, large and tiny exponents, timestamps with 0, 3
/// and 6 fraction digits, JSON of every shape, nulls.
fn cases() -> Vec<(Sample, Sample)> {
    let base = Sample {
        id: "x".into(),
        label: "first".into(),
        note: None,
        n: -42,
        small: Some(7),
        ratio: 1.0,
        maybe_ratio: None,
        flag: true,
        maybe_flag: None,
        at: ts("2026-11-24T16:00:00Z"),
        maybe_at: Some(ts("2026-11-24T16:00:00.250Z")),
        meta: json!({"a": [1, 2.5, "x"], "b": null, "c": {"d": true}}),
        maybe_meta: None,
        owner_id: "ann".into(),
        secret: Some("hidden".into()),
    };
    let edited = Sample {
        label: "second \"quoted\" ünïcode".into(),
        note: Some("now set".into()),
        n: i64::MAX,
        small: None,
        ratio: 0.1 + 0.2,
        maybe_ratio: Some(1e15),
        flag: false,
        maybe_flag: Some(false),
        at: ts("2026-11-24T16:00:00.123456Z"),
        maybe_at: None,
        meta: json!("just a string"),
        maybe_meta: Some(json!([1.0, -0.5])),
        owner_id: "bob".into(),
        secret: None,
        ..base.clone()
    };
    let extremes = Sample {
        id: "y".into(),
        ratio: 1e16,
        maybe_ratio: Some(2.5e-7),
        at: ts("1999-12-31T23:59:59.999Z"),
        meta: json!(12),
        maybe_meta: Some(json!({})),
        maybe_flag: Some(true),
        ..base.clone()
    };
    let extremes_edited = Sample {
        ratio: -3.0,
        maybe_ratio: Some(123456.789),
        n: 0,
        ..extremes.clone()
    };
    // An update that changes nothing: an event with `changes: []`.
    vec![
        (base, edited),
        (extremes.clone(), extremes_edited),
        (extremes.clone(), extremes),
    ]
}

fn start_extras() -> Extras {
    Extras {
        builder: Some(Box::new(|builder| {
            builder.rules(Rules::new().collection("samples", Rule::Authenticated, Rule::Deny))
        })),
        ..Extras::default()
    }
}

/// A gateway with the samples table captured, and a subscriber of `samples:*`.
async fn setup(backend: Backend) -> (TestServer, Client) {
    let server = TestServer::start_with(backend, |_| {}, start_extras()).await;
    match server.realtime.db() {
        Db::Sqlite(pool) => sqlx::query(SQLITE_TABLE).execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::query(POSTGRES_TABLE).execute(pool).await.map(drop),
    }
    .expect("create the samples table");
    server
        .realtime
        .store()
        .install_capture::<Sample>()
        .await
        .expect("install capture");
    let mut client = server.connect("ann").await;
    client.subscribe("s", "samples:*").await;
    (server, client)
}

/// Writes `sample` with a plain INSERT (or, with `update`, a plain UPDATE of every
/// column), binding each value as an application would for that backend.
async fn raw_write(db: &Db, sample: &Sample, update: bool) {
    let names: Vec<&str> = COLUMNS.split(", ").collect();
    let sql = |mark: &dyn Fn(usize) -> String| {
        if update {
            let sets: Vec<String> = names[1..]
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{n} = {}", mark(i + 2)))
                .collect();
            format!(
                "UPDATE samples SET {} WHERE id = {}",
                sets.join(", "),
                mark(1)
            )
        } else {
            let marks: Vec<String> = (1..=names.len()).map(mark).collect();
            format!(
                "INSERT INTO samples ({COLUMNS}) VALUES ({})",
                marks.join(", ")
            )
        }
    };
    let s = sample.clone();
    match db {
        // SQLite has no timestamp or JSON type: the app writes the text serde writes.
        Db::Sqlite(pool) => {
            let text = |t: &DateTime<Utc>| {
                serde_json::to_value(t)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            sqlx::query(sqlx::AssertSqlSafe(sql(&|i| format!("?{i}"))))
                .bind(s.id)
                .bind(s.label)
                .bind(s.note)
                .bind(s.n)
                .bind(s.small)
                .bind(s.ratio)
                .bind(s.maybe_ratio)
                .bind(s.flag)
                .bind(s.maybe_flag)
                .bind(text(&s.at))
                .bind(s.maybe_at.as_ref().map(text))
                .bind(s.meta.to_string())
                .bind(s.maybe_meta.map(|m| m.to_string()))
                .bind(s.owner_id)
                .bind(s.secret)
                .execute(pool)
                .await
                .expect("raw write");
        }
        Db::Postgres(pool) => {
            // A client that lowers float precision (psql users, old drivers) must not
            // change the event: the trigger pins it.
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("SET LOCAL extra_float_digits = 0")
                .execute(&mut *tx)
                .await
                .expect("lower float precision");
            sqlx::query(sqlx::AssertSqlSafe(sql(&|i| format!("${i}"))))
                .bind(s.id)
                .bind(s.label)
                .bind(s.note)
                .bind(s.n)
                .bind(s.small)
                .bind(s.ratio)
                .bind(s.maybe_ratio)
                .bind(s.flag)
                .bind(s.maybe_flag)
                .bind(s.at)
                .bind(s.maybe_at)
                .bind(sqlx::types::Json(s.meta))
                .bind(s.maybe_meta.map(sqlx::types::Json))
                .bind(s.owner_id)
                .bind(s.secret)
                .execute(&mut *tx)
                .await
                .expect("raw write");
            tx.commit().await.expect("commit");
        }
    }
}

async fn raw(db: &Db, sql: &str, id: &str) {
    let sql = sql.replace(
        "$1",
        if matches!(db, Db::Sqlite(_)) {
            "?"
        } else {
            "$1"
        },
    );
    match db {
        Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(pool)
            .await
            .map(drop),
        Db::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(pool)
            .await
            .map(drop),
    }
    .expect("raw statement");
}

/// The next event as the subscriber got it, without what differs between any two
/// events (cursor, timestamp).
async fn next(client: &mut Client) -> Value {
    let mut frame = client.recv_event().await;
    let object = frame.as_object_mut().expect("an object");
    object.remove("cursor");
    object.remove("ts");
    frame
}

/// One JSON column (`acl`, `previous`) of every outbox row, in log order; SQL NULL is
/// `null`. Neither column reaches a client, so they are compared here.
async fn outbox_json(db: &Db, column: &str) -> Vec<Value> {
    let rows: Vec<Option<String>> = match db {
        Db::Sqlite(pool) => {
            // `column` is one of this file's own literals.
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT {column} FROM realtime_outbox ORDER BY seq"
            )))
            .fetch_all(pool)
            .await
        }
        Db::Postgres(pool) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT {column}::text FROM realtime_outbox ORDER BY id"
            )))
            .fetch_all(pool)
            .await
        }
    }
    .expect("read the outbox");
    rows.iter()
        .map(|t| {
            t.as_deref()
                .map_or(Value::Null, |t| serde_json::from_str(t).expect("JSON"))
        })
        .collect()
}

backend_tests!(
    /// For every supported column type: create, update and delete with plain SQL emit
    /// byte for byte the events the store emits for the same change, acl included, and
    /// store writes on the captured table are not emitted twice.
    async fn raw_sql_writes_emit_the_events_of_store_writes(backend: Backend) {
        let (server, mut client) = setup(backend).await;
        let store = server.realtime.store();
        let db = server.realtime.db().clone();
        for (before, after) in cases() {
            let mut tx = store.begin().await.unwrap();
            tx.insert(&before).await.unwrap();
            tx.commit().await.unwrap();
            let mut tx = store.begin().await.unwrap();
            tx.update(&after).await.unwrap();
            tx.commit().await.unwrap();
            let mut tx = store.begin().await.unwrap();
            tx.delete::<Sample>(&before.id).await.unwrap();
            tx.commit().await.unwrap();
            let by_store = [
                next(&mut client).await,
                next(&mut client).await,
                next(&mut client).await,
            ];

            raw_write(&db, &before, false).await;
            raw_write(&db, &after, true).await;
            raw(&db, "DELETE FROM samples WHERE id = $1", &before.id).await;
            let by_sql = [
                next(&mut client).await,
                next(&mut client).await,
                next(&mut client).await,
            ];

            for (store_event, sql_event) in by_store.iter().zip(&by_sql) {
                assert_eq!(
                    serde_json::to_string(store_event).unwrap(),
                    serde_json::to_string(sql_event).unwrap(),
                    "{before:?} -> {after:?}"
                );
                assert!(
                    store_event["record"].get("secret").is_none(),
                    "{store_event}"
                );
            }
            let actions: Vec<&Value> = by_sql.iter().map(|e| &e["action"]).collect();
            assert_eq!(actions, ["create", "update", "delete"]);
        }
        // Exactly the events above were logged (none twice), with equal acls, and
        // equal values before each update (what enter and leave are judged on).
        let acls = outbox_json(&db, "acl").await;
        assert_eq!(acls.len(), cases().len() * 6);
        for chunk in acls.chunks(6) {
            assert_eq!(chunk[..3], chunk[3..], "acl of store vs raw SQL writes");
        }
        let previous = outbox_json(&db, "previous").await;
        for chunk in previous.chunks(6) {
            assert_eq!(
                chunk[..3],
                chunk[3..],
                "previous of store vs raw SQL writes"
            );
            assert!(chunk[1].is_object() && chunk[0].is_null() && chunk[2].is_null());
        }
        assert_eq!(previous[1]["owner_id"], json!("ann"), "{}", previous[1]);
        assert_eq!(acls[1], json!({"owner_id": "bob"}));
        // The delete's acl is the row before it disappeared.
        assert_eq!(acls[2], json!({"owner_id": "bob"}));
    }

    /// A captured write is emitted once, only if its transaction commits; raw SQL
    /// inside a store transaction is the app's to record, as before capture.
    async fn captured_writes_are_emitted_once_and_only_on_commit(backend: Backend) {
        let (server, mut client) = setup(backend).await;
        let db = server.realtime.db().clone();
        let sample = cases()[0].0.clone();
        raw_write(&db, &sample, false).await;
        assert_eq!(next(&mut client).await["action"], "create");

        let update = "UPDATE samples SET label = 'rolled back' WHERE id = $1";
        match &db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(update.replace("$1", "?")))
                    .bind(&sample.id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.rollback().await.unwrap();
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(update)
                    .bind(&sample.id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.rollback().await.unwrap();
            }
        }
        // Two statements in one committed transaction: two events, in order.
        let store = server.realtime.store();
        let mut tx = store.begin().await.unwrap();
        let inner = "UPDATE samples SET label = 'not captured' WHERE id = $1";
        if let Some(conn) = tx.sqlite() {
            sqlx::query(sqlx::AssertSqlSafe(inner.replace("$1", "?")))
                .bind(&sample.id)
                .execute(conn)
                .await
                .unwrap();
        } else if let Some(conn) = tx.postgres() {
            sqlx::query(inner)
                .bind(&sample.id)
                .execute(conn)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        raw(
            &db,
            "UPDATE samples SET label = 'committed' WHERE id = $1",
            &sample.id,
        )
        .await;
        raw(&db, "DELETE FROM samples WHERE id = $1", &sample.id).await;
        // A marker: every event before it has arrived.
        store
            .record(&LogEntry::broadcast("samples", None, "marker", json!({})))
            .await
            .unwrap();

        let update = next(&mut client).await;
        assert_eq!(update["action"], "update", "{update}");
        assert_eq!(update["record"]["label"], "committed");
        assert_eq!(update["changes"], json!(["label"]));
        assert_eq!(next(&mut client).await["action"], "delete");
        let marker = next(&mut client).await;
        assert_eq!(
            (&marker["action"], &marker["event"]),
            (&json!("broadcast"), &json!("marker"))
        );
        let _ = Action::Broadcast;
    }
);
