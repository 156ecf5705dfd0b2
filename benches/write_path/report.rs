//! What the run prints: the command, settings, machine and load, a latency table and
//! an outbox-cost table; and, when `WRITE_PATH_JSON` names a file, one JSON line per
//! figure appended to it.

use std::io::Write;

use serde_json::{Value, json};

use super::{
    cost::{Phase, Variant},
    latency::Point,
    settings::{Database, Settings},
};
use crate::fanout_procfs as procfs;

/// A latency point, sorted, with what the table and the JSON line show.
pub struct LatencyFigure {
    pub database: Database,
    pub point: Point,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyFigure {
    pub fn new(database: Database, point: Point) -> Self {
        let sorted = point.samples.clone().sorted();
        Self {
            database,
            p50_ms: sorted.quantile_ms(0.50),
            p99_ms: sorted.quantile_ms(0.99),
            max_ms: sorted.quantile_ms(1.0),
            point,
        }
    }

    pub fn complete(&self) -> bool {
        self.point.missing() == 0 && self.point.write_errors == 0
    }
}

/// The outbox cost at one (database, writers): medians over rounds of both variants.
pub struct CostFigure {
    pub database: Database,
    pub writers: usize,
    pub phases: Vec<Phase>,
}

impl CostFigure {
    fn rates(&self, variant: Variant) -> Vec<f64> {
        self.phases
            .iter()
            .filter(|p| p.variant == variant)
            .map(Phase::per_sec)
            .collect()
    }

    /// 1 - outbox / plain, of the medians.
    fn cost(&self) -> Option<f64> {
        self.cost_of(Variant::Outbox)
    }

    /// 1 - variant / plain, of the medians.
    fn cost_of(&self, variant: Variant) -> Option<f64> {
        let (with, _, _) = spread(self.rates(variant))?;
        let (plain, _, _) = spread(self.rates(Variant::Plain))?;
        (plain > 0.0).then(|| 1.0 - with / plain)
    }

    /// The same ratio per round (the two phases of a round ran back to back).
    fn round_costs(&self) -> Vec<f64> {
        let rounds = self.phases.iter().map(|p| p.round).max().unwrap_or(0);
        (1..=rounds)
            .filter_map(|round| {
                let rate = |variant| {
                    self.phases
                        .iter()
                        .find(|p| p.round == round && p.variant == variant)
                        .map(Phase::per_sec)
                };
                Some(1.0 - rate(Variant::Outbox)? / rate(Variant::Plain)?)
            })
            .collect()
    }

    pub fn errors(&self) -> u64 {
        self.phases.iter().map(|p| p.errors).sum()
    }
}

/// Median, min and max (the fan-out bench's, shared).
fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    crate::fanout_latency::spread(&mut values)
}

fn fmt_spread(values: Vec<f64>) -> String {
    spread(values).map_or_else(
        || "none".to_owned(),
        |(median, min, max)| format!("{median:.0} [{min:.0}-{max:.0}]"),
    )
}

