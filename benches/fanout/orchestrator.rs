//! The orchestrator: runs three phases with the same connections, events and frame
//! size (tidings; tidings publishing from its own thread; the baseline), each with a
//! fresh server process and a fresh load-generator process, and prints the comparison.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{
    procfs,
    wire::{self, Kind},
};

/// What one run uses; the same for every phase.
#[derive(Debug, Clone)]
struct Settings {
    connections: usize,
    events: usize,
    warmup: usize,
    timeout: Duration,
    /// True under `cargo bench`; false for the tiny smoke run of `cargo test --benches`.
    measuring: bool,
}

/// Runs the phases and prints the summary. Exits 1 if a phase did not deliver
/// every event, after printing what it did deliver.
pub fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let settings = if measuring {
        Settings {
            connections: wire::env_usize("FANOUT_CONNECTIONS", 10_000),
            events: wire::env_usize("FANOUT_EVENTS", 200).max(1),
            warmup: wire::env_usize("FANOUT_WARMUP", 10),
            timeout: Duration::from_secs(wire::env_usize("FANOUT_TIMEOUT_S", 60) as u64),
            measuring,
        }
    } else {
        Settings {
            connections: 20,
            events: 3,
            warmup: 1,
            timeout: Duration::from_secs(20),
            measuring,
        }
    };
    let started = Instant::now();
    let load_before = procfs::loadavg();
    eprintln!("fanout: {settings:?}");
    let tidings = run_phase(Kind::Tidings, false, &settings, None);
    // The baseline sends frames as long as the ones tidings actually delivered.
    let frame_len = tidings.measured_frame_len().unwrap_or(tidings.frame_len);
    let threaded = run_phase(Kind::Tidings, true, &settings, None);
    let baseline = run_phase(Kind::Baseline, false, &settings, Some(frame_len));
    let phases = [
        ("tidings", &tidings),
        ("tidings+pubthread", &threaded),
        ("baseline", &baseline),
    ];
    print_summary(&settings, &phases, started.elapsed(), &load_before);
    if !phases.iter().all(|(_, p)| p.complete()) {
        std::process::exit(1);
    }
}

/// A child process of this executable, spoken to in lines.
struct Child {
    name: &'static str,
    process: std::process::Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Child {
    fn spawn(name: &'static str, envs: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut command = Command::new(exe);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut process = command.spawn().expect("spawn a bench child");
        let stdin = process.stdin.take().expect("piped stdin");
        let stdout = process.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        // A reader thread, so every wait below can have a deadline.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            process,
            stdin,
            lines,
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("{} child: write {line:?}: {e}", self.name));
    }

    /// The next line starting with one of `keywords`: (keyword, rest of the line).
    fn expect(&mut self, keywords: &[&'static str], timeout: Duration) -> (&'static str, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} child: no {keywords:?} line within {timeout:?}",
                        self.name
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} child ended while waiting for {keywords:?}", self.name)
                }
            };
            let (head, rest) = line.split_once(' ').unwrap_or((&line, ""));
            if let Some(keyword) = keywords.iter().find(|k| **k == head) {
                return (keyword, rest.to_owned());
            }
            eprintln!("{}: {line}", self.name);
        }
    }

    /// Asks the child to quit and waits for it, at most `timeout`, then kills it.
    fn quit(mut self, timeout: Duration) {
        self.send("quit");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} child did not quit within {timeout:?}; killing it",
            self.name
        );
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only reached with the child still running after a failed wait or a panic:
        // never leave a server or 10,000 sockets behind.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// A temporary directory for the SQLite log, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "tidings-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("create the bench temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything measured in one phase.
