//! The fan-out itself: one shard's receivers that an event reaches, judged by the
//! read rules and the filters, and the event queued for each.

use std::{collections::HashSet, sync::Arc};

use tokio::sync::mpsc;

use super::{
    Delivery, FanOut, Hub, Inbox, Receiver, ReceiverKey, ReceiverKind, index::SubIds,
    registry::Registered, shard::State,
};
use crate::{
    access::View,
    close::CloseReason,
    event::{Event, EventContent, LogEntry, Recipients},
    metrics::Metrics,
    rules::Rule,
};

/// Receivers a fan-out looks up, reading the first cache lines of each, before it
/// offers the event to any of them. After thousands of other receivers those lines
/// are cold. Plain reads of them overlap in the CPU, but an offer takes locks, and a
/// locked instruction waits for every read before it: receiver by receiver, each
/// miss cost a full memory latency in turn (the lock in `Outbound::push` held 84% of
/// its samples), where a chunk's misses are waited for together. See
/// `docs/benchmarks.md`, tenth pass.
pub(super) const CHUNK: usize = 32;

/// How one receiver gets an event.
enum Route {
    /// Not at all.
    Skip,
    /// As it is, for these subscriptions.
    All(SubIds),
    /// Each view for its subscriptions (`update`, `enter`, `leave`).
    Views(Vec<(View, SubIds)>),
}

impl Hub {
    /// Offers a logged event to the shard's receivers whose subscriptions match it and
    /// whose read rule and filters let them see it (only those of kind `only`, if
    /// given), each in the view it gets of an update.
    pub(super) fn fan_out(
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
        for key in overflowed {
            state.remove_receiver(key, &self.metrics);
        }
        result
    }

    /// Delivers a direct event to the shard's receivers it names.
    pub(super) fn deliver_direct(&self, state: &mut State, event: &Arc<Event>) -> FanOut {
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
    pub(super) fn close_all(&self, state: &mut State) {
        for key in state.registry.keys() {
            if let Some(registered) = state.registry.get(key) {
                registered
                    .receiver
                    .closer
                    .close(CloseReason::ContinuityLost);
            }
            state.remove_receiver(key, &self.metrics);
        }
    }
}
