//! Carries out a session's [`Effect`]s against the hub, the log and the publisher,
//! and turns them into the frames the connection writes.

use std::sync::Arc;

use super::{
    WsState,
    session::{Effect, HandleRequest, Session, Since, SubscribeRequest},
    timers::Timers,
};
use crate::{
    access::Interest,
    broadcast::{BroadcastError, Prepared},
    close::CloseReason,
    config::AuthConfig,
    event::Cursor,
    handlers::{
        Call,
        call::Services,
        runner::{Calls, Job, RunSettings},
    },
    hooks::SubscriptionHooks,
    hub::{Hub, ReceiverKey},
    log::{Log, replay::ReplayError},
    metrics::Metrics,
    presence::{Outlet, PresenceFrames, PresenceNode},
    protocol::{ErrorCode, ResyncReason, ServerFrame},
    publisher::Publisher,
    rules::Rules,
    topic::Pattern,
};

/// Presence frames written per flush at most.
const PRESENCE_BATCH: usize = 64;

/// What the connection writes after a frame, and whether it closes after that.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Frames to send, in order.
    pub frames: Vec<String>,
    /// Close after sending them.
    pub close: Option<CloseReason>,
}

/// A session attached to the hub as receiver `key`. Dropping it detaches the
/// connection: the hub forgets it and the subscription hooks hear of every
/// subscription's end, however the connection task ends.
pub(crate) struct Attached {
    pub session: Session,
    connection_id: Arc<str>,
    key: ReceiverKey,
    hub: Arc<Hub>,
    log: Arc<Log>,
    rules: Arc<Rules>,
    publisher: Publisher,
    hooks: Arc<SubscriptionHooks>,
    metrics: Arc<Metrics>,
    auth: AuthConfig,
    shutdown: tokio_util::sync::CancellationToken,
    presence: Arc<PresenceNode>,
    /// This connection's presence frame queue, made with its first presence
    /// subscription and kept until the connection ends.
    presence_queue: Option<(Outlet, PresenceFrames)>,
    /// This connection's handler calls (the app's handlers for client events).
    calls: Calls,
    /// What those calls get to work with.
    services: Services,
}

impl Attached {
    /// Attaches `session`, already registered in the hub as `key`.
    pub(super) fn new(
        state: &WsState,
        connection_id: Arc<str>,
        key: ReceiverKey,
        session: Session,
    ) -> Self {
        Self {
            session,
            connection_id,
            key,
            hub: state.hub.clone(),
            log: state.log.clone(),
            rules: state.rules.clone(),
            publisher: state.publisher.clone(),
            hooks: state.hooks.clone(),
            metrics: state.metrics.clone(),
            auth: state.config.auth.clone(),
            shutdown: state.shutdown.clone(),
            presence: state.presence.clone(),
            presence_queue: None,
            calls: Calls::new(RunSettings {
                timeout: state.config.handlers.timeout,
                max_pending: state.config.handlers.max_pending,
                publisher: state.publisher.clone(),
                tasks: state.tasks.clone(),
                metrics: state.metrics.clone(),
            }),
            services: Services {
                store: state.store.clone(),
                publisher: state.publisher.clone(),
                rules: state.rules.clone(),
            },
        }
    }

