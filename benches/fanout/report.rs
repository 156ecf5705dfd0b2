//! What the orchestrator prints: the summary (per mode and figure, the median over
//! rounds with min–max for each server, and the ratio tidings/baseline for each
//! baseline design run, `axum-raw` by default) and, when
//! `FANOUT_JSON` names a file, one JSON line per phase appended to it (the input of
//! `scripts/bench-plots`).

use std::{io::Write, time::Duration};

use serde_json::json;

use super::{
    orchestrator::Phase,
    procfs,
    settings::{Mode, Settings},
    wire::{Baseline, Kind},
};

/// One figure of the summary: its label, and how to read it off a phase.
struct Figure {
    label: &'static str,
    /// Its name in the RATIO line.
    short: &'static str,
    read: fn(&Phase) -> Option<f64>,
    /// Decimal places printed.
    decimals: usize,
}

fn figures(mode: Mode) -> Vec<Figure> {
    let latency = [
        Figure {
            label: "publish -> delivery p50 (ms)",
            short: "p50",
            read: |p| p.figure("lat_p50_ms"),
            decimals: 2,
        },
        Figure {
            label: "publish -> delivery p99 (ms)",
            short: "p99",
            read: |p| p.figure("lat_p99_ms"),
            decimals: 2,
        },
    ];
    match mode {
        Mode::Max => [
            Figure {
                label: "DELIVERIES PER SECOND",
                short: "deliveries/s",
                read: |p| p.figure("deliveries_per_sec"),
                decimals: 0,
            },
            Figure {
                label: "deliveries per server CPU-second",
                short: "deliveries/server CPU-s",
                read: |p| Some(p.deliveries_per_server_cpu_s()),
                decimals: 0,
            },
            Figure {
                label: "server RSS per idle connection (kB)",
                short: "idle kB/connection",
                read: |p| Some(p.idle_kb_per_connection()),
                decimals: 2,
            },
        ]
        .into_iter()
        .chain(latency)
        .collect(),
        Mode::Fixed => latency.into_iter().collect(),
        Mode::Burst => vec![
            Figure {
                label: "DELIVERIES PER SECOND (server busy)",
                short: "deliveries/s",
                read: |p| p.figure("deliveries_per_sec"),
                decimals: 0,
            },
            Figure {
                label: "server CPUs busy in that time",
                short: "CPUs busy",
                read: |p| Some(p.figure("server_busy_cpu_s")? / p.figure("server_busy_s")?),
                decimals: 2,
            },
            Figure {
                label: "server busy time (s)",
                short: "busy s",
                read: |p| p.figure("server_busy_s"),
                decimals: 3,
            },
        ],
    }
}

fn spread_of(
    phases: &[Phase],
    (kind, workers): (Kind, Option<usize>),
    mode: Mode,
    figure: &Figure,
) -> Option<(f64, f64, f64)> {
    let mut values: Vec<f64> = phases
        .iter()
        .filter(|p| p.kind == kind && p.mode == mode && p.workers == workers)
        .filter_map(|p| (figure.read)(p))
        .collect();
    super::latency::spread(&mut values)
}

