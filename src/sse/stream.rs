//! One Datastar SSE stream: its hub registration, how it starts (a replay, or a
//! snapshot), and the body that writes deliveries and keep-alives until the client
//! goes, the hub ends it or the server shuts down.
//!
//! The order of a start is what makes it exact (protocol section 4):
//!
//! 1. register in the hub and subscribe: from then on every event after the hub's
//!    position `P` is queued for the stream;
//! 2. with a `Last-Event-ID` that can be served, replay `(since, P]` from the log;
//!    otherwise render the snapshot (or the reset patch), which reads the app's data
//!    after step 1, so nothing falls between it and the queue;
//! 3. write that, then the queue.
//!
//! A stream whose patterns were subscribed one at a time (`datastar_stream`) has a
//! position per pattern. It starts from the lowest, `P1`; an event after `P1` matching
//! only a pattern subscribed later was never queued, so the events up to the highest
//! position are replayed too, and queued events up to it are skipped as already sent.
//! The stream therefore writes logged events in seq order, which is what makes a
//! single `Last-Event-ID` a complete resume position.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::{sync::mpsc, time::Instant};

use super::{
    EventCollector, SseError, encode_cursor,
    hooks::{SnapshotReason, SnapshotRequest},
    keep_alive,
    mapping::reset_signals,
};
use crate::{
    access::{Admission, Interest},
    app::Realtime,
    auth::{Principal, unix_now},
    close::Closer,
    event::{Cursor, Event},
    http::error,
    hub::{Delivery, Receiver, ReceiverKey, ReceiverKind},
    log::replay::ReplayError,
    metrics::Metrics,
    protocol::ResyncReason,
    topic::{Pattern, TopicError},
};

/// Bytes gathered into one body chunk at most, so a long replay or a burst is written
/// in a few large writes, not one per event, without holding it all in one buffer.
const MAX_CHUNK: usize = 64 * 1024;
/// Queued deliveries taken per chunk at most.
const MAX_BATCH: usize = 256;

/// Why a Datastar stream was refused or could not start. Each maps to an HTTP status
/// with the protocol's error body `{"code": ..., "message": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// `topics` is missing or empty.
    #[error("no topics: pass ?topics=<pattern>[,<pattern>...]")]
    NoTopics,
    /// A pattern is invalid (400 `invalid_pattern`).
    #[error(transparent)]
    InvalidPattern(#[from] TopicError),
    /// The credentials are invalid (401 `unauthorized`).
    #[error("{0}")]
    Unauthorized(String),
    /// An anonymous stream asked for a collection that is not public (401).
    #[error("{pattern} is not public: sign in to read it")]
    CredentialsRequired {
        /// The pattern as given.
        pattern: String,
    },
    /// The principal may not read the pattern's collection (403 `forbidden`).
    #[error("not allowed to read {pattern}")]
    Forbidden {
        /// The pattern as given.
        pattern: String,
    },
    /// More patterns than `connection.max_subscriptions` (400 `limit_exceeded`).
    #[error("at most {limit} patterns per stream")]
    TooManyPatterns {
        /// The limit.
        limit: usize,
    },
    /// This node already holds `connection.max_connections` streams (429).
    #[error("too many Datastar streams on this node")]
    TooManyStreams,
    /// The app's stream setup added an event the encoding layer refused (500).
    #[error(transparent)]
    Encoding(#[from] SseError),
    /// The app's stream setup subscribed to nothing (500).
    #[error("the stream subscribed to no pattern")]
    NothingSubscribed,
    /// The hub ended the stream before it started: its queue overflowed during the
    /// start, or continuity was lost (503; the client retries).
    #[error("the stream was ended before it started; retry")]
    EndedEarly,
    /// The server is shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Reading the log failed (503; details are logged).
    #[error("reading the event log failed; retry")]
    Replay(#[source] sqlx::Error),
}

impl StreamError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoTopics => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::InvalidPattern(_) => (StatusCode::BAD_REQUEST, "invalid_pattern"),
            Self::Unauthorized(_) | Self::CredentialsRequired { .. } => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooManyPatterns { .. } => (StatusCode::BAD_REQUEST, "limit_exceeded"),
            Self::TooManyStreams => (StatusCode::TOO_MANY_REQUESTS, "limit_exceeded"),
            Self::Encoding(_) | Self::NothingSubscribed => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            Self::EndedEarly | Self::ShuttingDown | Self::Replay(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "internal")
            }
        }
    }
}

