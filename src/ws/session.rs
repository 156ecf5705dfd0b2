//! What one authenticated connection does with each client frame, as a state machine:
//! a frame goes in, [`Effect`]s come out, and `ws/execute.rs` carries them out against
//! the hub, the log and the publisher. The session itself touches no socket, database
//! or hub, so every decision it makes can be tested with plain values.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::DefaultClock};
use serde_json::Value;

use crate::{
    access::Admission,
    auth::{JwtVerifier, Principal, unix_now},
    broadcast::{Broadcast, Prepared, Target, validate_event_name},
    close::CloseReason,
    config::ConnectionConfig,
    event::{Cursor, LogEntry},
    filter::{Filter, FilterError, FilterLimits},
    handlers::{CallKind, Next, registry::Handlers},
    limits::PublishLimits,
    protocol::{ClientFrame, ErrorCode, ServerFrame, parse_client_frame},
    rules::Rules,
    source::Attribution,
    topic::{Pattern, Topic},
};

/// Longest accepted subscription id, in characters.
const MAX_SUBSCRIPTION_ID_LEN: usize = 128;

/// Something the connection must do because of a frame, in the order given.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send this frame.
    Reply(ServerFrame),
    /// Register the subscription in the hub, replay what it asked to resume, then
    /// answer `subscribed` (see [`Session::subscribed`]).
    Subscribe(SubscribeRequest),
    /// Remove this subscription from the hub; the session has already forgotten it.
    Unsubscribe {
        /// The subscription id.
        id: Arc<str>,
        /// Its pattern, for the subscription hooks.
        pattern: Arc<Pattern>,
    },
    /// The token was refreshed: the hub must judge deliveries with the new principal,
    /// and the token deadlines move.
    Reauthenticated {
        /// Who the connection is now (same `sub`).
        principal: Arc<Principal>,
        /// Seconds until the new token expires; `None`: never.
        expires_in: Option<u64>,
    },
    /// Count subscription `id` (just registered by the `Subscribe` before it) in the
    /// presence of its pattern, and send the listing that starts it. Skipped if the
    /// subscription failed meanwhile.
    JoinPresence {
        /// The subscription id.
        id: Arc<str>,
        /// Its pattern: the presence topic.
        pattern: Arc<Pattern>,
    },
    /// Answer a `presence` frame; the session has checked the rules.
    QueryPresence {
        /// The topic asked about.
        topic: Arc<Pattern>,
        /// Echoed in the reply.
        reference: Option<Value>,
    },
    /// Send a custom event, then answer `published` (or an error).
    Publish {
        /// The validated event.
        prepared: Prepared,
        /// Echoed in the reply.
        reference: Option<Value>,
    },
    /// Hand a client event to the app's handler chain; its answer comes later (see
    /// `handlers::runner`).
    Handle(HandleRequest),
    /// Close the connection with this reason after the effects before it.
    Close(CloseReason),
}

/// A client event for the app's handlers, checked by the session.
#[derive(Debug)]
pub(crate) struct HandleRequest {
    /// A `publish` or a `request`.
    pub kind: CallKind,
    /// The event as it would be published (source and mutation id set).
    pub event: LogEntry,
    /// Its topic.
    pub topic: Topic,
    /// The middleware and the handler registered for the topic.
    pub chain: Next,
    /// Echoed in the answer.
    pub reference: Option<Value>,
}

/// A subscription the session admitted, for the connection to register.
#[derive(Debug)]
pub(crate) struct SubscribeRequest {
    /// Client-chosen id.
    pub id: Arc<str>,
    /// The parsed pattern.
    pub pattern: Arc<Pattern>,
    /// Where to resume from, if the client asked to.
    pub since: Option<Since>,
    /// What its record events must meet, if anything.
    pub filter: Option<Arc<Filter>>,
    /// Echoed in the reply.
    pub reference: Option<Value>,
}

/// What a `subscribe` frame asks for, as sent.
#[derive(Debug, Clone, Copy)]
struct Wanted<'a> {
    pattern: &'a str,
    since: Option<&'a str>,
    filter: Option<&'a Value>,
}

/// A `since` as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Since {
    /// A well-formed cursor: replay after it.
    Cursor(Cursor),
    /// Not a cursor: answered with `recovered:false`, `unknown_position`.
    Invalid,
}

