//! The reference server's demo app, built only on the public library API: `todos` and
//! `notes` over REST (protocol.md section 9), demo token minting, the demo pages (the
//! Datastar one with its renderer, snapshot and write actions), health and metrics
//! endpoints.

mod api;
mod capture;
mod datastar_actions;
pub mod datastar_page;
pub mod datastar_todos;
mod models;
mod pages;
mod token;

use std::time::Duration;

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use sqlx::migrate::Migrator;

pub use capture::{MODELS, capture_sql};
pub use models::{Note, Todo};

use crate::{
    Realtime, RealtimeBuilder,
    db::{Db, DbError, tolerate_other_migrations},
    rules::{Rule, Rules},
};

/// Datastar 1.0 browser bundle used by the `/datastar` page unless configured.
pub const DEFAULT_DATASTAR_URL: &str =
    "https://cdn.jsdelivr.net/gh/starfederation/datastar@v1.0.2/bundles/datastar.js";

static SQLITE_DEMO: Migrator = sqlx::migrate!("./migrations/demo/sqlite");
static POSTGRES_DEMO: Migrator = sqlx::migrate!("./migrations/demo/postgres");

/// Why the demo's tables could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Migrating failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Installing capture failed.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
}

/// Creates the demo tables and installs capture on them, so that rows written with
/// plain SQL (psql, the sqlite3 shell) reach subscribers like REST writes.
pub async fn migrate(db: &Db) -> Result<(), SetupError> {
    match db {
        Db::Sqlite(pool) => tolerate_other_migrations(&SQLITE_DEMO).run(pool).await,
        Db::Postgres(pool) => tolerate_other_migrations(&POSTGRES_DEMO).run(pool).await,
    }
    .map_err(DbError::from)?;
    // The triggers write to the log and read its capture table: those come first.
    db.migrate().await?;
    capture::install(db).await?;
    Ok(())
}

/// The demo's rules: todos for every authenticated user, notes for their owner only,
/// and a `chat` collection any authenticated user may publish to, whose events say
/// who sent them (`source.user_id`).
pub fn rules() -> Rules {
    Rules::new()
        .collection("todos", Rule::Authenticated, Rule::Authenticated)
        .collection("notes", Rule::Owner("owner_id".into()), Rule::Deny)
        .hidden("notes", <Note as crate::model::Model>::hidden_fields())
        .collection("chat", Rule::Authenticated, Rule::Authenticated)
        .show_publisher("chat")
}

/// Everything the demo registers on the gateway: its rules, the `todos` renderer and
/// the snapshot of the Datastar page. The reference server and the tests both build
/// through this, so they run the same demo.
pub fn configure(builder: RealtimeBuilder) -> RealtimeBuilder {
    builder
        .rules(rules())
        .datastar_renderer_per_view(
            "todos",
            datastar_todos::todos_view_key(),
            datastar_todos::todos_renderer(),
        )
        .datastar_snapshot(datastar_todos::todos_snapshot)
}

/// The SSE cookie the reference server uses in demo mode when none is configured.
pub const DEMO_COOKIE: &str = "tidings_token";

/// How long `/readyz` waits for the database unless configured.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// What the demo serves besides the API.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The HS256 secret to mint demo tokens with (`POST /demo/token`); `None` turns
    /// minting off. Default: none.
    pub mint_secret: Option<String>,
    /// Where the Datastar page loads Datastar's browser bundle from. Default: empty.
    pub datastar_url: String,
    /// How long `/readyz` waits for the database to answer before it reports it
    /// down (503). Default: [`DEFAULT_READINESS_TIMEOUT`], 2 s.
    pub readiness_timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            mint_secret: None,
            datastar_url: String::new(),
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
        }
    }
}

/// A random 256-bit secret, hex encoded.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
pub(crate) struct DemoState {
    realtime: Realtime,
    options: DemoOptions,
}

/// The demo routes: `/api/...`, `/demo/token`, `/`, `/datastar`, the Datastar page's
/// actions (`/demo/datastar/todos[/{id}]`), `/demo/datastar/celebrate`, `/healthz`,
/// `/readyz`, `/metrics`.
pub fn router(realtime: &Realtime, options: DemoOptions) -> Router {
    let state = DemoState {
        realtime: realtime.clone(),
        options,
    };
    Router::new()
        .route("/api/{collection}", get(api::list).post(api::create))
        .route(
            "/api/{collection}/{id}",
            get(api::read).patch(api::update).delete(api::delete),
        )
        .route("/demo/token", post(token::mint))
        .route("/", get(pages::index))
        .route("/datastar", get(datastar_page::show))
        .route(datastar_actions::TODOS_PATH, post(datastar_actions::add))
        .route(
            &format!("{}/{{id}}", datastar_actions::TODOS_PATH),
            patch(datastar_actions::change).delete(datastar_actions::delete),
        )
        .route("/demo/datastar/celebrate", post(datastar_page::celebrate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while the node can serve from its log, that is while the database answers
/// within `readiness_timeout`, whatever the broker's state (a broker failure only
/// costs latency); 503 otherwise. The JSON body reports both, e.g.
/// `{"ready":true,"database":"up","broker":{"kind":"redis","state":"down",
/// "since_ms":1700000000000,"reconnects":3,"recovered_by_poll":12}}`.
async fn ready(State(state): State<DemoState>) -> Response {
    let ping = async {
        match state.realtime.db() {
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
        }
    };
    let database_up = tokio::time::timeout(state.options.readiness_timeout, ping)
        .await
        .unwrap_or(false);
    let broker = state.realtime.broker_status();
    let since_ms = broker
        .since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let body = serde_json::json!({
        "ready": database_up,
        "database": if database_up { "up" } else { "down" },
        "broker": {
            "kind": broker.kind,
            "state": broker.state.as_str(),
            "since_ms": since_ms,
            "reconnects": broker.reconnects,
            "recovered_by_poll": broker.recovered_by_poll,
        },
    });
    let status = if database_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<DemoState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.realtime.metrics().render(),
    )
        .into_response()
}
