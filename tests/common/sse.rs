//! A Datastar SSE client for tests: opens `/realtime/sse` with reqwest and parses the
//! stream into events, comments and the end.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::{RequestBuilder, StatusCode, header::HeaderMap};
use std::pin::Pin;

use super::server::{TestServer, WAIT, token};

/// One SSE event as sent: `event` is empty for the id-only event closing a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: String,
    /// The `data:` lines, in order.
    pub data: Vec<String>,
    /// The `id:` field.
    pub id: Option<String>,
}

impl SseEvent {
    /// The data lines joined with newlines.
    pub fn text(&self) -> String {
        self.data.join("\n")
    }

    /// The JSON of a `datastar-patch-signals` event.
    pub fn signals(&self) -> serde_json::Value {
        assert_eq!(self.event, "datastar-patch-signals", "{self:?}");
        let line = self.data[0].strip_prefix("signals ").expect("signals line");
        serde_json::from_str(line).expect("signals JSON")
    }
}

/// What the stream produced next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An event.
    Event(SseEvent),
    /// A comment line (keep-alive).
    Comment(String),
}

/// The Datastar events of one log event (or of the opening) and the cursor that
/// closes them.
#[derive(Debug, Clone)]
pub struct Group {
    /// The Datastar events.
    pub events: Vec<SseEvent>,
    /// The id of the closing id-only event.
    pub id: String,
}

impl Group {
    /// All data lines of the group, joined.
    pub fn text(&self) -> String {
        self.events
            .iter()
            .map(SseEvent::text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `seq` of the closing cursor.
    pub fn seq(&self) -> u64 {
        seq_of(&self.id)
    }
}

/// The seq of a cursor `<epoch>:<seq>`.
pub fn seq_of(cursor: &str) -> u64 {
    cursor
        .rsplit_once(':')
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or_else(|| panic!("not a cursor: {cursor:?}"))
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open SSE response.
pub struct SseStream {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    body: ByteStream,
    buffer: Vec<u8>,
    ended: bool,
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The body ended properly (chunked terminator).
    Clean,
    /// The connection broke.
    Broken(String),
}

impl SseStream {
    /// Sends `request` and wraps the response, whatever its status.
    pub async fn open(request: RequestBuilder) -> Self {
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("SSE request timed out")
            .expect("SSE request failed");
        Self {
            status: response.status(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            ended: false,
        }
    }

    /// The next complete block (event or comment), or how the stream ended.
    pub async fn next_item(&mut self) -> Result<Item, End> {
        loop {
            if let Some(item) = self.take_block() {
                return Ok(item);
            }
            if self.ended {
                return Err(End::Clean);
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("timed out waiting for SSE data");
            match chunk {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(e)) => return Err(End::Broken(e.to_string())),
                None => {
                    self.ended = true;
                    assert!(
                        self.buffer.iter().all(|b| *b == b'\n'),
                        "stream ended inside a block: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    );
                    return Err(End::Clean);
                }
            }
        }
    }

    fn take_block(&mut self) -> Option<Item> {
        // Blank lines between blocks are separators, not content.
        while self.buffer.first() == Some(&b'\n') {
            self.buffer.remove(0);
        }
        let text = std::str::from_utf8(&self.buffer).ok()?;
        let end = text.find("\n\n")?;
        let block = text[..end].to_owned();
        self.buffer.drain(..end + 2);
        if let Some(comment) = block.strip_prefix(':') {
            assert!(!block.contains('\n'), "multi-line comment block {block:?}");
            return Some(Item::Comment(comment.trim().to_owned()));
        }
        let mut event = SseEvent::default();
        for line in block.split('\n') {
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            match name {
                "event" => event.event = value.to_owned(),
                "data" => event.data.push(value.to_owned()),
                "id" => event.id = Some(value.to_owned()),
                other => panic!("unexpected SSE field {other:?} in {block:?}"),
            }
        }
        Some(Item::Event(event))
    }

    /// The next event, skipping keep-alives; panics if the stream ends.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            match self.next_item().await {
                Ok(Item::Event(event)) => return event,
                Ok(Item::Comment(_)) => continue,
                Err(end) => panic!("stream ended waiting for an event: {end:?}"),
            }
        }
    }

    /// The next group: Datastar events up to and including the id-only event.
    pub async fn next_group(&mut self) -> Group {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            if event.event.is_empty() {
                assert!(event.data.is_empty(), "id-only event with data: {event:?}");
                let id = event.id.expect("closing event has an id");
                return Group { events, id };
            }
            assert_eq!(event.id, None, "Datastar events carry no id: {event:?}");
            events.push(event);
        }
    }

    /// Reads until the stream ends; panics on any event after `allow_events` events.
    pub async fn ended(&mut self) -> End {
        loop {
            match self.next_item().await {
                Ok(_) => continue,
                Err(end) => return end,
            }
        }
    }

    /// The JSON error body of a refused request.
    pub async fn error_code(self) -> String {
        let mut body = self.body;
        let mut bytes = self.buffer;
        while let Some(chunk) = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("timed out reading the error body")
        {
            bytes.extend_from_slice(&chunk.expect("error body"));
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON error body");
        json["code"].as_str().expect("code").to_owned()
    }
}

impl TestServer {
    /// A GET of `/realtime/sse?topics=<topics>` to adjust before sending.
    pub fn sse_request(&self, topics: &str) -> RequestBuilder {
        self.http()
            .get(self.url("/realtime/sse"))
            .query(&[("topics", topics)])
    }

    /// Opens `/realtime/sse?topics=<topics>` as `sub` and checks it was accepted.
    pub async fn sse(&self, sub: &str, topics: &str) -> SseStream {
        let stream = SseStream::open(self.sse_request(topics).bearer_auth(token(sub))).await;
        assert_eq!(stream.status, 200, "SSE {topics} as {sub}");
        stream
    }

    /// Like `sse`, resuming from `last_event_id`.
    pub async fn sse_resume(&self, sub: &str, topics: &str, last_event_id: &str) -> SseStream {
        let request = self
            .sse_request(topics)
            .bearer_auth(token(sub))
            .header("last-event-id", last_event_id);
        let stream = SseStream::open(request).await;
        assert_eq!(
            stream.status, 200,
            "SSE {topics} as {sub} from {last_event_id}"
        );
        stream
    }
}

/// Creates a todo as bob on `server` (the demo API) and returns its id.
pub async fn todo(server: &TestServer, title: &str) -> String {
    let record = server
        .create("bob", "todos", serde_json::json!({"title": title}))
        .await;
    record["id"].as_str().expect("id").to_owned()
}

/// Reads one group per id and checks each is that todo's create (the demo renderer's
/// `<li id="todo-<id>">`), in consecutive seqs after `seq`: no gap, no duplicate.
pub async fn expect_creates(stream: &mut SseStream, ids: &[&str], mut seq: u64) -> Group {
    let mut last = None;
    for id in ids {
        let group = stream.next_group().await;
        assert!(
            group.text().contains(&format!("<li id=\"todo-{id}\"")),
            "{group:?}"
        );
        assert_eq!(group.seq(), seq + 1, "no gap, no duplicate");
        seq = group.seq();
        last = Some(group);
    }
    last.expect("at least one id")
}
