//! The outbox's cost on write throughput: closed-loop writers inserting into the same
//! table with the same transaction shape (begin, one insert, commit), through the model
//! store (which adds the event row in the transaction) or as plain sqlx without it.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

// What `Store::begin` and `Tx::commit` run to mute capture: the SQLite row is written
// (and deleted before the commit) only if a trigger heeds it.
use tidings::__private::capture_mute::{
    POSTGRES_BEGIN as POSTGRES_MUTED_BEGIN, SQLITE_UNMUTE, mute_sqlite,
};
use tidings::__private::{
    bind_event_row, insert_event_row_sqlite, model_insert_event, postgres_write_with_event,
};
use tidings::{Db, demo::Todo};
use tokio::task::JoinSet;

use super::node::Node;

/// Makes every row's id unique across phases and rounds.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

const SQLITE_INSERT: &str =
    "INSERT INTO todos (id, title, done, owner_id, created_at) VALUES (?, ?, ?, ?, ?)";
const POSTGRES_INSERT: &str =
    "INSERT INTO todos (id, title, done, owner_id, created_at) VALUES ($1, $2, $3, $4, $5)";
/// The same insert as the write of the store's statement shape on Postgres, which
/// writes the event row in the same statement: its own parameters follow the event's.
const POSTGRES_INSERT_WITH_EVENT: &str = "INSERT INTO todos AS tidings_row \
     (id, title, done, owner_id, created_at) VALUES ($13, $14, $15, $16, $17)";

/// How a phase writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `Store::begin`, `Tx::insert`, `Tx::commit`: the row and its event row.
    Outbox,
    /// The same insert with sqlx in a transaction begun the way the store begins its
    /// own (`BEGIN IMMEDIATE` on SQLite), no event row.
    Plain,
    /// `Plain` plus the statements with which a store transaction mutes capture
    /// triggers (SQLite: one round trip at the start that writes a row, deleted again
    /// before the commit, only if a capture trigger exists, which in this bench none
    /// does, and reads the schema version; Postgres: a `SET LOCAL` sent with `BEGIN`).
    /// On SQLite the store now makes that check only when its cache cannot vouch for
    /// the schema (the first transaction, or after a schema change), so in this bench
    /// it pays it once: this variant measures what the check would cost every time.
    PlainMuted,
    /// `PlainMuted` plus the event row, written the way the store writes it (on SQLite
    /// with the store's own statement after the insert, on Postgres in the insert's
    /// statement, as the store's data-modifying CTE does): every
    /// statement the store sends, without its work in between (reading the row back,
    /// building the event) and without waking the relay, which finds these rows at its
    /// next poll, many at a time.
    PlainMutedRow,
}

impl Variant {
    pub const ALL: [Self; 4] = [
        Self::Outbox,
        Self::Plain,
        Self::PlainMuted,
        Self::PlainMutedRow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Outbox => "outbox",
            Self::Plain => "plain",
            Self::PlainMuted => "plain+mute",
            Self::PlainMutedRow => "plain+mute+row",
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    pub variant: Variant,
    pub writers: usize,
    pub round: usize,
    pub writes: u64,
    pub errors: u64,
    pub secs: f64,
}

impl Phase {
    pub fn per_sec(&self) -> f64 {
        self.writes as f64 / self.secs
    }
}

/// `writers` tasks write back to back for `secs`; the committed writes are counted.
pub async fn phase(
    node: &Node,
    variant: Variant,
    writers: usize,
    round: usize,
    secs: f64,
) -> Phase {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        let realtime = node.realtime.clone();
        tasks.spawn(async move {
            let (mut writes, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let todo = todo();
                let ok = match variant {
                    Variant::Outbox => outbox_write(&realtime.store(), &todo).await,
                    Variant::Plain | Variant::PlainMuted | Variant::PlainMutedRow => {
                        plain_write(realtime.db(), &todo, variant).await
                    }
                };
                if ok {
                    writes += 1;
                } else {
                    errors += 1;
                }
            }
            (writes, errors)
        });
    }
    let (mut writes, mut errors) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (w, e) = done.expect("writer task");
        writes += w;
        errors += e;
    }
    // The last writes may end a little after the deadline: divide by the real time.
    let secs = started.elapsed().as_secs_f64();
    Phase {
        variant,
        writers,
        round,
        writes,
        errors,
        secs,
    }
}

fn todo() -> Todo {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    Todo {
        id: format!("cost-{n}"),
        title: format!("cost row {n}"),
        done: false,
        owner_id: "write-path-writer".to_owned(),
        created_at: "2026-11-30T00:00:00Z".to_owned(),
    }
}

async fn outbox_write(store: &tidings::model::Store, todo: &Todo) -> bool {
    let result = async {
        let mut tx = store.begin().await?;
        tx.insert(todo).await?;
        tx.commit().await
    }
    .await;
    report_error(result)
}

async fn plain_write(db: &Db, todo: &Todo, variant: Variant) -> bool {
    let muted = variant != Variant::Plain;
    // The event the store would write for this insert, built by the store's own code.
    let event = (variant == Variant::PlainMutedRow)
        .then(|| model_insert_event(todo).expect("a todo's event"));
    let result = match db {
        Db::Sqlite(pool) => {
            async {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let wrote_mute = muted && mute_sqlite(&mut tx).await?.wrote;
                sqlx::query(SQLITE_INSERT)
                    .bind(&todo.id)
                    .bind(&todo.title)
                    .bind(todo.done)
                    .bind(&todo.owner_id)
                    .bind(&todo.created_at)
                    .execute(&mut *tx)
                    .await?;
                if let Some(event) = &event {
                    insert_event_row_sqlite(&mut tx, event).await?;
                }
                if wrote_mute {
                    sqlx::query(SQLITE_UNMUTE).execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            .await
        }
        Db::Postgres(pool) => {
            async {
                let mut tx = if muted {
                    pool.begin_with(POSTGRES_MUTED_BEGIN).await?
                } else {
                    pool.begin().await?
                };
                // With the event row, the statement the store sends: one for both rows.
                let query = match &event {
                    Some(event) => bind_event_row(
                        sqlx::query(sqlx::AssertSqlSafe(postgres_write_with_event(
                            POSTGRES_INSERT_WITH_EVENT,
                        ))),
                        event,
                    ),
                    None => sqlx::query(POSTGRES_INSERT),
                };
                query
                    .bind(&todo.id)
                    .bind(&todo.title)
                    .bind(todo.done)
                    .bind(&todo.owner_id)
                    .bind(&todo.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await
        }
    };
    report_error(result)
}

/// Whether the write committed; the first few failures are printed, since a phase
/// that mostly fails measures nothing.
fn report_error<E: std::fmt::Display>(result: Result<(), E>) -> bool {
    static PRINTED: AtomicU64 = AtomicU64::new(0);
    match result {
        Ok(()) => true,
        Err(e) => {
            if PRINTED.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("write_path: write failed: {e}");
            }
            false
        }
    }
}
