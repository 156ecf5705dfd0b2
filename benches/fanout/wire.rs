//! What the roles share: environment helpers, the HS256 secret, the server kinds and
//! baseline designs, and the line-based control protocol between the orchestrator and
//! its children.

/// The HS256 secret of the bench's tidings server; the load generator signs with it.
pub const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

/// The pattern every client subscribes to.
pub const PATTERN: &str = "todos:*";

/// A numeric setting from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// A decimal setting from the environment, or `default`.
pub fn env_f64(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// A required setting, passed by the orchestrator to a child.
pub fn env_required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the orchestrator"))
}

/// Which server a phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The tidings gateway.
    Tidings,
    /// A hand-written axum server, this executable's `server` role (`baseline.rs`).
    Baseline(Baseline),
}

impl Kind {
    /// The name used in `FANOUT_SERVER`, in the summary and in the JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tidings => "tidings",
            Self::Baseline(design) => design.name(),
        }
    }

    /// Parses `FANOUT_SERVER`.
    pub fn from_env() -> Self {
        let name = env_required("FANOUT_SERVER");
        if name == "tidings" {
            return Self::Tidings;
        }
        Baseline::parse(&name)
            .map(Self::Baseline)
            .unwrap_or_else(|| panic!("unknown FANOUT_SERVER {name:?}"))
    }
}

/// How a baseline server hands a published frame to its connections. Both speak the
/// same protocol, so the load generator treats them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// A bounded `mpsc` queue per connection behind a registry, as the shared tool's
    /// `peers/axum-raw` does (`baseline/queue.rs`): the baseline the ratios of
    /// `../shared/tools/fanout-compare.sh` are against, so the default here too.
    AxumRaw,
    /// One `tokio::sync::broadcast` ring every connection reads (`baseline/ring.rs`):
    /// cheaper per delivery, a stronger floor than `AxumRaw`.
    Ring,
}

impl Baseline {
    /// Every design, in the order the orchestrator runs them when asked for all.
    pub const ALL: [Self; 2] = [Self::AxumRaw, Self::Ring];

    /// The name used in `FANOUT_BASELINES`, `FANOUT_SERVER` and the summary.
    pub fn name(self) -> &'static str {
        match self {
            Self::AxumRaw => "axum-raw",
            Self::Ring => "ring",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|design| design.name() == name)
    }

    /// `FANOUT_BASELINES`: a comma-separated list of designs (`axum-raw`, `ring`),
    /// run in that order; `axum-raw` alone when unset.
    pub fn list_from_env() -> Vec<Self> {
        let Ok(list) = std::env::var("FANOUT_BASELINES") else {
            return vec![Self::AxumRaw];
        };
        let mut designs = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let design = Self::parse(name).unwrap_or_else(|| {
                panic!("FANOUT_BASELINES: unknown baseline {name:?} (axum-raw or ring)")
            });
            if !designs.contains(&design) {
                designs.push(design);
            }
        }
        assert!(
            !designs.is_empty(),
            "FANOUT_BASELINES names no baseline (axum-raw, ring or both, comma-separated)"
        );
        designs
    }
}

/// The numbers after a control line's keyword.
pub fn numbers(rest: &str) -> Vec<u64> {
    rest.split_whitespace()
        .map(|n| n.parse().expect("a number on a control line"))
        .collect()
}
