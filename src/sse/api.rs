//! The Rust API of the bridge: `datastar_broadcast` (pre-rendered events to this
//! node's streams) and `datastar_stream` (a stream opened by the app's own handler).

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use axum::{
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{
    EventCollector, SseError,
    stream::{Opening, Registration, StreamError, last_event_id},
};
use crate::{
    app::Realtime,
    auth::Principal,
    event::{Event, LogEntry},
    hub::ReceiverKind,
    limits::Transport,
    topic::{Pattern, Topic, TopicError},
};

/// The event name a Datastar broadcast carries for the read rules (`LogEntry::event`).
pub const DATASTAR_EVENT_NAME: &str = "datastar";

/// What a `datastar_broadcast` closure may return: nothing, or a `Result` so that `?`
/// works on the collector's fallible methods.
pub trait Fill {
    /// The closure's outcome.
    fn into_result(self) -> Result<(), SseError>;
}

impl Fill for () {
    fn into_result(self) -> Result<(), SseError> {
        Ok(())
    }
}

impl Fill for Result<(), SseError> {
    fn into_result(self) -> Result<(), SseError> {
        self
    }
}

/// Why a `datastar_broadcast` sent nothing.
#[derive(Debug, thiserror::Error)]
pub enum DatastarBroadcastError {
    /// The topic is not `collection` or `collection:key`.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The closure added an event the encoding layer refused.
    #[error(transparent)]
    Encoding(#[from] SseError),
}

impl Realtime {
    /// Renders Datastar events once and writes the same bytes to every Datastar
    /// stream **on this node** whose patterns match `topic` (`collection` or
    /// `collection:key`) and whose principal may read the collection. Returns how many
    /// streams it reached.
    ///
    /// ```no_run
    /// # fn f(realtime: &tidings::Realtime) -> Result<(), tidings::sse::DatastarBroadcastError> {
    /// let reached = realtime.datastar_broadcast("todos:42", |sse| {
    ///     sse.remove_elements("#todo-42")?;
    ///     sse.execute_script("document.title = 'Todos'");
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// This is a fire-and-forget UI nudge, not an event: it is **not logged**, has no
    /// cursor, is not replayed on resume, never reaches WebSocket clients, and does not
    /// cross to other nodes. A stream that is reconnecting misses it. For something a
    /// page must not miss, write a record (or send a logged `realtime_broadcast`) and
    /// register a renderer for its collection.
    ///
    /// Read rules are checked as for a broadcast without a record (protocol section
    /// 5): an `owner:<field>` rule finds no field and denies. The streams' queues
    /// are bounded; a stream whose queue is full is ended (its page reconnects).
    pub fn datastar_broadcast<F, R>(
        &self,
        topic: &str,
        fill: F,
    ) -> Result<usize, DatastarBroadcastError>
    where
        F: FnOnce(&mut EventCollector) -> R,
        R: Fill,
    {
        let topic = Topic::parse(topic)?;
        let mut sse = EventCollector::new();
        fill(&mut sse).into_result()?;
        if sse.is_empty() {
            return Ok(0);
        }
        let event = LogEntry::broadcast(
            topic.collection_name(),
            topic.key().map(str::to_owned),
            DATASTAR_EVENT_NAME,
            Value::Null,
        );
        let event = Event::local(event, sse.render(None));
        Ok(self
            .hub()
            .publish_local(&event, ReceiverKind::Sse)
            .delivered)
    }

    /// Opens a Datastar stream from the app's own handler: `setup` subscribes to
    /// patterns and collects what the page starts with; the stream then goes live
    /// exactly like `GET /realtime/sse` (same rules, same resume, same ending).
    ///
    /// ```no_run
    /// # use axum::{extract::State, http::HeaderMap, response::Response};
    /// # use tidings::Caller;
    /// # fn render_list() -> String { String::new() }
    /// // `Caller` reads the bearer header or the SSE cookie (401 when invalid).
    /// async fn todos(
    ///     State(realtime): State<tidings::Realtime>,
    ///     Caller(principal): Caller,
    ///     headers: HeaderMap,
    /// ) -> Response {
    ///     realtime
    ///         .datastar_stream(&principal, &headers, |sse| {
    ///             sse.subscribe("todos:*")?;
    ///             sse.patch_elements(&render_list());
    ///             Ok(())
    ///         })
    ///         .await
    /// }
    /// ```
    ///
    /// Each `subscribe` registers in the hub at once, so what `setup` renders after it
    /// cannot miss an event. What `setup` collects is the stream's opening, sent with
    /// the stream's start position as `Last-Event-ID`. When the request carries a
    /// `Last-Event-ID` that can be served, the missed events are replayed instead and
    /// the collected opening is dropped. When it cannot be served and `setup` collected
    /// nothing, the stream starts with the reset patch (protocol section 6).
    ///
    /// Refusals become responses: an invalid pattern 400, a collection the principal
    /// may not read 403 (401 when anonymous), a setup error 500.
    pub async fn datastar_stream<F>(
        &self,
        principal: &Principal,
        headers: &HeaderMap,
        setup: F,
    ) -> Response
    where
        F: FnOnce(&mut StreamSetup) -> Result<(), StreamError>,
    {
        let opened = async {
            // The app's own route: the node and user caps apply; the address is the
            // app's to check (it has the request).
            let slot =
                self.limits()
                    .slots
                    .acquire(Transport::Sse, None, principal.user_id.as_ref())?;
            let mut stream = StreamSetup {
                registration: Registration::open(
                    self.sse_state(),
                    Arc::new(principal.clone()),
                    slot,
                )?,
                opening: EventCollector::new(),
            };
            setup(&mut stream)?;
            let StreamSetup {
                registration,
                opening,
            } = stream;
            registration
                .start(last_event_id(headers), Opening::Collected(opening))
                .await
        };
        match opened.await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }
}

/// A stream being set up by [`Realtime::datastar_stream`]: subscribe with
/// [`StreamSetup::subscribe`], add the opening through the [`EventCollector`] it
/// dereferences to.
pub struct StreamSetup {
    registration: Registration,
    opening: EventCollector,
}

impl std::fmt::Debug for StreamSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSetup")
            .field("connection_id", &self.connection_id())
            .field("opening", &self.opening)
            .finish_non_exhaustive()
    }
}

impl StreamSetup {
    /// Subscribes the stream to `pattern` now: every matching event from here on
    /// reaches it. Refused when the pattern is invalid or its collection is not
    /// readable by the stream's principal; subscribing twice to one pattern is a no-op.
    pub fn subscribe(&mut self, pattern: &str) -> Result<&mut Self, StreamError> {
        let pattern = Pattern::parse(pattern)?;
        self.registration.subscribe_all(vec![pattern])?;
        Ok(self)
    }

    /// The stream's connection id (as given to `on_subscribe`, and usable as a
    /// broadcast target).
    pub fn connection_id(&self) -> &str {
        self.registration.id()
    }

    /// Who the stream is for.
    pub fn principal(&self) -> &Principal {
        self.registration.principal()
    }
}

impl Deref for StreamSetup {
    type Target = EventCollector;
    fn deref(&self) -> &EventCollector {
        &self.opening
    }
}

impl DerefMut for StreamSetup {
    fn deref_mut(&mut self) -> &mut EventCollector {
        &mut self.opening
    }
}