pub fn summary(settings: &Settings, phases: &[Phase], total: Duration, load_before: &str) {
    let overrides: String = std::env::vars()
        .filter(|(k, _)| k.starts_with("FANOUT_") && k != "FANOUT_ROLE")
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    println!();
    println!("== fanout summary ==");
    if !settings.measuring {
        println!("SMOKE RUN (no --bench argument, as under cargo test): not a measurement");
    }
    println!("command: {overrides}cargo bench --bench fanout");
    let modes: Vec<String> = settings
        .modes
        .iter()
        .map(|mode| match mode {
            Mode::Max => format!(
                "max: closed loop, window {}, {} s measured",
                settings.window, settings.max_secs
            ),
            Mode::Fixed => format!(
                "fixed: {} deliveries/s ({:.3} events/s), {} s measured",
                settings.rate,
                settings.events_per_sec(),
                settings.fixed_secs
            ),
            Mode::Burst => format!(
                "burst: {} events published at once ({} requests in flight) to subscribers \
                 that stop reading, the server unpinned with {:?} worker threads, \
                 deliveries/s over its busy time",
                settings.burst_events, settings.window, settings.burst_workers
            ),
        })
        .collect();
    println!(
        "settings: {} subscribers of todos:*, {}-byte payloads published with POST (tidings: \
         /realtime/broadcast with a publisher JWT; baselines: /publish), {} round(s); {}; {} s \
         warm-up before each",
        settings.connections,
        settings.payload,
        settings.rounds,
        modes.join("; "),
        settings.warmup_secs
    );
    println!("machine: {}", procfs::machine());
    println!(
        "load average (1/5/15 min): {load_before} before, {} after",
        procfs::loadavg()
    );
    println!("{}", layout(settings));
    for &mode in &settings.modes {
        match mode {
            Mode::Burst => print_burst(settings, phases),
            Mode::Max | Mode::Fixed => print_mode(mode, &settings.baselines, phases),
        }
    }
    for phase in phases {
        let threads = phase
            .workers
            .map_or_else(String::new, |n| format!(" {n} worker(s)"));
        let burst = if phase.mode == Mode::Burst {
            format!(
                ", paused {}/{}, server busy at the timeout: {}",
                phase.result["paused"], phase.result["live"], phase.result["server_busy_timed_out"]
            )
        } else {
            String::new()
        };
        println!(
            "{} {}{threads} round {}: {} ready ({} failed), deliveries {}/{}, publish errors {}, stalls {}, \
             frame {:.0} B, server CPU {:.0}% and client CPU {:.0}% of a core, connections ended: {}{burst}",
            phase.kind.name(),
            phase.mode.name(),
            phase.round,
            phase.ready,
            phase.failed,
            phase.result["received"],
            phase.result["expected"],
            phase.result["publish_errors"],
            phase.result["stalls"],
            phase.figure("frame_bytes").unwrap_or(0.0),
            100.0 * phase.server_cpu_s / phase.window_s,
            100.0 * phase.client_cpu_s / phase.window_s,
            phase.result["ends"].as_str().unwrap_or("?"),
        );
    }
    if !phases.iter().all(Phase::complete) {
        println!(
            "INCOMPLETE: not every due event was delivered, or a burst ran with subscribers \
             still reading or a server still busy at the timeout; see the lines above"
        );
    }
    println!("total bench time {:.1} s", total.as_secs_f64());
}

fn layout(settings: &Settings) -> String {
    let pinning = match settings.cpus {
        Some((server, client)) if super::child::taskset_available() => {
            format!("server pinned to CPU {server}, load generator to CPU {client} (taskset)")
        }
        Some(_) => "NOT pinned (taskset not found)".to_owned(),
        None => "NOT pinned (fewer than 2 CPUs, or FANOUT_PIN=0)".to_owned(),
    };
    let baselines: Vec<&str> = settings
        .baselines
        .iter()
        .map(|&design| match design {
            Baseline::AxumRaw => {
                "axum-raw = a bounded mpsc queue per connection, as the shared tool's axum-raw"
            }
            Baseline::Ring => "ring = one tokio broadcast ring every connection reads",
        })
        .collect();
    format!(
        "layout: loopback; {pinning}; fresh server and load-generator processes per phase; \
         tidings: the reference server binary (SQLite log in a temp dir, memory broker, JWT, \
         demo rules); baselines (hand-written axum, 4 KiB read buffer, feed-then-flush): {}; \
         load generator: one Tokio worker",
        baselines.join("; ")
    )
}

/// The table of `mode`, one column per server, then one `RATIO tidings/<baseline>`
/// line per baseline design run.
fn print_mode(mode: Mode, baselines: &[Baseline], phases: &[Phase]) {
    let fmt = |s: Option<(f64, f64, f64)>, d: usize| {
        s.map_or_else(
            || "none".to_owned(),
            |(median, min, max)| format!("{median:.d$} [{min:.d$}-{max:.d$}]"),
        )
    };
    let kinds: Vec<Kind> = std::iter::once(Kind::Tidings)
        .chain(baselines.iter().copied().map(Kind::Baseline))
        .collect();
    println!();
    let header: String = kinds.iter().map(|k| format!(" {:>30}", k.name())).collect();
    println!(
        "{:<40}{header}",
        format!("mode {} (median [min-max])", mode.name())
    );
    let mut ratios = vec![Vec::new(); baselines.len()];
    for figure in figures(mode) {
        let spreads: Vec<_> = kinds
            .iter()
            .map(|&kind| spread_of(phases, (kind, None), mode, &figure))
            .collect();
        let row: String = spreads
            .iter()
            .map(|&s| format!(" {:>30}", fmt(s, figure.decimals)))
            .collect();
        println!("{:<40}{row}", figure.label);
        for (ratios, baseline) in ratios.iter_mut().zip(&spreads[1..]) {
            if let (Some((t, ..)), Some((b, ..))) = (spreads[0], baseline)
                && *b != 0.0
            {
                ratios.push(format!("{} {:.2}", figure.short, t / b));
            }
        }
    }
    for (baseline, ratios) in baselines.iter().zip(&ratios) {
        println!(
            "RATIO tidings/{}, {}: {}",
            baseline.name(),
            mode.name(),
            ratios.join(", ")
        );
    }
}