pub fn summary(
    settings: &Settings,
    latency: &[LatencyFigure],
    costs: &[CostFigure],
    load_before: &str,
    total_secs: f64,
) {
    let overrides: String = std::env::vars()
        .filter(|(k, _)| k.starts_with("WRITE_PATH_") || k == "DATABASE_URL")
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    println!();
    println!("== write_path summary ==");
    if !settings.measuring {
        println!("SMOKE RUN (no --bench argument, as under cargo test): not a measurement");
    }
    println!("command: {overrides}cargo bench --bench write_path");
    println!(
        "settings: databases {}; latency: {} s measured after {} s warm-up per rate, one \
         subscriber of todos:* over loopback WebSocket; outbox cost: {} round(s) of {} s per \
         variant, writers {:?}, variants alternating in order",
        settings
            .databases
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(","),
        settings.latency_secs,
        settings.warmup_secs,
        settings.rounds,
        settings.cost_secs,
        settings.writers,
    );
    println!("machine: {}", procfs::machine());
    println!(
        "load average (1/5/15 min): {load_before} before, {} after",
        procfs::loadavg()
    );
    println!();
    println!(
        "model write -> event on the subscriber's socket (open loop, from the write's due time)"
    );
    println!(
        "{:<10} {:>9} {:>8} {:>9} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "database",
        "writes/s",
        "writes",
        "received",
        "missing",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for f in latency {
        println!(
            "{:<10} {:>9} {:>8} {:>9} {:>8} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            f.database.name(),
            f.point.rate,
            f.point.writes,
            f.point.received,
            f.point.missing(),
            f.point.write_errors,
            f.p50_ms,
            f.p99_ms,
            f.max_ms
        );
    }
    println!();
    println!(
        "outbox cost on write throughput (closed loop; writes/s median [min-max] over rounds)"
    );
    println!(
        "{:<10} {:>7} {:>20} {:>20} {:>20} {:>20} {:>8} {:>16} {:>11} {:>11}",
        "database",
        "writers",
        "plain sqlx",
        "plain+mute",
        "plain+mute+row",
        "model store",
        "COST",
        "per round",
        "mute alone",
        "statements"
    );
    for f in costs {
        let rounds: Vec<f64> = f.round_costs();
        let per_round = spread(rounds).map_or_else(
            || "none".to_owned(),
            |(_, min, max)| format!("{:.1}%..{:.1}%", 100.0 * min, 100.0 * max),
        );
        let percent =
            |c: Option<f64>| c.map_or_else(|| "none".to_owned(), |c| format!("{:.1}%", 100.0 * c));
        println!(
            "{:<10} {:>7} {:>20} {:>20} {:>20} {:>20} {:>8} {:>16} {:>11} {:>11}",
            f.database.name(),
            f.writers,
            fmt_spread(f.rates(Variant::Plain)),
            fmt_spread(f.rates(Variant::PlainMuted)),
            fmt_spread(f.rates(Variant::PlainMutedRow)),
            fmt_spread(f.rates(Variant::Outbox)),
            percent(f.cost()),
            per_round,
            percent(f.cost_of(Variant::PlainMuted)),
            percent(f.cost_of(Variant::PlainMutedRow)),
        );
        if f.errors() > 0 {
            println!("  {} failed writes (see stderr)", f.errors());
        }
    }
    println!(
        "COST = 1 - model store / plain sqlx, of the medians (goal: <= 15%); per round: the \
         same ratio within each round; mute alone = 1 - plain+mute / plain sqlx; \
         statements = 1 - plain+mute+row / plain sqlx (the store's statements without its \
         work in between or the relay)"
    );
    if !latency.iter().all(LatencyFigure::complete) {
        println!("INCOMPLETE: some writes failed or their events never arrived; see the table");
    }
    println!("total bench time {total_secs:.1} s");
}

/// Appends one line per figure to `WRITE_PATH_JSON`, when set.
pub fn json_lines(settings: &Settings, latency: &[LatencyFigure], costs: &[CostFigure]) {
    let Ok(path) = std::env::var("WRITE_PATH_JSON") else {
        return;
    };
    let common = |mut line: Value| {
        line["bench"] = json!("write_path");
        line["smoke"] = json!(!settings.measuring);
        line["loadavg"] = json!(procfs::loadavg());
        line
    };
    let mut lines: Vec<Value> = latency
        .iter()
        .map(|f| {
            common(json!({
                "figure": "latency",
                "database": f.database.name(),
                "rate": f.point.rate,
                "secs": settings.latency_secs,
                "warmup_secs": settings.warmup_secs,
                "writes": f.point.writes,
                "received": f.point.received,
                "missing": f.point.missing(),
                "duplicates": f.point.duplicates,
                "write_errors": f.point.write_errors,
                "issue_secs": f.point.issue_secs,
                "p50_ms": f.p50_ms,
                "p99_ms": f.p99_ms,
                "max_ms": f.max_ms,
            }))
        })
        .collect();
    lines.extend(costs.iter().map(|f| {
        let median = |variant| spread(f.rates(variant)).map(|(m, _, _)| m);
        common(json!({
            "figure": "outbox_cost",
            "database": f.database.name(),
            "writers": f.writers,
            "rounds": settings.rounds,
            "secs": settings.cost_secs,
            "plain_per_sec": median(Variant::Plain),
            "plain_muted_per_sec": median(Variant::PlainMuted),
            "plain_muted_row_per_sec": median(Variant::PlainMutedRow),
            "outbox_per_sec": median(Variant::Outbox),
            "cost": f.cost(),
            "mute_cost": f.cost_of(Variant::PlainMuted),
            "statements_cost": f.cost_of(Variant::PlainMutedRow),
            "round_costs": f.round_costs(),
            "errors": f.errors(),
            "phases": f.phases.iter().map(|p| json!({
                "variant": p.variant.name(),
                "writers": p.writers,
                "round": p.round,
                "writes": p.writes,
                "errors": p.errors,
                "secs": p.secs,
            })).collect::<Vec<_>>(),
        }))
    }));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("WRITE_PATH_JSON={path}: {e}"));
    for line in lines {
        writeln!(file, "{line}").unwrap_or_else(|e| panic!("WRITE_PATH_JSON={path}: {e}"));
    }
}
