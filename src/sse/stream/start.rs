//! How a registered stream starts: a replay from its `Last-Event-ID`, or its opening
//! (the app's snapshot, or what `datastar_stream` collected), then the live queue.
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
//!
//! A `Last-Event-ID` from another node may be ahead of this one. The stream is already
//! registered, so this node first catches up with the log up to that cursor (bounded
//! by `log.catch_up_timeout`); everything after the stream's position is then in its
//! queue, and the queued events up to the cursor are skipped as the client's own. A
//! node so far behind that catching up overflows the stream's queue ends the stream,
//! and the client's next attempt finds the node caught up.

use std::{collections::VecDeque, sync::Arc};

use axum::{http::HeaderMap, response::Response};
use futures::FutureExt;

use super::{
    StreamError,
    live::{Chunk, Live},
    registration::Registration,
};
use crate::{
    access::Interest,
    event::{Cursor, Event},
    log::replay::ReplayError,
    metrics::Metrics,
    protocol::ResyncReason,
    sse::{
        EventCollector, encode_cursor,
        hooks::{SnapshotReason, SnapshotRequest},
        mapping::reset_signals,
    },
};

/// The `Last-Event-ID` request header, when it holds anything.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("last-event-id")?;
    // A value that is not text cannot be a cursor; "?" makes it fail as one.
    Some(value.to_str().unwrap_or("?")).filter(|v| !v.is_empty())
}

/// What a new stream, or one whose resume cannot be served, starts with.
pub(crate) enum Opening {
    /// The app's registered snapshot, if any (`GET /realtime/sse`).
    Snapshot,
    /// What the app's `datastar_stream` setup collected.
    Collected(EventCollector),
}

impl Registration {
    /// Where the stream starts: every matching event after this cursor reaches it.
    fn start_cursor(&self) -> Result<(Cursor, u64), StreamError> {
        let (low, high) = self.positions.ok_or(StreamError::NothingSubscribed)?;
        let cursor = Cursor {
            epoch: self.state.log.epoch(),
            seq: low,
        };
        Ok((cursor, high))
    }

    /// The logged events of `(since, upto]` this stream wants, as the one per-event
    /// filter of the access policy judges them.
    async fn replay(&self, since: &Cursor, upto: u64) -> Result<Vec<Arc<Event>>, ReplayError> {
        let interest = Interest::new(
            &self.state.rules,
            &self.principal,
            &self.guard.patterns,
            self.filter.as_deref(),
        );
        let replay = self
            .state
            .log
            .replay(since, upto, |e| interest.deliverable(e));
        tokio::select! {
            replayed = replay => replayed,
            () = self.state.shutdown.cancelled() => {
                Err(ReplayError::Resync(ResyncReason::UnknownPosition))
            }
        }
    }

    /// The events a resume from `since` starts with, and the seq up to which the
    /// client then has everything (queued events up to it are skipped).
    async fn resume(
        &self,
        since: &Cursor,
        upto: u64,
    ) -> Result<(Vec<Arc<Event>>, u64), ReplayError> {
        let log = &self.state.log;
        tokio::select! {
            caught_up = log.catch_up(since, &self.state.hub) => caught_up?,
            () = self.state.shutdown.cancelled() => {
                return Err(ReplayError::Resync(ResyncReason::UnknownPosition));
            }
        }
        if since.seq > upto && *since.epoch == *log.epoch() {
            // This node has now delivered up to `since`, and everything after the
            // stream's position went to its queue: nothing to replay.
            return Ok((Vec::new(), since.seq));
        }
        Ok((self.replay(since, upto).await?, upto))
    }

    /// `resume`, once the per-user resume rate limit lets it through.
    async fn admitted_resume(
        &self,
        since: &Cursor,
        upto: u64,
    ) -> Result<Result<(Vec<Arc<Event>>, u64), ReplayError>, StreamError> {
        if let Err(limited) = self.state.log.resumes.admit(&self.principal) {
            Metrics::inc(&self.state.metrics.resumes_rate_limited);
            return Err(StreamError::ResumeRateLimited(limited.to_string()));
        }
        Ok(self.resume(since, upto).await)
    }

    /// Resumes from `last_event_id` when it can be served, otherwise writes `opening`
    /// (or the reset patch after a failed resume); then goes live.
    pub(crate) async fn start(
        self,
        last_event_id: Option<&str>,
        opening: Opening,
    ) -> Result<Response, StreamError> {
        let (start, upto) = self.start_cursor()?;
        let metrics = &self.state.metrics;
        let resync = match last_event_id.map(str::parse::<Cursor>) {
            None => None,
            Some(Err(_)) => Some(ResyncReason::UnknownPosition),
            Some(Ok(since)) => match self.admitted_resume(&since, upto).await? {
                Ok((events, covered)) => {
                    Metrics::inc(&metrics.resumes_recovered);
                    let initial = events.into_iter().map(Chunk::Event).collect();
                    return Ok(Live::respond(self, initial, covered));
                }
                Err(ReplayError::Resync(reason)) => Some(reason),
                Err(ReplayError::Database(e)) => return Err(StreamError::Replay(e)),
            },
        };
        if resync.is_some() {
            Metrics::inc(&metrics.resumes_failed);
        }
        if self.state.shutdown.is_cancelled() {
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
        Ok(Live::respond(self, initial, upto))
    }

    async fn snapshot(&self, resync: Option<ResyncReason>) -> Result<EventCollector, StreamError> {
        let Some(snapshot) = self.state.datastar.snapshot.clone() else {
            return Ok(EventCollector::new());
        };
        let request = SnapshotRequest {
            store: self.state.store.clone(),
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
            () = self.state.shutdown.cancelled() => Err(StreamError::ShuttingDown),
        }
    }

    /// The collections a reset patch names: those the patterns name exactly, plus the
    /// readable collections with rules that a collection glob matches.
    fn reset_collections(&self) -> Vec<String> {
        let rules = &self.state.rules;
        self.guard
            .patterns
            .iter()
            .flat_map(|pattern| rules.readable_collections(&self.principal, pattern))
            .collect()
    }
}
