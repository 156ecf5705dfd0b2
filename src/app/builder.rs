//! The builder of [`Realtime`]: checks the configuration, opens the log and starts
//! the node's tasks (relay, ingest, heartbeat, presence, writers) in the order each
//! needs the others. Wiring only, like the rest of `app`.

use std::{future::Future, sync::Arc};

use futures::FutureExt;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{Inner, Realtime};
use crate::{
    auth::{JwtVerifier, KeyError},
    broker::{Broker, BrokerError, MemoryBroker},
    config::{Config, ConfigError},
    db::{Db, DbError, SQLITE_BUSY_TIMEOUT, sqlite_busy_timeout},
    handlers::{Call, CallKind, Next, Outcome, Reject, registry::Handlers},
    hooks::SubscriptionHooks,
    hub::{GlobLimits, Hub},
    limits::NodeLimits,
    log::{
        Log, RelaySignal,
        broker_link::{BrokerLink, HealthBoard},
        heartbeat,
        ingest::Ingest,
        reader,
        relay::Relay,
    },
    metrics::Metrics,
    presence::PresenceNode,
    publisher::Publisher,
    rules::Rules,
    sse::{
        EventCollector, Renderer, SnapshotRequest, ViewKeyFn, ViewRenderer,
        hooks::{DatastarHooks, PerView},
    },
    write_turns::WriteTurns,
    ws::{Origins, Writers},
};

/// Why `RealtimeBuilder::build` failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The JWT key material is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A broker operation the build needed failed. Subscribing is not one: a broker
    /// that is down at startup only delays delivery (the node serves from the log).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The event log is on SQLite, which serves one node, but the broker is one that
    /// connects several (`redis`, `nats`, `postgres`). Use the in-memory broker, or
    /// Postgres for the log.
    #[error(
        "the {broker} broker connects several nodes, but the event log is on SQLite, \
         which serves one node: use the memory broker, or a Postgres database for several nodes"
    )]
    SqliteWithSharedBroker {
        /// The broker's [`kind`](crate::broker::Broker::kind).
        broker: &'static str,
    },
    /// A handler was registered with a pattern that does not parse.
    #[error("handler pattern {pattern:?}: {source}")]
    HandlerPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        source: crate::TopicError,
    },
}

/// The brokers of this crate that carry messages between processes, which an event
/// log on SQLite (one node) cannot use.
const SHARED_BROKERS: [&str; 3] = ["redis", "nats", "postgres"];

/// Assembles a [`Realtime`].
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings::{Config, Db, Realtime, Rule, Rules};
///
/// let mut config = Config::default();
/// config.jwt.secret = Some(std::env::var("JWT_SECRET")?);
/// let realtime = Realtime::builder(config, Db::connect("sqlite:app.db").await?)
///     .rules(Rules::new().collection("todos", Rule::Authenticated, Rule::Deny))
///     // Presence, metrics: told of every subscription on every transport.
///     .on_subscribe(|pattern, connection| tracing::info!(pattern, connection, "joined"))
///     .on_unsubscribe(|pattern, connection| tracing::info!(pattern, connection, "left"))
///     .build()
///     .await?;
/// # let _ = realtime; Ok(()) }
/// ```
pub struct RealtimeBuilder {
    config: Config,
    rules: Rules,
    db: Db,
    broker: Option<Arc<dyn Broker>>,
    subscription_hooks: SubscriptionHooks,
    datastar: DatastarHooks,
    handlers: Handlers,
}

impl std::fmt::Debug for RealtimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeBuilder")
            .field("config", &self.config)
            .field("rules", &self.rules)
            .field("subscription_hooks", &self.subscription_hooks)
            .field("datastar", &self.datastar)
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

impl RealtimeBuilder {
    /// Starts from a configuration and the database holding the event log.
    pub fn new(config: Config, db: Db) -> Self {
        Self {
            config,
            rules: Rules::new(),
            db,
            broker: None,
            subscription_hooks: SubscriptionHooks::default(),
            datastar: DatastarHooks::default(),
            handlers: Handlers::default(),
        }
    }