impl IntoResponse for StreamError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Replay(e) => tracing::error!(error = %e, "Datastar stream: replay failed"),
            Self::Encoding(_) | Self::NothingSubscribed => {
                tracing::error!(error = %self, "Datastar stream setup failed");
            }
            _ => {}
        }
        let mut response = error(status, code, &self.to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Protocol section 7: back off at least 30 s after a connection limit.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

/// The `Last-Event-ID` request header, when it holds anything.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("last-event-id")?;
    // A value that is not text cannot be a cursor; "?" makes it fail as one.
    Some(value.to_str().unwrap_or("?")).filter(|v| !v.is_empty())
}

/// Refuses `pattern` unless the access policy admits it for `principal` (per-event
/// rules are checked again on every delivery).
pub(crate) fn check_readable(
    realtime: &Realtime,
    principal: &Principal,
    pattern: &Pattern,
) -> Result<(), StreamError> {
    match realtime.rules().admit(principal, pattern) {
        Admission::Allow | Admission::PerEvent => Ok(()),
        Admission::Deny { anonymous: true } => Err(StreamError::CredentialsRequired {
            pattern: pattern.to_string(),
        }),
        Admission::Deny { anonymous: false } => Err(StreamError::Forbidden {
            pattern: pattern.to_string(),
        }),
    }
}

/// Removes the stream from the hub and reports its subscriptions as ended, however the
/// stream ends: client gone (the body is dropped), hub close, shutdown, or a start that
/// failed.
struct Guard {
    realtime: Realtime,
    key: ReceiverKey,
    id: Arc<str>,
    patterns: Vec<Arc<Pattern>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.realtime.hub().disconnect(self.key);
        Metrics::dec(&self.realtime.metrics().sse_streams);
        for pattern in &self.patterns {
            self.realtime
                .subscription_hooks()
                .unsubscribed(pattern.as_str(), &self.id);
        }
    }
}

/// A stream registered in the hub, subscribing, not yet started.
pub(crate) struct Registration {
    realtime: Realtime,
    principal: Arc<Principal>,
    deliveries: mpsc::Receiver<Delivery>,
    closer: Closer,
    /// Lowest and highest delivery position of the subscriptions so far.
    positions: Option<(u64, u64)>,
    guard: Guard,
}

/// What a new stream, or one whose resume cannot be served, starts with.
pub(crate) enum Opening {
    /// The app's registered snapshot, if any (`GET /realtime/sse`).
    Snapshot,
    /// What the app's `datastar_stream` setup collected.
    Collected(EventCollector),
}

impl Registration {
    /// Registers a stream for `principal` in the hub, with no subscription yet.
    pub fn open(realtime: &Realtime, principal: Arc<Principal>) -> Result<Self, StreamError> {
        let metrics = realtime.metrics();
        let config = realtime.config();
        let streams = metrics.sse_streams.load(Ordering::Relaxed);
        if streams >= config.connection.max_connections as u64 {
            return Err(StreamError::TooManyStreams);
        }
        let (queue, deliveries) = mpsc::channel(config.sse.queue_capacity);
        let closer = Closer::default();
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let key = realtime.hub().connect_as(
            Receiver {
                id: id.clone(),
                principal: principal.clone(),
                queue,
                closer: closer.clone(),
            },
            ReceiverKind::Sse,
        );
        Metrics::inc(&metrics.sse_streams);
        Ok(Self {
            realtime: realtime.clone(),
            principal,
            deliveries,
            closer,
            positions: None,
            guard: Guard {
                realtime: realtime.clone(),
                key,
                id,
                patterns: Vec::new(),
            },
        })
    }

    /// The stream's connection id (the hub's, usable as a broadcast target).
    pub fn id(&self) -> &str {
        &self.guard.id
    }

