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

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::mpsc;

use crate::{
    auth::Principal,
    close::{CloseReason, Closer},
    event::{DirectTarget, Event, EventContent},
    metrics::Metrics,
    rules::Rules,
    topic::{GlobPart, MatchText, Pattern},
};

/// One event for one receiver, with the receiver's subscription ids that matched.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared, encoded event.
    pub event: Arc<Event>,
    /// Matching subscription ids (empty for direct events).
    pub subs: Vec<Arc<str>>,
}

/// The hub's handle to a receiver (a WebSocket connection or an SSE stream).
#[derive(Debug)]
pub struct Receiver {
    /// The public connection id.
    pub id: Arc<str>,
    /// Who it is; replaced on token refresh.
    pub principal: Arc<Principal>,
    /// Its bounded queue.
    pub queue: mpsc::Sender<Delivery>,
    /// Told to close by the hub when its queue overflows or continuity is lost.
    pub closer: Closer,
}

/// A receiver's handle inside the hub.
pub type ReceiverKey = u64;

/// What kind of client a receiver is. Logged events go to every kind; events rendered
/// for one kind only (Datastar broadcasts) go to receivers of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReceiverKind {
    /// A WebSocket connection (what [`Hub::connect`] registers).
    #[default]
    WebSocket,
    /// A Datastar SSE stream.
    Sse,
}

type SubKey = (ReceiverKey, Arc<str>);

#[derive(Default)]
struct CollectionIndex {
    /// `collection:*`
    any_key: HashMap<SubKey, Arc<Pattern>>,
    /// `collection:literal`
    by_key: HashMap<String, HashMap<SubKey, Arc<Pattern>>>,
    /// `collection:glob`
    key_globs: HashMap<SubKey, Arc<Pattern>>,
}

impl CollectionIndex {
    fn is_empty(&self) -> bool {
        self.any_key.is_empty() && self.by_key.is_empty() && self.key_globs.is_empty()
    }
}

#[derive(Default)]
struct State {
    next_key: ReceiverKey,
    receivers: HashMap<ReceiverKey, Receiver>,
    /// The kind of each receiver; kept beside `receivers` so `Receiver` stays as is.
    kinds: HashMap<ReceiverKey, ReceiverKind>,
    by_connection_id: HashMap<Arc<str>, ReceiverKey>,
    by_user: HashMap<Arc<str>, HashSet<ReceiverKey>>,
    /// Each receiver's subscriptions, for unsubscribe-all on disconnect.
    subs_of: HashMap<ReceiverKey, HashMap<Arc<str>, Arc<Pattern>>>,
    collections: HashMap<String, CollectionIndex>,
    /// Subscriptions whose collection side is a glob.
    collection_globs: HashMap<SubKey, Arc<Pattern>>,
    position: u64,
}