    /// Read and publish rules per collection. Default: every collection closed.
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// The broker between nodes. Default: the in-memory broker (one process).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Renders the events of `collection` for Datastar streams, typically as HTML
    /// patches, instead of the default signal mapping. Registering a collection again
    /// replaces its renderer. See [`Renderer`] and `docs/datastar.md`.
    pub fn datastar_renderer(mut self, collection: impl Into<String>, renderer: Renderer) -> Self {
        let collection = collection.into();
        self.datastar.per_view.remove(&collection);
        self.datastar.renderers.insert(collection, renderer);
        self
    }

    /// Like [`datastar_renderer`](Self::datastar_renderer), with HTML per viewer:
    /// `key` names each stream's view of an event (a function of its principal and the
    /// event), and `renderer` runs once per distinct key per event, its bytes shared
    /// by every stream with that key. Never once per stream: keep keys to a few roles.
    /// See `docs/datastar.md`, "Per-viewer HTML".
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tidings::{RealtimeBuilder, sse::EventCollector};
    ///
    /// fn todos(builder: RealtimeBuilder) -> RealtimeBuilder {
    /// builder.datastar_renderer_per_view(
    ///     "todos",
    ///     Arc::new(|principal, event| {
    ///         let owner = event.payload.get("owner_id").and_then(|o| o.as_str());
    ///         let mine = owner.is_some() && owner == principal.user_id.as_deref();
    ///         Arc::from(if mine { "owner" } else { "other" })
    ///     }),
    ///     Arc::new(|event, view| {
    ///         let mut sse = EventCollector::new();
    ///         let button = if view == "owner" { "<button>Delete</button>" } else { "" };
    ///         let key = event.key.as_deref()?;
    ///         sse.patch_elements(&format!("<li id=\"todo-{key}\">{button}</li>"));
    ///         Some(sse)
    ///     }),
    /// )
    /// }
    /// ```
    pub fn datastar_renderer_per_view(
        mut self,
        collection: impl Into<String>,
        key: ViewKeyFn,
        renderer: ViewRenderer,
    ) -> Self {
        let collection = collection.into();
        self.datastar.renderers.remove(&collection);
        let per_view = PerView {
            key,
            render: renderer,
        };
        self.datastar.per_view.insert(collection, per_view);
        self
    }