/// What a session needs to know of its surroundings.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    /// Who may read and publish what.
    pub rules: Arc<Rules>,
    /// For token refreshes.
    pub verifier: Arc<JwtVerifier>,
    /// Subscriptions per connection at most.
    pub max_subscriptions: usize,
    /// Refused frames tolerated before closing 4400.
    pub misuse_limit: u32,
    /// Frames over the rate tolerated before closing 4029.
    pub rate_limit_tolerance: u32,
    /// How large a subscription filter may be.
    pub filter_limits: FilterLimits,
    /// Client frames per second (burst twice that).
    pub messages_per_second: u32,
    /// Publish payload size and per-user quota, shared by the node's sessions.
    pub publish_limits: Arc<PublishLimits>,
    /// The app's handlers for client events.
    pub handlers: Arc<Handlers>,
}

impl SessionSettings {
    /// The settings of `connection`, with these rules and this verifier.
    pub(super) fn new(
        rules: Arc<Rules>,
        verifier: Arc<JwtVerifier>,
        connection: &ConnectionConfig,
        publish_limits: Arc<PublishLimits>,
        handlers: Arc<Handlers>,
    ) -> Self {
        Self {
            rules,
            verifier,
            publish_limits,
            handlers,
            max_subscriptions: connection.max_subscriptions,
            misuse_limit: connection.misuse_limit,
            rate_limit_tolerance: connection.rate_limit_tolerance,
            filter_limits: connection.filter_limits(),
            messages_per_second: connection.messages_per_second,
        }
    }
}

/// State of one authenticated connection.
pub(crate) struct Session {
    settings: SessionSettings,
    principal: Arc<Principal>,
    /// This connection's live subscriptions.
    subscriptions: HashMap<Arc<str>, Arc<Pattern>>,
    misuse: u32,
    /// Frames refused for rate so far: not misuse (the client is only too fast), but
    /// sustained, it is told to back off (4029).
    over_rate: u32,
    limiter: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.principal.user_id)
            .field("subscriptions", &self.subscriptions.len())
            .field("misuse", &self.misuse)
            .finish_non_exhaustive()
    }
}

/// The clock of every connection's rate limiter. Making one calibrates the CPU's
/// time stamp counter, which costs more than the rest of a connection's setup; a
/// clone shares the calibration.
fn shared_clock() -> DefaultClock {
    static CLOCK: std::sync::OnceLock<DefaultClock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(DefaultClock::default).clone()
}

