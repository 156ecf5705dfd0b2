//! A stream's place in the hub: its registration, its subscriptions (each admitted by
//! the access policy first) and the guard that undoes both however the stream ends.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::StreamError;
use crate::{
    access::Admission,
    auth::Principal,
    close::Closer,
    filter::Filter,
    hooks::SubscriptionHooks,
    hub::{Delivery, Hub, Inbox, Receiver, ReceiverKey, ReceiverKind},
    limits::{
        Slot,
        gauge::{self, Counted},
    },
    rules::Rules,
    sse::SseState,
    topic::Pattern,
};

/// Refuses `pattern` unless the access policy admits it for `principal` (per-event
/// rules are checked again on every delivery and replayed event).
pub(crate) fn admit(
    rules: &Rules,
    principal: &Principal,
    pattern: &Pattern,
) -> Result<(), StreamError> {
    match rules.admit(principal, pattern) {
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
pub(super) struct Guard {
    hub: Arc<Hub>,
    /// Counts the stream in `/metrics` while it lives.
    _open: Counted,
    subscription_hooks: Arc<SubscriptionHooks>,
    key: ReceiverKey,
    pub(super) id: Arc<str>,
    pub(super) patterns: Vec<Arc<Pattern>>,
    /// The stream's place under the connection caps, released with the stream.
    _slot: Slot,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.disconnect(self.key);
        for pattern in &self.patterns {
            self.subscription_hooks
                .unsubscribed(pattern.as_str(), &self.id);
        }
    }
}

/// A stream registered in the hub, subscribing, not yet started.
pub(crate) struct Registration {
    pub(super) state: SseState,
    pub(super) principal: Arc<Principal>,
    pub(super) deliveries: mpsc::Receiver<Delivery>,
    pub(super) closer: Closer,
    /// Lowest and highest delivery position of the subscriptions so far.
    pub(super) positions: Option<(u64, u64)>,
    /// The filter every subscription of the stream applies, if any.
    pub(super) filter: Option<Arc<Filter>>,
    pub(super) guard: Guard,
}

impl Registration {
    /// Registers a stream for `principal` in the hub, with no subscription yet.
    /// `slot` is its place under the connection caps, taken by the endpoint.
    pub(crate) fn open(
        state: SseState,
        principal: Arc<Principal>,
        slot: Slot,
    ) -> Result<Self, StreamError> {
        let (queue, deliveries) = mpsc::channel(state.config.sse.queue_capacity);
        let closer = Closer::default();
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let key = state.hub.connect_as(
            Receiver {
                id: id.clone(),
                principal: principal.clone(),
                inbox: Inbox::Queue(queue),
                closer: closer.clone(),
            },
            ReceiverKind::Sse,
        );
        let guard = Guard {
            hub: state.hub.clone(),
            _open: Counted::new(&state.metrics, gauge::sse_streams),
            subscription_hooks: state.subscription_hooks.clone(),
            key,
            id,
            patterns: Vec::new(),
            _slot: slot,
        };
        Ok(Self {
            state,
            principal,
            deliveries,
            closer,
            positions: None,
            filter: None,
            guard,
        })
    }

    /// The stream's connection id (the hub's, usable as a broadcast target).
    pub(crate) fn id(&self) -> &str {
        &self.guard.id
    }

    /// Who the stream is for.
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    fn check(&self, patterns: &[Pattern]) -> Result<(), StreamError> {
        let limit = self.state.config.connection.max_subscriptions;
        if self.guard.patterns.len() + patterns.len() > limit {
            return Err(StreamError::TooManyPatterns { limit });
        }
        for pattern in patterns {
            admit(&self.state.rules, &self.principal, pattern)?;
            if let Some(filter) = &self.filter {
                self.state.rules.check_filter(pattern, filter)?;
            }
        }
        Ok(())
    }

    /// Sets the filter (the `filter` parameter, JSON) that every subscription of the
    /// stream applies to record events. Only before the first subscription: one
    /// filter for the whole stream keeps a single `Last-Event-ID` an exact resume
    /// position. An empty filter is no filter.
    pub(crate) fn filter(&mut self, json: &str) -> Result<(), StreamError> {
        let limits = self.state.config.connection.filter_limits();
        let filter = Filter::parse_str(json, limits)?;
        self.filter = (!filter.is_empty()).then(|| Arc::new(filter));
        Ok(())
    }

    fn record(&mut self, patterns: Vec<Arc<Pattern>>, position: u64) {
        self.positions = Some(match self.positions {
            None => (position, position),
            Some((low, high)) => (low.min(position), high.max(position)),
        });
        for pattern in patterns {
            self.state
                .subscription_hooks
                .subscribed(pattern.as_str(), &self.guard.id);
            self.guard.patterns.push(pattern);
        }
    }

    /// Subscribes to every pattern at one delivery position (repeats are dropped).
    pub(crate) fn subscribe_all(&mut self, patterns: Vec<Pattern>) -> Result<(), StreamError> {
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
        let hub = &self.state.hub;
        let fresh: Vec<Arc<Pattern>> = fresh
            .into_iter()
            .map(|pattern| hub.shared_pattern(Arc::new(pattern)))
            .collect();
        let subs: Vec<(Arc<str>, Arc<Pattern>)> = fresh
            .iter()
            .map(|p| (Arc::from(p.as_str()), p.clone()))
            .collect();
        let position = self
            .state
            .hub
            .subscribe_all_filtered(self.guard.key, &subs, self.filter.clone())
            .map_err(StreamError::from)?;
        self.record(fresh, position);
        Ok(())
    }
}
