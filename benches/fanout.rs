//! Fan-out: events published over HTTP to N WebSocket subscribers of `todos:*` on one
//! node, tidings against a hand-written axum broadcast server measured in the same run.
//!
//! Run with `cargo bench --bench fanout`. It follows the methodology of
//! `../shared/tools/fanout-compare.sh` (server and load generator pinned to one CPU
//! each, 100-byte payloads published with `POST`, a closed-loop and a fixed-rate mode,
//! medians over rounds, ratio tidings/baseline) and, by default, its baseline design
//! (`axum-raw`: a bounded queue per connection), so the two should agree within noise.
//!
//! The bench binary plays three roles, chosen by the internal `FANOUT_ROLE` variable:
//!
//! * the orchestrator (what `cargo bench` starts): per round and mode, starts a fresh
//!   server (the `tidings` reference binary, or this executable as a baseline) and
//!   a fresh load generator, reads their RSS and CPU time from `/proc`, and prints
//!   the summary;
//! * a baseline server (`FANOUT_ROLE=server`, `fanout/baseline.rs`): `axum-raw`, the
//!   shared tool's design (`baseline/queue.rs`), or `ring`, one broadcast ring
//!   (`baseline/ring.rs`), a stronger floor;
//! * the load generator (`FANOUT_ROLE=client`): N tokio-tungstenite subscribers and
//!   an HTTP publisher, on a one-worker runtime.
//!
//! Separate processes, not threads, because 10,000 connections are 20,000 sockets
//! when both ends live in one process, which `ulimit -n` 20000 does not allow, and
//! because a fresh server process makes "RSS after connecting minus RSS before" a
//! per-connection figure.
//!
//! Burst mode (`FANOUT_MODE=burst`, issue 12's goal 3) measures what the server alone
//! delivers with 1 and with 2 worker threads on a 2-core machine, where the closed loop
//! cannot (its load generator needs a core of its own): the subscribers stop reading,
//! `FANOUT_BURST_EVENTS` events go out at once, each subscriber's share waits in its
//! socket's receive buffer, and the deliveries are counted over the time the server's
//! threads stayed busy (`fanout/busy.rs`). The server runs unpinned.
//!
//! Settings (environment, all optional): `FANOUT_MODE` (comma-separated max, fixed,
//! burst, or both: max and fixed, the default), `FANOUT_BASELINES` (comma-separated,
//! run in that order: `axum-raw`, the default, and/or `ring`), `FANOUT_CONNECTIONS`
//! (10000), `FANOUT_ROUNDS` (3), `FANOUT_WINDOW` (4; in burst mode the requests in
//! flight), `FANOUT_RATE` (20000 deliveries/s), `FANOUT_PAYLOAD` (100 bytes),
//! `FANOUT_MAX_SECS` (5), `FANOUT_FIXED_SECS` (10), `FANOUT_BURST_EVENTS` (50),
//! `FANOUT_BURST_WORKERS` (1,2), `FANOUT_WARMUP_SECS` (1), `FANOUT_SETTLE_SECS` (2),
//! `FANOUT_TIMEOUT_S` (60), `FANOUT_SERVER_CPU` (0), `FANOUT_CLIENT_CPU` (1), `FANOUT_PIN=0` (no pinning), `FANOUT_JSON` (append one
//! JSON line per phase to this file; `scripts/bench-plots` draws them).
//!
//! What is measured and how to read it: `docs/benchmarks.md`.

// A binary: `pub` here means "for the other roles' files", not an API.
#[allow(unreachable_pub)]
mod fanout {
    pub mod baseline;
    pub mod busy;
    pub mod child;
    pub mod client;
    pub mod latency;
    pub mod marker;
    pub mod orchestrator;
    pub mod procfs;
    pub mod publisher;
    pub mod report;
    pub mod servers;
    pub mod settings;
    pub mod tally;
    pub mod wire;
}

fn main() {
    match std::env::var("FANOUT_ROLE").as_deref() {
        Ok("server") => fanout::baseline::main(),
        Ok("client") => fanout::client::main(),
        Ok(other) => panic!("unknown FANOUT_ROLE {other:?}"),
        Err(_) => fanout::orchestrator::main(),
    }
}