#[derive(Debug, Default)]
struct Phase {
    ready: usize,
    failed: usize,
    setup_ms: u64,
    /// Frame size the server reports (tidings: built through the public Event API).
    frame_len: usize,
    rss_before_kb: u64,
    rss_idle_kb: u64,
    rss_after_kb: u64,
    /// Event frames received in the measured window, and how many were due.
    received: u64,
    expected: u64,
    bytes: u64,
    received_total: u64,
    /// First publish start to the last delivery of the measured events.
    elapsed_s: f64,
    /// Per measured event: publish start to its last and to its first delivery (ms).
    to_last_ms: Vec<f64>,
    to_first_ms: Vec<f64>,
    /// From the start of the first measured publish call to the start of the last (ms).
    publish_ms: f64,
    server_cpu_s: f64,
    client_cpu_s: f64,
    window_s: f64,
    ends: String,
    server_stats: String,
}

impl Phase {
    fn complete(&self) -> bool {
        self.received == self.expected && self.failed == 0
    }

    fn deliveries_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.received as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Deliveries per second of server CPU time (all its threads): the cost of a
    /// delivery, which holds steadier than wall-clock throughput when other work on
    /// the machine takes a varying share of the cores.
    fn deliveries_per_cpu_s(&self) -> f64 {
        if self.server_cpu_s > 0.0 {
            self.received as f64 / self.server_cpu_s
        } else {
            0.0
        }
    }

    /// Average received event frame; bytes and count both include the warm-up.
    fn measured_frame_len(&self) -> Option<usize> {
        (self.received_total > 0)
            .then(|| (self.bytes as f64 / self.received_total as f64).round() as usize)
    }

    fn rss_per_connection_kb(&self) -> f64 {
        if self.ready == 0 {
            return 0.0;
        }
        self.rss_idle_kb.saturating_sub(self.rss_before_kb) as f64 / self.ready as f64
    }
}

