//! Events: what a committed write or a broadcast becomes, and its position in the log.

use std::{
    fmt,
    str::FromStr,
    sync::{Arc, Mutex, OnceLock},
};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::protocol::frame::{
    FrameHeader,
    coding::{Data, OpCode},
};

use crate::{access::View, source::Source};

/// What happened to a record, or `Broadcast` for a custom event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A record was inserted.
    Create,
    /// A record was changed.
    Update,
    /// A record was removed.
    Delete,
    /// A custom event sent with `realtime_broadcast`.
    Broadcast,
    /// An update brought a record into what one subscription sees (its filter or its
    /// read rule now admits it). Never in the log: derived per subscriber from an
    /// `update` (**addition**).
    Enter,
    /// An update took a record out of what one subscription sees. Never in the log:
    /// derived per subscriber from an `update`; carries the record id only
    /// (**addition**).
    Leave,
}

impl Action {
    /// The wire and database name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Broadcast => "broadcast",
            Self::Enter => "enter",
            Self::Leave => "leave",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Self::Create),
            "update" => Ok(Self::Update),
            "delete" => Ok(Self::Delete),
            "broadcast" => Ok(Self::Broadcast),
            // `enter` and `leave` are views of an update, never logged.
            other => Err(format!("unknown action {other:?}")),
        }
    }
}

/// A position in the event log: `<epoch>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// Changes whenever continuity is broken (log reset).
    pub epoch: Arc<str>,
    /// Gapless, increasing in the order events become visible.
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// A cursor string that is not `<epoch>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {0:?}: expected \"<epoch>:<seq>\"")]
pub struct CursorError(pub String);

impl FromStr for Cursor {
    type Err = CursorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CursorError(s.chars().take(100).collect());
        let (epoch, seq) = s.rsplit_once(':').ok_or_else(err)?;
        if epoch.is_empty() || epoch.len() > 64 || epoch.contains(':') {
            return Err(err());
        }
        let seq = seq.parse::<u64>().map_err(|_| err())?;
        Ok(Self {
            epoch: Arc::from(epoch),
            seq,
        })
    }
}

/// One event as the log holds it: what the outbox row says (`realtime_outbox`), the
/// same before the relay gives it a `seq` (what a write appends) and after (what a
/// replay reads back; the seq travels beside it, in [`Event`] or a log read).
///
/// `payload` is the record's public projection for record events and the `data` for
/// broadcasts; `acl` holds what read rules need beyond the payload (for example a
/// hidden owner field). Hidden fields are removed before a `LogEntry` is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The collection the event belongs to.
    pub collection: String,
    /// The record key; `None` for a collection-wide broadcast.
    pub key: Option<String>,
    /// What happened.
    pub action: Action,
    /// The custom event name, for broadcasts.
    pub event: Option<String>,
    /// Public record or broadcast data.
    pub payload: Value,
    /// Changed field names, for updates.
    pub changes: Option<Vec<String>>,
    /// Fields the read rules need that are not in the payload.
    pub acl: Map<String, Value>,
    /// For an update: the values before it of the public fields it changed and of the
    /// rule fields it changed (column `previous`). With them the record as it was can
    /// be judged too, which is what `enter` and `leave` need. `None` when unknown
    /// (such an update is judged on the record after it only). Boxed: only updates
    /// carry it, and inline it would add the size of a map to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Map<String, Value>>>,
    /// The client mutation id of the write (column `mutation`), sent to subscribers
    /// as `"mutation"` (see [`crate::MutationId`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation: Option<String>,
    /// Who caused the event (column `source`), sent to subscribers as `"source"`
    /// (**addition**).
    #[serde(default)]
    pub source: Source,
    /// A connection that must not receive the event (the sender).
    pub except: Option<String>,
    /// When the event was recorded.
    pub ts: DateTime<Utc>,
}

impl LogEntry {
    /// A create, update or delete of record `key` in `collection`, whose public
    /// projection is `record`, timestamped now. Add `changes` for an update and the
    /// hidden fields the rules need with [`Self::with_acl`].
    pub fn record(
        collection: impl Into<String>,
        key: impl Into<String>,
        action: Action,
        record: Value,
    ) -> Self {
        Self {
            collection: collection.into(),
            key: Some(key.into()),
            action,
            event: None,
            payload: record,
            changes: None,
            acl: Map::new(),
            previous: None,
            mutation: None,
            source: Source::Server,
            except: None,
            ts: Utc::now(),
        }
    }

