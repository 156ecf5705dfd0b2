//! A store insert writes its event row in the insert's own statement, built from the
//! record as given (src/model/tx.rs), and rewrites it when the database stored
//! something else. What the database changed on the way in (a generated id, column
//! defaults, a rule field only the table has) must still reach the event, and an
//! insert that fails must leave no event behind. Checked on SQLite and Postgres
//! through a real gateway and a real WebSocket subscriber.

mod common;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings::{Db, Rule, Rules, model::Model};

use common::{
    backend_tests,
    db::Backend,
    server::{Extras, TestServer},
};

/// A record whose id the database assigns, with a status column that has a default
/// and an owner only the table knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ticket {
    id: Option<i64>,
    title: String,
    status: Option<String>,
}

impl Model for Ticket {
    const COLLECTION: &'static str = "tickets";
    fn id(&self) -> String {
        self.id.map(|id| id.to_string()).unwrap_or_default()
    }
    fn rule_fields() -> &'static [&'static str] {
        &["owner_id"]
    }
}

const SQLITE_TABLE: &str = "CREATE TABLE tickets (id INTEGER PRIMARY KEY, \
    title TEXT NOT NULL UNIQUE, status TEXT NOT NULL DEFAULT 'open', \
    owner_id TEXT NOT NULL DEFAULT 'ann')";
const POSTGRES_TABLE: &str = "CREATE TABLE tickets (id BIGSERIAL PRIMARY KEY, \
    title TEXT NOT NULL UNIQUE, status TEXT NOT NULL DEFAULT 'open', \
    owner_id TEXT NOT NULL DEFAULT 'ann')";

/// A gateway where only a ticket's owner reads it, with the tickets table.
async fn setup(backend: Backend) -> TestServer {
    let extras = Extras {
        builder: Some(Box::new(|builder| {
            builder.rules(Rules::new().collection(
                "tickets",
                Rule::Owner("owner_id".to_owned()),
                Rule::Deny,
            ))
        })),
        ..Extras::default()
    };
    let server = TestServer::start_with(backend, |_| {}, extras).await;
    match server.realtime.db() {
        Db::Sqlite(pool) => sqlx::query(SQLITE_TABLE).execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::query(POSTGRES_TABLE).execute(pool).await.map(drop),
    }
    .expect("create the tickets table");
    server
}

fn ticket(title: &str, status: Option<&str>) -> Ticket {
    Ticket {
        id: None,
        title: title.to_owned(),
        status: status.map(str::to_owned),
    }
}

/// `(record_key, acl)` of every outbox row, in log order.
async fn outbox(db: &Db) -> Vec<(Option<String>, Value)> {
    let rows: Vec<(Option<String>, String)> = match db {
        Db::Sqlite(pool) => {
            sqlx::query_as("SELECT record_key, acl FROM realtime_outbox ORDER BY seq")
                .fetch_all(pool)
                .await
        }
        Db::Postgres(pool) => {
            sqlx::query_as("SELECT record_key, acl::text FROM realtime_outbox ORDER BY id")
                .fetch_all(pool)
                .await
        }
    }
    .expect("read the outbox");
    rows.into_iter()
        .map(|(key, acl)| (key, serde_json::from_str(&acl).expect("acl is JSON")))
        .collect()
}

