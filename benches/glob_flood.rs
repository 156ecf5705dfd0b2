//! A canary's delivery latency while the node holds (or is offered) 10,000 adversarial
//! glob subscriptions (issue 9, finding 1).
//!
//! Run with `cargo bench --bench glob_flood`. One in-process server per mode (the
//! library plus the demo app, fresh SQLite, `tests/common/server.rs`), real WebSocket
//! clients over loopback. Attackers: `GLOB_FLOOD_CONNECTIONS` (500) connections, five
//! per user, each sending `GLOB_FLOOD_PER_CONNECTION` (20) subscribes of the adversarial
//! glob `*:*a*a*a*a*a*a*a*b` (10,000 subscribe frames in all), awaiting each answer.
//! The canary subscribes `todos:*`; then `GLOB_FLOOD_EVENTS` (500) topic broadcasts
//! `todos:k<n>` (keys the adversarial globs never match, so what they cost is matching,
//! not delivery) are sent through the Rust API at `GLOB_FLOOD_RATE` (100) per second,
//! open loop, after `GLOB_FLOOD_WARMUP` (50). Latency = scheduled send time -> the
//! canary read the frame; p50, p99 and max of the measured events.
//!
//! Modes (`GLOB_FLOOD_MODES`, default all, in this order):
//!
//! * `none`: no attacker, the baseline;
//! * `identical`: every attacker subscription is the same glob (one interned pattern);
//! * `distinct`: every one is a different glob (`...b<conn>x<n>`), default limits: the
//!   node's glob budget refuses what is past it;
//! * `unbounded`: distinct globs with every glob limit lifted, what the node did
//!   before the budget existed (every glob tried once per event under the hub lock).
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a tiny smoke version.
//! Figures: `docs/benchmarks.md`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::{
    db::Backend,
    server::{Client, TestServer, token},
};
use futures::StreamExt;
use serde_json::{Value, json};
use tidings::{Broadcast, Target};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

const ADVERSARIAL: &str = "*:*a*a*a*a*a*a*a*b";
/// Bound on waiting for any one canary event.
const EVENT_WAIT: Duration = Duration::from_secs(30);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

struct Settings {
    connections: usize,
    per_connection: usize,
    events: usize,
    warmup: usize,
    rate: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    None,
    Identical,
    Distinct,
    Unbounded,
}

impl Mode {
    fn parse(text: &str) -> Self {
        match text.trim() {
            "none" => Self::None,
            "identical" => Self::Identical,
            "distinct" => Self::Distinct,
            "unbounded" => Self::Unbounded,
            other => panic!("GLOB_FLOOD_MODES: unknown mode {other:?}"),
        }
    }
}

struct Figures {
    mode: Mode,
    offered: usize,
    accepted: usize,
    distinct: u64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    lost: usize,
}

/// Opens `settings.connections` attacker connections and offers their globs; returns
/// the connections (kept open) and how many subscriptions were accepted.
async fn attack(server: &TestServer, mode: Mode, settings: &Settings) -> (Vec<Client>, usize) {
    let mut tasks = JoinSet::new();
    for conn in 0..settings.connections {
        let url = server.ws_url();
        let per_connection = settings.per_connection;
        tasks.spawn(async move {
            let user = format!("mallory{}", conn / 5);
            let mut client = Client::authenticated(&url, &token(&user)).await;
            let mut accepted = 0;
            for n in 0..per_connection {
                let pattern = match mode {
                    Mode::Identical => ADVERSARIAL.to_owned(),
                    _ => format!("{ADVERSARIAL}{conn}x{n}"),
                };
                client
                    .send(json!({"type": "subscribe", "id": format!("g{n}"), "pattern": pattern}))
                    .await;
                if client.recv().await["type"] == "subscribed" {
                    accepted += 1;
                }
            }
            (client, accepted)
        });
    }
    let mut clients = Vec::new();
    let mut accepted = 0;
    while let Some(done) = tasks.join_next().await {
        let (client, n) = done.expect("attacker task");
        clients.push(client);
        accepted += n;
    }
    (clients, accepted)
}