    /// A custom event named `event` on `collection` (or on topic `collection:key`),
    /// carrying `data`, timestamped now.
    pub fn broadcast(
        collection: impl Into<String>,
        key: Option<String>,
        event: impl Into<String>,
        data: Value,
    ) -> Self {
        Self {
            collection: collection.into(),
            key,
            action: Action::Broadcast,
            event: Some(event.into()),
            payload: data,
            changes: None,
            acl: Map::new(),
            previous: None,
            mutation: None,
            source: Source::Server,
            except: None,
            ts: Utc::now(),
        }
    }

    /// The names of the fields an update changed (`None`: unknown).
    #[must_use]
    pub fn with_changes(mut self, changes: Option<Vec<String>>) -> Self {
        self.changes = changes;
        self
    }

    /// Fields the read rules need that the payload does not show.
    #[must_use]
    pub fn with_acl(mut self, acl: Map<String, Value>) -> Self {
        self.acl = acl;
        self
    }

    /// The values before an update of the fields it changed (public and rule fields;
    /// see [`LogEntry::previous`]).
    #[must_use]
    pub fn with_previous(mut self, previous: Option<Map<String, Value>>) -> Self {
        self.previous = previous.map(Box::new);
        self
    }

    /// The record as it was before this update, as far as read rules and filters can
    /// tell: the payload and `acl` with the `previous` values put back. `None` for
    /// anything but an update with previous values.
    pub fn before(&self) -> Option<Self> {
        let previous = self.previous.as_ref().filter(|p| !p.is_empty())?;
        if self.action != Action::Update {
            return None;
        }
        let mut before = self.clone();
        before.previous = None;
        for (field, value) in previous.iter() {
            if let Some(slot) = before.acl.get_mut(field) {
                *slot = value.clone();
            }
            if let Some(slot) = before
                .payload
                .as_object_mut()
                .and_then(|p| p.get_mut(field))
            {
                *slot = value.clone();
            }
        }
        Some(before)
    }

    /// Tags the event with the client mutation id of its write.
    #[must_use]
    pub fn with_mutation(mut self, mutation: Option<crate::MutationId>) -> Self {
        self.mutation = mutation.map(crate::MutationId::into_string);
        self
    }

    /// Says who caused the event.
    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Skips connection `connection_id` (the sender) on delivery.
    #[must_use]
    pub fn except(mut self, connection_id: Option<String>) -> Self {
        self.except = connection_id;
        self
    }

    /// Sets when the event was recorded.
    #[must_use]
    pub fn at(mut self, ts: DateTime<Utc>) -> Self {
        self.ts = ts;
        self
    }

    /// The value of `field` for rule evaluation: `acl` first, then the payload object.
    pub fn rule_field(&self, field: &str) -> Option<&Value> {
        self.acl
            .get(field)
            .or_else(|| self.payload.as_object().and_then(|o| o.get(field)))
    }

    /// The topic string: `collection:key` or `collection`.
    pub fn topic(&self) -> String {
        match &self.key {
            Some(key) => format!("{}:{}", self.collection, key),
            None => self.collection.clone(),
        }
    }
}

/// Who a non-logged event goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipients {
    /// These connection ids.
    Connections(Vec<String>),
    /// Every connection of these user ids.
    Users(Vec<String>),
}

/// A custom event sent to connections or users: not in the log, never replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectEvent {
    /// Receivers.
    pub target: Recipients,
    /// Event name.
    pub event: String,
    /// Event data.
    pub data: Value,
    /// A connection that must not receive the event.
    pub except: Option<String>,
    /// When it was sent.
    pub ts: DateTime<Utc>,
}

