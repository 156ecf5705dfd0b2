//! From log events to Datastar events: the default signal mapping and renderer hooks.
//!
//! Default mapping (protocol section 6):
//!
//! | log event | Datastar event |
//! |---|---|
//! | create / update / enter of `todos:42` | `datastar-patch-signals` `{"tidings":{"todos":{"42":<record>}}}` |
//! | delete / leave of `todos:42` | `datastar-patch-signals` `{"tidings":{"todos":{"42":null}}}` |
//! | broadcast to `todos` or `todos:42` | `datastar-patch-signals` `{"tidingsEvent":{"collection":"todos","event":...,"data":...,"key":...,"cursor":...}}` |
//! | broadcast to connections or users | the same, with `collection`, `key` and `cursor` null |
//! | resume that cannot be served | `datastar-patch-signals` `{"tidings":{"todos":null,...}}` |
//!
//! `key` (`null` for a collection-wide broadcast) and `cursor` are additions to the
//! protocol's `tidingsEvent` object. The cursor is there because Datastar notifies only
//! on a changed value: without it, a second broadcast identical to the first would
//! change no signal and no `data-effect` would run.

use std::{
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{collector::EventCollector, sanitize};
use crate::{
    auth::Principal,
    event::{Action, DirectEvent, LogEntry},
};

/// An app's own rendering of the events of one collection, typically HTML patches.
///
/// Returning `None` falls back to the default signal mapping. Returning an empty
/// collector sends nothing but the event's cursor, so the page still resumes after it.
/// A renderer that panics is treated as returning `None`.
pub type Renderer = Arc<dyn Fn(&LogEntry) -> Option<EventCollector> + Send + Sync>;

/// Which rendering of an event a stream gets, e.g. `"owner"` or `"other"`: streams
/// with equal keys share one rendering. Keep the set of keys small (see
/// [`MAX_CACHED_VIEWS`]).
pub type ViewKey = Arc<str>;

/// The view key of a stream's principal for an event (`datastar_renderer_per_view`).
/// A key function that panics gives the empty key.
pub type ViewKeyFn = Arc<dyn Fn(&Principal, &LogEntry) -> ViewKey + Send + Sync>;

/// A renderer that also gets the view key it renders for; otherwise as [`Renderer`].
pub type ViewRenderer = Arc<dyn Fn(&LogEntry, &str) -> Option<EventCollector> + Send + Sync>;

/// Distinct view keys whose renderings one event caches; a further key is rendered for
/// each stream that has it, uncached. Keys are meant to be a handful of roles, so this
/// is never reached by a sane key function; it only bounds one that keys per user.
pub const MAX_CACHED_VIEWS: usize = 16;

/// Encodes one log event as SSE bytes: its Datastar events, then an SSE event holding
/// only `id: <cursor>`, which closes the group (see [`EventCollector::render`] for why
/// the id is not on the Datastar events themselves).
///
/// Uses `renderer` when one is given and it returns a collector, the default mapping
/// otherwise. The result is meant to be computed once per log event and shared by every
/// stream that receives it.
pub fn encode_event(event: &LogEntry, cursor: &str, renderer: Option<&Renderer>) -> Bytes {
    encode_rendered(event, cursor, renderer.map(|r| &**r as RenderFn<'_>))
}

type RenderFn<'a> = &'a (dyn Fn(&LogEntry) -> Option<EventCollector> + Send + Sync);

/// [`encode_event`] for any render function (a [`ViewRenderer`] bound to its key).
pub(crate) fn encode_rendered(
    event: &LogEntry,
    cursor: &str,
    renderer: Option<RenderFn<'_>>,
) -> Bytes {
    let rendered = renderer.and_then(|render| {
        // One event's renderer bug must not take down delivery for every stream.
        catch_unwind(AssertUnwindSafe(|| render(event))).unwrap_or_else(|_| {
            tracing::error!(
                collection = %event.collection,
                cursor,
                "Datastar renderer panicked; using the default mapping"
            );
            None
        })
    });
    let collector = rendered.unwrap_or_else(|| default_mapping(event, cursor));
    if collector.is_empty() {
        encode_cursor(cursor)
    } else {
        collector.render(Some(cursor))
    }
}

/// The default Datastar events for a log event (see the module docs).
///
/// A record event without a key has no signal to patch and maps to nothing.
pub fn default_mapping(event: &LogEntry, cursor: &str) -> EventCollector {
    let mut sse = EventCollector::new();
    match (event.action, event.key.as_deref()) {
        (Action::Broadcast, key) => {
            sse.patch_signals_object(&BroadcastSignals {
                tidings_event: BroadcastEvent {
                    collection: Some(&event.collection),
                    key,
                    event: event.event.as_deref(),
                    data: &event.payload,
                    cursor: Some(cursor),
                },
            });
        }
        // A record entering the stream's view is shown like a new one, a record
        // leaving it is removed like a deleted one.
        (Action::Create | Action::Update | Action::Enter, Some(key)) => {
            sse.patch_signals_object(&record_signals(&event.collection, key, &event.payload));
        }
        (Action::Delete | Action::Leave, Some(key)) => {
            sse.patch_signals_object(&record_signals(&event.collection, key, &Value::Null));
        }
        (
            Action::Create | Action::Update | Action::Delete | Action::Enter | Action::Leave,
            None,
        ) => {
            tracing::warn!(
                collection = %event.collection,
                cursor,
                "record event without a key; sending only its cursor"
            );
        }
    }
    sse
}

/// The Datastar events for a custom event sent to connections or users (protocol
/// section 5): the `tidingsEvent` signal with a null `collection`, `key` and `cursor`.
///
/// Such events are not in the log, so they carry no cursor and are not replayed.
pub fn direct_mapping(event: &DirectEvent) -> EventCollector {
    let mut sse = EventCollector::new();
    sse.patch_signals_object(&BroadcastSignals {
        tidings_event: BroadcastEvent {
            collection: None,
            key: None,
            event: Some(&event.event),
            data: &event.data,
            cursor: None,
        },
    });
    sse
}

/// Sets `tidings.<collection>` to null for each collection, in one patch.
///
/// Sent when a resume cannot be served and the app registered no snapshot: the page
/// drops what it holds and knows to reload. Names are deduplicated and sorted; no names
/// give an empty collector.
pub fn reset_signals<I, S>(collections: I) -> EventCollector
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let names: Vec<S> = collections.into_iter().collect();
    let nulls: BTreeMap<&str, ()> = names.iter().map(|n| (n.as_ref(), ())).collect();
    let mut sse = EventCollector::new();
    if !nulls.is_empty() {
        sse.patch_signals_object(&Tidings { tidings: nulls });
    }
    sse
}

/// An SSE event with only `id: <cursor>`: moves the page's resume position forward
/// without running anything.
///
/// With no data the browser dispatches nothing, but the id still becomes the
/// `Last-Event-ID` of the next reconnect (SSE spec; Datastar's parser does the same).
pub fn encode_cursor(cursor: &str) -> Bytes {
    let cursor = sanitize::strip_line_breaks(cursor);
    Bytes::from(format!("id: {cursor}\n\n"))
}

/// A keep-alive: an SSE comment, ignored by the browser, that keeps proxies from
/// closing an idle stream. Protocol section 6 wants one at least every 15 s.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

// Structs rather than `json!` keep the field order fixed whatever serde_json features
// other crates turn on, and borrow the record instead of cloning it.
#[derive(Serialize)]
struct Tidings<T> {
    tidings: T,
}

fn record_signals<'a>(
    collection: &'a str,
    key: &'a str,
    record: &'a Value,
) -> Tidings<BTreeMap<&'a str, BTreeMap<&'a str, &'a Value>>> {
    Tidings {
        tidings: BTreeMap::from([(collection, BTreeMap::from([(key, record)]))]),
    }
}

#[derive(Serialize)]
struct BroadcastSignals<'a> {
    #[serde(rename = "tidingsEvent")]
    tidings_event: BroadcastEvent<'a>,
}

#[derive(Serialize)]
struct BroadcastEvent<'a> {
    collection: Option<&'a str>,
    event: Option<&'a str>,
    data: &'a Value,
    key: Option<&'a str>,
    cursor: Option<&'a str>,
}