    /// What a Datastar stream of `GET /realtime/sse` starts with when it is new or its
    /// `Last-Event-ID` cannot be served: typically the current HTML of what its
    /// patterns show. Returning `None` (or an empty collector) sends nothing for a new
    /// stream and the reset patch after a failed resume.
    ///
    /// It runs after the stream is subscribed, once per stream, with the stream's
    /// principal: show only what that principal may read. A panic counts as `None`.
    pub fn datastar_snapshot<F, Fut>(mut self, snapshot: F) -> Self
    where
        F: Fn(SnapshotRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<EventCollector>> + Send + 'static,
    {
        self.datastar.snapshot = Some(Arc::new(move |request| snapshot(request).boxed()));
        self
    }

    /// Called with `(pattern, connection_id)` each time a WebSocket connection or a
    /// Datastar stream subscribes to a pattern (for presence counts, say). Refused
    /// subscriptions do not call it. Keep it quick; it runs on the request path.
    pub fn on_subscribe(mut self, callback: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.subscription_hooks
            .on_subscribe
            .push(Arc::new(callback));
        self
    }

    /// Called with `(pattern, connection_id)` when a subscription ends, however it
    /// ends: an `unsubscribe` frame, a refresh that no longer allows it, the client
    /// went away, the server shuts down, a queue overflowed, or a stream's start
    /// failed. Every `on_subscribe` is matched by exactly one `on_unsubscribe`.
    pub fn on_unsubscribe(mut self, callback: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.subscription_hooks
            .on_unsubscribe
            .push(Arc::new(callback));
        self
    }

    /// Handles clients' `publish` frames on topics matching `pattern` (`chat:*`):
    /// instead of going straight to subscribers, the event goes through the
    /// [`middleware`](Self::middleware) to `handler`, which may refuse it
    /// ([`Reject`](crate::handlers::Reject): the client gets that `error`), change
    /// its data ([`Outcome::Publish`](crate::handlers::Outcome::Publish)), or write it
    /// through the model layer and answer [`Outcome::Done`](crate::handlers::Outcome::Done).
    /// The collection's publish rule and the publish quota are checked first.
    ///
    /// The first registered pattern that matches a topic wins. A bad pattern fails
    /// [`build`](Self::build). Calls run off the connection's read loop, one at a time
    /// per connection, each bounded by `handlers.timeout`; see `docs/handlers.md`.
    ///
    /// ```
    /// use serde_json::json;
    /// use tidings::{RealtimeBuilder, handlers::{Outcome, Reject}};
    ///
    /// fn chat(builder: RealtimeBuilder) -> RealtimeBuilder {
    ///     builder.on_publish("chat:*", |mut call| async move {
    ///         let text = call.take_data();
    ///         let Some(text) = text.get("text").and_then(|t| t.as_str()) else {
    ///             return Err(Reject::bad_request("a chat message needs a text"));
    ///         };
    ///         Ok(Outcome::Publish(json!({"text": text.trim()})))
    ///     })
    /// }
    /// ```
    pub fn on_publish<F, Fut>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, Reject>> + Send + 'static,
    {
        let handler = Arc::new(move |call| handler(call).boxed());
        self.handlers.add(CallKind::Publish, pattern, handler);
        self
    }

    /// Answers clients' `request` frames on topics matching `pattern`: an RPC over the
    /// socket. The handler's [`Outcome::Reply`](crate::handlers::Outcome::Reply) value
    /// comes back as a `reply` frame with the request's `ref`; a
    /// [`Reject`](crate::handlers::Reject) as an `error` with it. A request on a topic
    /// without a handler is refused with `not_found`. No publish rule applies: the
    /// handler (or a middleware) decides who may ask. Otherwise as
    /// [`on_publish`](Self::on_publish).
    pub fn on_request<F, Fut>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, Reject>> + Send + 'static,
    {
        let handler = Arc::new(move |call| handler(call).boxed());
        self.handlers.add(CallKind::Request, pattern, handler);
        self
    }

    /// Adds a middleware to the chain every handled client event runs through, after
    /// the ones added before it: logging, extra authorization, per-user quotas. It
    /// gets the [`Call`] and the rest of the chain ([`Next`]); `next.run(call)` goes
    /// on, returning without calling it stops the chain (a refusal, or an answer of
    /// its own). Frames without a handler do not run it.
    ///
    /// ```
    /// use tidings::{RealtimeBuilder, handlers::{Call, Next, Reject}};
    ///
    /// fn only_members(builder: RealtimeBuilder) -> RealtimeBuilder {
    ///     builder.middleware(|call: Call, next: Next| async move {
    ///         if !call.principal().has_role("member") {
    ///             return Err(Reject::forbidden("members only"));
    ///         }
    ///         next.run(call).await
    ///     })
    /// }
    /// ```
    pub fn middleware<F, Fut>(mut self, middleware: F) -> Self
    where
        F: Fn(Call, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, Reject>> + Send + 'static,
    {
        let middleware = Arc::new(move |call, next| middleware(call, next).boxed());
        self.handlers.add_middleware(middleware);
        self
    }

    /// Validates the configuration, migrates the log tables and starts the relay, the
    /// ingest, the heartbeat and the presence sync. Must be called inside a Tokio
    /// runtime.
    ///
    /// A broker that is down does not fail the build: the node starts with the
    /// broker [down](crate::broker::BrokerState::Down), serves from the log and
    /// subscribes again with backoff. It waits at most `broker.silence_timeout` for
    /// the first subscription.
    pub async fn build(self) -> Result<Realtime, BuildError> {
        self.config.validate()?;
        if let Some((pattern, source)) = self.handlers.first_invalid() {
            return Err(BuildError::HandlerPattern {
                pattern: pattern.clone(),
                source: source.clone(),
            });
        }
        let verifier = JwtVerifier::new(&self.config.jwt)?;
        let broker = self.broker.unwrap_or_else(|| {
            Arc::new(
                MemoryBroker::new(self.config.log.ring_capacity.max(1024))
                    .with_buffer_bytes(self.config.broker.memory_buffer_bytes),
            )
        });
        if matches!(self.db, Db::Sqlite(_)) && SHARED_BROKERS.contains(&broker.kind()) {
            return Err(BuildError::SqliteWithSharedBroker {
                broker: broker.kind(),
            });
        }
        self.db.migrate().await?;
        let (epoch, last_seq) = reader::load_meta(&self.db)
            .await
            .map_err(|e| BuildError::Db(e.into()))?;
        let metrics = Arc::new(Metrics::default());
        let rules = Arc::new(self.rules);
        // One shard per worker thread, each fanned out by its own writer task.
        let shards = tokio::runtime::Handle::current().metrics().num_workers();
        let hub = Arc::new(
            Hub::new(rules.clone(), metrics.clone(), last_seq)
                .with_shards(shards)
                .with_glob_limits(GlobLimits::from(&self.config.connection)),
        );
        let log = Arc::new(Log::new(self.db.clone(), &epoch, self.config.log.clone()));
        let signal = RelaySignal::with_capacity(self.config.log.relay_batch as usize);
        // SQLite's writers of this node take turns (one queue for all of them), and
        // wait for one as long as the pool's connections wait for the write lock.
        let patience = match &self.db {
            Db::Sqlite(pool) => sqlite_busy_timeout(pool)
                .await
                .map_err(|e| BuildError::Db(e.into()))?,
            Db::Postgres(_) => SQLITE_BUSY_TIMEOUT,
        };
        let write_turns = WriteTurns::new(patience);
        let publisher = Publisher::new(
            self.db.clone(),
            signal.clone(),
            broker.clone(),
            write_turns.clone(),
        );
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        // Subscribe before the relay runs, so its first doorbells are heard.
        let broker_health = Arc::new(HealthBoard::new(broker.kind(), metrics.clone()));
        let heartbeat_now = Arc::new(tokio::sync::Notify::new());
        let broker_config = &self.config.broker;
        let mut link = BrokerLink::new(
            broker.clone(),
            broker_config,
            broker_health.clone(),
            metrics.clone(),
            heartbeat_now.clone(),
        );
        link.first_subscription(broker_config.silence_timeout).await;
        let presence = Arc::new(PresenceNode::new(self.config.presence.clone()));
        let ingest = Ingest::new(
            log.clone(),
            hub.clone(),
            metrics.clone(),
            broker_config.fallback_poll_interval,
        )
        .with_presence(presence.clone());
        tasks.spawn(ingest.run(link, shutdown.clone()));
        tasks.spawn(heartbeat::run(
            broker.clone(),
            heartbeat::node_id(),
            broker_config.heartbeat_interval,
            heartbeat_now,
            shutdown.clone(),
        ));
        tasks.spawn(crate::presence::run_sync(
            presence.clone(),
            broker.clone(),
            shutdown.clone(),
        ));
        let relay = Relay::new(
            self.db.clone(),
            broker,
            signal.clone(),
            self.config.log.clone(),
            metrics.clone(),
            write_turns.clone(),
            (&epoch, last_seq),
        );
        tasks.spawn(relay.run(shutdown.clone()));

        if let Some(refresh) = verifier.jwks_refresh(shutdown.clone()) {
            tasks.spawn(refresh);
        }
        let limits = Arc::new(NodeLimits::new(&self.config));
        tasks.spawn(
            limits
                .clone()
                .prune_every(self.config.transport.prune_interval, shutdown.clone()),
        );

        let store = crate::model::Store::new(self.db.clone(), signal.clone())
            .with_snapshot_timeout(self.config.log.sequencer_timeout)
            .with_write_turns(write_turns);
        let origins = Arc::new(Origins::new(self.config.allowed_origins.clone()));
        let catch_up_waiting = Arc::new(tokio::sync::Semaphore::new(
            self.config.log.catch_up_max_waiting,
        ));
        let writers = Arc::new(Writers::running(&hub, tasks.clone(), &shutdown));
        Ok(Realtime {
            inner: Arc::new(Inner {
                catch_up_waiting,
                config: Arc::new(self.config),
                verifier: Arc::new(verifier),
                rules,
                hub,
                log,
                store,
                publisher,
                metrics,
                broker_health,
                shutdown,
                tasks,
                writers,
                origins,
                limits,
                presence,
                subscription_hooks: Arc::new(self.subscription_hooks),
                datastar: Arc::new(self.datastar),
                handlers: Arc::new(self.handlers),
            }),
        })
    }
}