backend_tests!(
    /// The event says what was stored: the generated id as its key, the default, and
    /// the table's owner in its acl, without which the owner could not read it.
    async fn an_insert_the_database_changes_is_delivered_as_stored(backend: Backend) {
        let server = setup(backend).await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("s", "tickets:*").await;
        let store = server.realtime.store();

        let mut tx = store.begin().await.unwrap();
        let first = tx.insert(&ticket("first", None)).await.unwrap();
        let second = tx.insert(&ticket("second", Some("closed"))).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(first.status.as_deref(), Some("open"), "{backend:?}");

        for (stored, expected) in [(first, "open"), (second, "closed")] {
            let event = ann.recv_event().await;
            let id = stored.id.expect("a generated id");
            assert_eq!(
                event["topic"],
                format!("tickets:{id}"),
                "{backend:?}: {event}"
            );
            assert_eq!(event["key"], id.to_string(), "{event}");
            assert_eq!(
                event["record"],
                json!({"id": id, "status": expected, "title": stored.title}),
                "{backend:?}"
            );
        }
        let rows = outbox(server.realtime.db()).await;
        assert_eq!(
            rows.len(),
            2,
            "{backend:?}: one event row per insert: {rows:?}"
        );
        for (key, acl) in rows {
            assert!(key.is_some_and(|k| !k.is_empty()), "{backend:?}");
            assert_eq!(acl, json!({"owner_id": "ann"}), "{backend:?}");
        }
    }

    /// An insert the database refuses writes no event row: the event's statement is
    /// the insert's own. SQLite lets the transaction go on after a failed statement,
    /// so its later insert commits with exactly its own event.
    async fn a_refused_insert_writes_no_event(backend: Backend) {
        let server = setup(backend).await;
        let store = server.realtime.store();
        let mut tx = store.begin().await.unwrap();
        tx.insert(&ticket("taken", None)).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.begin().await.unwrap();
        let refused = tx.insert(&ticket("taken", None)).await;
        assert!(refused.is_err(), "{backend:?}: the title is unique");
        let expected = match backend {
            Backend::Sqlite => {
                tx.insert(&ticket("later", None)).await.unwrap();
                tx.commit().await.unwrap();
                2
            }
            // Postgres aborted the transaction: its commit rolls back.
            Backend::Postgres => {
                let _ = tx.commit().await;
                1
            }
        };
        let rows = outbox(server.realtime.db()).await;
        assert_eq!(rows.len(), expected, "{backend:?}: {rows:?}");
        let ids: Vec<i64> = match server.realtime.db() {
            Db::Sqlite(pool) => {
                sqlx::query_scalar("SELECT id FROM tickets ORDER BY id")
                    .fetch_all(pool)
                    .await
            }
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT id FROM tickets ORDER BY id")
                    .fetch_all(pool)
                    .await
            }
        }
        .expect("read the tickets");
        let keys: Vec<String> = rows.into_iter().filter_map(|(key, _)| key).collect();
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(keys, ids, "{backend:?}: one event per stored ticket");
    }
);

/// On Postgres an update's event is predicted from the record overlaid on the locked
/// row; a trigger that changes the row as it is written makes the stored row differ,
/// and the event must say what was stored: the trigger's value, its field among the
/// changes, and its value before.
#[tokio::test]
async fn postgres_an_update_a_trigger_changes_is_delivered_as_stored() {
    let server = setup(Backend::Postgres).await;
    let Db::Postgres(pool) = server.realtime.db() else {
        panic!("a Postgres server");
    };
    sqlx::raw_sql(
        "CREATE FUNCTION tickets_edited() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.status := 'edited'; RETURN NEW; END; $$;
         CREATE TRIGGER tickets_edited BEFORE UPDATE ON tickets
             FOR EACH ROW EXECUTE FUNCTION tickets_edited();",
    )
    .execute(pool)
    .await
    .expect("create the trigger");
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "tickets:*").await;
    let store = server.realtime.store();
    let mut tx = store.begin().await.unwrap();
    let created = tx.insert(&ticket("first", None)).await.unwrap();
    let renamed = Ticket {
        title: "renamed".to_owned(),
        ..created.clone()
    };
    let (stored, changes) = tx.update(&renamed).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stored.status.as_deref(), Some("edited"));
    assert_eq!(changes, ["status", "title"]);

    assert_eq!(ann.recv_event().await["action"], "create");
    let event = ann.recv_event().await;
    assert_eq!(event["action"], "update", "{event}");
    assert_eq!(event["record"]["status"], "edited", "{event}");
    assert_eq!(event["changes"], json!(["status", "title"]), "{event}");
    let previous: String =
        sqlx::query_scalar("SELECT previous::text FROM realtime_outbox WHERE action = 'update'")
            .fetch_one(pool)
            .await
            .expect("read the update's event row");
    let previous: Value = serde_json::from_str(&previous).expect("previous is JSON");
    assert_eq!(previous, json!({"status": "open", "title": "first"}));
}
