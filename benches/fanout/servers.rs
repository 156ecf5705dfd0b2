//! Starting the server of a phase. Tidings is the reference server itself (the
//! `tidings` binary cargo builds next to this bench, with every feature on: JWT auth,
//! the demo rules, patterns, the SQLite log, the memory broker), configured the way
//! `../shared/tools/fanout-compare.sh` configures it. A baseline is this
//! executable's `server` role (`baseline.rs`), told its design in `FANOUT_BASELINE`.

use std::{path::PathBuf, time::Duration};

use super::{
    child::Child,
    settings::Settings,
    wire::{Kind, SECRET},
};

/// The reference server, built by cargo for this bench (same profile).
const TIDINGS_BIN: &str = env!("CARGO_BIN_EXE_tidings");

/// The reference server's default `max_connections`, and its default caps per user
/// and per address, which the bench's subscribers (one user, one address) all count
/// against; more connections need all three raised.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// A running server: the process, its address, and the SQLite directory it uses.
pub struct Server {
    pub child: Child,
    pub addr: String,
    sqlite_dir: Option<TempDir>,
}

impl Server {
    /// Ends the server and removes its directory. The reference server does not read
    /// stdin, so it is killed at once; the baseline is asked to quit first.
    pub fn stop(self) {
        let grace = if self.sqlite_dir.is_some() { 0 } else { 5 };
        self.child.quit(Duration::from_secs(grace));
    }
}

/// Starts a fresh server of `kind`; `frame_len` pads the baseline's frames. With
/// `workers` (burst mode) it runs that many Tokio worker threads on every CPU, and
/// tidings pings nobody: subscribers that stop reading cannot answer, and pings would
/// keep the server from going quiet when the burst is done.
pub fn start(kind: Kind, settings: &Settings, frame_len: usize, workers: Option<usize>) -> Server {
    let cpu = settings
        .cpus
        .map(|(server, _)| server)
        .filter(|_| workers.is_none());
    let mut env = Vec::new();
    if let Some(workers) = workers {
        env.push(("TOKIO_WORKER_THREADS", workers.to_string()));
        if kind == Kind::Tidings {
            env.push(("TIDINGS_PING_INTERVAL", "1h".to_owned()));
        }
    }
    let startup = Duration::from_secs(30);
    match kind {
        Kind::Tidings => {
            let dir = TempDir::new();
            env.extend([
                ("TIDINGS_BIND", "127.0.0.1:0".to_owned()),
                (
                    "TIDINGS_DATABASE_URL",
                    format!("sqlite://{}/bench.sqlite", dir.0.display()),
                ),
                ("TIDINGS_BROKER_URL", "memory".to_owned()),
                ("TIDINGS_JWT_SECRET", SECRET.to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ]);
            if settings.connections > DEFAULT_MAX_CONNECTIONS {
                for cap in [
                    "TIDINGS_MAX_CONNECTIONS",
                    "TIDINGS_MAX_CONNECTIONS_PER_USER",
                    "TIDINGS_MAX_CONNECTIONS_PER_IP",
                ] {
                    env.push((cap, settings.connections.to_string()));
                }
            }
            let mut child = Child::spawn("tidings", TIDINGS_BIN, cpu, &env);
            // "tidings listening on http://127.0.0.1:PORT"
            let rest = child.expect("tidings", startup);
            let addr = rest
                .trim()
                .strip_prefix("listening on http://")
                .unwrap_or_else(|| panic!("unexpected startup line: tidings {rest}"))
                .to_owned();
            Server {
                child,
                addr,
                sqlite_dir: Some(dir),
            }
        }
        Kind::Baseline(design) => {
            let exe = std::env::current_exe().expect("current exe");
            env.extend([
                ("FANOUT_ROLE", "server".to_owned()),
                ("FANOUT_BASELINE", design.name().to_owned()),
                ("FANOUT_FRAME_LEN", frame_len.to_string()),
            ]);
            let mut child = Child::spawn(design.name(), &exe.display().to_string(), cpu, &env);
            let addr = child.expect("listening", startup).trim().to_owned();
            Server {
                child,
                addr,
                sqlite_dir: None,
            }
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
