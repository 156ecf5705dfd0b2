//! The shards' work queues. In a node each shard's fan-out runs on the socket writer
//! that writes that shard's connections (`ws::writers`), not on the feeder's task: a
//! connection's queue and socket are then touched on one core, where a fan-out on
//! the feeder's core and writes on another moved every connection's cache lines
//! between the cores with every event (`docs/benchmarks.md`, fifteenth pass).
//!
//! So the hub queues each event once per shard and wakes the shard's runner, which
//! does the shard's share of the work in the order it was given. The queues are
//! bounded: a feeder that would run ahead of a runner waits for room
//! ([`Runners::room`]). Until runners are attached (a hub outside a node, as in unit
//! tests), and after one stopped at the node's shutdown, the work is done at once by
//! whoever gives it.

use std::{
    pin::pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

use super::shard::Shard;
use crate::event::Event;

/// Jobs a shard may have waiting before the feeder waits for its runner. Each is one
/// pointer to an event the ring holds anyway, so this bounds the queue's memory to a
/// few kB and how far a shard's position may trail the feeder's.
pub(super) const QUEUED_JOBS: usize = 256;

/// One piece of a shard's work.
#[derive(Debug, Clone)]
pub(super) enum Job {
    /// Fan a logged event out and move the position to its seq.
    Logged(Arc<Event>),
    /// Deliver a direct event to the receivers it names.
    Direct(Arc<Event>),
    /// Continuity is lost: close every receiver, restart after this position.
    Reset(u64),
}

/// A shard's waiting jobs.
#[derive(Debug, Default)]
pub(super) struct Jobs(Mutex<Vec<Job>>);

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        // Jobs are pushed and taken whole; a panic cannot leave one half-queued.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().push(job);
    }

    /// Everything waiting, oldest first.
    pub(super) fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.lock())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The runners of a hub's shards, once attached.
#[derive(Debug, Default)]
pub(super) struct Runners {
    /// One per shard: notified when the shard has work.
    wakes: OnceLock<Vec<Arc<Notify>>>,
    /// A runner stopped (the node shuts down): work is done at once again, and
    /// nobody waits for room any more.
    stopped: AtomicBool,
    /// Notified whenever a runner took its queue.
    drained: Notify,
}

impl Runners {
    pub(super) fn attach(&self, wakes: Vec<Arc<Notify>>) {
        // Attached once, by the node that builds the hub; a second call changes nothing.
        let _ = self.wakes.set(wakes);
    }

    /// A runner stopped: whoever gives work does it from now on.
    pub(super) fn detach(&self) {
        self.stopped.store(true, Ordering::Release);
        self.drained.notify_waiters();
    }

    /// Queues `job` for every shard's runner; false if there are none (the caller
    /// does the work itself).
    pub(super) fn give(&self, shards: &[Shard], job: &Job) -> bool {
        let Some(wakes) = self.wakes.get() else {
            return false;
        };
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        for (shard, wake) in shards.iter().zip(wakes) {
            shard.jobs.push(job.clone());
            wake.notify_one();
        }
        true
    }

    /// A runner took its queue: whoever waits for room looks again.
    pub(super) fn drained(&self) {
        self.drained.notify_waiters();
    }

    /// Waits until every shard has fewer than [`QUEUED_JOBS`] jobs waiting (at once
    /// without runners).
    pub(super) async fn room(&self, shards: &[Shard]) {
        loop {
            let mut drained = pin!(self.drained.notified());
            // Registered before the check, so a drain between the two is not missed.
            drained.as_mut().enable();
            let full = shards.iter().any(|shard| shard.jobs.len() >= QUEUED_JOBS);
            if !full || self.stopped.load(Ordering::Acquire) {
                return;
            }
            drained.await;
        }
    }
}
