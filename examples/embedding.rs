//! The README's embedding example, compiled by `cargo test` so it cannot rot.
//! Run it with `JWT_SECRET=<32+ bytes> cargo run --example embedding`.

use tidings::{Broadcast, Config, Db, Model, Realtime, Rule, Rules, Target};

#[derive(serde::Serialize, serde::Deserialize, Model)]
#[tidings(collection = "todos")]
struct Todo {
    id: String,
    title: String,
    done: bool,
    #[tidings(rule)]
    owner_id: String,
}

async fn run(my_routes: axum::Router) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.jwt.secret = Some(std::env::var("JWT_SECRET")?);
    let db = Db::connect("sqlite:app.db").await?;
    if let Db::Sqlite(pool) = &db {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS todos \
             (id TEXT PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN NOT NULL, owner_id TEXT NOT NULL)",
        )
        .execute(pool)
        .await?;
    }
    let realtime = Realtime::builder(config, db)
        .rules(Rules::new().collection("todos", Rule::Authenticated, Rule::Deny))
        .build()
        .await?;
    let mut tx = realtime.store().begin().await?; // write + event, one transaction
    tx.insert(&Todo {
        id: uuid::Uuid::new_v4().to_string(),
        title: "milk".into(),
        done: false,
        owner_id: "ann".into(),
    })
    .await?;
    tx.commit().await?; // subscribers of todos:* get "create"
    realtime
        .broadcast(Broadcast::new(
            Target::Collection("todos".into()),
            "celebrate",
            serde_json::json!({}),
        ))
        .await?;
    let app = my_routes.merge(realtime.router()); // /realtime/subscribe, /realtime/client.js, ...
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    // Like axum::serve, plus header-read and idle timeouts, per-address limits and a
    // deadline on every write (docs/security.md).
    realtime.serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(axum::Router::new()).await
}
