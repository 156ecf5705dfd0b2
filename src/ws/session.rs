//! What one authenticated connection does with each client frame. The connection task
//! owns the socket; the session owns the state and decides the replies.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use crate::{
    app::Realtime,
    auth::{Principal, unix_now},
    broadcast::{Broadcast, BroadcastError, Prepared, Target},
    close::CloseReason,
    event::{Cursor, NewEvent},
    hub::ReceiverKey,
    log::replay::ReplayError,
    metrics::Metrics,
    protocol::{ClientFrame, ErrorCode, ResyncReason, ServerFrame, parse_client_frame},
    rules::Decision,
    topic::{GlobPart, Pattern, Topic},
    ws::timers::Timers,
};

/// Longest accepted subscription id, in characters.
const MAX_SUBSCRIPTION_ID_LEN: usize = 128;

/// The replies to one frame, and whether the connection must close after them.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub frames: Vec<String>,
    pub close: Option<CloseReason>,
}

impl Outcome {
    fn frame(frame: ServerFrame) -> Self {
        Self {
            frames: vec![frame.to_text()],
            close: None,
        }
    }
}

/// State of one authenticated connection.
pub(crate) struct Session {
    pub realtime: Realtime,
    connection_id: Arc<str>,
    /// This connection's live subscriptions: the subscription hooks are told about
    /// each one's end, however the connection ends (see `Drop`).
    subscriptions: HashMap<Arc<str>, Arc<Pattern>>,
    pub key: ReceiverKey,
    pub principal: Arc<Principal>,
    misuse: u32,
    limiter: DefaultDirectRateLimiter,
}

