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
//! limits and why a subscription is refused; `position` mirrors the node's delivery
//! position for resumers that wait for it; `runners` queues each shard's work for the
//! task that runs it; this module keeps each shard's index, registry and position
//! under its one lock and hands events out.

mod budget;
mod glob_table;
mod index;
mod node_globs;
mod position;
mod registry;
mod runners;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, mpsc};

pub(crate) use self::registry::{ReceiverKey, ReceiverKind};
pub use self::{
    budget::{GlobLimits, SubscribeError},
    registry::{Inbox, Receiver},
};
use self::{
    index::{SubIds, SubscriptionIndex, is_glob},
    node_globs::NodeGlobs,
    position::PositionWatch,
    registry::{Registered, Registry, UserGlobs},
    runners::{Job, Jobs, Runners},
};
use crate::{
    access::View,
    auth::Principal,
    close::CloseReason,
    event::{Event, EventContent, LogEntry, Recipients},
    filter::Filter,
    metrics::Metrics,
    rules::{Rule, Rules},
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

/// Everything a shard's one lock guards: the index and the registry change together
/// (a disconnect takes a receiver's subscriptions out of both), and the position must
/// be read in the same critical section that registers a subscription.
struct State {
    index: SubscriptionIndex,
    registry: Registry,
    position: u64,
    /// One shared copy of each subscription id in use. Most clients name their
    /// subscriptions alike (`s1`, `b`), so the fan-out compares ids by pointer and
    /// touches one copy, not one per receiver.
    ids: HashSet<Arc<str>>,
    /// The node's distinct globs, told when this shard starts or stops holding one.
    node_globs: Arc<NodeGlobs>,
}

impl State {
    /// Unregisters a receiver and takes its subscriptions out of the index.
    fn remove_receiver(&mut self, key: ReceiverKey, metrics: &Metrics) {
        let Some(subscriptions) = self.registry.remove(key) else {
            return;
        };
        for (sub_id, pattern) in subscriptions {
            self.unindex(key, sub_id, &pattern);
            Metrics::dec(&metrics.subscriptions);
        }
    }

    /// Takes subscription `id` of `key` out of the index, telling the node when the
    /// shard no longer holds its glob.
    fn unindex(&mut self, key: ReceiverKey, id: Arc<str>, pattern: &Pattern) {
        let sub = (key, id);
        self.index.remove(&sub, pattern);
        self.release(sub.1);
        if is_glob(pattern) && !self.index.holds_glob(pattern) {
            self.node_globs.lock().lost(pattern.as_str());
        }
    }

    /// The shared copy of `id` (made if it is the first).
    fn intern(&mut self, id: &str) -> Arc<str> {
        if let Some(shared) = self.ids.get(id) {
            return shared.clone();
        }
        // A copy of its own: the caller's may live on in the session.
        let shared: Arc<str> = Arc::from(id);
        self.ids.insert(shared.clone());
        shared
    }

    /// Gives back a shared id taken out of the index and the registry, forgetting it
    /// once nothing else holds it.
    fn release(&mut self, id: Arc<str>) {
        // The set's copy and this one are all that is left.
        if Arc::strong_count(&id) <= 2 {
            self.ids.remove(&id);
        }
    }
}

/// A share of the node's receivers, with their subscriptions and delivery position.
///
/// Aligned so that no two shards share a cache line: each is written by its own
/// runner, on its own core.
#[repr(align(128))]
struct Shard {
    state: Mutex<State>,
    /// `state.position`, readable without the lock (the node's position is the lowest).
    position: AtomicU64,
    /// Work waiting for the shard's runner, when the hub has runners.
    jobs: Jobs,
}

impl Shard {
    fn new(index: usize, shards: usize, position: u64, counts: &Counts) -> Self {
        Self {
            state: Mutex::new(State {
                index: SubscriptionIndex::default(),
                registry: Registry::new(index, shards, counts.users.clone()),
                position,
                ids: HashSet::new(),
                node_globs: counts.node.clone(),
            }),
            position: AtomicU64::new(position),
            jobs: Jobs::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-updated in a way
        // that matters more than stopping all delivery would, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the shard's position (its lock held, as `state`).
    fn set_position(&self, state: &mut State, position: u64) {
        state.position = position;
        self.position.store(position, Ordering::Release);
    }
}

/// The glob counts the node's budget keeps across its shards.
#[derive(Default)]
struct Counts {
    users: UserGlobs,
    node: Arc<NodeGlobs>,
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

/// Receivers a fan-out looks up, reading the first cache lines of each, before it
/// offers the event to any of them. After thousands of other receivers those lines
/// are cold. Plain reads of them overlap in the CPU, but an offer takes locks, and a
/// locked instruction waits for every read before it: receiver by receiver, each
/// miss cost a full memory latency in turn (the lock in `Outbound::push` held 84% of
/// its samples), where a chunk's misses are waited for together. See
/// `docs/benchmarks.md`, tenth pass.
const CHUNK: usize = 32;

/// How one receiver gets an event.
enum Route {
    /// Not at all.
    Skip,
    /// As it is, for these subscriptions.
    All(SubIds),
    /// Each view for its subscriptions (`update`, `enter`, `leave`).
    Views(Vec<(View, SubIds)>),
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
        self.lowest_position()
    }

    fn lowest_position(&self) -> u64 {
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
        self.report_globs();
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
        let node_globs = state.node_globs.clone();
        let mut node_globs = node_globs.lock();
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
                node_globs.gained(text.as_str());
            }
            Metrics::inc(&self.metrics.subscriptions);
        }
        drop(node_globs);
        self.report_globs();
        Ok(state.position)
    }

    /// Refuses `subs` if their globs would take receiver `key`, its user or the node
    /// past a glob limit. A glob some subscription already holds costs the node
    /// nothing more, so only new distinct ones count against the node's budget.
    fn admit_globs(
        &self,
        state: &State,
        node_globs: &node_globs::Held<'_>,
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
            .filter(|p| !node_globs.holds(p))
            .collect();
        if node_globs.count() + new.len() > limits.per_node {
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
        state.unindex(key, id, &pattern);
        Metrics::dec(&self.metrics.subscriptions);
        drop(state);
        self.report_globs();
        true
    }

    /// Reports the node's distinct globs.
    fn report_globs(&self) {
        let count = self.globs.node.lock().count();
        Metrics::set(
            &self.metrics.glob_patterns,
            u64::try_from(count).unwrap_or(u64::MAX),
        );
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
            self.watch.set_with(|| self.lowest_position());
        }
        done
    }

    fn fan_out(
        &self,
        state: &mut State,
        event: &Arc<Event>,
        content: &LogEntry,
        only: Option<ReceiverKind>,
    ) -> FanOut {
        let targets = state
            .index
            .matching(&content.collection, content.key.as_deref());
        // Looked up once per event, then judged per receiver.
        let rule = self.rules.read_rule(&content.collection);
        let before = event.before();
        // Whether the read rule could judge the record before the update otherwise
        // than after it: only when it reads a field the update changed.
        let rule_moved = before.is_some_and(|before| match rule {
            Rule::Owner(field) => before.rule_field(field) != content.rule_field(field),
            Rule::Custom(_) => true,
            _ => false,
        });
        self.deliver(state, event, targets, |registered, subs| {
            if only.is_some_and(|kind| registered.kind != kind) {
                return Route::Skip;
            }
            let principal = &registered.receiver.principal;
            if !rule_moved && !registered.has_filters() {
                // The common case: one judgement for all the receiver's subscriptions.
                return if registered.allows(rule, content) {
                    Route::All(subs)
                } else {
                    Route::Skip
                };
            }
            // Each subscription sees the event its own way (its filter; the record
            // before and after an update): one frame per way, each naming its subs.
            let mut views: Vec<(View, SubIds)> = Vec::new();
            for sub in subs {
                let filter = registered.filter(&sub);
                let view = self.rules.view(principal, filter, content, before);
                if view == View::Skip {
                    continue;
                }
                match views.iter_mut().find(|(v, _)| *v == view) {
                    Some((_, ids)) => ids.push(sub),
                    None => views.push((view, SubIds::from_elem(sub, 1))),
                }
            }
            Route::Views(views)
        })
    }

    /// Offers `event` to each target that is not the excluded connection, as `route`
    /// decides; receivers whose queue is full are removed.
    fn deliver(
        &self,
        state: &mut State,
        event: &Arc<Event>,
        targets: impl IntoIterator<Item = (ReceiverKey, SubIds)>,
        route: impl Fn(&Registered, SubIds) -> Route,
    ) -> FanOut {
        let except = event.except();
        let mut result = FanOut::default();
        let mut overflowed = Vec::new();
        let mut targets = targets.into_iter();
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let mut taken = 0;
            for (key, subs) in targets.by_ref().take(CHUNK) {
                taken += 1;
                if let Some(registered) = state.registry.get(key) {
                    chunk.push((key, registered, subs));
                }
            }
            for (_, registered, _) in &chunk {
                registered.warm();
            }
            for (key, registered, subs) in chunk.drain(..) {
                if except == Some(&*registered.receiver.id) {
                    continue;
                }
                let offered = match route(registered, subs) {
                    Route::Skip => continue,
                    Route::All(mut subs) => {
                        subs.sort_unstable();
                        self.offer(&registered.receiver, event, subs)
                    }
                    Route::Views(mut views) => {
                        if views.is_empty() {
                            continue;
                        }
                        views.sort_unstable_by_key(|(view, _)| *view);
                        views.into_iter().all(|(view, mut subs)| {
                            subs.sort_unstable();
                            event
                                .seen_as(view)
                                .is_none_or(|seen| self.offer(&registered.receiver, &seen, subs))
                        })
                    }
                };
                if offered {
                    result.delivered += 1;
                } else {
                    overflowed.push(key);
                }
            }
            if taken < CHUNK {
                break;
            }
        }
        // The chunk borrows the registry, which the removals below change.
        drop(chunk);
        result.overflowed = overflowed.len();
        for key in &overflowed {
            state.remove_receiver(*key, &self.metrics);
        }
        if !overflowed.is_empty() {
            self.report_globs();
        }
        result
    }

    /// Delivers a direct event to the shard's receivers it names.
    fn deliver_direct(&self, state: &mut State, event: &Arc<Event>) -> FanOut {
        let EventContent::Direct(content) = &event.data else {
            return FanOut::default();
        };
        let mut keys: HashSet<ReceiverKey> = HashSet::new();
        match &content.target {
            Recipients::Connections(ids) => {
                keys.extend(
                    ids.iter()
                        .filter_map(|id| state.registry.by_connection_id(id)),
                );
            }
            Recipients::Users(users) => {
                for user in users {
                    keys.extend(state.registry.of_user(user));
                }
            }
        }
        let targets = keys.into_iter().map(|key| (key, SubIds::new()));
        self.deliver(state, event, targets, |_, subs| Route::All(subs))
    }

    /// Queues without waiting; false (and the receiver is told) when its queue is full.
    fn offer(&self, receiver: &Receiver, event: &Arc<Event>, subs: SubIds) -> bool {
        let offered = match &receiver.inbox {
            Inbox::Socket(outbound) => outbound.push(event.wire_frame(&subs)).is_ok(),
            Inbox::Queue(queue) => match queue.try_send(Delivery {
                event: event.clone(),
                subs: subs.into_vec(),
            }) {
                // A closed queue: the receiver's task is ending; its disconnect will
                // clean up.
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
                Err(mpsc::error::TrySendError::Full(_)) => false,
            },
        };
        if offered {
            Metrics::inc(&self.metrics.events_delivered);
        } else {
            Metrics::inc(&self.metrics.queue_overflows);
            receiver.closer.close(CloseReason::SlowConsumer);
        }
        offered
    }

    /// Tells every receiver of the shard to close with 4010 and forgets them.
    fn close_all(&self, state: &mut State) {
        for key in state.registry.keys() {
            if let Some(registered) = state.registry.get(key) {
                registered
                    .receiver
                    .closer
                    .close(CloseReason::ContinuityLost);
            }
            state.remove_receiver(key, &self.metrics);
        }
        self.report_globs();
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
            drop(state);
            self.report_globs();
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
