//! tidings: live data for axum apps.
//!
//! Browsers subscribe to `collection:key` patterns over WebSocket (or Datastar SSE);
//! every committed create/update/delete of a model becomes an event, and the app can
//! send custom events with [`realtime_broadcast`]. The database is the event log; a
//! broker only rings the doorbell between nodes. See `docs/architecture.md`.

pub mod access;
pub mod app;
pub mod auth;
pub mod broadcast;
pub mod broker;
pub mod close;
pub mod config;
pub mod db;
#[cfg(feature = "demo")]
#[doc(hidden)]
pub mod demo;
pub mod event;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod log;
pub mod metrics;
pub mod model;
pub mod protocol;
mod publisher;
pub mod rules;
pub mod sse;
pub mod topic;
mod ws;

pub use app::{BuildError, Realtime, RealtimeBuilder};
pub use auth::Principal;
pub use auth::bearer_token;
pub use broadcast::{Broadcast, Target, realtime_broadcast};
pub use config::Config;
pub use db::Db;
pub use rules::{Rule, Rules};