/// An event ready for delivery: its log position (if logged) plus its encoded body.
///
/// The body is serialized once, without `type` and `subs`; the connection writes
/// `{"type":"event","subs":[...],` in front of it, so every receiver shares the bytes.
/// The Datastar SSE encoding is cached alongside it the first time an SSE stream needs
/// it ([`Event::sse_bytes`]), for the same reason.
#[derive(Debug)]
pub struct Event {
    /// The log position; `None` for direct and local events.
    pub seq: Option<u64>,
    /// The event content.
    pub data: EventContent,
    /// `"cursor":...,"topic":...}`: the JSON object body after `subs`.
    pub body: Bytes,
    /// The epoch of `seq`, so the cursor can be written later without asking the log
    /// (whose epoch may have moved on by then).
    epoch: Option<Arc<str>>,
    /// The Datastar SSE bytes, encoded once and shared by every stream.
    sse: OnceLock<Bytes>,
    /// Per-view Datastar SSE bytes (`datastar_renderer_per_view`): one entry per
    /// distinct view key among the streams that got this event, at most
    /// [`MAX_CACHED_VIEWS`](crate::sse::MAX_CACHED_VIEWS).
    sse_views: Mutex<Vec<(Arc<str>, Bytes)>>,
    /// The record before the update ([`LogEntry::before`]), built once for every
    /// subscriber that judges it.
    before: OnceLock<Option<LogEntry>>,
    /// The `enter` and `leave` forms of an update, built once and shared by every
    /// subscriber that sees it that way.
    enter: OnceLock<Arc<Event>>,
    leave: OnceLock<Arc<Event>>,
    /// The last WebSocket frame built and the `subs` it was built for. Receivers of
    /// one event mostly carry the same subscription ids (every tab subscribes `s1` to
    /// `todos:*`), so they share one buffer instead of each building a copy.
    last_frame: Mutex<Option<EncodedFrame>>,
}

/// A complete WebSocket frame for the subscription ids it names, and the length of its
/// header (the JSON text follows it).
type EncodedFrame = (Vec<Arc<str>>, Bytes, usize);

/// Either a logged event or a direct one.
#[derive(Debug)]
pub enum EventContent {
    /// A logged event.
    Logged(LogEntry),
    /// A connection- or user-targeted event.
    Direct(DirectEvent),
}

/// Formats a timestamp as the protocol does: RFC 3339, milliseconds, `Z`.
pub(crate) fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
struct LoggedBody<'a> {
    cursor: Option<String>,
    topic: String,
    collection: &'a str,
    key: Option<&'a str>,
    action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a Value>,
    /// Outer `None` omits the field (broadcasts); inner `None` writes `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Option<&'a Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mutation: Option<&'a str>,
    source: &'a Source,
    ts: String,
}

#[derive(Serialize)]
struct DirectBody<'a> {
    cursor: Option<()>,
    topic: Option<()>,
    collection: Option<()>,
    key: Option<()>,
    action: Action,
    event: &'a str,
    data: &'a Value,
    /// Always the server: only the app sends to users and connections.
    source: &'a Source,
    ts: String,
}

impl Event {
    /// Builds a logged event at `cursor`, encoding its body once.
    pub fn logged(cursor: &Cursor, event: LogEntry) -> Arc<Self> {
        let is_record = event.action != Action::Broadcast;
        // `enter` carries the whole record and no change list; `leave` neither.
        let has_changes = matches!(
            event.action,
            Action::Create | Action::Update | Action::Delete
        );
        let body = LoggedBody {
            cursor: Some(cursor.to_string()),
            topic: event.topic(),
            collection: &event.collection,
            key: event.key.as_deref(),
            action: event.action,
            record: is_record.then_some(&event.payload),
            changes: has_changes.then_some(event.changes.as_ref()),
            event: event.event.as_deref(),
            data: (!is_record).then_some(&event.payload),
            mutation: event.mutation.as_deref(),
            source: &event.source,
            ts: format_ts(&event.ts),
        };
        let body = encode_body(&body);
        Arc::new(Self {
            seq: Some(cursor.seq),
            data: EventContent::Logged(event),
            body,
            epoch: Some(cursor.epoch.clone()),
            sse: OnceLock::new(),
            sse_views: Mutex::new(Vec::new()),
            before: OnceLock::new(),
            enter: OnceLock::new(),
            leave: OnceLock::new(),
            last_frame: Mutex::new(None),
        })
    }

