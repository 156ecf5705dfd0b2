//! This node's subscription index and fan-out.
//!
//! Subscriptions are indexed by collection first, then by key, so matching an event
//! touches only the subscriptions that can match it. Fan-out never blocks: each
//! receiver has a bounded queue and a full queue ends that receiver (4008), never the
//! broadcaster.
//!
//! The hub also owns the delivery position: the seq of the last logged event handed
//! out. Registering a subscription and reading the position happen under one lock, so
//! every event after that position reaches the subscription live and everything up to
//! it can be replayed from the log without gap or overlap.
//!
//! The receivers are split into shards, one per runtime worker thread in a node.
//! Each shard has its own lock, index, registry and delivery position; an event is
//! fanned out shard by shard, and a subscription's position is its shard's. In a node
//! each shard's fan-out runs on the socket writer that writes the shard's connections
//! (`runners`, `ws::writers`), so a connection's queue and socket are touched by one
//! task instead of moving between cores with every event. The node's position, for
//! resumes and HTTP catch-up, is the lowest shard's.
//!
//! Matching stays bounded however clients subscribe: identical glob patterns share one
//! compiled matcher, tried once per event; globs are filed by literal prefix; and the
//! `budget` caps the globs a connection, a user and the node may hold, refusing new
//! ones rather than letting them slow every event's fan-out.
//!
//! The parts: `index` answers which subscriptions an event reaches and knows nothing
//! else; `glob_table` interns its glob patterns; `registry` holds the receivers (by
//! key, connection id and user) and what each subscribed to; `budget` holds the glob
//! limits and why a subscription is refused; `tally` keeps the glob counts the shards
//! share (per user, and the node's distinct globs); `shard` keeps one shard's index,
//! registry and position under its one lock; `fan_out` finds and judges an event's
//! receivers in a shard and queues it for them; `position` mirrors the node's delivery
//! position for resumers that wait for it; `runners` queues each shard's work for the
//! task that runs it; this module routes receivers, subscriptions and events to the
//! shards.

mod budget;
mod fan_out;
mod glob_table;
mod index;
mod position;
mod registry;
mod runners;
mod shard;
mod tally;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

pub(crate) use self::registry::{ReceiverKey, ReceiverKind};
pub use self::{
    budget::{GlobLimits, SubscribeError},
    registry::{Inbox, Receiver},
};
use self::{
    position::PositionWatch,
    runners::{Job, Runners},
    shard::{Shard, State, report_globs},
    tally::{Held, Tally},
};
use crate::{
    auth::Principal,
    close::CloseReason,
    event::{Event, EventContent},
    filter::Filter,
    metrics::Metrics,
    rules::Rules,
    topic::Pattern,
};

/// One event for one receiver, with the receiver's subscription ids that matched.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared, encoded event.
    pub event: Arc<Event>,
    /// Matching subscription ids (empty for direct events).
    pub subs: Vec<Arc<str>>,
}

/// The glob counts the node's budget keeps across its shards.
#[derive(Default)]
struct Counts {
    /// Glob subscriptions per user.
    users: Arc<Tally>,
    /// The shards holding each distinct glob.
    node: Arc<Tally>,
}

/// The subscription index and fan-out of one node.
pub struct Hub {
    shards: Box<[Shard]>,
    globs: Counts,
    /// Where the next receiver that did not choose its shard goes (round robin).
    next_shard: AtomicUsize,
    /// The seq of the last logged event given to the hub: the shards may still be
    /// fanning it out (the ingest's position, for telling new events from old).
    handed: AtomicU64,
    /// Mirrors the node's position (the lowest shard's), for resumers waiting for it.
    watch: PositionWatch,
    /// The tasks that run each shard's fan-out, once a node attached them.
    runners: Runners,
    rules: Arc<Rules>,
    metrics: Arc<Metrics>,
    limits: GlobLimits,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// What `Hub::publish` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FanOut {
    /// Receivers the event was queued for.
    pub delivered: usize,
    /// Receivers closed because their queue was full.
    pub overflowed: usize,
}

