//! The reference server captures plain-SQL writes to its demo tables: a row inserted,
//! updated or deleted by another connection (psql, the sqlite3 shell, another service)
//! reaches WebSocket subscribers like a REST write, hidden field excluded. The real
//! binary, on SQLite and Postgres, with a separate sqlx connection doing the SQL.

mod common;

use std::process::Stdio;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::process::Command;

use common::{
    backend_tests,
    binary::{Binary, TempDir},
    db::{Backend, fresh_database_url},
    server::{Client, SECRET, WAIT, token},
};

/// Starts the binary on `database_url` in `dir`.
async fn start(database_url: &str, dir: TempDir) -> Binary {
    let env = [
        ("TIDINGS_DATABASE_URL", database_url),
        ("TIDINGS_JWT_SECRET", SECRET),
    ];
    Binary::start(dir, &env, Stdio::null()).await
}

/// A connection of its own to the server's database, as psql or the sqlite3 shell.
enum Sql {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Sql {
    async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            Self::Sqlite(SqliteConnection::connect(url).await.expect("connect"))
        } else {
            Self::Postgres(PgConnection::connect(url).await.expect("connect"))
        }
    }

    /// Runs `sql`, whose parameters are written `$1`, `$2`... (`?1`... on SQLite).
    async fn run(&mut self, sql: &str, params: &[&str]) {
        match self {
            Self::Sqlite(conn) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.replace('$', "?")));
                for p in params {
                    query = query.bind(*p);
                }
                query.execute(conn).await.expect("raw SQL");
            }
            Self::Postgres(conn) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for p in params {
                    query = query.bind(*p);
                }
                query.execute(conn).await.expect("raw SQL");
            }
        }
    }
}

backend_tests!(
    /// Inserted, updated and deleted with plain SQL, notes and todos arrive as events,
    /// each once, with the changed fields and without the hidden field.
    async fn plain_sql_writes_reach_subscribers_of_the_binary(backend: Backend) {
        let dir = TempDir::new();
        let url = match backend {
            Backend::Sqlite => format!("sqlite:{}", dir.0.join("tidings.db").display()),
            Backend::Postgres => fresh_database_url(backend).await,
        };
        let server = start(&url, dir).await;
        let mut ann = Client::authenticated(&server.ws_url(), &token("ann")).await;
        ann.subscribe("n", "notes:*").await;
        ann.subscribe("t", "todos:*").await;
        let mut sql = Sql::connect(&url).await;

        sql.run(
            "INSERT INTO notes (id, body, owner_id, internal) VALUES ($1, $2, $3, $4)",
            &["n1", "from psql", "ann", "never sent"],
        )
        .await;
        // Another user's note: the owner rule keeps it from ann.
        sql.run(
            "INSERT INTO notes (id, body, owner_id, internal) VALUES ($1, $2, $3, $4)",
            &["n2", "bob's", "bob", "x"],
        )
        .await;
        sql.run(
            "UPDATE notes SET body = $1, internal = $2 WHERE id = $3",
            &["edited", "still secret", "n1"],
        )
        .await;
        sql.run("DELETE FROM notes WHERE id = $1", &["n1"]).await;
        sql.run(
            "INSERT INTO todos (id, title, owner_id, created_at) VALUES ($1, $2, $3, $4)",
            &["t1", "milk", "bob", "2026-11-30T05:00:00Z"],
        )
        .await;

        let events: Vec<Value> = [
            ann.recv_event().await,
            ann.recv_event().await,
            ann.recv_event().await,
            ann.recv_event().await,
        ]
        .into_iter()
        .map(|mut e| {
            let object = e.as_object_mut().unwrap();
            for varying in ["cursor", "ts", "subs", "type"] {
                object.remove(varying);
            }
            e
        })
        .collect();
        let note = |body: &str| json!({"id": "n1", "body": body, "owner_id": "ann"});
        // Writes captured from plain SQL are the app's, not a client's.
        let server = json!({"kind": "server"});
        assert_eq!(
            events,
            [
                json!({"topic": "notes:n1", "collection": "notes", "key": "n1", "action": "create",
                       "record": note("from psql"), "changes": null, "source": server}),
                json!({"topic": "notes:n1", "collection": "notes", "key": "n1", "action": "update",
                       "record": note("edited"), "changes": ["body"], "source": server}),
                json!({"topic": "notes:n1", "collection": "notes", "key": "n1", "action": "delete",
                       "record": note("edited"), "changes": null, "source": server}),
                json!({"topic": "todos:t1", "collection": "todos", "key": "t1", "action": "create",
                       "record": {"id": "t1", "title": "milk", "done": false, "owner_id": "bob",
                                  "created_at": "2026-11-30T05:00:00Z"},
                       "changes": null, "source": server}),
            ]
        );
    }
);

/// Runs the binary with `args` only, nothing inherited.
async fn run(args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .env_clear()
        .output();
    tokio::time::timeout(WAIT, output)
        .await
        .expect("in time")
        .expect("ran")
}

/// `tidings capture` prints the SQL to commit as a migration, and refuses bad input in
/// one line.
#[tokio::test]
async fn the_capture_subcommand_prints_the_sql_or_a_clear_error() {
    for (model, backend, says) in [
        (
            "notes",
            "postgres",
            "CREATE TRIGGER tidings_capture AFTER INSERT OR UPDATE OR DELETE ON \"notes\"",
        ),
        (
            "todos",
            "sqlite",
            "CREATE TRIGGER \"tidings_capture_todos_delete\" AFTER DELETE ON \"todos\"",
        ),
    ] {
        let output = run(&["capture", "--model", model, "--backend", backend]).await;
        let sql = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && sql.contains(says), "{sql}");
        assert!(
            !sql.contains("'internal'"),
            "the hidden field stays out: {sql}"
        );
    }
    for (args, says) in [
        (
            &["capture", "--model", "users", "--backend", "sqlite"][..],
            "unknown model \"users\"",
        ),
        (
            &["capture", "--model", "notes", "--backend", "mysql"][..],
            "unknown backend \"mysql\"",
        ),
        (
            &["capture", "--model", "notes"][..],
            "usage: tidings capture",
        ),
        (&["capture", "--model"][..], "--model needs a value"),
    ] {
        let output = run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("tidings: error: ") && stderr.contains(says),
            "{stderr}"
        );
    }
}
