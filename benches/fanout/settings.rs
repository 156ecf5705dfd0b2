//! What one run uses, read once by the orchestrator from `FANOUT_*` variables and
//! handed to every child process in the same variables, so all roles agree.

use std::time::Duration;

use super::wire::{self, Baseline};

/// How events are published in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Closed loop: event k + window goes out only once event k reached every
    /// subscriber. Saturates the server without letting queues grow without bound.
    Max,
    /// Open loop at a fixed number of deliveries per second (events/s = rate / N).
    Fixed,
    /// What the server alone can deliver, for each worker count (issue 12, goal 3):
    /// the subscribers stop reading, `burst_events` events go out at once, and the
    /// deliveries are counted over the server's busy time, while the load generator
    /// uses no CPU. Each subscriber's share of the burst must fit in its socket's
    /// receive buffer.
    Burst,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Fixed => "fixed",
            Self::Burst => "burst",
        }
    }

    pub fn parse(name: &str) -> Self {
        match name {
            "max" => Self::Max,
            "fixed" => Self::Fixed,
            "burst" => Self::Burst,
            other => panic!("unknown mode {other:?} (max, fixed or burst)"),
        }
    }

    /// `FANOUT_MODE`: comma-separated `max`, `fixed`, `burst`, or `both` (max and
    /// fixed, the default).
    fn list_from_env() -> Vec<Self> {
        let list = std::env::var("FANOUT_MODE").unwrap_or_else(|_| "both".to_owned());
        let mut modes = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let named: &[Self] = match name {
                "both" => &[Self::Max, Self::Fixed],
                "max" => &[Self::Max],
                "fixed" => &[Self::Fixed],
                "burst" => &[Self::Burst],
                other => panic!("FANOUT_MODE: unknown mode {other:?} (max, fixed, burst or both)"),
            };
            for &mode in named {
                if !modes.contains(&mode) {
                    modes.push(mode);
                }
            }
        }
        assert!(!modes.is_empty(), "FANOUT_MODE names no mode");
        modes
    }
}

/// Settings shared by every phase of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connections: usize,
    pub modes: Vec<Mode>,
    /// The baseline designs run after tidings in each round and mode, in this order;
    /// tidings' ratios are printed against each.
    pub baselines: Vec<Baseline>,
    pub rounds: usize,
    /// Events not yet delivered to every subscriber, at most (closed loop).
    pub window: usize,
    /// Deliveries per second in fixed-rate mode.
    pub rate: usize,
    /// Bytes of the JSON payload each event carries.
    pub payload: usize,
    /// Measured publishing time per mode.
    pub max_secs: f64,
    pub fixed_secs: f64,
    /// Burst mode: events published at once, and the server's worker threads in each
    /// of its phases (`TOKIO_WORKER_THREADS`; the server is not pinned).
    pub burst_events: usize,
    pub burst_workers: Vec<usize>,
    /// Burst mode: the receive buffer each subscriber asks for (`SO_RCVBUF`) before
    /// it connects, so that a longer burst fits unread; 0 keeps the kernel's default.
    pub burst_receive_buffer: usize,
    /// Unmeasured publishing before each measurement.
    pub warmup_secs: f64,
    /// Quiet time between the last subscription and the idle RSS reading.
    pub settle_secs: f64,
    /// Bounds every wait for a child.
    pub timeout: Duration,
    /// CPUs for the server and the load generator, or `None` to leave both unpinned.
    pub cpus: Option<(usize, usize)>,
    /// True under `cargo bench`; false for the tiny smoke run of `cargo test --benches`.
    pub measuring: bool,
}

