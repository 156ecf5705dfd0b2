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
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Fixed => "fixed",
        }
    }

    pub fn parse(name: &str) -> Self {
        match name {
            "max" => Self::Max,
            "fixed" => Self::Fixed,
            other => panic!("unknown mode {other:?} (max or fixed)"),
        }
    }

    /// `FANOUT_MODE`: `max`, `fixed` or `both` (the default).
    fn list_from_env() -> Vec<Self> {
        match std::env::var("FANOUT_MODE").as_deref() {
            Ok("max") => vec![Self::Max],
            Ok("fixed") => vec![Self::Fixed],
            Ok("both") | Err(_) => vec![Self::Max, Self::Fixed],
            Ok(other) => panic!("FANOUT_MODE must be max, fixed or both, got {other:?}"),
        }
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
            modes: vec![Mode::Max, Mode::Fixed],
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

    /// Measured publishing time of `mode`.
    pub fn secs(&self, mode: Mode) -> f64 {
        match mode {
            Mode::Max => self.max_secs,
            Mode::Fixed => self.fixed_secs,
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
            ("FANOUT_WARMUP_SECS", self.warmup_secs.to_string()),
            ("FANOUT_TIMEOUT_S", self.timeout.as_secs().to_string()),
        ]
    }
}
