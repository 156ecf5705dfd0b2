//! What an app registers on the builder for its Datastar streams: a renderer per
//! collection and a snapshot.

use std::{
    collections::HashMap,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{
    EventCollector, Renderer, ViewKeyFn, ViewRenderer, encode_event,
    mapping::{direct_mapping, encode_rendered},
};
use crate::{
    auth::Principal,
    event::{Event, EventContent, LogEntry},
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

/// A renderer with its view key function (`datastar_renderer_per_view`).
#[derive(Clone)]
pub(crate) struct PerView {
    pub(crate) key: ViewKeyFn,
    pub(crate) render: ViewRenderer,
}

/// The Datastar hooks registered on the builder; fixed once the gateway is built.
#[derive(Clone, Default)]
pub(crate) struct DatastarHooks {
    pub(crate) renderers: HashMap<String, Renderer>,
    /// Collections rendered per view key; a collection is in at most one of the maps.
    pub(crate) per_view: HashMap<String, PerView>,
    pub(crate) snapshot: Option<Snapshot>,
}

impl fmt::Debug for DatastarHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatastarHooks")
            .field("renderers", &self.renderers.keys().collect::<Vec<_>>())
            .field("per_view", &self.per_view.keys().collect::<Vec<_>>())
            .field("snapshot", &self.snapshot.is_some())
            .finish()
    }
}

impl DatastarHooks {
    /// The SSE bytes of `event` for a stream of `principal`. With a per-view renderer
    /// they are encoded once per view key and shared by the streams with that key;
    /// otherwise once, shared by every stream.
    pub(crate) fn sse_bytes(&self, event: &Event, principal: &Principal) -> Bytes {
        if let (EventContent::Logged(content), Some(cursor)) = (&event.data, event.cursor())
            && let Some(view) = self.per_view.get(&content.collection)
        {
            let key = catch_unwind(AssertUnwindSafe(|| (view.key)(principal, content)))
                .unwrap_or_else(|_| {
                    tracing::error!(
                        collection = %content.collection,
                        "Datastar view key function panicked; using the empty key"
                    );
                    Arc::from("")
                });
            return event.sse_view_bytes(&key, |_| {
                let render = |entry: &LogEntry| (view.render)(entry, &key);
                encode_rendered(content, &cursor.to_string(), Some(&render))
            });
        }
        self.shared_sse_bytes(event)
    }

    fn shared_sse_bytes(&self, event: &Event) -> Bytes {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::{
        event::{Action, Cursor},
        sse::MAX_CACHED_VIEWS,
    };

    /// Hooks whose `todos` renderer keys by `key` and counts its calls.
    fn counting(key: ViewKeyFn) -> (DatastarHooks, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let render: ViewRenderer = Arc::new(move |_event: &LogEntry, view: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut sse = EventCollector::new();
            sse.patch_elements(&format!("<p id=\"v\">{view}</p>"));
            Some(sse)
        });
        let mut hooks = DatastarHooks::default();
        hooks
            .per_view
            .insert("todos".into(), PerView { key, render });
        (hooks, calls)
    }

    fn todo(seq: u64, owner: &str) -> Arc<Event> {
        let cursor = Cursor {
            epoch: "e".into(),
            seq,
        };
        let record = json!({"id": "a1", "owner_id": owner});
        Event::logged(
            &cursor,
            LogEntry::record("todos", "a1", Action::Update, record),
        )
    }

    fn owner_key() -> ViewKeyFn {
        Arc::new(|principal: &Principal, event: &LogEntry| {
            let owner = event.payload.get("owner_id").and_then(|o| o.as_str());
            Arc::from(if owner == principal.user_id.as_deref() {
                "owner"
            } else {
                "other"
            })
        })
    }

    /// Many streams of many principals, on several threads at once: one rendering per
    /// distinct key per event, and each stream gets its key's bytes.
    #[test]
    fn renders_once_per_distinct_key_per_event() {
        let (hooks, calls) = counting(owner_key());
        let events = [todo(1, "u0"), todo(2, "u1")];
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (hooks, events) = (&hooks, &events);
                scope.spawn(move || {
                    for stream in 0..50 {
                        let principal =
                            Principal::user(&format!("u{}", (thread + stream) % 5), &[]);
                        for (i, event) in events.iter().enumerate() {
                            let wire = hooks.sse_bytes(event, &principal);
                            let wire = std::str::from_utf8(&wire).unwrap().to_owned();
                            let mine = principal.user_id.as_deref() == Some(&*format!("u{i}"));
                            let view = if mine { ">owner<" } else { ">other<" };
                            assert!(wire.contains(view), "{wire}");
                            assert!(wire.contains(&format!("id: e:{}", i + 1)), "{wire}");
                        }
                    }
                });
            }
        });
        // Two events, two keys each.
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    /// A key function that keys per user is bounded: past `MAX_CACHED_VIEWS` keys an
    /// event renders per call instead of caching without limit.
    #[test]
    fn keys_past_the_bound_are_rendered_uncached() {
        let per_user: ViewKeyFn = Arc::new(|principal: &Principal, _: &LogEntry| {
            principal.user_id.clone().unwrap_or_default()
        });
        let (hooks, calls) = counting(per_user);
        let event = todo(1, "u0");
        let users = MAX_CACHED_VIEWS + 4;
        for _ in 0..2 {
            for user in 0..users {
                let wire = hooks.sse_bytes(&event, &Principal::user(&format!("u{user}"), &[]));
                assert!(
                    std::str::from_utf8(&wire)
                        .unwrap()
                        .contains(&format!(">u{user}<"))
                );
            }
        }
        // The cached keys once, the rest on each of the two rounds.
        assert_eq!(calls.load(Ordering::SeqCst), MAX_CACHED_VIEWS + 2 * 4);
    }

    /// Without a key function, one rendering for everyone, as before.
    #[test]
    fn a_plain_renderer_renders_once_for_everyone() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let mut hooks = DatastarHooks::default();
        let render: Renderer = Arc::new(move |_: &LogEntry| {
            counter.fetch_add(1, Ordering::SeqCst);
            Some(EventCollector::new())
        });
        hooks.renderers.insert("todos".into(), render);
        let event = todo(1, "u0");
        for user in 0..10 {
            hooks.sse_bytes(&event, &Principal::user(&format!("u{user}"), &[]));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A panicking key function gives the empty key, not a dead stream.
    #[test]
    fn a_panicking_key_function_gives_the_empty_key() {
        let (hooks, calls) = counting(Arc::new(|_: &Principal, _: &LogEntry| panic!("bug")));
        let wire = hooks.sse_bytes(&todo(1, "u0"), &Principal::anonymous());
        assert!(
            std::str::from_utf8(&wire)
                .unwrap()
                .contains("<p id=\"v\"></p>")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
