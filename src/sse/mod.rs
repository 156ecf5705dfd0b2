//! The Datastar bridge's encoding layer: log events to Datastar 1.0 SSE bytes.
//!
//! This part is pure: no I/O, no clock, no hub. The `/realtime/sse` endpoint encodes
//! each log event once with [`encode_event`] and writes the same [`bytes::Bytes`] to
//! every stream whose patterns match; an app's renderer or a
//! `datastar_broadcast(topic, |sse| ...)` closure fills an [`EventCollector`].
//!
//! Wire format (Datastar 1.0, `text/event-stream`), one block per Datastar event:
//!
//! ```text
//! event: datastar-patch-signals
//! id: 3f9c:42
//! data: signals {"tidings":{"todos":{"42":{"id":42,"title":"milk"}}}}
//!
//! ```
//!
//! - [`collector`]: [`EventCollector`], patch-elements, patch-signals, execute-script,
//!   rendered once per event with its id.
//! - [`mapping`]: the default mapping of log events to signals, the reset patch, and
//!   the per-collection [`Renderer`] hook.
//! - [`sanitize`]: why no input can add an SSE field or event, and the helpers that
//!   make it so.
//! - [`error`]: [`SseError`], what the layer refuses.
//!
//! See `docs/datastar.md` for the page side.

pub mod collector;
pub mod error;
pub mod mapping;
pub mod sanitize;

pub use collector::{EventCollector, PatchOptions};
pub use datastar::consts::ElementPatchMode;
pub use error::{Field, SseError};
pub use mapping::{
    Renderer, default_mapping, encode_cursor, encode_event, keep_alive, reset_signals,
};