impl Session {
    /// A session for `principal` with no subscription yet.
    pub(super) fn new(settings: SessionSettings, principal: Arc<Principal>) -> Self {
        let per_second = settings.messages_per_second;
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        Self {
            settings,
            principal,
            subscriptions: HashMap::new(),
            misuse: 0,
            over_rate: 0,
            limiter: RateLimiter::direct_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                shared_clock(),
            ),
        }
    }

    /// Who the connection is.
    pub(super) fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// The live subscriptions and their patterns.
    pub(super) fn subscriptions(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Pattern>)> {
        self.subscriptions.iter()
    }

    /// A refused frame: an `error` reply, and a 4400 close once misuse passes the
    /// limit.
    pub(super) fn refuse(
        &mut self,
        reference: Option<Value>,
        id: Option<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Vec<Effect> {
        self.misuse += 1;
        let mut effects = vec![Effect::Reply(ServerFrame::error(
            reference, id, code, message,
        ))];
        if self.misuse > self.settings.misuse_limit {
            effects.push(Effect::Close(CloseReason::ProtocolMisuse));
        }
        effects
    }

    /// Counts a client frame against the rate; every frame counts, whatever its kind.
    /// `Some` when it is over: the refusal (an `error` frame when `reply`), and the
    /// 4029 close once refusals pass the tolerance. Too fast is not misuse, so it
    /// never leads to 4400 ("stop for good").
    fn over_rate(&mut self, reply: bool) -> Option<Vec<Effect>> {
        if self.limiter.check().is_ok() {
            return None;
        }
        self.over_rate = self.over_rate.saturating_add(1);
        let mut effects = Vec::new();
        if reply {
            effects.push(Effect::Reply(ServerFrame::error(
                None,
                None,
                ErrorCode::RateLimited,
                "too many frames; slow down",
            )));
        }
        if self.over_rate > self.settings.rate_limit_tolerance {
            effects.push(Effect::Close(CloseReason::RateLimited));
        }
        Some(effects)
    }

    /// Handles a binary frame: counted like any frame, and refused (JSON text only).
    pub(super) fn handle_binary(&mut self) -> Vec<Effect> {
        if let Some(refused) = self.over_rate(true) {
            return refused;
        }
        self.refuse(
            None,
            None,
            ErrorCode::BadRequest,
            "binary frames are not supported; send JSON text",
        )
    }

    /// Handles a ping or pong from the client: counted against the rate (a flood of
    /// them costs the server as much as any frame), never answered with an error.
    pub(super) fn handle_control(&mut self) -> Vec<Effect> {
        self.over_rate(false).unwrap_or_default()
    }

    /// Handles one text frame.
    pub(super) fn handle_text(&mut self, text: &str) -> Vec<Effect> {
        if let Some(refused) = self.over_rate(true) {
            return refused;
        }
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => return self.refuse(e.reference, None, ErrorCode::BadRequest, e.message),
        };
        match frame {
            ClientFrame::Ping { reference } => vec![Effect::Reply(ServerFrame::Pong { reference })],
            ClientFrame::Auth { token, reference } => self.refresh(token, reference),
            ClientFrame::Subscribe {
                id,
                pattern,
                since,
                filter,
                presence,
                reference,
            } => {
                let wanted = Wanted {
                    pattern: &pattern,
                    since: since.as_deref(),
                    filter: filter.as_ref(),
                };
                let mut effects = self.subscribe(id, wanted, reference);
                if presence && let Some(Effect::Subscribe(request)) = effects.first() {
                    effects.push(Effect::JoinPresence {
                        id: request.id.clone(),
                        pattern: request.pattern.clone(),
                    });
                }
                effects
            }
            ClientFrame::Presence { topic, reference } => self.query_presence(&topic, reference),
            ClientFrame::Unsubscribe { id, reference } => match self.forget(&id) {
                Some(effect) => vec![
                    effect,
                    Effect::Reply(ServerFrame::Unsubscribed {
                        id,
                        reason: None,
                        reference,
                    }),
                ],
                None => self.refuse(
                    reference,
                    Some(id),
                    ErrorCode::NotFound,
                    "no such subscription",
                ),
            },
            ClientFrame::Publish {
                topic,
                event,
                data,
                mutation,
                reference,
            } => {
                let size = match self.settings.publish_limits.check_size(&data) {
                    Ok(size) => size,
                    Err(e) => {
                        return self.refuse(
                            reference,
                            None,
                            ErrorCode::LimitExceeded,
                            e.to_string(),
                        );
                    }
                };
                // The target depends on the topic, which `publish` parses.
                let broadcast = move |target| {
                    let broadcast = Broadcast::new(target, event, data);
                    match mutation {
                        Some(mutation) => broadcast.mutation(mutation),
                        None => broadcast,
                    }
                };
                self.publish(&topic, size, broadcast, reference)
            }
            ClientFrame::Request {
                topic,
                event,
                data,
                reference,
            } => self.request(&topic, event, data, reference),
        }
    }

    /// Whether subscription `id` is live.
    pub(super) fn has_subscription(&self, id: &str) -> bool {
        self.subscriptions.contains_key(id)
    }

    /// Replaces subscription `id`'s pattern by an identical one shared with other
    /// subscribers (see `Hub::shared_pattern`).
    pub(super) fn share_pattern(&mut self, id: &str, shared: &Arc<Pattern>) {
        if let Some(pattern) = self.subscriptions.get_mut(id)
            && pattern.as_str() == shared.as_str()
        {
            *pattern = shared.clone();
        }
    }

    /// Forgets subscription `id`, returning the effect that removes it from the hub;
    /// `None` if there was none.
    pub(super) fn forget(&mut self, id: &str) -> Option<Effect> {
        let (id, pattern) = self.subscriptions.remove_entry(id)?;
        Some(Effect::Unsubscribe { id, pattern })
    }

    fn refresh(&mut self, token: Option<String>, reference: Option<Value>) -> Vec<Effect> {
        let Some(token) = token else {
            return self.refuse(
                reference,
                None,
                ErrorCode::Unauthorized,
                "a refresh needs a token",
            );
        };
        let principal = match self.settings.verifier.verify(&token) {
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
        self.principal = Arc::new(principal);
        let expires_in = self.principal.expires_in(unix_now());
        let mut effects = vec![Effect::Reauthenticated {
            principal: self.principal.clone(),
            expires_in,
        }];
        // What the new token no longer admits ends now; per-event rules keep judging
        // the rest on every delivery.
        let denied: Vec<Arc<str>> = self
            .subscriptions
            .iter()
            .filter(|(_, pattern)| self.admit(pattern).is_denied())
            .map(|(id, _)| id.clone())
            .collect();
        for id in denied {
            effects.extend(self.forget(&id));
            effects.push(Effect::Reply(ServerFrame::Unsubscribed {
                id: id.to_string(),
                reason: Some("forbidden"),
                reference: None,
            }));
        }
        effects.push(Effect::Reply(ServerFrame::Refreshed {
            expires_in,
            reference,
        }));
        effects
    }

    fn admit(&self, pattern: &Pattern) -> Admission {
        self.settings.rules.admit(&self.principal, pattern)
    }

    fn subscribe(
        &mut self,
        id: String,
        wanted: Wanted<'_>,
        reference: Option<Value>,
    ) -> Vec<Effect> {
        let Wanted {
            pattern,
            since,
            filter,
        } = wanted;
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
        if let Admission::Deny { anonymous } = self.admit(&pattern) {
            return self.refuse_unreadable(reference, Some(id), &pattern, anonymous);
        }
        let filter = match self.filter(&pattern, filter) {
            Ok(filter) => filter,
            Err(refused) => {
                return self.refuse(
                    reference,
                    Some(id),
                    ErrorCode::BadRequest,
                    refused.to_string(),
                );
            }
        };
        if self.subscriptions.contains_key(id.as_str()) {
            return self.refuse(
                reference,
                Some(id),
                ErrorCode::BadRequest,
                "subscription id already in use",
            );
        }
        let limit = self.settings.max_subscriptions;
        if self.subscriptions.len() >= limit {
            return self.refuse(
                reference,
                Some(id),
                ErrorCode::LimitExceeded,
                format!("at most {limit} subscriptions per connection"),
            );
        }
        let id: Arc<str> = Arc::from(id);
        self.subscriptions.insert(id.clone(), pattern.clone());
        let since = since.map(|s| s.parse().map_or(Since::Invalid, Since::Cursor));
        vec![Effect::Subscribe(SubscribeRequest {
            id,
            pattern,
            since,
            filter,
            reference,
        })]
    }

    /// The subscription's filter, parsed and checked against what `pattern` may
    /// filter on; an empty filter is no filter.
    fn filter(
        &self,
        pattern: &Pattern,
        filter: Option<&Value>,
    ) -> Result<Option<Arc<Filter>>, FilterError> {
        let Some(filter) = filter else {
            return Ok(None);
        };
        let filter = Filter::parse(filter, self.settings.filter_limits)?;
        self.settings.rules.check_filter(pattern, &filter)?;
        Ok((!filter.is_empty()).then(|| Arc::new(filter)))
    }

    /// The refusal of a pattern the principal may not read.
    fn refuse_unreadable(
        &mut self,
        reference: Option<Value>,
        id: Option<String>,
        pattern: &Pattern,
        anonymous: bool,
    ) -> Vec<Effect> {
        let (code, message) = if anonymous {
            (
                ErrorCode::Unauthorized,
                format!("{pattern} is not public: sign in to read it"),
            )
        } else {
            (
                ErrorCode::Forbidden,
                format!("not allowed to read {pattern}"),
            )
        };
        self.refuse(reference, id, code, message)
    }

    /// A `presence` frame: only a principal who may subscribe to the topic may see
    /// who is on it.
    fn query_presence(&mut self, topic: &str, reference: Option<Value>) -> Vec<Effect> {
        let topic = match Pattern::parse(topic) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                return self.refuse(reference, None, ErrorCode::InvalidPattern, e.to_string());
            }
        };
        if let Admission::Deny { anonymous } = self.admit(&topic) {
            return self.refuse_unreadable(reference, None, &topic, anonymous);
        }
        vec![Effect::QueryPresence { topic, reference }]
    }

    fn publish(
        &mut self,
        topic: &str,
        size: usize,
        broadcast: impl FnOnce(Target) -> Broadcast,
        reference: Option<Value>,
    ) -> Vec<Effect> {
        let parsed = match Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => return self.refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        };
        let target = match parsed.key() {
            Some(_) => Target::Topic(topic.to_owned()),
            None => Target::Collection(topic.to_owned()),
        };
        let mut prepared = match broadcast(target).prepare() {
            Ok(p) => p,
            Err(e) => return self.refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        };
        if let Prepared::Logged(event) = &prepared
            && !self.settings.rules.can_publish(&self.principal, event)
        {
            return self.refuse(
                reference,
                None,
                ErrorCode::Forbidden,
                format!("not allowed to publish on {topic}"),
            );
        }
        // Only what would be published counts against the quota.
        let user = self.principal.user_id.as_ref();
        if let Err(e) = self.settings.publish_limits.take(user, size) {
            return self.refuse(reference, None, ErrorCode::RateLimited, e.to_string());
        }
        if let Prepared::Logged(event) = &mut prepared {
            event.source = self.attribution().source_for(&event.collection);
        }
        match (
            prepared,
            self.settings.handlers.chain(CallKind::Publish, &parsed),
        ) {
            (Prepared::Logged(event), Some(chain)) => vec![Effect::Handle(HandleRequest {
                kind: CallKind::Publish,
                event,
                topic: parsed,
                chain,
                reference,
            })],
            (prepared, _) => vec![Effect::Publish {
                prepared,
                reference,
            }],
        }
    }

    /// Whom this connection's events are attributed to.
    fn attribution(&self) -> Attribution {
        Attribution::new(self.principal.user_id.clone(), self.settings.rules.clone())
    }

    /// A `request` frame: checked like a publish's shape and size, then handed to the
    /// handler registered for its topic. No publish rule or quota applies: the
    /// handler and the app's middleware decide who may ask what.
    fn request(
        &mut self,
        topic: &str,
        event: String,
        data: Value,
        reference: Option<Value>,
    ) -> Vec<Effect> {
        if let Err(e) = self.settings.publish_limits.check_size(&data) {
            return self.refuse(reference, None, ErrorCode::LimitExceeded, e.to_string());
        }
        let parsed = match Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => return self.refuse(reference, None, ErrorCode::BadRequest, e.to_string()),
        };
        if let Err(e) = validate_event_name(&event) {
            return self.refuse(reference, None, ErrorCode::BadRequest, e.to_string());
        }
        let Some(chain) = self.settings.handlers.chain(CallKind::Request, &parsed) else {
            return self.refuse(
                reference,
                None,
                ErrorCode::NotFound,
                format!("no handler answers requests on {topic}"),
            );
        };
        let source = self.attribution().source_for(parsed.collection_name());
        let event = LogEntry::broadcast(
            parsed.collection_name(),
            parsed.key().map(str::to_owned),
            event,
            data,
        )
        .with_source(source);
        vec![Effect::Handle(HandleRequest {
            kind: CallKind::Request,
            event,
            topic: parsed,
            chain,
            reference,
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{JwtAlgorithm, JwtConfig},
        rules::Rule,
    };
    use serde_json::json;

    const SECRET: &str = "session-test-secret-of-32-bytes!";

    fn verifier() -> Arc<JwtVerifier> {
        let config = JwtConfig {
            secret: Some(SECRET.into()),
            algorithm: JwtAlgorithm::HS256,
            ..JwtConfig::default()
        };
        Arc::new(JwtVerifier::new(&config).unwrap())
    }

    fn token(claims: Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn session(principal: Principal, misuse_limit: u32) -> Session {
        let rules = Rules::new()
            .collection("todos", Rule::Authenticated, Rule::Authenticated)
            .collection("admin", Rule::Role("admin".into()), Rule::Deny);
        let settings = SessionSettings {
            rules: Arc::new(rules),
            verifier: verifier(),
            max_subscriptions: 2,
            misuse_limit,
            rate_limit_tolerance: 3,
            filter_limits: FilterLimits {
                max_conditions: 2,
                max_values: 2,
                max_bytes: 1024,
            },
            messages_per_second: 1000,
            publish_limits: Arc::new(PublishLimits::new(
                &crate::config::PublishConfig {
                    max_payload_bytes: 100,
                    events_per_window: 2,
                    ..crate::config::PublishConfig::default()
                },
                1000,
            )),
            handlers: Arc::new(Handlers::default()),
        };
        Session::new(settings, Arc::new(principal))
    }

    fn user(sub: &str, roles: &[&str]) -> Principal {
        Principal::user(sub, roles)
    }

    fn frame(session: &mut Session, frame: Value) -> Vec<Effect> {
        session.handle_text(&frame.to_string())
    }

    fn error_code(effects: &[Effect]) -> Option<String> {
        effects.iter().find_map(|e| match e {
            Effect::Reply(reply) => {
                let v: Value = serde_json::from_str(&reply.to_text()).ok()?;
                (v["type"] == "error").then(|| v["code"].as_str().unwrap_or_default().to_owned())
            }
            _ => None,
        })
    }

    #[test]
    fn a_readable_subscription_asks_the_connection_to_register_it() {
        let mut s = session(user("ann", &[]), 10);
        let effects = frame(
            &mut s,
            json!({"type":"subscribe","id":"a","pattern":"todos:*","since":"e:3","ref":1}),
        );
        let [Effect::Subscribe(request)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(&*request.id, "a");
        assert_eq!(request.pattern.as_str(), "todos:*");
        assert_eq!(request.since, Some(Since::Cursor("e:3".parse().unwrap())));
        assert_eq!(request.reference, Some(json!(1)));
        assert_eq!(s.subscriptions().count(), 1);
    }

    #[test]
    fn refusals_name_the_problem_and_register_nothing() {
        let mut s = session(user("ann", &[]), 100);
        let cases = [
            (
                json!({"type":"subscribe","id":"","pattern":"todos:*"}),
                "bad_request",
            ),
            (
                json!({"type":"subscribe","id":"x","pattern":"to:do:s"}),
                "invalid_pattern",
            ),
            (
                json!({"type":"subscribe","id":"x","pattern":"admin:*"}),
                "forbidden",
            ),
            (
                json!({"type":"subscribe","id":"x","pattern":"x*:*"}),
                "forbidden",
            ),
            (json!({"type":"unsubscribe","id":"nope"}), "not_found"),
            (
                json!({"type":"publish","topic":"admin","event":"e","data":{}}),
                "forbidden",
            ),
            (json!({"type":"nonsense"}), "bad_request"),
        ];
        for (input, code) in cases {
            let effects = frame(&mut s, input.clone());
            assert_eq!(error_code(&effects).as_deref(), Some(code), "{input}");
        }
        assert_eq!(s.subscriptions().count(), 0);
    }

    #[test]
    fn anonymous_refusals_ask_to_sign_in() {
        let mut s = session(Principal::anonymous(), 10);
        let effects = frame(
            &mut s,
            json!({"type":"subscribe","id":"a","pattern":"todos:*"}),
        );
        assert_eq!(error_code(&effects).as_deref(), Some("unauthorized"));
    }

    #[test]
    fn ids_are_unique_and_the_limit_holds() {
        let mut s = session(user("ann", &[]), 100);
        let sub = |id: &str| json!({"type":"subscribe","id":id,"pattern":"todos:*"});
        assert!(matches!(
            frame(&mut s, sub("a")).as_slice(),
            [Effect::Subscribe(_)]
        ));
        assert_eq!(
            error_code(&frame(&mut s, sub("a"))).as_deref(),
            Some("bad_request")
        );
        assert!(matches!(
            frame(&mut s, sub("b")).as_slice(),
            [Effect::Subscribe(_)]
        ));
        assert_eq!(
            error_code(&frame(&mut s, sub("c"))).as_deref(),
            Some("limit_exceeded")
        );
        let effects = frame(&mut s, json!({"type":"unsubscribe","id":"a","ref":"r"}));
        assert!(matches!(
            effects.as_slice(),
            [Effect::Unsubscribe { .. }, Effect::Reply(_)]
        ));
        assert!(matches!(
            frame(&mut s, sub("c")).as_slice(),
            [Effect::Subscribe(_)]
        ));
    }

    #[test]
    fn misuse_past_the_limit_closes_4400() {
        let mut s = session(user("ann", &[]), 2);
        for _ in 0..2 {
            let effects = s.handle_text("{");
            assert!(!effects.iter().any(|e| matches!(e, Effect::Close(_))));
        }
        let effects = s.handle_text("{");
        assert!(matches!(
            effects.last(),
            Some(Effect::Close(CloseReason::ProtocolMisuse))
        ));
    }

    #[test]
    fn binary_frames_count_as_misuse() {
        let mut s = session(user("ann", &[]), 1);
        assert_eq!(
            error_code(&s.handle_binary()).as_deref(),
            Some("bad_request")
        );
        let effects = s.handle_binary();
        assert!(matches!(
            effects.last(),
            Some(Effect::Close(CloseReason::ProtocolMisuse))
        ));
    }

    #[test]
    fn sustained_flooding_closes_4029_not_4400() {
        // Misuse limit 0: any refusal counted as misuse would close 4400 at once.
        let mut s = session(user("ann", &[]), 0);
        s.settings.messages_per_second = 1;
        s.limiter = RateLimiter::direct(Quota::per_second(NonZeroU32::MIN));
        let ping = json!({"type":"ping"}).to_string();
        assert!(matches!(
            s.handle_text(&ping).as_slice(),
            [Effect::Reply(_)]
        ));
        // Over the rate: text gets an error, control frames are counted silently.
        assert_eq!(
            error_code(&s.handle_text(&ping)).as_deref(),
            Some("rate_limited")
        );
        assert!(s.handle_control().is_empty());
        assert_eq!(
            error_code(&s.handle_binary()).as_deref(),
            Some("rate_limited")
        );
        // The fourth refusal passes the tolerance of 3.
        let effects = s.handle_control();
        assert!(matches!(
            effects.as_slice(),
            [Effect::Close(CloseReason::RateLimited)]
        ));
    }

    #[test]
    fn a_refresh_keeps_the_sub_and_ends_what_it_no_longer_admits() {
        let mut s = session(user("ann", &["admin"]), 10);
        frame(
            &mut s,
            json!({"type":"subscribe","id":"a","pattern":"admin:*"}),
        );
        frame(
            &mut s,
            json!({"type":"subscribe","id":"t","pattern":"todos:*"}),
        );
        let other = token(json!({"sub": "bob", "exp": unix_now() + 600}));
        let effects = frame(&mut s, json!({"type":"auth","token":other}));
        assert_eq!(error_code(&effects).as_deref(), Some("auth_mismatch"));
        let fresh = token(json!({"sub": "ann", "exp": unix_now() + 600}));
        let effects = frame(&mut s, json!({"type":"auth","token":fresh,"ref":5}));
        let kinds: Vec<&str> = effects
            .iter()
            .map(|e| match e {
                Effect::Reauthenticated { .. } => "reauthenticated",
                Effect::Unsubscribe { id, .. } if &**id == "a" => "unsubscribe a",
                Effect::Reply(ServerFrame::Unsubscribed { .. }) => "unsubscribed",
                Effect::Reply(ServerFrame::Refreshed { .. }) => "refreshed",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "reauthenticated",
                "unsubscribe a",
                "unsubscribed",
                "refreshed"
            ]
        );
        assert_eq!(s.subscriptions().count(), 1);
        assert!(s.principal().roles.is_empty());
    }

    #[test]
    fn a_presence_subscription_joins_after_it_is_registered() {
        let mut s = session(user("ann", &[]), 10);
        let effects = frame(
            &mut s,
            json!({"type":"subscribe","id":"p","pattern":"todos:lobby","presence":true}),
        );
        let [Effect::Subscribe(_), Effect::JoinPresence { id, pattern }] = effects.as_slice()
        else {
            panic!("{effects:?}")
        };
        assert_eq!((&**id, pattern.as_str()), ("p", "todos:lobby"));
        assert!(s.has_subscription("p"));
        let refused = frame(
            &mut s,
            json!({"type":"subscribe","id":"p","pattern":"todos:lobby","presence":true}),
        );
        assert_eq!(error_code(&refused).as_deref(), Some("bad_request"));
        assert!(
            !refused
                .iter()
                .any(|e| matches!(e, Effect::JoinPresence { .. }))
        );
    }

    #[test]
    fn presence_is_shown_only_to_who_may_read_the_topic() {
        let mut s = session(user("ann", &[]), 10);
        let effects = frame(
            &mut s,
            json!({"type":"presence","topic":"todos:lobby","ref":1}),
        );
        assert!(matches!(
            effects.as_slice(),
            [Effect::QueryPresence {
                reference: Some(_),
                ..
            }]
        ));
        let cases = [("admin:x", "forbidden"), ("to:do:s", "invalid_pattern")];
        for (topic, code) in cases {
            let effects = frame(&mut s, json!({"type":"presence","topic":topic}));
            assert_eq!(error_code(&effects).as_deref(), Some(code), "{topic}");
        }
        let mut anonymous = session(Principal::anonymous(), 10);
        let effects = frame(
            &mut anonymous,
            json!({"type":"presence","topic":"todos:lobby"}),
        );
        assert_eq!(error_code(&effects).as_deref(), Some("unauthorized"));
    }

    #[test]
    fn publish_payload_size_and_quota_are_refused_with_their_codes() {
        let mut s = session(user("ann", &[]), 100);
        let big =
            json!({"type":"publish","topic":"todos:1","event":"e","data":"x".repeat(200),"ref":1});
        assert_eq!(
            error_code(&frame(&mut s, big)).as_deref(),
            Some("limit_exceeded")
        );
        let small = json!({"type":"publish","topic":"todos:1","event":"e","data":{"x":1}});
        // A refused publish (forbidden) costs no quota.
        let forbidden = json!({"type":"publish","topic":"admin","event":"e","data":{}});
        assert_eq!(
            error_code(&frame(&mut s, forbidden)).as_deref(),
            Some("forbidden")
        );
        for _ in 0..2 {
            assert!(matches!(
                frame(&mut s, small.clone())[..],
                [Effect::Publish { .. }]
            ));
        }
        assert_eq!(
            error_code(&frame(&mut s, small.clone())).as_deref(),
            Some("rate_limited")
        );
    }

    #[test]
    fn handled_frames_go_to_their_handler_with_the_client_as_source() {
        use futures::FutureExt;
        let mut s = session(user("ann", &[]), 10);
        let mut handlers = Handlers::default();
        let done: crate::handlers::chain::HandlerFn =
            Arc::new(|_call| async { Ok(crate::handlers::Outcome::Done) }.boxed());
        handlers.add(CallKind::Publish, "todos:1", done.clone());
        handlers.add(CallKind::Request, "todos", done);
        s.settings.handlers = Arc::new(handlers);

        let effects = frame(
            &mut s,
            json!({"type":"publish","topic":"todos:1","event":"e","data":{},"ref":1}),
        );
        let [Effect::Handle(handled)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(handled.kind, CallKind::Publish);
        assert_eq!(
            handled.event.source,
            crate::Source::Client { user_id: None },
            "todos does not show publishers"
        );
        // Another topic has no handler: published as before.
        let effects = frame(
            &mut s,
            json!({"type":"publish","topic":"todos:2","event":"e","data":{}}),
        );
        assert!(matches!(effects.as_slice(), [Effect::Publish { .. }]));

        let effects = frame(
            &mut s,
            json!({"type":"request","topic":"todos","event":"count","ref":"r"}),
        );
        assert!(matches!(
            effects.as_slice(),
            [Effect::Handle(HandleRequest {
                kind: CallKind::Request,
                ..
            })]
        ));
        let cases = [
            (
                json!({"type":"request","topic":"notes","event":"x"}),
                "not_found",
            ),
            (
                json!({"type":"request","topic":"a:b:c","event":"x"}),
                "bad_request",
            ),
            (
                json!({"type":"request","topic":"todos","event":""}),
                "bad_request",
            ),
            (
                json!({"type":"request","topic":"todos","event":"x","data":"x".repeat(200)}),
                "limit_exceeded",
            ),
        ];
        for (input, code) in cases {
            assert_eq!(
                error_code(&frame(&mut s, input.clone())).as_deref(),
                Some(code),
                "{input}"
            );
        }
    }

    #[test]
    fn publish_is_checked_then_handed_over() {
        let mut s = session(user("ann", &[]), 10);
        let effects = frame(
            &mut s,
            json!({"type":"publish","topic":"todos:1","event":"typing","data":{"x":1},"ref":2}),
        );
        assert!(matches!(
            effects.as_slice(),
            [Effect::Publish {
                prepared: Prepared::Logged(_),
                ..
            }]
        ));
    }
}