    /// Who the stream is for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    fn check(&self, patterns: &[Pattern]) -> Result<(), StreamError> {
        let limit = self.realtime.config().connection.max_subscriptions;
        if self.guard.patterns.len() + patterns.len() > limit {
            return Err(StreamError::TooManyPatterns { limit });
        }
        for pattern in patterns {
            check_readable(&self.realtime, &self.principal, pattern)?;
        }
        Ok(())
    }

    fn record(&mut self, patterns: Vec<Arc<Pattern>>, position: u64) {
        self.positions = Some(match self.positions {
            None => (position, position),
            Some((low, high)) => (low.min(position), high.max(position)),
        });
        for pattern in patterns {
            self.realtime
                .subscription_hooks()
                .subscribed(pattern.as_str(), &self.guard.id);
            self.guard.patterns.push(pattern);
        }
    }

    /// Subscribes to every pattern at one delivery position (repeats are dropped).
    pub fn subscribe_all(&mut self, patterns: Vec<Pattern>) -> Result<(), StreamError> {
        let mut fresh: Vec<Pattern> = Vec::new();
        for pattern in patterns {
            let known = |p: &Pattern| p.as_str() == pattern.as_str();
            if !self.guard.patterns.iter().any(|p| known(p)) && !fresh.iter().any(known) {
                fresh.push(pattern);
            }
        }
        self.check(&fresh)?;
        if fresh.is_empty() {
            return Ok(());
        }
        let fresh: Vec<Arc<Pattern>> = fresh.into_iter().map(Arc::new).collect();
        let subs: Vec<(Arc<str>, Arc<Pattern>)> = fresh
            .iter()
            .map(|p| (Arc::from(p.as_str()), p.clone()))
            .collect();
        let position = self
            .realtime
            .hub()
            .subscribe_all(self.guard.key, &subs)
            .ok_or(StreamError::EndedEarly)?;
        self.record(fresh, position);
        Ok(())
    }

    /// Where the stream starts: every matching event after this cursor reaches it.
    fn start_cursor(&self) -> Result<(Cursor, u64), StreamError> {
        let (low, high) = self.positions.ok_or(StreamError::NothingSubscribed)?;
        let cursor = Cursor {
            epoch: self.realtime.epoch(),
            seq: low,
        };
        Ok((cursor, high))
    }

    async fn replay(&self, since: &Cursor, upto: u64) -> Result<Vec<Arc<Event>>, ReplayError> {
        let interest = Interest::new(self.realtime.rules(), &self.principal, &self.guard.patterns);
        let replay = self
            .realtime
            .log()
            .replay(since, upto, |e| interest.wants(e));
        tokio::select! {
            replayed = replay => replayed,
            () = self.realtime.shutdown_signal().cancelled() => {
                Err(ReplayError::Resync(ResyncReason::UnknownPosition))
            }
        }
    }

    /// Resumes from `last_event_id` when it can be served, otherwise writes `opening`
    /// (or the reset patch after a failed resume); then goes live.
    pub async fn start(
        self,
        last_event_id: Option<&str>,
        opening: Opening,
    ) -> Result<Response, StreamError> {
        let (start, upto) = self.start_cursor()?;
        let metrics = self.realtime.metrics();
        let resync = match last_event_id.map(str::parse::<Cursor>) {
            None => None,
            Some(Err(_)) => Some(ResyncReason::UnknownPosition),
            Some(Ok(since)) => match self.replay(&since, upto).await {
                Ok(events) => {
                    Metrics::inc(&metrics.resumes_recovered);
                    let initial = events.into_iter().map(Chunk::Event).collect();
                    return Ok(self.respond(initial, upto));
                }
                Err(ReplayError::Resync(reason)) => Some(reason),
                Err(ReplayError::Database(e)) => return Err(StreamError::Replay(e)),
            },
        };
        if resync.is_some() {
            Metrics::inc(&metrics.resumes_failed);
        }
        if self.realtime.shutdown_signal().is_cancelled() {
            return Err(StreamError::ShuttingDown);
        }
        let opening = match opening {
            Opening::Collected(collected) => collected,
            Opening::Snapshot => self.snapshot(resync).await?,
        };
        let opening = match resync {
            Some(_) if opening.is_empty() => reset_signals(self.reset_collections()),
            _ => opening,
        };
        let cursor = start.to_string();
        let mut initial = VecDeque::new();
        // Even with nothing to show, the start position goes out, so that a reconnect
        // resumes from it instead of starting over and missing what happened between.
        initial.push_back(Chunk::Bytes(if opening.is_empty() {
            encode_cursor(&cursor)
        } else {
            opening.render(Some(&cursor))
        }));
        if start.seq < upto {
            match self.replay(&start, upto).await {
                Ok(events) => initial.extend(events.into_iter().map(Chunk::Event)),
                Err(ReplayError::Database(e)) => return Err(StreamError::Replay(e)),
                Err(ReplayError::Resync(_)) => return Err(StreamError::EndedEarly),
            }
        }
        Ok(self.respond(initial, upto))
    }

    async fn snapshot(&self, resync: Option<ResyncReason>) -> Result<EventCollector, StreamError> {
        let Some(snapshot) = self.realtime.datastar_hooks().snapshot.clone() else {
            return Ok(EventCollector::new());
        };
        let request = SnapshotRequest {
            store: self.realtime.store(),
            principal: self.principal.clone(),
            patterns: self.guard.patterns.clone(),
            reason: resync.map_or(SnapshotReason::New, SnapshotReason::Resync),
        };
        // An app bug in the snapshot must not take the connection task down.
        let rendered = std::panic::AssertUnwindSafe(snapshot(request)).catch_unwind();
        tokio::select! {
            rendered = rendered => Ok(rendered.unwrap_or_else(|_| {
                tracing::error!("Datastar snapshot panicked; starting without it");
                None
            }).unwrap_or_default()),
            () = self.realtime.shutdown_signal().cancelled() => Err(StreamError::ShuttingDown),
        }
    }

    /// The collections a reset patch names: those the patterns name exactly, plus the
    /// readable collections with rules that a collection glob matches.
    fn reset_collections(&self) -> Vec<String> {
        let rules = self.realtime.rules();
        self.guard
            .patterns
            .iter()
            .flat_map(|pattern| rules.readable_collections(&self.principal, pattern))
            .collect()
    }

    fn respond(self, initial: VecDeque<Chunk>, skip_upto: u64) -> Response {
        let config = self.realtime.config();
        // A stream is as good as its token: it ends at expiry plus the grace, and the
        // client reconnects with whatever credentials it has by then.
        // An `exp` too far ahead to be an instant means no deadline, not a panic.
        let expires = self.principal.expires_at.and_then(|exp| {
            let left = Duration::from_secs(exp.saturating_sub(unix_now()));
            Instant::now().checked_add(left.checked_add(config.auth.expiry_grace)?)
        });
        let live = Live {
            keep_alive: config.sse.keep_alive,
            shutdown: self.realtime.shutdown_signal().clone(),
            expires,
            initial,
            skip_upto,
            deliveries: self.deliveries,
            closer: self.closer,
            guard: self.guard,
        };
        let body = Body::from_stream(futures::stream::unfold(live, Live::next_chunk));
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
                // Tells nginx (and proxies that follow it) not to buffer the stream.
                (header::HeaderName::from_static("x-accel-buffering"), "no"),
            ],
            body,
        )
            .into_response()
    }
}

