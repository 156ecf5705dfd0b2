//! Presence: who is subscribed to a topic with `"presence": true`, on every node.
//!
//! A topic is the pattern a client subscribed to (`chat:lobby`). Its members are user
//! ids, each counted once however many connections (tabs) it has, with a connection
//! count; anonymous connections count as connections only.
//!
//! Each node owns its local members and tells the others over the broker: a delta
//! when a count changes, and its full state every `presence.sync_interval`, split into
//! parts that fit the smallest broker. Every node merges the states per node, so a
//! lost delta is repaired by the next full state, and a node not heard from within
//! `presence.node_ttl` is dropped with its members. `join` and `leave` frames are
//! computed on each node from changes of the merged view, for its own subscribers; a
//! leave waits `presence.grace`, so a page reload sends neither.
//!
//! The parts, each pure except the last two: `counts` (connections per user on one
//! topic), `cluster` (the merged view, per node), `peers` (liveness, ordering and
//! full-state assembly per remote node), `grace` (delayed leaves), `local` (this
//! node's subscriptions), `outlets` (frames to local subscribers), `wire` (the broker
//! form), `state` (all of them behind one lock); `node` (the lock, the API the
//! transports use) and `task` (the sync task: publishing, expiry, grace deadlines).

mod cluster;
mod counts;
mod grace;
mod local;
mod node;
mod outlets;
mod peers;
mod state;
mod task;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use serde::Serialize;

pub(crate) use node::PresenceNode;
pub(crate) use outlets::{Outlet, PresenceFrames};
pub(crate) use task::run as run_sync;

/// Who is present on a topic across the cluster, as
/// [`Realtime::presence`](crate::Realtime::presence) answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Presence {
    /// Signed-in users, sorted by user id, each once with its connection count. A user
    /// whose last connection went away less than `presence.grace` ago is still listed,
    /// with 0 connections, until its `leave`.
    pub users: Vec<PresenceUser>,
    /// Every connection present, anonymous ones included.
    pub connections: usize,
}

/// One user present on a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceUser {
    /// The token's `sub`.
    pub user_id: String,
    /// The user's connections to the topic, on every node.
    pub connections: usize,
}