impl std::ops::Add for FanOut {
    type Output = Self;

    /// Two shards' fan-outs of one event, together.
    fn add(self, other: Self) -> Self {
        Self {
            delivered: self.delivered + other.delivered,
            overflowed: self.overflowed + other.overflowed,
        }
    }
}

impl Hub {
    /// An empty hub of one shard whose delivery position starts at `position`.
    pub fn new(rules: Arc<Rules>, metrics: Arc<Metrics>, position: u64) -> Self {
        let globs = Counts::default();
        Self {
            shards: Self::make_shards(1, position, &globs),
            globs,
            next_shard: AtomicUsize::new(0),
            handed: AtomicU64::new(position),
            watch: PositionWatch::new(position),
            runners: Runners::default(),
            rules,
            metrics,
            limits: GlobLimits::default(),
        }
    }

    /// The same (still empty) hub split into `shards` shards (at least one).
    #[must_use]
    pub fn with_shards(mut self, shards: usize) -> Self {
        let position = self.handed.load(Ordering::Relaxed);
        self.shards = Self::make_shards(shards.max(1), position, &self.globs);
        self
    }

    fn make_shards(count: usize, position: u64, globs: &Counts) -> Box<[Shard]> {
        (0..count)
            .map(|i| Shard::new(i, count, position, globs))
            .collect()
    }

    /// The same hub with these glob limits (default: `ConnectionConfig`'s defaults).
    #[must_use]
    pub fn with_glob_limits(mut self, limits: GlobLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How many shards the receivers are split into.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard holding receiver `key` (see `Registry::add`).
    fn shard_of(&self, key: ReceiverKey) -> &Shard {
        let shards = self.shards.len() as u64;
        &self.shards[(key % shards) as usize]
    }

    /// The rules the hub checks on every delivery.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The seq of the last logged event every shard handed out: every event up to it
    /// has reached its live subscribers' queues, on every shard.
    pub fn position(&self) -> u64 {
        let positions = self
            .shards
            .iter()
            .map(|s| s.position.load(Ordering::Acquire));
        positions.min().unwrap_or(0)
    }

    /// The seq of the last logged event given to [`Hub::publish`], which the shards
    /// may still be fanning out. The feeder tells new events from old by it.
    pub(crate) fn handed(&self) -> u64 {
        self.handed.load(Ordering::Acquire)
    }

    /// Waits, at most `timeout`, until the delivery position reaches `seq`, after asking
    /// the hub's feeder (the ingest) to read the log now. True once it has; false if
    /// the time ran out.
    pub(crate) async fn reach_position(&self, seq: u64, timeout: Duration) -> bool {
        self.watch.reach(seq, timeout).await
    }

    /// Waits, at most `timeout`, until an event after `seq` was delivered (HTTP
    /// catch-up's long poll). True once one was.
    pub(crate) async fn wait_beyond(&self, seq: u64, timeout: Duration) -> bool {
        self.watch.beyond(seq, timeout).await
    }

    /// Resolves when a resumer asked for the position to move (see
    /// [`Hub::reach_position`]): the ingest then reads the log at once.
    pub(crate) async fn catch_up_requested(&self) {
        self.watch.catch_up_requested().await;
    }

    /// Registers a receiver (a WebSocket connection).
    pub fn connect(&self, receiver: Receiver) -> ReceiverKey {
        self.connect_as(receiver, ReceiverKind::WebSocket)
    }

    /// Registers a receiver of the given kind, in the next shard in turn.
    pub fn connect_as(&self, receiver: Receiver, kind: ReceiverKind) -> ReceiverKey {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed);
        self.connect_to(shard, receiver, kind)
    }