/// One phase: a fresh server of `kind` (publishing from its own thread when
/// `publisher_thread`), a fresh load generator, warm-up, the measured events.
fn run_phase(
    kind: Kind,
    publisher_thread: bool,
    settings: &Settings,
    frame_len: Option<usize>,
) -> Phase {
    let mut phase = Phase::default();
    let temp = TempDir::new();
    let common = [
        ("FANOUT_SERVER", kind.name().to_owned()),
        ("FANOUT_CONNECTIONS", settings.connections.to_string()),
        ("FANOUT_EVENTS", settings.events.to_string()),
        ("FANOUT_WARMUP", settings.warmup.to_string()),
        ("FANOUT_TIMEOUT_S", settings.timeout.as_secs().to_string()),
    ];
    let mut server_env = vec![
        ("FANOUT_ROLE", "server".to_owned()),
        ("FANOUT_DB_DIR", temp.0.display().to_string()),
        ("FANOUT_FRAME_LEN", frame_len.unwrap_or(0).to_string()),
        (
            "FANOUT_PUBLISHER",
            if publisher_thread {
                "thread"
            } else {
                "runtime"
            }
            .to_owned(),
        ),
    ];
    server_env.extend(common.iter().cloned());
    let mut server = Child::spawn("server", &server_env);
    let (_, listening) = server.expect(&["listening"], Duration::from_secs(30));
    let mut listening = listening.split_whitespace();
    let addr = listening.next().expect("address").to_owned();
    phase.frame_len = listening
        .next()
        .and_then(|n| n.parse().ok())
        .expect("frame length");
    // Let the freshly started server settle before the "before" reading.
    std::thread::sleep(Duration::from_millis(300));
    phase.rss_before_kb = procfs::rss_kb(server.pid());

    let mut client_env = vec![("FANOUT_ROLE", "client".to_owned()), ("FANOUT_ADDR", addr)];
    client_env.extend(common.iter().cloned());
    let mut client = Child::spawn("client", &client_env);
    let (_, ready) = client.expect(&["ready"], settings.timeout * 3);
    let ready = wire::numbers(&ready);
    (phase.ready, phase.failed, phase.setup_ms) = (ready[0] as usize, ready[1] as usize, ready[2]);
    eprintln!(
        "{}: {} connections ready, {} failed, in {} ms",
        kind.name(),
        phase.ready,
        phase.failed,
        phase.setup_ms
    );
    // Idle means idle: the last handshakes' buffers are released before the reading.
    std::thread::sleep(Duration::from_secs(1));
    phase.rss_idle_kb = procfs::rss_kb(server.pid());

    let mut received_before = 0;
    if settings.warmup > 0 {
        server.send(&format!("publish {}", settings.warmup));
        server.expect(&["published"], settings.timeout);
        client.send(&format!("expect {}", settings.warmup));
        let (_, reply) = client.expect(&["reached", "stalled"], settings.timeout * 2);
        received_before = wire::numbers(&reply)[1];
    }

    let total = settings.warmup + settings.events;
    let cpu_before = (
        procfs::cpu_seconds(server.pid()),
        procfs::cpu_seconds(client.pid()),
    );
    let window = Instant::now();
    server.send(&format!("publish {}", settings.events));
    client.send(&format!("expect {total}"));
    let (_, published) = server.expect(&["published"], settings.timeout);
    let publish_times = wire::numbers(&published);
    let (outcome, reply) = client.expect(&["reached", "stalled"], settings.timeout * 2);
    phase.window_s = window.elapsed().as_secs_f64();
    phase.server_cpu_s = procfs::cpu_seconds(server.pid()) - cpu_before.0;
    phase.client_cpu_s = procfs::cpu_seconds(client.pid()) - cpu_before.1;
    if outcome == "stalled" {
        eprintln!("{}: deliveries stalled: {reply}", kind.name());
    }
    phase.received_total = wire::numbers(&reply)[1];
    phase.received = phase.received_total - received_before;
    phase.expected = (settings.events * phase.ready) as u64;

    client.send(&format!("report {} {total}", settings.warmup));
    let (_, first) = client.expect(&["first"], settings.timeout);
    let (_, last) = client.expect(&["last"], settings.timeout);
    let (_, summary) = client.expect(&["summary"], settings.timeout);
    let (first, last) = (wire::numbers(&first), wire::numbers(&last));
    for field in summary.split_whitespace() {
        match field.split_once('=') {
            Some(("bytes", v)) => phase.bytes = v.parse().unwrap_or(0),
            Some(("ends", v)) => phase.ends = v.to_owned(),
            _ => {}
        }
    }
    let delivered_last = last.iter().copied().filter(|&t| t > 0).max().unwrap_or(0);
    phase.elapsed_s = delivered_last.saturating_sub(publish_times[0]) as f64 / 1e6;
    phase.publish_ms = (publish_times[publish_times.len() - 1] - publish_times[0]) as f64 / 1e3;
    for ((&published, &first), &last) in publish_times.iter().zip(&first).zip(&last) {
        // An event nobody received has no delivery time; it shows in `received`.
        if last > 0 {
            phase
                .to_last_ms
                .push(last.saturating_sub(published) as f64 / 1e3);
            phase
                .to_first_ms
                .push(first.saturating_sub(published) as f64 / 1e3);
        }
    }
    server.send("stats");
    let (_, stats) = server.expect(&["stats"], settings.timeout);
    phase.server_stats = stats;
    phase.rss_after_kb = procfs::rss_kb(server.pid());

    client.quit(Duration::from_secs(10));
    server.quit(Duration::from_secs(15));
    drop(temp);
    phase
}