    /// A topic or collection event that is not in the log and goes only to this
    /// node's Datastar streams, already rendered to SSE bytes (`datastar_broadcast`).
    ///
    /// `event` is what the read rules are checked against; its `body` is the WebSocket
    /// encoding with a null cursor, although the hub never hands it to a WebSocket.
    pub fn local(event: LogEntry, sse: Bytes) -> Arc<Self> {
        let body = LoggedBody {
            cursor: None,
            topic: event.topic(),
            collection: &event.collection,
            key: event.key.as_deref(),
            action: event.action,
            record: None,
            changes: None,
            event: event.event.as_deref(),
            data: Some(&event.payload),
            mutation: event.mutation.as_deref(),
            source: &event.source,
            ts: format_ts(&event.ts),
        };
        let body = encode_body(&body);
        Arc::new(Self {
            seq: None,
            data: EventContent::Logged(event),
            body,
            epoch: None,
            sse: OnceLock::from(sse),
            sse_views: Mutex::new(Vec::new()),
            before: OnceLock::new(),
            enter: OnceLock::new(),
            leave: OnceLock::new(),
            last_frame: Mutex::new(None),
        })
    }

    /// Builds a direct (not logged) event, encoding its body once.
    pub fn direct(event: DirectEvent) -> Arc<Self> {
        let body = DirectBody {
            cursor: None,
            topic: None,
            collection: None,
            key: None,
            action: Action::Broadcast,
            event: &event.event,
            data: &event.data,
            source: &Source::Server,
            ts: format_ts(&event.ts),
        };
        let body = encode_body(&body);
        Arc::new(Self {
            seq: None,
            data: EventContent::Direct(event),
            body,
            epoch: None,
            sse: OnceLock::new(),
            sse_views: Mutex::new(Vec::new()),
            before: OnceLock::new(),
            enter: OnceLock::new(),
            leave: OnceLock::new(),
            last_frame: Mutex::new(None),
        })
    }

    /// The record as it was before this update, when the log row says
    /// ([`LogEntry::before`]); computed once.
    pub(crate) fn before(&self) -> Option<&LogEntry> {
        self.before
            .get_or_init(|| match &self.data {
                EventContent::Logged(entry) => entry.before(),
                EventContent::Direct(_) => None,
            })
            .as_ref()
    }

    /// This event as `view` shows it: itself, its `enter` or `leave` form (same
    /// cursor; built once and shared), or `None` for [`View::Skip`].
    pub(crate) fn seen_as(self: &Arc<Self>, view: View) -> Option<Arc<Self>> {
        let (slot, action) = match view {
            View::Skip => return None,
            View::Logged => return Some(self.clone()),
            View::Enter => (&self.enter, Action::Enter),
            View::Leave => (&self.leave, Action::Leave),
        };
        let derived = slot.get_or_init(|| {
            let (EventContent::Logged(entry), Some(cursor)) = (&self.data, self.cursor()) else {
                return self.clone();
            };
            let mut entry = entry.clone();
            entry.action = action;
            entry.changes = None;
            entry.previous = None;
            if action == Action::Leave {
                // Whoever no longer sees the record learns its id, nothing more.
                entry.payload = Value::Null;
                entry.acl = Map::new();
                entry.mutation = None;
            }
            Self::logged(&cursor, entry)
        });
        Some(derived.clone())
    }

    /// The log position, for logged events.
    pub fn cursor(&self) -> Option<Cursor> {
        Some(Cursor {
            epoch: self.epoch.clone()?,
            seq: self.seq?,
        })
    }

    /// The Datastar SSE bytes of this event: `encode` runs for the first stream that
    /// asks, every later stream gets the same bytes.
    pub fn sse_bytes(&self, encode: impl FnOnce(&Self) -> Bytes) -> Bytes {
        self.sse.get_or_init(|| encode(self)).clone()
    }