    /// Registers a receiver of the given kind in shard `shard` (modulo the count): a
    /// WebSocket's, the shard its socket writer runs.
    pub(crate) fn connect_to(
        &self,
        shard: usize,
        receiver: Receiver,
        kind: ReceiverKind,
    ) -> ReceiverKey {
        self.shards[shard % self.shards.len()]
            .lock()
            .registry
            .add(receiver, kind)
    }

    /// Removes a receiver and all its subscriptions.
    pub fn disconnect(&self, key: ReceiverKey) {
        self.shard_of(key)
            .lock()
            .remove_receiver(key, &self.metrics);
    }

    /// Replaces a receiver's principal (token refresh; same `sub`).
    pub fn set_principal(&self, key: ReceiverKey, principal: Arc<Principal>) {
        self.shard_of(key)
            .lock()
            .registry
            .set_principal(key, principal);
    }

    /// The compiled pattern the hub already holds for `pattern`'s text, or `pattern`
    /// itself. A glob's compiled matcher takes several kB; a subscriber that keeps the
    /// shared one instead of its own freshly parsed copy costs the node nothing more.
    pub fn shared_pattern(&self, pattern: Arc<Pattern>) -> Arc<Pattern> {
        self.shards
            .iter()
            .find_map(|shard| shard.lock().index.interned(&pattern).cloned())
            .unwrap_or(pattern)
    }

    /// Adds a subscription and returns the delivery position at that instant: every
    /// logged event with a greater seq will be delivered to it live. Refused if the id
    /// is already in use, the receiver is gone, or a glob limit says no.
    pub fn subscribe(
        &self,
        key: ReceiverKey,
        id: Arc<str>,
        pattern: Arc<Pattern>,
    ) -> Result<u64, SubscribeError> {
        self.subscribe_all_filtered(key, &[(id, pattern)], None)
    }

    /// [`Hub::subscribe`] with a filter the subscription's record events must meet
    /// (see `access.rs` for how it is judged).
    pub(crate) fn subscribe_filtered(
        &self,
        key: ReceiverKey,
        id: Arc<str>,
        pattern: Arc<Pattern>,
        filter: Option<Arc<Filter>>,
    ) -> Result<u64, SubscribeError> {
        self.subscribe_all_filtered(key, &[(id, pattern)], filter)
    }

    /// Adds several subscriptions under one lock and returns the delivery position at
    /// that instant, which is then the same for all of them: one replay up to it covers
    /// every pattern. Adds none if any is refused (an id in use or repeated, the
    /// receiver gone, a glob limit).
    pub fn subscribe_all(
        &self,
        key: ReceiverKey,
        subs: &[(Arc<str>, Arc<Pattern>)],
    ) -> Result<u64, SubscribeError> {
        self.subscribe_all_filtered(key, subs, None)
    }

    /// [`Hub::subscribe_all`] with one filter for every subscription.
    pub(crate) fn subscribe_all_filtered(
        &self,
        key: ReceiverKey,
        subs: &[(Arc<str>, Arc<Pattern>)],
        filter: Option<Arc<Filter>>,
    ) -> Result<u64, SubscribeError> {
        for (_, pattern) in subs {
            self.limits.check_complexity(pattern)?;
        }
        let shard = self.shard_of(key);
        let mut state = shard.lock();
        let mut node_globs = self.globs.node.lock();
        self.admit_globs(&state, &node_globs, key, subs)?;
        let subs: Vec<(Arc<str>, Arc<Pattern>)> = subs
            .iter()
            .map(|(id, pattern)| (state.intern(id), pattern.clone()))
            .collect();
        let added = state
            .registry
            .add_subscriptions(key, &subs, filter.as_ref());
        if let Err(refused) = added {
            for (id, _) in subs {
                state.release(id);
            }
            return Err(refused);
        }
        for (id, pattern) in subs {
            let text = pattern.clone();
            if state.index.insert((key, id), pattern) {
                node_globs.add(text.as_str(), 1);
            }
            Metrics::inc(&self.metrics.subscriptions);
        }
        report_globs(&node_globs, &self.metrics);
        Ok(state.position)
    }