impl Session {
    pub fn new(
        realtime: Realtime,
        connection_id: Arc<str>,
        key: ReceiverKey,
        principal: Arc<Principal>,
    ) -> Self {
        let per_second = realtime.config().connection.messages_per_second;
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        Self {
            realtime,
            connection_id,
            subscriptions: HashMap::new(),
            key,
            principal,
            misuse: 0,
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// A refused frame: an `error` reply, and 4400 once misuse passes the limit.
    fn refuse(
        &mut self,
        reference: Option<Value>,
        id: Option<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Outcome {
        self.misuse += 1;
        let mut outcome = Outcome::frame(ServerFrame::error(reference, id, code, message));
        if self.misuse > self.realtime.config().connection.misuse_limit {
            outcome.close = Some(CloseReason::ProtocolMisuse);
        }
        outcome
    }

    /// Handles one text frame.
    pub async fn handle_text(&mut self, text: &str, timers: &mut Timers) -> Outcome {
        if self.limiter.check().is_err() {
            return self.refuse(
                None,
                None,
                ErrorCode::RateLimited,
                "too many frames; slow down",
            );
        }
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => return self.refuse(e.reference, None, ErrorCode::BadRequest, e.message),
        };
        match frame {
            ClientFrame::Ping { reference } => Outcome::frame(ServerFrame::Pong { reference }),
            ClientFrame::Auth { token, reference } => self.refresh(token, reference, timers),
            ClientFrame::Subscribe {
                id,
                pattern,
                since,
                reference,
            } => {
                self.subscribe(id, &pattern, since.as_deref(), reference)
                    .await
            }
            ClientFrame::Unsubscribe { id, reference } => {
                if self.end_subscription(&id) {
                    Outcome::frame(ServerFrame::Unsubscribed {
                        id,
                        reason: None,
                        reference,
                    })
                } else {
                    self.refuse(
                        reference,
                        Some(id),
                        ErrorCode::NotFound,
                        "no such subscription",
                    )
                }
            }
            ClientFrame::Publish {
                topic,
                event,
                data,
                reference,
            } => self.publish(&topic, event, data, reference).await,
        }
    }

    fn refresh(
        &mut self,
        token: Option<String>,
        reference: Option<Value>,
        timers: &mut Timers,
    ) -> Outcome {
        let Some(token) = token else {
            return self.refuse(
                reference,
                None,
                ErrorCode::Unauthorized,
                "a refresh needs a token",
            );
        };
        let principal = match self.realtime.verifier().verify(&token) {
            Ok(p) => p,
            // The old token stays in force until it expires.
            Err(e) => return self.refuse(reference, None, ErrorCode::Unauthorized, e.to_string()),
        };
        if principal.user_id != self.principal.user_id {
            return self.refuse(
                reference,
                None,
                ErrorCode::AuthMismatch,
                "the new token has another sub",
            );
        }
        let principal = Arc::new(principal);
        self.realtime
            .inner
            .hub
            .set_principal(self.key, principal.clone());
        self.principal = principal;
        let expires_in = self.principal.expires_in(unix_now());
        let auth = &self.realtime.config().auth;
        timers.set_token(expires_in, auth.refresh_notice, auth.expiry_grace);
        let mut outcome = Outcome::default();
        for id in self.denied_subscriptions() {
            if self.end_subscription(&id) {
                outcome.frames.push(
                    ServerFrame::Unsubscribed {
                        id: id.to_string(),
                        reason: Some("forbidden"),
                        reference: None,
                    }
                    .to_text(),
                );
            }
        }
        outcome.frames.push(
            ServerFrame::Refreshed {
                expires_in,
                reference,
            }
            .to_text(),
        );
        outcome
    }

    async fn subscribe(
        &mut self,
        id: String,
        pattern: &str,
        since: Option<&str>,
        reference: Option<Value>,
    ) -> Outcome {
        let id_len = id.chars().count();
        if id_len == 0 || id_len > MAX_SUBSCRIPTION_ID_LEN {
            return self.refuse(
                reference,
                Some(id),
                ErrorCode::BadRequest,
                "subscription id must be 1-128 characters",
            );
        }
        let pattern = match Pattern::parse(pattern) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                return self.refuse(
                    reference,
                    Some(id),
                    ErrorCode::InvalidPattern,
                    e.to_string(),
                );
            }
        };
        if let GlobPart::Exact(collection) = pattern.collection()
            && self
                .realtime
                .rules()
                .read_rule(collection)
                .decide(&self.principal)
                == Decision::Deny
        {
            return self.refuse(
                reference,
                Some(id),
                ErrorCode::Forbidden,
                format!("not allowed to read {collection}"),
            );
        }
        let hub = self.realtime.inner.hub.clone();
        let limit = self.realtime.config().connection.max_subscriptions;
        if self.subscriptions.len() >= limit {
            return self.refuse(
                reference,
                Some(id),
                ErrorCode::LimitExceeded,
                format!("at most {limit} subscriptions per connection"),
            );
        }
        let sub_id: Arc<str> = Arc::from(id.as_str());
        let Some(position) = hub.subscribe(self.key, sub_id.clone(), pattern.clone()) else {
            return self.refuse(
                reference,
                Some(id),
                ErrorCode::BadRequest,
                "subscription id already in use",
            );
        };
        self.subscriptions.insert(sub_id.clone(), pattern.clone());
        self.realtime
            .inner
            .hooks
            .subscribed(pattern.as_str(), &self.connection_id);
        let epoch = self.realtime.epoch();
        let cursor = Cursor {
            epoch,
            seq: position,
        }
        .to_string();
        let Some(since) = since else {
            return Outcome::frame(ServerFrame::Subscribed {
                id,
                pattern: pattern.to_string(),
                cursor,
                recovered: None,
                reason: None,
                reference,
            });
        };
        let replayed = match since.parse::<Cursor>() {
            Ok(since) => {
                let rules = self.realtime.rules();
                let principal = &self.principal;
                self.realtime
                    .inner
                    .log
                    .replay(&since, position, |e: &NewEvent| {
                        pattern.matches(&e.collection, e.key.as_deref())
                            && rules.can_read(principal, e)
                    })
                    .await
            }
            Err(_) => Err(ReplayError::Resync(ResyncReason::UnknownPosition)),
        };
        let subscribed = |recovered, reason, reference| {
            ServerFrame::Subscribed {
                id: id.clone(),
                pattern: pattern.to_string(),
                cursor: cursor.clone(),
                recovered: Some(recovered),
                reason,
                reference,
            }
            .to_text()
        };
        let metrics = self.realtime.metrics();
        match replayed {
            Ok(events) => {
                Metrics::inc(&metrics.resumes_recovered);
                let subs = [sub_id];
                let mut frames = Vec::with_capacity(events.len() + 1);
                frames.push(subscribed(true, None, reference));
                frames.extend(
                    events
                        .iter()
                        .map(|e| String::from_utf8_lossy(&e.frame(&subs)).into_owned()),
                );
                Outcome {
                    frames,
                    close: None,
                }
            }
            Err(ReplayError::Resync(reason)) => {
                Metrics::inc(&metrics.resumes_failed);
                Outcome {
                    frames: vec![subscribed(false, Some(reason), reference)],
                    close: None,
                }
            }
            Err(ReplayError::Database(e)) => {
                tracing::error!(error = %e, "replay failed");
                self.end_subscription(&id);
                Outcome::frame(ServerFrame::error(
                    reference,
                    Some(id),
                    ErrorCode::Internal,
                    "replay failed; try again",
                ))
            }
        }
    }

