//! A started stream's response body: what the start gathered, then deliveries from
//! the hub's queue and keep-alives, until the client goes, the hub ends it, its token
//! expires or the server shuts down.

use std::{collections::VecDeque, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::header,
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use super::registration::{Guard, Registration};
use crate::{
    auth::{Principal, unix_now},
    close::Closer,
    event::Event,
    hub::Delivery,
    sse::{hooks::DatastarHooks, keep_alive},
};

/// Bytes gathered into one body chunk at most, so a long replay or a burst is written
/// in a few large writes, not one per event, without holding it all in one buffer.
const MAX_CHUNK: usize = 64 * 1024;
/// Queued deliveries taken per chunk at most.
const MAX_BATCH: usize = 256;

/// Something written at the start of a stream.
pub(super) enum Chunk {
    /// Already encoded (the opening).
    Bytes(Bytes),
    /// A replayed event, encoded (once, shared) when written.
    Event(Arc<Event>),
}

/// A started stream: the state of its response body.
pub(super) struct Live {
    keep_alive: Duration,
    shutdown: CancellationToken,
    expires: Option<Instant>,
    datastar: Arc<DatastarHooks>,
    /// Whose stream this is: picks the view of a per-view renderer (the renderings
    /// themselves are cached on the event, not here).
    principal: Arc<Principal>,
    initial: VecDeque<Chunk>,
    /// Logged events up to this seq were written at the start; queued copies are
    /// skipped.
    skip_upto: u64,
    deliveries: mpsc::Receiver<Delivery>,
    closer: Closer,
    /// Dropped with the body, which ends the stream's registration.
    guard: Guard,
}

impl Live {
    /// The stream's response: `initial`, then the queue without the logged events up
    /// to `skip_upto` (already in `initial`).
    pub(super) fn respond(
        registration: Registration,
        initial: VecDeque<Chunk>,
        skip_upto: u64,
    ) -> Response {
        let Registration {
            state,
            principal,
            deliveries,
            closer,
            guard,
            ..
        } = registration;
        // A stream is as good as its token: it ends at expiry plus the grace, and the
        // client reconnects with whatever credentials it has by then.
        // An `exp` too far ahead to be an instant means no deadline, not a panic.
        let expires = principal.expires_at.and_then(|exp| {
            let left = Duration::from_secs(exp.saturating_sub(unix_now()));
            Instant::now().checked_add(left.checked_add(state.config.auth.expiry_grace)?)
        });
        let live = Self {
            keep_alive: state.config.sse.keep_alive,
            shutdown: state.shutdown,
            expires,
            datastar: state.datastar,
            principal,
            initial,
            skip_upto,
            deliveries,
            closer,
            guard,
        };
        let body = Body::from_stream(futures::stream::unfold(live, Self::next_chunk));
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

    fn encode(&self, event: &Event) -> Bytes {
        self.datastar.sse_bytes(event, &self.principal)
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