    /// Refuses `subs` if their globs would take receiver `key`, its user or the node
    /// past a glob limit. A glob some subscription already holds costs the node
    /// nothing more, so only new distinct ones count against the node's budget.
    fn admit_globs(
        &self,
        state: &State,
        node_globs: &Held<'_>,
        key: ReceiverKey,
        subs: &[(Arc<str>, Arc<Pattern>)],
    ) -> Result<(), SubscribeError> {
        let (of_receiver, of_user) = state.registry.glob_usage(key).ok_or(SubscribeError::Gone)?;
        let globs: Vec<&Arc<Pattern>> = subs
            .iter()
            .map(|(_, p)| p)
            .filter(|p| index::is_glob(p))
            .collect();
        if globs.is_empty() {
            return Ok(());
        }
        let limits = &self.limits;
        let refused = |error| {
            Metrics::inc(&self.metrics.glob_refusals);
            Err(error)
        };
        if of_receiver + globs.len() > limits.per_connection {
            return refused(SubscribeError::GlobsPerConnection {
                limit: limits.per_connection,
            });
        }
        if of_user.is_some_and(|n| n + globs.len() > limits.per_user) {
            return refused(SubscribeError::GlobsPerUser {
                limit: limits.per_user,
            });
        }
        let new: HashSet<&str> = globs
            .iter()
            .map(|p| p.as_str())
            .filter(|p| node_globs.get(p) == 0)
            .collect();
        if node_globs.len() + new.len() > limits.per_node {
            return refused(SubscribeError::GlobsPerNode {
                limit: limits.per_node,
            });
        }
        Ok(())
    }

    /// Removes a subscription; false if there was none with that id.
    pub fn unsubscribe(&self, key: ReceiverKey, id: &str) -> bool {
        let mut state = self.shard_of(key).lock();
        let Some((id, pattern)) = state.registry.remove_subscription(key, id) else {
            return false;
        };
        state.unindex(key, id, &pattern, &self.metrics);
        true
    }

    /// Number of subscriptions that match an event on `collection`/`key`, counted
    /// without delivering (used by benchmarks and tests).
    pub fn count_matching(&self, collection: &str, key: Option<&str>) -> usize {
        let count = |shard: &Shard| -> usize {
            shard
                .lock()
                .index
                .matching(collection, key)
                .iter()
                .map(|(_, ids)| ids.len())
                .sum()
        };
        self.shards.iter().map(count).sum()
    }

    /// Delivers a logged event to every matching receiver allowed to read it and
    /// advances the delivery position to its seq. Events must come in seq order.
    ///
    /// Once a node attached runners ([`Hub::attach_runners`]) the shards' runners
    /// deliver it and the counts returned are zero; until then it is delivered here.
    pub fn publish(&self, event: &Arc<Event>) -> FanOut {
        if !matches!(event.data, EventContent::Logged(_)) {
            return self.publish_direct(event);
        }
        if let Some(seq) = event.seq {
            self.handed.fetch_max(seq, Ordering::AcqRel);
        }
        self.submit(Job::Logged(event.clone()))
    }

    /// Delivers an event that is not in the log (see [`Event::local`]) to the matching
    /// receivers of `kind` allowed to read it, here and now on every shard. The
    /// delivery position does not move.
    pub fn publish_local(&self, event: &Arc<Event>, kind: ReceiverKind) -> FanOut {
        let EventContent::Logged(content) = &event.data else {
            return FanOut::default();
        };
        self.shards.iter().fold(FanOut::default(), |sum, shard| {
            let mut state = shard.lock();
            sum + self.fan_out(&mut state, event, content, Some(kind))
        })
    }