/// Something written at the start of a stream.
enum Chunk {
    /// Already encoded (the opening).
    Bytes(Bytes),
    /// A replayed event, encoded (once, shared) when written.
    Event(Arc<Event>),
}

/// A started stream: the state of its response body.
struct Live {
    keep_alive: Duration,
    shutdown: tokio_util::sync::CancellationToken,
    expires: Option<Instant>,
    initial: VecDeque<Chunk>,
    /// Logged events up to this seq were written at the start; queued copies are
    /// skipped.
    skip_upto: u64,
    deliveries: mpsc::Receiver<Delivery>,
    closer: Closer,
    guard: Guard,
}

impl Live {
    fn encode(&self, event: &Event) -> Bytes {
        self.guard.realtime.datastar_hooks().sse_bytes(event)
    }

    fn push(&self, delivery: &Delivery, out: &mut BytesMut) {
        if delivery.event.seq.is_some_and(|seq| seq <= self.skip_upto) {
            return;
        }
        out.extend_from_slice(&self.encode(&delivery.event));
    }

    /// The next body chunk, or `None` to end the response cleanly.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if !self.initial.is_empty() {
            let mut out = BytesMut::new();
            while out.len() < MAX_CHUNK {
                match self.initial.pop_front() {
                    Some(Chunk::Bytes(bytes)) => out.extend_from_slice(&bytes),
                    Some(Chunk::Event(event)) => out.extend_from_slice(&self.encode(&event)),
                    None => break,
                }
            }
            return Some((Ok(out.freeze()), self));
        }
        loop {
            let expiry = async {
                match self.expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                reason = self.closer.closed() => {
                    tracing::debug!(?reason, id = %self.guard.id, "Datastar stream ended by the hub");
                    return None;
                }
                () = self.shutdown.cancelled() => return None,
                () = expiry => return None,
                delivery = self.deliveries.recv() => {
                    let first = delivery?;
                    let mut out = BytesMut::new();
                    self.push(&first, &mut out);
                    for _ in 1..MAX_BATCH {
                        if out.len() >= MAX_CHUNK {
                            break;
                        }
                        match self.deliveries.try_recv() {
                            Ok(next) => self.push(&next, &mut out),
                            Err(_) => break,
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok(out.freeze()), self));
                    }
                }
                () = tokio::time::sleep(self.keep_alive) => return Some((Ok(keep_alive()), self)),
            }
        }
    }
}
