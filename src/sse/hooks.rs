//! What an app registers on the builder for its Datastar streams: a renderer per
//! collection, a snapshot, and subscribe/unsubscribe callbacks.

use std::{
    collections::HashMap,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{EventCollector, Renderer, encode_event, mapping::direct_mapping};
use crate::{
    app::Realtime,
    auth::Principal,
    event::{Event, EventContent},
    protocol::ResyncReason,
    topic::Pattern,
};

/// Called with `(pattern, connection_id)` when a Datastar stream subscribes to a
/// pattern, or when that subscription ends (see
/// [`RealtimeBuilder::on_subscribe`](crate::RealtimeBuilder::on_subscribe)).
pub type SubscriptionCallback = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// An app's snapshot: what a stream starts with when it cannot resume.
pub type Snapshot =
    Arc<dyn Fn(SnapshotRequest) -> BoxFuture<'static, Option<EventCollector>> + Send + Sync>;

/// Why a stream starts with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// A stream without `Last-Event-ID`.
    New,
    /// A `Last-Event-ID` that could not be served, and why.
    Resync(ResyncReason),
}

/// What a snapshot is asked for. The stream is already subscribed when the snapshot
/// runs, so whatever it reads is at least as new as the stream's starting position:
/// nothing can happen between the two unseen.
pub struct SnapshotRequest {
    /// The gateway, for the app's store and rules.
    pub realtime: Realtime,
    /// Who the stream is for. The snapshot must show only what this principal may
    /// read: unlike renderer output, it is rendered per stream.
    pub principal: Arc<Principal>,
    /// The stream's patterns.
    pub patterns: Vec<Arc<Pattern>>,
    /// A new stream, or a resume that could not be served.
    pub reason: SnapshotReason,
}

impl fmt::Debug for SnapshotRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotRequest")
            .field("user_id", &self.principal.user_id)
            .field("patterns", &self.patterns)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl SnapshotRequest {
    /// Whether a pattern of the stream matches any record of `collection`.
    pub fn wants(&self, collection: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(collection, None))
    }
}

/// The hooks registered on the builder; fixed once the gateway is built.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub renderers: HashMap<String, Renderer>,
    pub snapshot: Option<Snapshot>,
    pub on_subscribe: Vec<SubscriptionCallback>,
    pub on_unsubscribe: Vec<SubscriptionCallback>,
}

impl Hooks {
    /// The SSE bytes of `event`, encoded by the first stream that needs them and
    /// shared with every other (all streams use the same renderer for a collection).
    pub fn sse_bytes(&self, event: &Event) -> Bytes {
        event.sse_bytes(|event| match &event.data {
            EventContent::Logged(content) => match event.cursor() {
                Some(cursor) => encode_event(
                    content,
                    &cursor.to_string(),
                    self.renderers.get(&content.collection),
                ),
                // Local events come rendered (`Event::local`); nothing else lacks a
                // cursor.
                None => Bytes::new(),
            },
            EventContent::Direct(direct) => direct_mapping(direct).render(None),
        })
    }

    pub fn subscribed(&self, pattern: &str, connection_id: &str) {
        Self::notify(&self.on_subscribe, "on_subscribe", pattern, connection_id);
    }

    pub fn unsubscribed(&self, pattern: &str, connection_id: &str) {
        Self::notify(
            &self.on_unsubscribe,
            "on_unsubscribe",
            pattern,
            connection_id,
        );
    }

    fn notify(callbacks: &[SubscriptionCallback], name: &str, pattern: &str, id: &str) {
        for callback in callbacks {
            // Runs from a drop guard too, where a panic while unwinding would abort.
            if catch_unwind(AssertUnwindSafe(|| callback(pattern, id))).is_err() {
                tracing::error!(callback = name, pattern, "Datastar callback panicked");
            }
        }
    }
}