    /// Delivers a direct (connection- or user-targeted) event. Not logged. Counts as
    /// [`Hub::publish`] does.
    pub fn publish_direct(&self, event: &Arc<Event>) -> FanOut {
        if !matches!(event.data, EventContent::Direct(_)) {
            return FanOut::default();
        }
        self.submit(Job::Direct(event.clone()))
    }

    /// Continuity is lost (the log was reset or has a hole): every receiver is told to
    /// close with 4010 and will resume; delivery restarts after `position`. Taken in
    /// turn with the events given before and after it.
    pub fn reset(&self, position: u64) {
        self.handed.store(position, Ordering::Release);
        self.submit(Job::Reset(position));
    }

    /// Has every shard do `job`: queued for the shards' runners once a node attached
    /// them, or done here at once (counted) until then.
    fn submit(&self, job: Job) -> FanOut {
        if self.runners.give(&self.shards, &job) {
            return FanOut::default();
        }
        (0..self.shards.len()).fold(FanOut::default(), |sum, shard| sum + self.run(shard, &job))
    }

    /// Does `job` on shard `shard`.
    fn run(&self, shard: usize, job: &Job) -> FanOut {
        let shard = &self.shards[shard];
        let mut state = shard.lock();
        let done = match job {
            Job::Logged(event) => {
                let EventContent::Logged(content) = &event.data else {
                    return FanOut::default();
                };
                if let Some(seq) = event.seq {
                    let position = state.position.max(seq);
                    shard.set_position(&mut state, position);
                }
                self.fan_out(&mut state, event, content, None)
            }
            Job::Direct(event) => self.deliver_direct(&mut state, event),
            Job::Reset(position) => {
                self.close_all(&mut state);
                shard.set_position(&mut state, *position);
                FanOut::default()
            }
        };
        drop(state);
        if matches!(job, Job::Logged(_) | Job::Reset(_)) {
            // Read inside the watch's own lock: whichever shard reports last reports
            // every shard's latest position, so the watch never stays behind or ahead.
            self.watch.set_with(|| self.position());
        }
        done
    }

    /// Ends every receiver of `user` on this node: WebSockets close with 4003
    /// (`revoked`), SSE streams end. They are taken out of the hub at once, so nothing
    /// more is queued for them. Returns how many there were.
    pub fn disconnect_user(&self, user: &str) -> usize {
        let mut ended = 0;
        for shard in &self.shards {
            let mut state = shard.lock();
            let keys: Vec<ReceiverKey> = state.registry.of_user(user).collect();
            for &key in &keys {
                if let Some(registered) = state.registry.get(key) {
                    registered.receiver.closer.close(CloseReason::Revoked);
                }
                state.remove_receiver(key, &self.metrics);
            }
            ended += keys.len();
        }
        ended
    }

    /// Hands the shards' work to runners: from now on shard `i`'s work is queued and
    /// `wakes[i]` notified, and the runner calls [`Hub::run_queued`] with `i`. One
    /// waker per shard; attached once (later calls change nothing).
    pub(crate) fn attach_runners(&self, wakes: Vec<Arc<Notify>>) {
        debug_assert_eq!(wakes.len(), self.shards.len());
        self.runners.attach(wakes);
    }

    /// Does the work queued for shard `shard`, in the order it was given; whether
    /// there was any.
    pub(crate) fn run_queued(&self, shard: usize) -> bool {
        let jobs = self.shards[shard].jobs.take();
        if jobs.is_empty() {
            return false;
        }
        for job in &jobs {
            self.run(shard, job);
        }
        self.runners.drained();
        true
    }

    /// A runner stopped (the node shuts down): work given from now on is done at once
    /// by whoever gives it, and nobody waits for room.
    pub(crate) fn detach_runners(&self) {
        self.runners.detach();
    }

    /// Waits until every shard's queue has room for more work, so a feeder faster
    /// than the fan-out waits instead of queueing without bound.
    pub(crate) async fn room(&self) {
        self.runners.room(&self.shards).await;
    }
}

#[cfg(test)]
mod tests;