    /// Ends subscription `id` in the hub and tells the hooks; false if there was none.
    fn end_subscription(&mut self, id: &str) -> bool {
        let Some(pattern) = self.subscriptions.remove(id) else {
            return false;
        };
        self.realtime.inner.hub.unsubscribe(self.key, id);
        self.realtime
            .inner
            .hooks
            .unsubscribed(pattern.as_str(), &self.connection_id);
        true
    }

    /// Subscriptions whose collection the current principal may no longer read,
    /// judged without an event (after a token refresh).
    fn denied_subscriptions(&self) -> Vec<Arc<str>> {
        let rules = self.realtime.rules();
        self.subscriptions
            .iter()
            .filter(|(_, pattern)| match pattern.collection() {
                GlobPart::Exact(collection) => {
                    rules.read_rule(collection).decide(&self.principal) == Decision::Deny
                }
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    async fn publish(
        &mut self,
        topic: &str,
        event: String,
        data: Value,
        reference: Option<Value>,
    ) -> Outcome {
        let target = match Topic::parse(topic) {
            Ok(t) if t.key().is_some() => Target::Topic(topic.to_owned()),
            Ok(_) => Target::Collection(topic.to_owned()),
            Err(e) => return self.refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        };
        let prepared = match Broadcast::new(target, event, data).prepare() {
            Ok(p) => p,
            Err(e) => return self.refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        };
        if let Prepared::Logged(event) = &prepared
            && !self.realtime.rules().can_publish(&self.principal, event)
        {
            return self.refuse(
                reference,
                None,
                ErrorCode::Forbidden,
                format!("not allowed to publish on {topic}"),
            );
        }
        match self.realtime.send_prepared(prepared).await {
            Ok(()) => Outcome::frame(ServerFrame::Published { reference }),
            Err(
                e @ (BroadcastError::Database(_)
                | BroadcastError::Broker(_)
                | BroadcastError::Store(_)),
            ) => {
                tracing::error!(error = %e, "publish failed");
                Outcome::frame(ServerFrame::error(
                    reference,
                    None,
                    ErrorCode::Internal,
                    "publish failed; try again",
                ))
            }
            Err(e) => self.refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        }
    }
}

impl Drop for Session {
    /// However the connection ends, every subscription it still had ends with it.
    fn drop(&mut self) {
        let hooks = &self.realtime.inner.hooks;
        for pattern in self.subscriptions.values() {
            hooks.unsubscribed(pattern.as_str(), &self.connection_id);
        }
    }
}
