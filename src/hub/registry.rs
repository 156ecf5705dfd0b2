//! The receivers registered with the hub: who they are, what kind, and what they
//! subscribed to, findable by key, by public connection id and by user.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use tokio::sync::mpsc;

use super::{Delivery, budget::SubscribeError, index::is_glob, tally::Tally};
use crate::{
    auth::Principal, close::Closer, event::LogEntry, filter::Filter, rules::Rule, topic::Pattern,
    ws::outbound::Outbound,
};

/// The hub's handle to a receiver (a WebSocket connection or an SSE stream).
#[derive(Debug)]
pub struct Receiver {
    /// The public connection id.
    pub id: Arc<str>,
    /// Who it is; replaced on token refresh.
    pub principal: Arc<Principal>,
    /// Where its events go.
    pub inbox: Inbox,
    /// Told to close by the hub when its queue overflows or continuity is lost.
    pub closer: Closer,
}

/// Where the hub puts a receiver's events. Both are bounded: a full one ends the
/// receiver (4008), never the fan-out.
#[derive(Debug)]
pub enum Inbox {
    /// A queue the receiver's task drains (SSE streams).
    Queue(mpsc::Sender<Delivery>),
    /// A WebSocket's outbound queue: the event's encoded frame is appended and the
    /// node's socket writers write it, without waking the connection's task.
    Socket(Arc<Outbound>),
}

impl Inbox {
    /// Brings the cache lines a delivery to this inbox reads first into the cache
    /// (see `Hub::deliver`). An SSE stream's queue has nothing to warm.
    pub(crate) fn warm(&self) {
        if let Self::Socket(outbound) = self {
            outbound.warm();
        }
    }
}

/// A receiver's handle inside the hub.
pub(crate) type ReceiverKey = u64;

/// What kind of client a receiver is. Logged events go to every kind; events rendered
/// for one kind only (Datastar broadcasts) go to receivers of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReceiverKind {
    /// A WebSocket connection (what [`Hub::connect`](super::Hub::connect) registers).
    #[default]
    WebSocket,
    /// A Datastar SSE stream.
    Sse,
}

/// A receiver's subscriptions by id.
pub(crate) type Subscriptions = HashMap<Arc<str>, Arc<Pattern>>;

/// One registered receiver. The kind and the subscriptions live here rather than in
/// [`Receiver`], which callers build and which stays as it is.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) receiver: Receiver,
    pub(crate) kind: ReceiverKind,
    /// Kept so a disconnect can take every subscription out of the index.
    subscriptions: Subscriptions,
    /// How many of them are globs (the matching budget counts them).
    globs: usize,
    /// The filters of the filtered subscriptions, by id (most have none).
    filters: HashMap<Arc<str>, Arc<Filter>>,
    /// Whether the principal is signed in, kept beside the rest so the commonest
    /// read rules are judged without reaching for the principal (see `allows`).
    authenticated: bool,
}

impl Registered {
    /// Whether the read `rule` lets this receiver see `content`. Rules that need no
    /// more than whether it is signed in are answered from here: following the
    /// principal's pointer is a cache miss per receiver per event in a large fan-out.
    pub(crate) fn allows(&self, rule: &Rule, content: &LogEntry) -> bool {
        rule.decide_by_sign_in(self.authenticated)
            .unwrap_or_else(|| rule.allows(&self.receiver.principal, content))
    }

    /// The filter of subscription `id`, if it has one.
    pub(crate) fn filter(&self, id: &str) -> Option<&Filter> {
        self.filters.get(id).map(|f| &**f)
    }

    /// Whether any of the receiver's subscriptions is filtered.
    pub(crate) fn has_filters(&self) -> bool {
        !self.filters.is_empty()
    }

    /// Reads what the fan-out reads first of this receiver, so that its cache lines
    /// are on their way before the fan-out takes any lock (see `Hub::deliver`).
    pub(crate) fn warm(&self) {
        std::hint::black_box(self.has_filters());
        self.receiver.inbox.warm();
    }
}

/// The receivers of one shard of the hub.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Receivers registered so far; a key is `count * shards + shard`, so the hub finds
    /// a receiver's shard from its key alone.
    count: u64,
    shard: u64,
    shards: u64,
    /// By key, with a fast hash: the fan-out looks every receiver up, and the keys
    /// are counted here, not chosen by clients.
    receivers: HashMap<ReceiverKey, Registered, foldhash::fast::RandomState>,
    by_connection_id: HashMap<Arc<str>, ReceiverKey>,
    by_user: HashMap<Arc<str>, HashSet<ReceiverKey>>,
    /// Glob subscriptions per user, across their receivers in every shard.
    globs_by_user: Arc<Tally>,
}

impl Registry {
    /// The registry of shard `shard` of `shards`, counting user globs in `user_globs`.
    pub(crate) fn new(shard: usize, shards: usize, user_globs: Arc<Tally>) -> Self {
        Self {
            shard: shard as u64,
            shards: shards as u64,
            globs_by_user: user_globs,
            ..Self::default()
        }
    }