/// Nearest-rank percentile of `values` (which it sorts).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn print_summary(
    settings: &Settings,
    phases: &[(&str, &Phase)],
    total: Duration,
    load_before: &str,
) {
    let overrides: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("FANOUT_") && k != "FANOUT_ROLE")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!();
    println!("== fanout summary ==");
    if !settings.measuring {
        println!("SMOKE RUN (no --bench argument, as under cargo test): not a measurement");
    }
    println!(
        "command: {}cargo bench --bench fanout",
        overrides
            .iter()
            .map(|o| format!("{o} "))
            .collect::<String>()
    );
    println!(
        "settings: {} connections, {} events measured after {} warm-up events, pattern \
         todos:*, collection broadcasts published back to back",
        settings.connections, settings.events, settings.warmup
    );
    println!("machine: {}", procfs::machine());
    println!(
        "load average (1/5/15 min): {load_before} before, {} after",
        procfs::loadavg()
    );
    println!(
        "layout: loopback; server and load generator are separate processes, one Tokio \
         worker each; tidings: SQLite log in a temp dir, memory broker, default config; \
         tidings+pubthread: the same, publishing from its own thread"
    );
    let row = |name: &str, cell: &dyn Fn(&Phase) -> String| {
        let cells: String = phases
            .iter()
            .map(|(_, phase)| format!(" {:>18}", cell(phase)))
            .collect();
        println!("{name:<40}{cells}");
    };
    let header: String = phases
        .iter()
        .map(|(label, _)| format!(" {label:>18}"))
        .collect();
    println!("{:<40}{header}", "");
    row("connections ready (failed)", &|p| {
        format!("{} ({})", p.ready, p.failed)
    });
    row("connect+handshake time (s)", &|p| {
        format!("{:.1}", p.setup_ms as f64 / 1e3)
    });
    row("frame bytes (server / received avg)", &|p| {
        format!("{} / {}", p.frame_len, p.measured_frame_len().unwrap_or(0))
    });
    row("deliveries received / due", &|p| {
        format!("{}/{}", p.received, p.expected)
    });
    row("first publish -> last delivery (s)", &|p| {
        format!("{:.3}", p.elapsed_s)
    });
    row("DELIVERIES PER SECOND", &|p| {
        format!("{:.0}", p.deliveries_per_s())
    });
    row("deliveries per server CPU-second", &|p| {
        format!("{:.0}", p.deliveries_per_cpu_s())
    });
    row("first to last publish call start (ms)", &|p| {
        format!("{:.1}", p.publish_ms)
    });
    row("publish -> last delivery p50/p99 (ms)", &|p| {
        let mut last = p.to_last_ms.clone();
        format!(
            "{:.0} / {:.0}",
            percentile(&mut last, 50.0),
            percentile(&mut last, 99.0)
        )
    });
    row("publish -> first delivery p50/p99 (ms)", &|p| {
        let mut first = p.to_first_ms.clone();
        format!(
            "{:.1} / {:.1}",
            percentile(&mut first, 50.0),
            percentile(&mut first, 99.0)
        )
    });
    row("server CPU in window (% of a core)", &|p| {
        format!("{:.0}", 100.0 * p.server_cpu_s / p.window_s)
    });
    row("client CPU in window (% of a core)", &|p| {
        format!("{:.0}", 100.0 * p.client_cpu_s / p.window_s)
    });
    row("server RSS before connections (MB)", &|p| {
        format!("{:.1}", p.rss_before_kb as f64 / 1024.0)
    });
    row("server RSS per idle connection (kB)", &|p| {
        format!("{:.1}", p.rss_per_connection_kb())
    });
    row("server RSS after the fan-out (MB)", &|p| {
        format!("{:.1}", p.rss_after_kb as f64 / 1024.0)
    });
    for (label, phase) in phases {
        println!("{label}: connections ended during the run: {}", phase.ends);
        if !phase.server_stats.starts_with("receivers") {
            println!("{label}: server counters: {}", phase.server_stats);
        }
    }
    let (_, baseline) = phases[phases.len() - 1];
    for (label, phase) in &phases[..phases.len() - 1] {
        println!(
            "RATIO {label}/baseline: deliveries/s {:.2}, deliveries per server CPU-second \
             {:.2}, RSS per idle connection {:.2}",
            phase.deliveries_per_s() / baseline.deliveries_per_s(),
            phase.deliveries_per_cpu_s() / baseline.deliveries_per_cpu_s(),
            phase.rss_per_connection_kb() / baseline.rss_per_connection_kb()
        );
    }
    if !phases.iter().all(|(_, p)| p.complete()) {
        println!("INCOMPLETE: not every due event was delivered; see the rows above");
    }
    println!("total bench time {:.1} s", total.as_secs_f64());
}
