//! What one run measures, read once from `WRITE_PATH_*` variables (or a tiny fixed
//! smoke run without `--bench`, as under `cargo test --benches`).

use std::time::Duration;

/// A database the bench runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file in a fresh temporary directory.
    Sqlite,
    /// A fresh schema on `DATABASE_URL` (or the tests' default Postgres).
    Postgres,
}

impl Database {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    fn parse(name: &str) -> Self {
        match name.trim() {
            "sqlite" => Self::Sqlite,
            "postgres" => Self::Postgres,
            other => panic!("WRITE_PATH_DATABASES: unknown database {other:?}"),
        }
    }
}

/// Settings shared by every phase of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub databases: Vec<Database>,
    /// Model writes per second of the latency points (open loop).
    pub rates: Vec<usize>,
    /// Measured writing time of each latency point.
    pub latency_secs: f64,
    /// Writes before the measured ones, at the same rate, whose latencies are dropped.
    pub warmup_secs: f64,
    /// How long the subscriber keeps waiting for missing events after the last write.
    pub drain: Duration,
    /// Concurrent closed-loop writers of the outbox-cost phases.
    pub writers: Vec<usize>,
    /// Measured time of one outbox-cost phase.
    pub cost_secs: f64,
    /// Outbox-cost rounds; each runs every variant, in reversed order every other round.
    pub rounds: usize,
    /// The node's `log.relay_linger`, when set; the library's default otherwise.
    pub relay_linger: Option<Duration>,
    /// True under `cargo bench`; false for the smoke run, which measures nothing.
    pub measuring: bool,
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned())
        .collect()
}

fn env_numbers(name: &str, default: &str) -> Vec<usize> {
    env_list(name, default)
        .iter()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must list numbers, got {v:?}"))
        })
        .collect()
}

impl Settings {
    pub fn from_env(measuring: bool) -> Self {
        let base = Self {
            databases: env_list("WRITE_PATH_DATABASES", "sqlite,postgres")
                .iter()
                .map(|name| Database::parse(name))
                .collect(),
            rates: env_numbers("WRITE_PATH_RATES", "100,1000"),
            latency_secs: env_f64("WRITE_PATH_SECS", 10.0),
            warmup_secs: env_f64("WRITE_PATH_WARMUP_SECS", 1.0),
            drain: Duration::from_secs_f64(env_f64("WRITE_PATH_DRAIN_SECS", 10.0)),
            writers: env_numbers("WRITE_PATH_WRITERS", "1,4"),
            cost_secs: env_f64("WRITE_PATH_COST_SECS", 2.0),
            rounds: env_numbers("WRITE_PATH_ROUNDS", "3")
                .first()
                .copied()
                .unwrap_or(3)
                .max(1),
            relay_linger: std::env::var_os("WRITE_PATH_RELAY_LINGER_MS").map(|_| {
                let ms = env_f64("WRITE_PATH_RELAY_LINGER_MS", 0.0);
                Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_else(|_| {
                    panic!("WRITE_PATH_RELAY_LINGER_MS must be at least 0, got {ms}")
                })
            }),
            measuring,
        };
        if measuring {
            return base;
        }
        // Seconds in all, yet every path runs: both rates, both variants, two rounds
        // (so the alternating order is exercised).
        Self {
            latency_secs: 0.5,
            warmup_secs: 0.2,
            drain: Duration::from_secs(5),
            cost_secs: 0.3,
            rounds: 2,
            ..base
        }
    }

    /// The writes of one latency point, warm-up included, and how many are warm-up.
    pub fn latency_writes(&self, rate: usize) -> (usize, usize) {
        let warmup = (self.warmup_secs * rate as f64).round() as usize;
        let measured = (self.latency_secs * rate as f64).round() as usize;
        (warmup + measured, warmup)
    }
}
