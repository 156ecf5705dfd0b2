//! What the roles share: environment helpers, the HS256 secret, the server kinds, and
//! the line-based control protocol between the orchestrator and its children.

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
    /// The hand-written axum broadcast server (`baseline.rs`).
    Baseline,
}

impl Kind {
    /// The name used in `FANOUT_SERVER` and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tidings => "tidings",
            Self::Baseline => "baseline",
        }
    }

    /// Parses `FANOUT_SERVER`.
    pub fn from_env() -> Self {
        match env_required("FANOUT_SERVER").as_str() {
            "tidings" => Self::Tidings,
            "baseline" => Self::Baseline,
            other => panic!("unknown FANOUT_SERVER {other:?}"),
        }
    }
}

/// The numbers after a control line's keyword.
pub fn numbers(rest: &str) -> Vec<u64> {
    rest.split_whitespace()
        .map(|n| n.parse().expect("a number on a control line"))
        .collect()
}
