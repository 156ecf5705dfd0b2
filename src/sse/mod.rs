//! The Datastar bridge's encoding layer: log events to Datastar 1.0 SSE bytes.
//!
//! The encoding layer is pure: no I/O, no clock, no hub. The `/realtime/sse` endpoint
//! encodes each log event once with [`encode_event`] and writes the same
//! [`bytes::Bytes`] to every stream whose patterns match; an app's renderer or a
//! `datastar_broadcast(topic, |sse| ...)` closure fills an [`EventCollector`].
//!
//! Wire format (Datastar 1.0, `text/event-stream`): one block per Datastar event, then
//! a block holding only the log event's cursor, which is what the client resumes from:
//!
//! ```text
//! event: datastar-patch-signals
//! data: signals {"tidings":{"todos":{"42":{"id":42,"title":"milk"}}}}
//!
//! id: 3f9c:42
//!
//! ```
//!
//! - `collector`: [`EventCollector`], patch-elements, patch-signals, execute-script,
//!   rendered once per event and closed by its id.
//! - `mapping`: the default mapping of log events to signals, the reset patch, and
//!   the per-collection [`Renderer`] hook.
//! - `sanitize`: why no input can add an SSE field or event, and the helpers that
//!   make it so.
//! - `error`: [`SseError`], what the layer refuses.
//!
//! The streams themselves:
//!
//! - `stream`: one stream's registration, start (replay or snapshot) and body, one
//!   file each; [`StreamError`], why a stream is refused.
//! - `endpoint`: `GET /realtime/sse` and [`Realtime::sse_principal`](crate::Realtime::sse_principal).
//! - `state`: the narrow parts of the gateway the streams work with.
//! - `api`: `Realtime::datastar_broadcast` and `Realtime::datastar_stream`.
//! - `hooks`: what the app registers on the builder (renderers, snapshot).
//!
//! See `docs/datastar.md` for the page side.

mod api;
mod collector;
mod endpoint;
mod error;
pub(crate) mod hooks;
pub(crate) mod mapping;
mod sanitize;
mod state;
mod stream;

pub use api::{DATASTAR_EVENT_NAME, DatastarBroadcastError, Fill, StreamSetup};
pub use collector::{EventCollector, PatchOptions};
pub use datastar::consts::ElementPatchMode;
pub(crate) use endpoint::{handler, parse_topics};
pub use error::{Field, SseError};
pub use hooks::{Snapshot, SnapshotReason, SnapshotRequest};
pub use mapping::{MAX_CACHED_VIEWS, Renderer, ViewKey, ViewKeyFn, ViewRenderer, default_mapping};
pub(crate) use mapping::{encode_cursor, encode_event, keep_alive};
pub(crate) use state::SseState;
pub use stream::StreamError;
pub(crate) use stream::admit;
