//! What an app registers on the builder for its Datastar streams: a renderer per
//! collection and a snapshot.

use std::{collections::HashMap, fmt, sync::Arc};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{EventCollector, Renderer, encode_event, mapping::direct_mapping};
use crate::{
    auth::Principal,
    event::{Event, EventContent},
    model::Store,
    protocol::ResyncReason,
    topic::Pattern,
};

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
    /// The model store on the event log's database, to read what the page shows.
    pub store: Store,
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

/// The Datastar hooks registered on the builder; fixed once the gateway is built.
#[derive(Clone, Default)]
pub(crate) struct DatastarHooks {
    pub(crate) renderers: HashMap<String, Renderer>,
    pub(crate) snapshot: Option<Snapshot>,
}

impl fmt::Debug for DatastarHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatastarHooks")
            .field("renderers", &self.renderers.keys().collect::<Vec<_>>())
            .field("snapshot", &self.snapshot.is_some())
            .finish()
    }
}

impl DatastarHooks {
    /// The SSE bytes of `event`, encoded by the first stream that needs them and
    /// shared with every other (all streams use the same renderer for a collection).
    pub(crate) fn sse_bytes(&self, event: &Event) -> Bytes {
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
}
