//! The orchestrator: per round and per mode (and in burst mode per worker count), one
//! phase of tidings then one of each baseline design `FANOUT_BASELINES` names
//! (`axum-raw` by default), each with a fresh server process and a fresh
//! load-generator process; then the summary (medians over rounds, ratios) and, with
//! `FANOUT_JSON`, one JSON line per phase.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    busy,
    child::Child,
    procfs, report, servers,
    settings::{Mode, Settings},
    wire::{self, Kind},
};

/// Burst mode: the server is done once it has not been busy for this long.
const QUIET: Duration = Duration::from_millis(300);

/// Everything measured in one phase.
#[derive(Debug)]
pub struct Phase {
    pub kind: Kind,
    pub mode: Mode,
    /// Burst mode: the server's worker threads.
    pub workers: Option<usize>,
    pub round: usize,
    pub ready: usize,
    pub failed: usize,
    pub setup_ms: u64,
    pub rss_before_kb: u64,
    pub rss_idle_kb: u64,
    pub rss_after_kb: u64,
    /// CPU time of each process from the start of the measured publishing to the end
    /// of the drain.
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
    pub window_s: f64,
    /// What the load generator reported (see `client::measure`).
    pub result: Value,
}

impl Phase {
    pub fn figure(&self, key: &str) -> Option<f64> {
        self.result[key].as_f64().filter(|v| v.is_finite())
    }

    pub fn idle_kb_per_connection(&self) -> f64 {
        self.rss_idle_kb.saturating_sub(self.rss_before_kb) as f64 / self.ready.max(1) as f64
    }

    /// Deliveries per second of server CPU time (all its threads): the cost of a
    /// delivery, steadier than wall-clock throughput on a machine shared with others.
    pub fn deliveries_per_server_cpu_s(&self) -> f64 {
        let received = self.figure("received").unwrap_or(0.0);
        if self.server_cpu_s > 0.0 {
            received / self.server_cpu_s
        } else {
            0.0
        }
    }

    /// Every due event delivered; in burst mode also every subscriber paused while the
    /// server worked, and the server quiet before the timeout, or the figure is wrong.
    pub fn complete(&self) -> bool {
        let burst_sound = self.mode != Mode::Burst
            || (self.result["paused"] == self.result["live"]
                && self.result["server_busy_timed_out"] == false);
        self.failed == 0
            && self.result["publish_errors"] == 0
            && self.result["received"] == self.result["expected"]
            && burst_sound
    }
}

/// Runs every round and prints the summary. Exits 1 if a phase did not deliver every
/// due event, after printing what it did deliver.
pub fn main() {
    let settings = Settings::from_env(std::env::args().any(|a| a == "--bench"));
    let started = Instant::now();
    let load_before = procfs::loadavg();
    eprintln!("fanout: {settings:?}");
    let mut phases = Vec::new();
    // The baseline pads its frames to the size tidings delivered, once known.
    let mut frame_len = 0;
    for round in 1..=settings.rounds {
        for &mode in &settings.modes {
            let workers: Vec<Option<usize>> = match mode {
                Mode::Burst => settings.burst_workers.iter().copied().map(Some).collect(),
                Mode::Max | Mode::Fixed => vec![None],
            };
            for workers in workers {
                let baselines = settings.baselines.iter().copied().map(Kind::Baseline);
                for kind in std::iter::once(Kind::Tidings).chain(baselines) {
                    let phase = run_phase(kind, (mode, workers), round, &settings, frame_len);
                    if kind == Kind::Tidings && frame_len == 0 {
                        frame_len = phase.figure("frame_bytes").unwrap_or(0.0).round() as usize;
                    }
                    report::json_line(&settings, &phase);
                    phases.push(phase);
                }
            }
        }
    }
    report::summary(&settings, &phases, started.elapsed(), &load_before);
    if !phases.iter().all(Phase::complete) {
        std::process::exit(1);
    }
}

/// One phase: a fresh server, a fresh load generator, idle memory, warm-up, the
/// measured publishing and its drain.
fn run_phase(
    kind: Kind,
    (mode, workers): (Mode, Option<usize>),
    round: usize,
    settings: &Settings,
    frame_len: usize,
) -> Phase {
    let threads = workers.map_or_else(String::new, |n| format!(", {n} worker(s)"));
    eprintln!(
        "fanout: round {round}, {} {}{threads}",
        mode.name(),
        kind.name()
    );
    let server = servers::start(kind, settings, frame_len, workers);
    // Let the freshly started server settle before the "before" reading.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before_kb = procfs::rss_kb(server.child.pid());

    let mut env = settings.child_env();
    env.extend([
        ("FANOUT_ROLE", "client".to_owned()),
        ("FANOUT_SERVER", kind.name().to_owned()),
        ("FANOUT_ADDR", server.addr.clone()),
    ]);
    if mode == Mode::Burst {
        env.push((
            "FANOUT_CLIENT_RCVBUF",
            settings.burst_receive_buffer.to_string(),
        ));
    }
    let cpu = settings.cpus.map(|(_, client)| client);
    let exe = std::env::current_exe().expect("current exe");
    let mut client = Child::spawn("client", &exe.display().to_string(), cpu, &env);
    let ready = wire::numbers(&client.expect("ready", settings.timeout * 3));
    let (ready, failed, setup_ms) = (ready[0] as usize, ready[1] as usize, ready[2]);
    eprintln!(
        "fanout: {} connections ready, {failed} failed, in {setup_ms} ms",
        ready
    );
    // Idle means idle: the last handshakes' buffers are released before the reading.
    std::thread::sleep(Duration::from_secs_f64(settings.settle_secs));
    let rss_idle_kb = procfs::rss_kb(server.child.pid());

    client.send(&format!("run {}", mode.name()));
    let warmup = Duration::from_secs_f64(settings.warmup_secs);
    client.expect("measuring", warmup + settings.timeout * 2);
    let window = Instant::now();
    let cpu_before = (
        procfs::cpu_seconds(server.child.pid()),
        procfs::cpu_seconds(client.pid()),
    );
    let measured = Duration::from_secs_f64(settings.secs(mode));
    let server_busy = (mode == Mode::Burst).then(|| {
        let busy = busy::until_quiet(server.child.pid(), window, QUIET, settings.timeout);
        client.send("resume");
        busy
    });
    let result = client.expect("result", measured + settings.timeout * 3);
    let mut result: Value = serde_json::from_str(&result).expect("the client's result is JSON");
    if let Some(busy) = server_busy {
        let window_s = busy.window.as_secs_f64();
        let expected = result["expected"].as_f64().unwrap_or(0.0);
        result["server_busy_s"] = json!(window_s);
        result["server_busy_cpu_s"] = json!(busy.cpu.as_secs_f64());
        result["server_busy_timed_out"] = json!(busy.timed_out);
        // A burst too small for one busy sample has no figure (NaN is written as null).
        let rate = if window_s > 0.0 {
            expected / window_s
        } else {
            f64::NAN
        };
        result["deliveries_per_sec"] = json!(rate);
    }
    let phase = Phase {
        kind,
        mode,
        workers,
        round,
        ready,
        failed,
        setup_ms,
        rss_before_kb,
        rss_idle_kb,
        rss_after_kb: procfs::rss_kb(server.child.pid()),
        server_cpu_s: procfs::cpu_seconds(server.child.pid()) - cpu_before.0,
        client_cpu_s: procfs::cpu_seconds(client.pid()) - cpu_before.1,
        window_s: window.elapsed().as_secs_f64(),
        result,
    };
    client.quit(Duration::from_secs(10));
    server.stop();
    phase
}