/// The subscription index and fan-out of one node.
pub struct Hub {
    state: Mutex<State>,
    rules: Arc<Rules>,
    metrics: Arc<Metrics>,
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

impl Hub {
    /// An empty hub whose delivery position starts at `position`.
    pub fn new(rules: Arc<Rules>, metrics: Arc<Metrics>, position: u64) -> Self {
        Self {
            state: Mutex::new(State {
                position,
                ..State::default()
            }),
            rules,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-updated in a way
        // that matters more than stopping all delivery would, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules the hub checks on every delivery.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The seq of the last logged event handed out.
    pub fn position(&self) -> u64 {
        self.lock().position
    }

    /// Registers a receiver (a WebSocket connection).
    pub fn connect(&self, receiver: Receiver) -> ReceiverKey {
        self.connect_as(receiver, ReceiverKind::WebSocket)
    }

    /// Registers a receiver of the given kind.
    pub fn connect_as(&self, receiver: Receiver, kind: ReceiverKind) -> ReceiverKey {
        let mut state = self.lock();
        state.next_key += 1;
        let key = state.next_key;
        state.kinds.insert(key, kind);
        if let Some(user) = &receiver.principal.user_id {
            state.by_user.entry(user.clone()).or_default().insert(key);
        }
        state.by_connection_id.insert(receiver.id.clone(), key);
        state.receivers.insert(key, receiver);
        key
    }

    /// Removes a receiver and all its subscriptions.
    pub fn disconnect(&self, key: ReceiverKey) {
        let mut state = self.lock();
        Self::remove_receiver(&mut state, key, &self.metrics);
    }

    fn remove_receiver(state: &mut State, key: ReceiverKey, metrics: &Metrics) {
        let Some(receiver) = state.receivers.remove(&key) else {
            return;
        };
        state.kinds.remove(&key);
        state.by_connection_id.remove(&receiver.id);
        if let Some(user) = &receiver.principal.user_id {
            Self::forget_user(state, user, key);
        }
        for (sub_id, pattern) in state.subs_of.remove(&key).unwrap_or_default() {
            Self::unindex(state, &(key, sub_id), &pattern);
            Metrics::dec(&metrics.subscriptions);
        }
    }

    fn forget_user(state: &mut State, user: &Arc<str>, key: ReceiverKey) {
        if let Some(keys) = state.by_user.get_mut(user) {
            keys.remove(&key);
            if keys.is_empty() {
                state.by_user.remove(user);
            }
        }
    }

    /// Replaces a receiver's principal (token refresh; same `sub`).
    pub fn set_principal(&self, key: ReceiverKey, principal: Arc<Principal>) {
        let mut state = self.lock();
        if let Some(receiver) = state.receivers.get_mut(&key) {
            receiver.principal = principal;
        }
    }

    /// Adds a subscription and returns the delivery position at that instant: every
    /// logged event with a greater seq will be delivered to it live. Returns `None` if
    /// the id is already in use or the receiver is gone.
    pub fn subscribe(&self, key: ReceiverKey, id: Arc<str>, pattern: Arc<Pattern>) -> Option<u64> {
        let mut state = self.lock();
        if !state.receivers.contains_key(&key) {
            return None;
        }
        let subs = state.subs_of.entry(key).or_default();
        if subs.contains_key(&id) {
            return None;
        }
        subs.insert(id.clone(), pattern.clone());
        Self::index(&mut state, (key, id), pattern);
        Metrics::inc(&self.metrics.subscriptions);
        Some(state.position)
    }

    /// Adds several subscriptions under one lock and returns the delivery position at
    /// that instant, which is then the same for all of them: one replay up to it covers
    /// every pattern. Adds none and returns `None` if an id is in use (or repeated) or
    /// the receiver is gone.
    pub fn subscribe_all(
        &self,
        key: ReceiverKey,
        subs: &[(Arc<str>, Arc<Pattern>)],
    ) -> Option<u64> {
        let mut state = self.lock();
        if !state.receivers.contains_key(&key) {
            return None;
        }
        let existing = state.subs_of.entry(key).or_default();
        let mut seen = HashSet::new();
        if subs
            .iter()
            .any(|(id, _)| existing.contains_key(id) || !seen.insert(id))
        {
            return None;
        }
        existing.extend(subs.iter().cloned());
        for (id, pattern) in subs {
            Self::index(&mut state, (key, id.clone()), pattern.clone());
            Metrics::inc(&self.metrics.subscriptions);
        }
        Some(state.position)
    }

    /// Removes a subscription; false if there was none with that id.
    pub fn unsubscribe(&self, key: ReceiverKey, id: &str) -> bool {
        let mut state = self.lock();
        let Some((id, pattern)) = state
            .subs_of
            .get_mut(&key)
            .and_then(|subs| subs.remove_entry(id))
        else {
            return false;
        };
        Self::unindex(&mut state, &(key, id), &pattern);
        Metrics::dec(&self.metrics.subscriptions);
        true
    }

    fn index(state: &mut State, sub: SubKey, pattern: Arc<Pattern>) {
        let GlobPart::Exact(collection) = pattern.collection() else {
            state.collection_globs.insert(sub, pattern);
            return;
        };
        let index = state.collections.entry(collection.clone()).or_default();
        match pattern.key() {
            GlobPart::Any => index.any_key.insert(sub, pattern.clone()),
            GlobPart::Exact(k) => index
                .by_key
                .entry(k.clone())
                .or_default()
                .insert(sub, pattern.clone()),
            GlobPart::Glob(_) => index.key_globs.insert(sub, pattern.clone()),
        };
    }

    fn unindex(state: &mut State, sub: &SubKey, pattern: &Pattern) {
        let GlobPart::Exact(collection) = pattern.collection() else {
            state.collection_globs.remove(sub);
            return;
        };
        let Some(index) = state.collections.get_mut(collection) else {
            return;
        };
        match pattern.key() {
            GlobPart::Any => {
                index.any_key.remove(sub);
            }
            GlobPart::Exact(k) => {
                if let Some(subs) = index.by_key.get_mut(k) {
                    subs.remove(sub);
                    if subs.is_empty() {
                        index.by_key.remove(k);
                    }
                }
            }
            GlobPart::Glob(_) => {
                index.key_globs.remove(sub);
            }
        }
        if index.is_empty() {
            state.collections.remove(collection);
        }
    }

    /// The subscriptions matching `collection`/`key`, grouped by receiver (in
    /// receiver order). Matches are collected as borrowed pairs and grouped by one
    /// sort: cheaper than a map entry and an id clone per match when an event
    /// reaches thousands of subscriptions.
    fn matching(
        state: &State,
        collection: &str,
        key: Option<&str>,
    ) -> Vec<(ReceiverKey, Vec<Arc<str>>)> {
        let mut found: Vec<&SubKey> = Vec::new();
        if let Some(index) = state.collections.get(collection) {
            found.extend(index.any_key.keys());
            match key {
                Some(key) => {
                    if let Some(subs) = index.by_key.get(key) {
                        found.extend(subs.keys());
                    }
                    if !index.key_globs.is_empty() {
                        let key = MatchText::new(key);
                        found.extend(
                            index
                                .key_globs
                                .iter()
                                .filter(|(_, pattern)| pattern.key().matches_prepared(&key))
                                .map(|(sub, _)| sub),
                        );
                    }
                }
                // A collection-wide event reaches every subscription of the collection.
                None => {
                    found.extend(index.by_key.values().flat_map(HashMap::keys));
                    found.extend(index.key_globs.keys());
                }
            }
        }
        if !state.collection_globs.is_empty() {
            let prepared_collection = MatchText::new(collection);
            let prepared_key = key.map(MatchText::new);
            found.extend(
                state
                    .collection_globs
                    .iter()
                    .filter(|(_, pattern)| {
                        pattern.matches_prepared(&prepared_collection, prepared_key.as_ref())
                    })
                    .map(|(sub, _)| sub),
            );
        }
        found.sort_unstable_by_key(|(receiver, _)| *receiver);
        let mut grouped: Vec<(ReceiverKey, Vec<Arc<str>>)> = Vec::new();
        for (receiver, id) in found {
            match grouped.last_mut() {
                Some((last, ids)) if last == receiver => ids.push(id.clone()),
                _ => grouped.push((*receiver, vec![id.clone()])),
            }
        }
        grouped
    }

    /// Number of subscriptions that match an event on `collection`/`key`, counted
    /// without delivering (used by benchmarks and tests).
    pub fn count_matching(&self, collection: &str, key: Option<&str>) -> usize {
        let state = self.lock();
        Self::matching(&state, collection, key)
            .iter()
            .map(|(_, ids)| ids.len())
            .sum()
    }

    /// Delivers a logged event to every matching receiver allowed to read it and
    /// advances the delivery position to its seq. Events must come in seq order.
    pub fn publish(&self, event: &Arc<Event>) -> FanOut {
        let EventContent::Logged(content) = &event.data else {
            return self.publish_direct(event);
        };
        let mut state = self.lock();
        if let Some(seq) = event.seq {
            state.position = state.position.max(seq);
        }
        self.fan_out(&mut state, event, content, None)
    }

    /// Delivers an event that is not in the log (see [`Event::local`]) to the matching
    /// receivers of `kind` allowed to read it. The delivery position does not move.
    pub fn publish_local(&self, event: &Arc<Event>, kind: ReceiverKind) -> FanOut {
        let EventContent::Logged(content) = &event.data else {
            return FanOut::default();
        };
        let mut state = self.lock();
        self.fan_out(&mut state, event, content, Some(kind))
    }

    fn fan_out(
        &self,
        state: &mut State,
        event: &Arc<Event>,
        content: &crate::event::NewEvent,
        only: Option<ReceiverKind>,
    ) -> FanOut {
        let targets = Self::matching(state, &content.collection, content.key.as_deref());
        // Looked up once per event, then judged per receiver.
        let rule = self.rules.read_rule(&content.collection);
        self.deliver(state, event, targets, |key, receiver, state| {
            only.is_none_or(|kind| state.kinds.get(&key) == Some(&kind))
                && rule.allows(&receiver.principal, content)
        })
    }

    /// Offers `event` to each target that is not the excluded connection and that
    /// `accept`s it; receivers whose queue is full are removed.
    fn deliver(
        &self,
        state: &mut State,
        event: &Arc<Event>,
        targets: impl IntoIterator<Item = (ReceiverKey, Vec<Arc<str>>)>,
        accept: impl Fn(ReceiverKey, &Receiver, &State) -> bool,
    ) -> FanOut {
        let except = event.except();
        let mut result = FanOut::default();
        let mut overflowed = Vec::new();
        for (key, mut subs) in targets {
            let Some(receiver) = state.receivers.get(&key) else {
                continue;
            };
            if except == Some(&*receiver.id) || !accept(key, receiver, state) {
                continue;
            }
            subs.sort_unstable();
            if self.offer(receiver, event, subs) {
                result.delivered += 1;
            } else {
                overflowed.push(key);
            }
        }
        result.overflowed = overflowed.len();
        for key in overflowed {
            Self::remove_receiver(state, key, &self.metrics);
        }
        result
    }

    /// Delivers a direct (connection- or user-targeted) event. Not logged.
    pub fn publish_direct(&self, event: &Arc<Event>) -> FanOut {
        let EventContent::Direct(content) = &event.data else {
            return FanOut::default();
        };
        let mut state = self.lock();
        let mut keys: HashSet<ReceiverKey> = HashSet::new();
        match &content.target {
            DirectTarget::Connections(ids) => {
                keys.extend(
                    ids.iter()
                        .filter_map(|id| state.by_connection_id.get(id.as_str())),
                );
            }
            DirectTarget::Users(users) => {
                for user in users {
                    if let Some(found) = state.by_user.get(user.as_str()) {
                        keys.extend(found);
                    }
                }
            }
        }
        let targets = keys.into_iter().map(|key| (key, Vec::new()));
        self.deliver(&mut state, event, targets, |_, _, _| true)
    }

    /// Queues without waiting; false (and the receiver is told) when its queue is full.
    fn offer(&self, receiver: &Receiver, event: &Arc<Event>, subs: Vec<Arc<str>>) -> bool {
        let delivery = Delivery {
            event: event.clone(),
            subs,
        };
        match receiver.queue.try_send(delivery) {
            Ok(()) => {
                Metrics::inc(&self.metrics.events_delivered);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                Metrics::inc(&self.metrics.queue_overflows);
                receiver.closer.close(CloseReason::SlowConsumer);
                false
            }
            // The receiver's task is ending; its disconnect will clean up.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Continuity is lost (the log was reset or has a hole): every receiver is told to
    /// close with 4010 and will resume; delivery restarts after `position`.
    pub fn reset(&self, position: u64) {
        let mut state = self.lock();
        let keys: Vec<_> = state.receivers.keys().copied().collect();
        for key in keys {
            if let Some(receiver) = state.receivers.get(&key) {
                receiver.closer.close(CloseReason::ContinuityLost);
            }
            Self::remove_receiver(&mut state, key, &self.metrics);
        }
        state.position = position;
    }
}