/// The burst table, one column per server and worker count, then per server the
/// ratio of each worker count to the first (goal 3 of issue 12 asks 2 workers >= 1.7x
/// of 1), and tidings against each baseline at each worker count.
fn print_burst(settings: &Settings, phases: &[Phase]) {
    let kinds: Vec<Kind> = std::iter::once(Kind::Tidings)
        .chain(settings.baselines.iter().copied().map(Kind::Baseline))
        .collect();
    let columns: Vec<(Kind, Option<usize>)> = kinds
        .iter()
        .flat_map(|&kind| settings.burst_workers.iter().map(move |&n| (kind, Some(n))))
        .collect();
    println!();
    let header: String = columns
        .iter()
        .map(|&(kind, n)| format!(" {:>30}", format!("{} {}w", kind.name(), n.unwrap_or(0))))
        .collect();
    println!("{:<40}{header}", "mode burst (median [min-max])");
    let medians = |column: (Kind, Option<usize>), figure: &Figure| {
        spread_of(phases, column, Mode::Burst, figure).map(|(median, ..)| median)
    };
    for figure in figures(Mode::Burst) {
        let row: String = columns
            .iter()
            .map(|&column| {
                let d = figure.decimals;
                let cell = spread_of(phases, column, Mode::Burst, &figure).map_or_else(
                    || "none".to_owned(),
                    |(median, min, max)| format!("{median:.d$} [{min:.d$}-{max:.d$}]"),
                );
                format!(" {cell:>30}")
            })
            .collect();
        println!("{:<40}{row}", figure.label);
    }
    let throughput = &figures(Mode::Burst)[0];
    let first = settings.burst_workers[0];
    for &kind in &kinds {
        let base = medians((kind, Some(first)), throughput);
        let ratios: Vec<String> = settings.burst_workers[1..]
            .iter()
            .filter_map(|&n| {
                let ratio = medians((kind, Some(n)), throughput)? / base.filter(|b| *b > 0.0)?;
                Some(format!("{n} workers {ratio:.2}"))
            })
            .collect();
        if !ratios.is_empty() {
            println!(
                "RATIO {} deliveries/s against {first} worker(s): {}",
                kind.name(),
                ratios.join(", ")
            );
        }
    }
    for &baseline in &kinds[1..] {
        let ratios: Vec<String> = settings
            .burst_workers
            .iter()
            .filter_map(|&n| {
                let t = medians((Kind::Tidings, Some(n)), throughput)?;
                let b = medians((baseline, Some(n)), throughput).filter(|b| *b > 0.0)?;
                Some(format!("{n} worker(s) {:.2}", t / b))
            })
            .collect();
        let ratios = if ratios.is_empty() {
            "none (a burst too short for one busy sample)".to_owned()
        } else {
            ratios.join(", ")
        };
        println!(
            "RATIO tidings/{}, burst deliveries/s: {ratios}",
            baseline.name()
        );
    }
}

/// Appends the phase as one JSON line to `FANOUT_JSON`, when set.
pub fn json_line(settings: &Settings, phase: &Phase) {
    let Ok(path) = std::env::var("FANOUT_JSON") else {
        return;
    };
    let line = json!({
        "bench": "fanout",
        "server": phase.kind.name(),
        "mode": phase.mode.name(),
        "workers": phase.workers,
        "round": phase.round,
        "smoke": !settings.measuring,
        "connections": settings.connections,
        "payload_bytes": settings.payload,
        "window": settings.window,
        "rate": settings.rate,
        "pinned": settings.cpus.is_some() && super::child::taskset_available(),
        "loadavg": procfs::loadavg(),
        "ready": phase.ready,
        "failed": phase.failed,
        "setup_ms": phase.setup_ms,
        "rss_before_kb": phase.rss_before_kb,
        "rss_idle_kb": phase.rss_idle_kb,
        "rss_after_kb": phase.rss_after_kb,
        "idle_kb_per_conn": phase.idle_kb_per_connection(),
        "server_cpu_s": phase.server_cpu_s,
        "client_cpu_s": phase.client_cpu_s,
        "deliveries_per_server_cpu_sec": phase.deliveries_per_server_cpu_s(),
        "result": phase.result,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("FANOUT_JSON={path}: {e}"));
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("FANOUT_JSON={path}: {e}"));
}