    /// What this connection has to send besides events and replies: the next
    /// `join`/`leave` frames (or the close a full presence queue asks for), or the
    /// answer of its running handler call. Never ready while it has neither.
    /// Cancel-safe, as both sources are.
    pub(super) async fn side_frames(&mut self) -> Result<Vec<String>, CloseReason> {
        let presence = async {
            match &mut self.presence_queue {
                Some((_, frames)) => frames.next(PRESENCE_BATCH).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frames = presence => frames,
            answer = self.calls.next() => Ok(vec![answer.to_text()]),
        }
    }

    /// Carries out `effects` in order.
    pub(super) async fn execute(&mut self, effects: Vec<Effect>, timers: &mut Timers) -> Outcome {
        let mut outcome = Outcome::default();
        let mut pending = std::collections::VecDeque::from(effects);
        while let Some(effect) = pending.pop_front() {
            match effect {
                Effect::Reply(frame) => outcome.frames.push(frame.to_text()),
                Effect::Subscribe(request) => {
                    let more = Box::pin(self.subscribe(request, &mut outcome.frames)).await;
                    pending.extend(more);
                }
                Effect::Unsubscribe { id, pattern } => self.unsubscribe(&id, &pattern),
                Effect::JoinPresence { id, pattern } => {
                    self.join_presence(id, &pattern, &mut outcome.frames);
                }
                Effect::QueryPresence { topic, reference } => {
                    let reply = self.presence.reply(topic.as_str(), reference);
                    outcome.frames.push(reply.to_text());
                }
                Effect::Reauthenticated {
                    principal,
                    expires_in,
                } => {
                    self.hub.set_principal(self.key, principal);
                    timers.set_token(expires_in, self.auth.refresh_notice, self.auth.expiry_grace);
                }
                Effect::Publish {
                    prepared,
                    reference,
                } => pending.extend(self.publish(prepared, reference).await),
                Effect::Handle(request) => pending.extend(self.handle(request)),
                Effect::Close(reason) => {
                    outcome.close = Some(reason);
                    break;
                }
            }
        }
        outcome
    }

    /// Queues a client event for the app's handlers; refuses it when too many wait.
    fn handle(&mut self, request: HandleRequest) -> Vec<Effect> {
        let HandleRequest {
            kind,
            event,
            topic,
            chain,
            reference,
        } = request;
        let call = Call::new(
            kind,
            event,
            topic,
            self.session.principal().clone(),
            self.connection_id.clone(),
            self.services.clone(),
        );
        let job = Job {
            chain,
            call,
            reference,
        };
        match self.calls.push(job) {
            Ok(()) => Vec::new(),
            Err(job) => self.session.refuse(
                job.reference,
                None,
                ErrorCode::RateLimited,
                "too many handled frames waiting for their answer (handlers.max_pending); \
                 wait for the answers",
            ),
        }
    }

    fn unsubscribe(&self, id: &str, pattern: &Pattern) {
        self.hub.unsubscribe(self.key, id);
        self.presence.leave(self.key, id);
        self.hooks
            .unsubscribed(pattern.as_str(), &self.connection_id);
    }

    /// Registers the subscription, replays `(since, position]` if asked, and writes
    /// `subscribed` followed by the replayed events. Returns follow-up effects (a
    /// refusal) for the cases the session must count.
    ///
    /// A `since` ahead of this node (the client comes from a node further along) is
    /// caught up with before registering, so the position registering returns is at
    /// least `since` and the replay stays exact.
    async fn subscribe(
        &mut self,
        request: SubscribeRequest,
        frames: &mut Vec<String>,
    ) -> Vec<Effect> {
        let SubscribeRequest {
            id,
            pattern,
            since,
            filter,
            reference,
        } = request;
        if matches!(since, Some(Since::Cursor(_)))
            && let Err(limited) = self.log.resumes.admit(self.session.principal())
        {
            Metrics::inc(&self.metrics.resumes_rate_limited);
            self.session.forget(&id);
            return self.session.refuse(
                reference,
                Some(id.to_string()),
                ErrorCode::RateLimited,
                limited.to_string(),
            );
        }
        let caught_up = match &since {
            Some(Since::Cursor(since)) => self.catch_up(since).await,
            _ => Ok(()),
        };
        // Identical globs share one compiled pattern node-wide: the session keeps the
        // shared one too, and its freshly parsed copy is dropped.
        let pattern = self.hub.shared_pattern(pattern);
        self.session.share_pattern(&id, &pattern);
        let position =
            match self
                .hub
                .subscribe_filtered(self.key, id.clone(), pattern.clone(), filter.clone())
            {
                Ok(position) => position,
                // A glob limit, or the receiver is gone (its queue overflowed; the close is
                // on its way).
                Err(refused) => {
                    self.session.forget(&id);
                    return self.session.refuse(
                        reference,
                        Some(id.to_string()),
                        refused.code(),
                        refused.to_string(),
                    );
                }
            };
        self.hooks.subscribed(pattern.as_str(), &self.connection_id);
        let cursor = Cursor {
            epoch: self.log.epoch(),
            seq: position,
        }
        .to_string();
        let subscribed = |recovered, reason, reference| ServerFrame::Subscribed {
            id: id.to_string(),
            pattern: pattern.to_string(),
            cursor: cursor.clone(),
            recovered,
            reason,
            reference,
        };
        let Some(since) = since else {
            frames.push(subscribed(None, None, reference).to_text());
            return Vec::new();
        };
        let replayed = match (since, caught_up) {
            (Since::Cursor(_), Err(not_reached)) => Err(not_reached),
            (Since::Cursor(since), Ok(())) => {
                let patterns = [pattern.clone()];
                let principal = self.session.principal().clone();
                let interest = Interest::new(&self.rules, &principal, &patterns, filter.as_deref());
                tokio::select! {
                    replayed = self.log.replay(&since, position, |e| interest.deliverable(e)) => replayed,
                    () = self.shutdown.cancelled() => Err(ReplayError::Resync(ResyncReason::UnknownPosition)),
                }
            }
            (Since::Invalid, _) => Err(ReplayError::Resync(ResyncReason::UnknownPosition)),
        };
        match replayed {
            Ok(events) => {
                Metrics::inc(&self.metrics.resumes_recovered);
                let subs = [id.clone()];
                frames.reserve(events.len() + 1);
                frames.push(subscribed(Some(true), None, reference).to_text());
                frames.extend(
                    events
                        .iter()
                        .map(|e| String::from_utf8_lossy(&e.frame(&subs)).into_owned()),
                );
                Vec::new()
            }
            Err(ReplayError::Resync(reason)) => {
                Metrics::inc(&self.metrics.resumes_failed);
                frames.push(subscribed(Some(false), Some(reason), reference).to_text());
                Vec::new()
            }
            Err(ReplayError::Database(e)) => {
                tracing::error!(error = %e, "replay failed");
                let mut effects: Vec<Effect> = self.session.forget(&id).into_iter().collect();
                effects.push(Effect::Reply(ServerFrame::error(
                    reference,
                    Some(id.to_string()),
                    ErrorCode::Internal,
                    "replay failed; try again",
                )));
                effects
            }
        }
    }

    /// Brings this node up to `since` when it is behind it (see `Log::catch_up`); gives
    /// up at shutdown.
    async fn catch_up(&self, since: &Cursor) -> Result<(), ReplayError> {
        tokio::select! {
            caught_up = self.log.catch_up(since, &self.hub) => caught_up,
            () = self.shutdown.cancelled() => Err(ReplayError::Resync(ResyncReason::UnknownPosition)),
        }
    }

    /// Counts subscription `id` in the presence of `pattern` and writes the listing
    /// that starts it, unless the subscription failed after all.
    fn join_presence(&mut self, id: Arc<str>, pattern: &Pattern, frames: &mut Vec<String>) {
        if !self.session.has_subscription(&id) {
            return;
        }
        let outlet = match &self.presence_queue {
            Some((outlet, _)) => outlet.clone(),
            None => {
                let (outlet, frames) = self.presence.queue();
                self.presence_queue = Some((outlet.clone(), frames));
                outlet
            }
        };
        let user = self.session.principal().user_id.clone();
        let listing = self
            .presence
            .join(self.key, id, pattern.as_str(), user, outlet);
        frames.push(listing.to_text());
    }

    async fn publish(
        &mut self,
        prepared: Prepared,
        reference: Option<serde_json::Value>,
    ) -> Vec<Effect> {
        match self.publisher.send(prepared).await {
            Ok(()) => vec![Effect::Reply(ServerFrame::Published { reference })],
            Err(
                e @ (BroadcastError::Database(_)
                | BroadcastError::Broker(_)
                | BroadcastError::Store(_)),
            ) => {
                tracing::error!(error = %e, "publish failed");
                vec![Effect::Reply(ServerFrame::error(
                    reference,
                    None,
                    ErrorCode::Internal,
                    "publish failed; try again",
                ))]
            }
            Err(e) => self
                .session
                .refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.hub.disconnect(self.key);
        self.presence.disconnect(self.key);
        for pattern in self.session.subscriptions().map(|(_, p)| p) {
            self.hooks
                .unsubscribed(pattern.as_str(), &self.connection_id);
        }
    }
}
