//! Live data for axum apps.
//!
//! tidings is a realtime gateway you add to an axum application. Browsers connect over
//! WebSocket (`/realtime/subscribe`) or Datastar SSE (`/realtime/sse`), authenticate
//! with a JWT and subscribe to patterns such as `todos:*` or `todos:42`. Every
//! committed create, update or delete made through the [model layer](model) becomes an
//! event, delivered to every subscriber allowed to read it; a rolled-back write emits
//! nothing, and a committed write is never lost, because **the database is the event
//! log**: the write and its event row commit in one transaction, and a broker only
//! rings the doorbell between nodes. Custom events go to a collection, a topic,
//! connections or users with [`Realtime::broadcast`].
//!
//! # Example
//!
//! ```no_run
//! use tidings::{Config, Db, Model, Realtime, Rule, Rules};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Model)]
//! #[tidings(collection = "todos")]
//! struct Todo { id: String, title: String, owner_id: String }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::default();
//! config.jwt.secret = Some(std::env::var("JWT_SECRET")?);
//! let realtime = Realtime::builder(config, Db::connect("sqlite:app.db").await?)
//!     // Signed-in users read todos; only the server writes them.
//!     .rules(Rules::new().collection("todos", Rule::Authenticated, Rule::Deny))
//!     .build()
//!     .await?;
//!
//! // A write and its event commit together: subscribers of `todos:*` get "create".
//! let mut tx = realtime.store().begin().await?;
//! tx.insert(&Todo { id: "1".into(), title: "milk".into(), owner_id: "ann".into() }).await?;
//! tx.commit().await?;
//!
//! // Mount the gateway's routes next to your own, and serve them with the gateway's
//! // transport limits (timeouts and caps before the upgrade, docs/security.md).
//! let app = axum::Router::new().merge(realtime.router());
//! realtime.serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
//! # Ok(()) }
//! ```
//!
//! In the browser, `import { RealtimeClient } from "/realtime/client.js"` and call
//! `client.subscribe("todos:*", onEvent)`.
//!
//! # Where to go next
//!
//! - [`RealtimeBuilder`]: rules, a broker between nodes, subscription callbacks,
//!   Datastar renderers and snapshots.
//! - [`Rules`] and [`Rule`]: who reads and who publishes each collection; [`Rules::admit`]
//!   is the one access decision every transport asks.
//! - [`model`]: [`Model`](model::Model), the [`Store`](model::Store) and transactions.
//! - [`handlers`]: the app's own code for client events (`publish`, and `request`
//!   RPCs), behind a middleware chain ([`RealtimeBuilder::on_publish`]).
//! - [`sse`]: the Datastar bridge (rendered HTML patches over SSE).
//! - [`broker`]: what carries doorbells between nodes (memory, Redis, NATS, Postgres
//!   LISTEN/NOTIFY) and how a node watches it ([`Realtime::broker_status`]).
//! - [`Realtime::presence`]: who is subscribed to a topic, across every node.
//! - [`config`]: every setting and its default.
//! - `testing` (cargo feature `testing`): a gateway on in-memory SQLite for the app's
//!   own tests, the events its writes emitted and who would receive them.
//! - The repository's `docs/`: the wire protocol, the architecture, the browser client,
//!   and `docs/brokers.md` for running many nodes.

// Lets `#[derive(Model)]`'s `::tidings::...` paths resolve inside this crate too (the
// demo models use the derive).
extern crate self as tidings;

mod access;
mod app;
mod auth;
mod broadcast;
pub mod broker;
pub mod capture;
mod close;
pub mod config;
mod db;
#[cfg(feature = "demo")]
#[doc(hidden)]
pub mod demo;
mod event;
pub mod filter;
pub mod handlers;
mod hooks;
#[cfg(test)]
mod hostile_input;
mod http;
mod hub;
mod limits;
mod log;
mod metrics;
pub mod model;
mod mutation;
mod presence;
mod protocol;
mod publisher;
mod rules;
mod serve;
mod source;
pub mod sse;
#[cfg(feature = "testing")]
pub mod testing;
mod topic;
mod write_deadline;
mod write_turns;
mod ws;

pub use access::Admission;
pub use app::{BuildError, Realtime, RealtimeBuilder};
pub use auth::{
    AuthError, Authenticator, BearerCaller, Caller, JwtVerifier, KeyError, Principal, bearer_token,
};
pub use broadcast::{
    Broadcast, BroadcastError, MAX_EVENT_NAME_LEN, MAX_TARGET_IDS, Target, realtime_broadcast,
};
pub use config::Config;
pub use db::{Db, DbError, DbOptions, tolerate_other_migrations};
pub use event::{Action, Cursor, CursorError, LogEntry};
pub use hooks::SubscriptionCallback;
pub use http::{HttpError, PUBLISHER_ROLE};
pub use hub::{GlobLimits, SubscribeError};
pub use metrics::Metrics;
pub use model::Model;
pub use mutation::{MAX_MUTATION_LEN, MutationError, MutationId};
pub use presence::{Presence, PresenceUser};
pub use protocol::{ErrorCode, ResyncReason};
pub use rules::{Decision, Rule, RuleFn, RuleParseError, Rules};
pub use source::Source;
pub use topic::{Pattern, Topic, TopicError};
pub use write_deadline::{DeadlineIo, WriteDeadline};

/// Internals the crate's own benchmarks and integration tests reach into. Not part of
/// the API: anything here may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::auth::unix_now;
    pub use crate::broadcast::Prepared;
    pub use crate::broker::{
        fit::{fit_payload, fit_payload_by},
        message::BrokerMessage,
    };
    pub use crate::close::Closer;
    pub use crate::event::{DirectEvent, Event, Recipients};
    pub use crate::hub::{Delivery, Hub, Inbox, Receiver};
    pub use crate::log::RelaySignal;
    pub use crate::log::outbox::{
        bind_event as bind_event_row, insert_sqlite as insert_event_row_sqlite,
        postgres_write_with_event,
    };
    pub use crate::log::reader::read_range as read_log_range;
    pub use crate::model::{capture_mute, insert_event as model_insert_event};
    pub use crate::presence::wire::{PresenceEntry, PresenceUpdate};
    pub use crate::sse::mapping::{
        direct_mapping, encode_cursor, encode_event, keep_alive, reset_signals,
    };
    pub use crate::ws::echo::echo_router;
    pub use crate::ws::outbound::Outbound;
}
