//! Fan-out throughput: one event to N subscribed WebSocket connections on one node.
//!
//! Run with `cargo bench --bench fanout`. The bench binary plays three roles, chosen by
//! the internal `FANOUT_ROLE` variable:
//!
//! * the orchestrator (what `cargo bench` starts): spawns the other two as child
//!   processes of the same executable, drives them over stdin/stdout, reads their RSS
//!   and CPU time from `/proc`, and prints the summary;
//! * a server (`FANOUT_ROLE=server`): either a real tidings gateway (SQLite file in a
//!   temporary directory, memory broker, demo rules, default config) or the baseline,
//!   a minimal axum WebSocket broadcast server; each on a one-worker Tokio runtime;
//! * the load generator (`FANOUT_ROLE=client`): N tokio-tungstenite clients over
//!   loopback, on a one-worker runtime of its own.
//!
//! A run has three phases, each with fresh processes: tidings publishing from a task
//! on its server runtime, tidings publishing from a thread of its own, and the
//! baseline, whose frames are padded to the size tidings delivered.
//!
//! Separate processes, not threads, because 10,000 connections are 20,000 sockets
//! when both ends live in one process, which `ulimit -n` 20000 does not allow, and
//! because a fresh server process makes "RSS after connecting minus RSS before" a
//! per-connection figure that neither the client sockets nor the previous phase's
//! freed-but-retained heap can blur.
//!
//! Settings (environment, all optional): `FANOUT_CONNECTIONS` (10000), `FANOUT_EVENTS`
//! (200), `FANOUT_WARMUP` (10 events, not measured), `FANOUT_QUEUE` (tidings
//! `send_queue_capacity`, default: the config default, 1024), `FANOUT_TIMEOUT_S` (60,
//! per wait), `FANOUT_CONNECT_PARALLEL` (64 handshakes in flight).
//!
//! What is measured and how to read it: `docs/benchmarks.md`.

// A binary: `pub` here means "for the other roles' files", not an API.
#[allow(unreachable_pub)]
mod fanout {
    pub mod client;
    pub mod orchestrator;
    pub mod procfs;
    pub mod server;
    pub mod wire;
}

fn main() {
    match std::env::var("FANOUT_ROLE").as_deref() {
        Ok("server") => fanout::server::main(),
        Ok("client") => fanout::client::main(),
        Ok(other) => panic!("unknown FANOUT_ROLE {other:?}"),
        Err(_) => fanout::orchestrator::main(),
    }
}