    /// Registers `receiver` under a new key.
    pub(crate) fn add(&mut self, receiver: Receiver, kind: ReceiverKind) -> ReceiverKey {
        self.count += 1;
        let key = self.count * self.shards.max(1) + self.shard;
        if let Some(user) = &receiver.principal.user_id {
            self.by_user.entry(user.clone()).or_default().insert(key);
        }
        self.by_connection_id.insert(receiver.id.clone(), key);
        self.receivers.insert(
            key,
            Registered {
                authenticated: receiver.principal.is_authenticated(),
                receiver,
                kind,
                subscriptions: Subscriptions::new(),
                globs: 0,
                filters: HashMap::new(),
            },
        );
        key
    }

    /// Unregisters a receiver and hands back its subscriptions (for the index);
    /// `None` if it was not registered.
    pub(crate) fn remove(&mut self, key: ReceiverKey) -> Option<Subscriptions> {
        let Registered {
            receiver,
            subscriptions,
            globs,
            ..
        } = self.receivers.remove(&key)?;
        self.by_connection_id.remove(&receiver.id);
        if let Some(user) = &receiver.principal.user_id {
            self.forget_user(user, key);
            self.count_user_globs(user, -isize::try_from(globs).unwrap_or(isize::MAX));
        }
        Some(subscriptions)
    }

    /// Moves `user`'s glob count by `delta`, dropping the entry at zero.
    fn count_user_globs(&mut self, user: &Arc<str>, delta: isize) {
        self.globs_by_user.lock().add(user, delta);
    }

    /// The glob subscriptions of receiver `key`, and of its user (`None` when
    /// anonymous); `None` if the receiver is gone.
    pub(crate) fn glob_usage(&self, key: ReceiverKey) -> Option<(usize, Option<usize>)> {
        let registered = self.receivers.get(&key)?;
        let user = registered.receiver.principal.user_id.as_ref();
        let of_user = user.map(|u| self.globs_by_user.lock().get(u));
        Some((registered.globs, of_user))
    }

    fn forget_user(&mut self, user: &Arc<str>, key: ReceiverKey) {
        if let Some(keys) = self.by_user.get_mut(user) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// The registered receiver under `key`.
    pub(crate) fn get(&self, key: ReceiverKey) -> Option<&Registered> {
        self.receivers.get(&key)
    }

    /// Every registered key.
    pub(crate) fn keys(&self) -> Vec<ReceiverKey> {
        self.receivers.keys().copied().collect()
    }

    /// Replaces a receiver's principal. The user index is left alone: a refresh keeps
    /// the same `sub`.
    pub(crate) fn set_principal(&mut self, key: ReceiverKey, principal: Arc<Principal>) {
        if let Some(registered) = self.receivers.get_mut(&key) {
            registered.authenticated = principal.is_authenticated();
            registered.receiver.principal = principal;
        }
    }

    /// The receiver with public connection id `id`.
    pub(crate) fn by_connection_id(&self, id: &str) -> Option<ReceiverKey> {
        self.by_connection_id.get(id).copied()
    }

    /// Every receiver of `user`.
    pub(crate) fn of_user(&self, user: &str) -> impl Iterator<Item = ReceiverKey> + '_ {
        self.by_user.get(user).into_iter().flatten().copied()
    }

    /// Records all of `subs` or none, each with `filter`: refused if the receiver is
    /// gone or an id is in use or repeated.
    pub(crate) fn add_subscriptions(
        &mut self,
        key: ReceiverKey,
        subs: &[(Arc<str>, Arc<Pattern>)],
        filter: Option<&Arc<Filter>>,
    ) -> Result<(), SubscribeError> {
        let Some(registered) = self.receivers.get_mut(&key) else {
            return Err(SubscribeError::Gone);
        };
        let existing = &mut registered.subscriptions;
        let mut seen = HashSet::new();
        if subs
            .iter()
            .any(|(id, _)| existing.contains_key(id) || !seen.insert(id))
        {
            return Err(SubscribeError::IdInUse);
        }
        existing.extend(subs.iter().cloned());
        if let Some(filter) = filter {
            registered
                .filters
                .extend(subs.iter().map(|(id, _)| (id.clone(), filter.clone())));
        }
        let globs = subs.iter().filter(|(_, p)| is_glob(p)).count();
        registered.globs += globs;
        if let Some(user) = registered.receiver.principal.user_id.clone() {
            self.count_user_globs(&user, isize::try_from(globs).unwrap_or(isize::MAX));
        }
        Ok(())
    }

    /// Forgets subscription `id` of receiver `key` and hands it back; `None` if there
    /// was none.
    pub(crate) fn remove_subscription(
        &mut self,
        key: ReceiverKey,
        id: &str,
    ) -> Option<(Arc<str>, Arc<Pattern>)> {
        let registered = self.receivers.get_mut(&key)?;
        registered.filters.remove(id);
        let (id, pattern) = registered.subscriptions.remove_entry(id)?;
        if is_glob(&pattern) {
            registered.globs -= 1;
            if let Some(user) = registered.receiver.principal.user_id.clone() {
                self.count_user_globs(&user, -1);
            }
        }
        Some((id, pattern))
    }
}