    /// The Datastar SSE bytes of this event for view `key`: `encode` runs for the first
    /// stream with that key, every later one gets the same bytes. Past
    /// [`MAX_CACHED_VIEWS`](crate::sse::MAX_CACHED_VIEWS) keys, `encode` runs per call.
    pub(crate) fn sse_view_bytes(
        &self,
        key: &Arc<str>,
        encode: impl FnOnce(&Self) -> Bytes,
    ) -> Bytes {
        // Encoding under the lock is what makes it once per key: a second stream with
        // the same key waits for the first rendering instead of making its own. The
        // renderer cannot reach this event, so it cannot deadlock on the lock.
        let mut views = self.sse_views.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bytes)) = views.iter().find(|(k, _)| k == key) {
            return bytes.clone();
        }
        if views.len() >= crate::sse::MAX_CACHED_VIEWS {
            drop(views);
            return encode(self);
        }
        let bytes = encode(self);
        views.push((key.clone(), bytes.clone()));
        bytes
    }

    /// The connection this event must skip, if any.
    pub fn except(&self) -> Option<&str> {
        match &self.data {
            EventContent::Logged(e) => e.except.as_deref(),
            EventContent::Direct(e) => e.except.as_deref(),
        }
    }

    /// Writes the full frame for a connection whose matching subscriptions are `subs`.
    pub fn frame(&self, subs: &[Arc<str>]) -> Bytes {
        let (wire, header) = self.encoded(subs);
        wire.slice(header..)
    }

    /// [`Event::frame`] as a complete WebSocket text frame (the server's frames are
    /// not masked, so every receiver gets the same bytes): what the fan-out appends to
    /// a WebSocket's outbound queue.
    pub fn wire_frame(&self, subs: &[Arc<str>]) -> Bytes {
        self.encoded(subs).0
    }

    /// The WebSocket frame for `subs` and the length of its header, built once per
    /// distinct `subs` in a row.
    fn encoded(&self, subs: &[Arc<str>]) -> (Bytes, usize) {
        let mut last = self.last_frame.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_subs, frame, header)) = &*last
            && cached_subs.as_slice() == subs
        {
            return (frame.clone(), *header);
        }
        let mut text = Vec::with_capacity(self.body.len() + 32 + subs.len() * 8);
        text.extend_from_slice(br#"{"type":"event","subs":"#);
        // Subscription ids are arbitrary client strings: escape them properly.
        if serde_json::to_writer(&mut text, subs).is_err() {
            text.extend_from_slice(b"[]");
        }
        text.push(b',');
        // `body` is a serialized JSON object without its opening brace.
        text.extend_from_slice(&self.body);
        let mut wire = Vec::with_capacity(text.len() + 10);
        // Writing into a Vec cannot fail.
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let _ = header.format(text.len() as u64, &mut wire);
        let header = wire.len();
        wire.extend_from_slice(&text);
        let frame = Bytes::from(wire);
        *last = Some((subs.to_vec(), frame.clone(), header));
        (frame, header)
    }
}

fn encode_body<T: Serialize>(body: &T) -> Bytes {
    // Serializing plain structs of strings and JSON values cannot fail.
    let json = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Bytes::from(json).slice(1..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Arc<Event> {
        let cursor = Cursor {
            epoch: "e1".into(),
            seq: 7,
        };
        Event::logged(
            &cursor,
            LogEntry::record(
                "todos",
                "42",
                Action::Update,
                json!({"id": "42", "done": true}),
            )
            .with_changes(Some(vec!["done".into()]))
            .at(chrono::DateTime::from_timestamp(0, 0).unwrap_or_default()),
        )
    }

    #[test]
    fn frames_are_the_contract_json_and_shared_between_equal_subs() {
        let event = event();
        let s1: Vec<Arc<str>> = vec!["s1".into()];
        let first = event.frame(&s1);
        let parsed: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(
            parsed,
            json!({"type": "event", "subs": ["s1"], "cursor": "e1:7", "topic": "todos:42",
                   "collection": "todos", "key": "42", "action": "update",
                   "record": {"id": "42", "done": true}, "changes": ["done"],
                   "source": {"kind": "server"}, "ts": "1970-01-01T00:00:00.000Z"})
        );
        // Same subs: the very same buffer, not a copy.
        assert_eq!(event.frame(&s1).as_ptr(), first.as_ptr());
        // Other subs, including ones that need escaping: a frame of their own.
        let odd: Vec<Arc<str>> = vec!["a\"b".into(), "\u{2028}".into()];
        let other: Value = serde_json::from_slice(&event.frame(&odd)).unwrap();
        assert_eq!(other["subs"], json!(["a\"b", "\u{2028}"]));
        assert_eq!(other["cursor"], "e1:7");
    }

    #[test]
    fn cursors_parse_and_refuse_garbage() {
        let cursor: Cursor = "abc:12".parse().unwrap();
        assert_eq!((&*cursor.epoch, cursor.seq), ("abc", 12));
        assert_eq!(cursor.to_string(), "abc:12");
        for bad in ["", ":1", "abc", "abc:", "abc:-1", "abc:x", "a:b:1"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }
}
