//! Serving resumes: every matching event after a cursor, from the ring when it holds
//! them and from the table otherwise, or a reason why not. Never a partial replay.
//!
//! A cursor may come from another node that is ahead of this one (its doorbell has not
//! rung here yet). [`Log::catch_up`] makes this node reach such a cursor before the
//! resume registers, so that "the cursor is ahead of the log" means the log's, never
//! just this node's.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::{
    event::{Cursor, Event},
    hub::Hub,
    log::{Log, reader},
    protocol::ResyncReason,
};

/// Why a resume gives no events.
#[derive(Debug)]
pub(crate) enum ReplayError {
    /// The contract's reasons: answered with `recovered:false`.
    Resync(ResyncReason),
    /// The database failed.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ReplayError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Rows read from the table per query while scanning a replay range.
const PAGE: u32 = 1000;

impl Log {
    /// Before a resume from `since` registers: when `since` is ahead of this node's
    /// delivery position but within the log, waits (at most `log.catch_up_timeout`)
    /// until the hub has delivered up to it, having asked the ingest to read the log
    /// at once. Then a subscription registered next gets a position `P >= since.seq`
    /// and the usual replay of `(since, P]` serves it.
    ///
    /// `unknown_position` when the log itself never had `since` (in its epoch) or the
    /// wait ran out; `epoch_changed` when the log's epoch is no longer `since`'s. A
    /// cursor this node already reached, or of an epoch this node does not know, needs
    /// no catching up: the replay answers for it.
    pub(crate) async fn catch_up(&self, since: &Cursor, hub: &Hub) -> Result<(), ReplayError> {
        if since.seq <= hub.position() || *since.epoch != *self.epoch() {
            return Ok(());
        }
        let (epoch, last) = reader::load_meta(&self.db).await?;
        if *epoch != *since.epoch {
            return Err(ReplayError::Resync(ResyncReason::EpochChanged));
        }
        if last < since.seq {
            return Err(ReplayError::Resync(ResyncReason::UnknownPosition));
        }
        if hub
            .reach_position(since.seq, self.config.catch_up_timeout)
            .await
        {
            Ok(())
        } else {
            tracing::warn!(
                seq = since.seq,
                position = hub.position(),
                "a resume waited too long for this node to catch up with the log"
            );
            Err(ReplayError::Resync(ResyncReason::UnknownPosition))
        }
    }

    /// The first `limit` events after `since` (up to `upto`) as `deliverable` shows
    /// them, and the seq a next page starts after: the last event's when the page is
    /// full, `upto` otherwise. Used by HTTP catch-up, which pages instead of failing
    /// with `too_many`; the scan reads what a resume would.
    pub(crate) async fn page(
        &self,
        since: &Cursor,
        upto: u64,
        limit: usize,
        deliverable: impl Fn(&Arc<Event>) -> Option<Arc<Event>>,
    ) -> Result<(Vec<Arc<Event>>, u64), ReplayError> {
        self.check_start(since, upto)?;
        // A page reads at most the rows a resume may: past the scan budget it ends
        // early, and its cursor tells the client where the next page starts.
        let upto = upto.min(since.seq.saturating_add(self.config.resume_scan_budget));
        let limit = limit.max(1);
        let mut out = Vec::new();
        let mut next = upto;
        self.scan(since, upto, |event| {
            if let Some(seen) = deliverable(event) {
                out.push(seen);
                if out.len() == limit {
                    next = event.seq.unwrap_or(upto);
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok((out, next))
    }

    /// Every event with `since.seq < seq <= upto` as `deliverable` shows it (itself,
    /// its `enter` or `leave` form, or nothing), in order; or why they cannot all be
    /// served. More than `replay_cap` delivered events, or more than
    /// `resume_scan_budget` events to look at, is `too_many`. The ring serves the range
    /// when it holds all of it; only older ranges read the table.
    pub(crate) async fn replay(
        &self,
        since: &Cursor,
        upto: u64,
        deliverable: impl Fn(&Arc<Event>) -> Option<Arc<Event>>,
    ) -> Result<Vec<Arc<Event>>, ReplayError> {
        self.check_start(since, upto)?;
        // The rows to read, matching or not, are what a resume costs: past the budget
        // it is refused before anything is read, whatever its patterns match.
        if upto - since.seq > self.config.resume_scan_budget {
            return Err(ReplayError::Resync(ResyncReason::TooMany));
        }
        let cap = self.config.replay_cap;
        let mut out = Vec::new();
        self.scan(since, upto, |event| {
            if let Some(seen) = deliverable(event) {
                if out.len() == cap {
                    return Err(ReplayError::Resync(ResyncReason::TooMany));
                }
                out.push(seen);
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    /// Refuses a start this log cannot continue from: another epoch, or a position
    /// beyond `upto`.
    fn check_start(&self, since: &Cursor, upto: u64) -> Result<(), ReplayError> {
        if *since.epoch != *self.epoch() {
            return Err(ReplayError::Resync(ResyncReason::EpochChanged));
        }
        if since.seq > upto {
            return Err(ReplayError::Resync(ResyncReason::UnknownPosition));
        }
        Ok(())
    }

    /// Shows `visit` every event with `since.seq < seq <= upto`, in order, until it
    /// breaks: from the ring when it holds the whole range, else from the table if it
    /// still holds all of it (`too_old` otherwise).
    async fn scan(
        &self,
        since: &Cursor,
        upto: u64,
        mut visit: impl FnMut(&Arc<Event>) -> Result<ControlFlow<()>, ReplayError>,
    ) -> Result<(), ReplayError> {
        if let Some(events) = self.ring.range(since.seq, upto) {
            for event in &events {
                if visit(event)?.is_break() {
                    break;
                }
            }
            return Ok(());
        }
        match reader::oldest_seq(&self.db).await? {
            Some(oldest) if oldest <= since.seq + 1 => {}
            _ => return Err(ReplayError::Resync(ResyncReason::TooOld)),
        }
        let epoch = self.epoch();
        let mut after = since.seq;
        while after < upto {
            let rows = reader::read_range(&self.db, after, upto, PAGE).await?;
            let Some((last, _)) = rows.last() else {
                // Rows vanished (pruned) between the check and the read.
                return Err(ReplayError::Resync(ResyncReason::TooOld));
            };
            if rows.first().is_some_and(|(seq, _)| *seq != after + 1) {
                return Err(ReplayError::Resync(ResyncReason::TooOld));
            }
            after = *last;
            for (seq, event) in rows {
                let cursor = Cursor {
                    epoch: epoch.clone(),
                    seq,
                };
                if visit(&Event::logged(&cursor, event))?.is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