impl Settings {
    /// The run's settings: the environment under `cargo bench`, a tiny fixed run
    /// otherwise (a check that every path works, measuring nothing).
    pub fn from_env(measuring: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let cpus = (cores >= 2 && std::env::var("FANOUT_PIN").as_deref() != Ok("0")).then(|| {
            (
                wire::env_usize("FANOUT_SERVER_CPU", 0),
                wire::env_usize("FANOUT_CLIENT_CPU", 1),
            )
        });
        let base = Self {
            connections: wire::env_usize("FANOUT_CONNECTIONS", 10_000),
            modes: Mode::list_from_env(),
            baselines: Baseline::list_from_env(),
            rounds: wire::env_usize("FANOUT_ROUNDS", 3).max(1),
            window: wire::env_usize("FANOUT_WINDOW", 4).max(1),
            rate: wire::env_usize("FANOUT_RATE", 20_000).max(1),
            payload: wire::env_usize("FANOUT_PAYLOAD", 100),
            max_secs: wire::env_f64("FANOUT_MAX_SECS", 5.0),
            fixed_secs: wire::env_f64("FANOUT_FIXED_SECS", 10.0),
            burst_events: wire::env_usize("FANOUT_BURST_EVENTS", 50).max(1),
            burst_workers: workers_from_env(),
            burst_receive_buffer: wire::env_usize("FANOUT_BURST_RCVBUF", 1 << 20),
            warmup_secs: wire::env_f64("FANOUT_WARMUP_SECS", 1.0),
            settle_secs: wire::env_f64("FANOUT_SETTLE_SECS", 2.0),
            timeout: Duration::from_secs(wire::env_usize("FANOUT_TIMEOUT_S", 60) as u64),
            cpus,
            measuring,
        };
        if measuring {
            return base;
        }
        // Small enough to take seconds, large enough that every path runs: both modes,
        // every server, a window that fills, a rate that publishes several events.
        Self {
            connections: 20,
            modes: vec![Mode::Max, Mode::Fixed, Mode::Burst],
            burst_events: 5,
            baselines: Baseline::ALL.to_vec(),
            rounds: 1,
            rate: 2_000,
            max_secs: 0.5,
            fixed_secs: 0.5,
            warmup_secs: 0.2,
            settle_secs: 0.2,
            timeout: Duration::from_secs(20),
            ..base
        }
    }

    /// Measured publishing time of `mode` (a burst is published as fast as it goes).
    pub fn secs(&self, mode: Mode) -> f64 {
        match mode {
            Mode::Max => self.max_secs,
            Mode::Fixed => self.fixed_secs,
            Mode::Burst => 0.0,
        }
    }

    /// Events per second in fixed-rate mode: the delivery rate spread over N.
    pub fn events_per_sec(&self) -> f64 {
        self.rate as f64 / self.connections.max(1) as f64
    }

    /// The variables that carry these settings to a child process.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FANOUT_CONNECTIONS", self.connections.to_string()),
            ("FANOUT_WINDOW", self.window.to_string()),
            ("FANOUT_RATE", self.rate.to_string()),
            ("FANOUT_PAYLOAD", self.payload.to_string()),
            ("FANOUT_MAX_SECS", self.max_secs.to_string()),
            ("FANOUT_FIXED_SECS", self.fixed_secs.to_string()),
            ("FANOUT_BURST_EVENTS", self.burst_events.to_string()),
            ("FANOUT_WARMUP_SECS", self.warmup_secs.to_string()),
            ("FANOUT_TIMEOUT_S", self.timeout.as_secs().to_string()),
        ]
    }
}

/// `FANOUT_BURST_WORKERS`: comma-separated worker counts, `1,2` by default.
fn workers_from_env() -> Vec<usize> {
    let list = std::env::var("FANOUT_BURST_WORKERS").unwrap_or_else(|_| "1,2".to_owned());
    let workers: Vec<usize> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| match n.parse() {
            Ok(count) if count >= 1 => count,
            _ => panic!("FANOUT_BURST_WORKERS: {n:?} is not a worker count (1 or more)"),
        })
        .collect();
    assert!(
        !workers.is_empty(),
        "FANOUT_BURST_WORKERS names no worker count"
    );
    workers
}
