//! The write path (issue 12, goal 4): a model write -> its event on a subscriber's
//! socket, and what the outbox row costs the write's throughput.
//!
//! Run with `cargo bench --bench write_path`. Per database (a SQLite file in a temp
//! dir, and a fresh schema on `DATABASE_URL`'s Postgres), one in-process gateway (the
//! library with the demo's rules, its own routes on 127.0.0.1:0) and two measurements:
//!
//! * latency: per rate, model writes (`Store::begin`, `Tx::insert` of a `todos` row,
//!   `Tx::commit`) due at fixed times (open loop: never waiting for an event), and one
//!   WebSocket subscriber of `todos:*` authenticated with a JWT; per write, the time
//!   from its due time to the subscriber reading its event. p50, p99, max; every event
//!   must arrive;
//! * outbox cost: closed-loop writers inserting into the same table with the same
//!   transaction shape, through the store (row plus event row) or with plain sqlx (row
//!   only), the variants alternating over rounds; cost = 1 - store / plain of the
//!   median writes per second. A third variant, plain sqlx plus the statements with
//!   which the store mutes capture triggers, tells that part of the cost from the
//!   event row's.
//!
//! Settings (environment, all optional): `WRITE_PATH_DATABASES` (`sqlite,postgres`),
//! `WRITE_PATH_RATES` (`100,1000` writes/s), `WRITE_PATH_SECS` (10, measured per
//! rate), `WRITE_PATH_WARMUP_SECS` (1), `WRITE_PATH_DRAIN_SECS` (10, how long missing
//! events are waited for), `WRITE_PATH_WRITERS` (`1,4`), `WRITE_PATH_COST_SECS` (2,
//! per phase), `WRITE_PATH_ROUNDS` (3), `WRITE_PATH_RELAY_LINGER_MS` (the node's
//! `log.relay_linger`; the library's default otherwise), `WRITE_PATH_JSON` (append one
//! JSON line per figure to this file), `DATABASE_URL` (the tests' default Postgres
//! otherwise).
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a tiny smoke version.
//! What is measured and the figures: `docs/benchmarks.md`.

#[path = "../tests/common/mod.rs"]
mod common;

// Shared with the fan-out bench rather than written twice: exact percentiles over
// kept samples, and the machine and load lines of the summary.
#[allow(dead_code, unreachable_pub)]
#[path = "fanout/latency.rs"]
mod fanout_latency;
#[allow(dead_code, unreachable_pub)]
#[path = "fanout/procfs.rs"]
mod fanout_procfs;

// A binary: `pub` here means "for the other files of this bench", not an API.
#[allow(unreachable_pub)]
mod write_path {
    pub mod cost;
    pub mod latency;
    pub mod node;
    pub mod report;
    pub mod settings;
}

use std::time::Instant;

use write_path::{
    cost::{self, Variant},
    latency,
    node::Node,
    report::{self, CostFigure, LatencyFigure},
    settings::{Database, Settings},
};

#[tokio::main]
async fn main() {
    let settings = Settings::from_env(std::env::args().any(|a| a == "--bench"));
    eprintln!("write_path: {settings:?}");
    let started = Instant::now();
    let load_before = fanout_procfs::loadavg();
    let (mut latencies, mut costs) = (Vec::new(), Vec::new());
    for &database in &settings.databases {
        let node = Node::start(database, settings.relay_linger).await;
        for &rate in &settings.rates {
            eprintln!("write_path: {} latency at {rate} writes/s", database.name());
            let point = latency::run(&node, rate, &settings).await;
            latencies.push(LatencyFigure::new(database, point));
            node.quiesce().await;
        }
        costs.extend(outbox_cost(&node, database, &settings).await);
        node.stop().await;
    }
    report::summary(
        &settings,
        &latencies,
        &costs,
        &load_before,
        started.elapsed().as_secs_f64(),
    );
    report::json_lines(&settings, &latencies, &costs);
    if !latencies.iter().all(LatencyFigure::complete) {
        std::process::exit(1);
    }
}

/// Every variant at every writer count, round after round. A round runs the variants
/// back to back, in reversed order every other round, so a drift in the machine's load
/// or in the table's size falls on all of them alike.
async fn outbox_cost(node: &Node, database: Database, settings: &Settings) -> Vec<CostFigure> {
    // Unmeasured: warms the pool, the statement caches and the table's first pages.
    for variant in Variant::ALL {
        cost::phase(node, variant, 1, 0, settings.cost_secs.min(0.5)).await;
        node.quiesce().await;
    }
    let mut figures: Vec<CostFigure> = settings
        .writers
        .iter()
        .map(|&writers| CostFigure {
            database,
            writers,
            phases: Vec::new(),
        })
        .collect();
    for round in 1..=settings.rounds {
        for figure in &mut figures {
            let mut order = Variant::ALL;
            if round % 2 == 0 {
                order.reverse();
            }
            for variant in order {
                eprintln!(
                    "write_path: {} cost round {round}, {} writer(s), {}",
                    database.name(),
                    figure.writers,
                    variant.name()
                );
                let phase =
                    cost::phase(node, variant, figure.writers, round, settings.cost_secs).await;
                figure.phases.push(phase);
                // The relay sequences the outbox phase's events; not in the next phase.
                node.quiesce().await;
            }
        }
    }
    figures
}
