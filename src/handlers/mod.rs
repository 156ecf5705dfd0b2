//! Server-side handlers for client events: the app sees a client's `publish` (and its
//! `request`, an RPC over the same socket) before anyone else does, and decides what
//! becomes of it.
//!
//! - `registry`: which handler a frame goes to (the first registered whose pattern
//!   matches its topic), and the app's middleware.
//! - [`chain`]: the middleware chain, [`Next`], run in registration order.
//! - [`call`]: what a handler is given ([`Call`]): the client, the event, the store.
//! - [`outcome`]: what it answers ([`Outcome`]) or how it refuses ([`Reject`]).
//! - `runner`: where calls run: one at a time per connection, off the connection's
//!   read loop, each bounded by `handlers.timeout`, a panic answered `internal`.
//!
//! See `docs/handlers.md` for the guide and `docs/protocol.md` for the frames.

pub mod call;
pub mod chain;
pub mod outcome;
pub(crate) mod registry;
pub(crate) mod runner;

pub use call::{Call, CallKind};
pub use chain::{HandlerFuture, Next};
pub use outcome::{Outcome, Reject};