/// Reads the canary's events until every one of `total` arrived (or it is lost).
async fn canary_latencies(
    mut canary: Client,
    start: Instant,
    period: Duration,
    total: usize,
) -> Vec<Option<Duration>> {
    let mut latencies = vec![None; total];
    let mut seen = 0;
    while seen < total {
        let next = tokio::time::timeout(EVENT_WAIT, canary.ws.next()).await;
        let Ok(Some(Ok(message))) = next else {
            break;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON frame");
        if frame["type"] != "event" {
            continue;
        }
        let n = frame["data"]["n"].as_u64().expect("n") as usize;
        let scheduled = start + period * n as u32;
        latencies[n] = Some(scheduled.elapsed());
        seen += 1;
    }
    latencies
}

async fn measure(mode: Mode, settings: &Settings) -> Figures {
    let server = TestServer::start(Backend::Sqlite, |c| {
        // The attackers never read: no pings during the run.
        c.connection.ping_interval = Duration::from_secs(3600);
        c.connection.max_connections = 100_000;
        if mode == Mode::Unbounded {
            c.connection.max_glob_subscriptions = usize::MAX / 4;
            c.connection.max_glob_subscriptions_per_user = usize::MAX / 4;
            c.connection.max_globs_per_node = usize::MAX / 4;
        }
    })
    .await;
    let (attackers, accepted) = match mode {
        Mode::None => (Vec::new(), 0),
        _ => attack(&server, mode, settings).await,
    };
    let distinct = server
        .realtime
        .metrics()
        .glob_patterns
        .load(Ordering::Relaxed);
    let mut canary = server.connect("canary").await;
    canary.subscribe("c", "todos:*").await;

    let total = settings.warmup + settings.events;
    let period = Duration::from_secs(1) / settings.rate as u32;
    let start = Instant::now() + Duration::from_millis(100);
    let reader = tokio::spawn(canary_latencies(canary, start, period, total));
    let mut sends = JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until((start + period * n as u32).into()).await;
        let realtime = server.realtime.clone();
        sends.spawn(async move {
            let event = Broadcast::new(
                Target::Topic(format!("todos:k{n}")),
                "tick",
                json!({"n": n}),
            );
            realtime.broadcast(event).await.expect("broadcast");
        });
    }
    while sends.join_next().await.is_some() {}
    let latencies = reader.await.expect("canary");
    drop(attackers);
    let mut measured: Vec<Duration> = latencies[settings.warmup..]
        .iter()
        .flatten()
        .copied()
        .collect();
    let lost = settings.events - measured.len();
    measured.sort();
    let at = |q: f64| {
        measured
            .get(((measured.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        mode,
        offered: if mode == Mode::None {
            0
        } else {
            settings.connections * settings.per_connection
        },
        accepted,
        distinct,
        p50: at(0.50),
        p99: at(0.99),
        max: measured.last().copied().unwrap_or_default(),
        lost,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let settings = if measuring {
        Settings {
            connections: setting("GLOB_FLOOD_CONNECTIONS", 500),
            per_connection: setting("GLOB_FLOOD_PER_CONNECTION", 20),
            events: setting("GLOB_FLOOD_EVENTS", 500),
            warmup: setting("GLOB_FLOOD_WARMUP", 50),
            rate: setting("GLOB_FLOOD_RATE", 100),
        }
    } else {
        Settings {
            connections: 5,
            per_connection: 2,
            events: 10,
            warmup: 2,
            rate: 100,
        }
    };
    let modes: Vec<Mode> = std::env::var("GLOB_FLOOD_MODES")
        .unwrap_or_else(|_| "none,identical,distinct,unbounded".into())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(Mode::parse)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let load_before = loadavg();
    let figures: Vec<Figures> = runtime.block_on(async {
        let mut all = Vec::new();
        for &mode in &modes {
            let f = measure(mode, &settings).await;
            eprintln!("{mode:?}: p99 {} ms", ms(f.p99));
            all.push(f);
        }
        all
    });
    println!(
        "glob_flood: {} events at {}/s after {} warm-up; load before {load_before}, after {}",
        settings.events,
        settings.rate,
        settings.warmup,
        loadavg()
    );
    println!(
        "| mode | globs offered | accepted | distinct globs on the node | canary p50 ms | p99 ms | max ms | lost |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for f in figures {
        println!(
            "| {:?} | {} | {} | {} | {} | {} | {} | {} |",
            f.mode,
            f.offered,
            f.accepted,
            f.distinct,
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            f.lost
        );
    }
}
