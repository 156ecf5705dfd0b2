//! `Realtime` and its builder (`builder.rs`): wiring only. Every decision lives in the
//! module that owns it (access, hub, log, ws, sse, publisher). These two files are the
//! only ones that see the whole gateway: the transports get the narrow parts they use
//! from here.

mod builder;

pub use builder::{BuildError, RealtimeBuilder};

use std::{net::SocketAddr, sync::Arc};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{Authenticator, JwtVerifier},
    broker::BrokerHealth,
    config::Config,
    db::Db,
    handlers::registry::Handlers,
    hooks::SubscriptionHooks,
    hub::Hub,
    limits::NodeLimits,
    log::{Log, broker_link::HealthBoard},
    metrics::Metrics,
    presence::{Presence, PresenceNode},
    publisher::Publisher,
    rules::Rules,
    sse::{SseState, hooks::DatastarHooks},
    ws::{Origins, Writers, WsState},
};

/// The realtime gateway of one node. Cheap to clone; all clones share one state.
///
/// Build it with [`Realtime::builder`], mount [`Realtime::router`], write through
/// [`Realtime::store`], send custom events with [`Realtime::broadcast`], and call
/// [`Realtime::shutdown`] on the way out (axum does not track upgraded WebSockets).
/// Serve with [`Realtime::serve`], which applies the transport limits before the
/// upgrade; `axum::serve` works too, without them (see `docs/security.md`):
///
/// ```no_run
/// # async fn f(realtime: tidings::Realtime) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let serving = tokio::spawn({
///     let realtime = realtime.clone();
///     async move { realtime.serve(listener, realtime.router()).await }
/// });
/// // ... later, on the way out:
/// realtime.shutdown().await; // serve stops, WebSocket clients get 1001, tasks finish
/// serving.await??;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime")
            .field("epoch", &self.inner.log.epoch())
            .finish_non_exhaustive()
    }
}

/// Everything one node holds. Private to `app` (the builder fills it in): the rest of
/// the crate gets the narrow part it needs through the accessors below.
struct Inner {
    config: Arc<Config>,
    verifier: Arc<JwtVerifier>,
    rules: Arc<Rules>,
    hub: Arc<Hub>,
    log: Arc<Log>,
    /// Shared by every `store()`, so they share its cache of table columns.
    store: crate::model::Store,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    broker_health: Arc<HealthBoard>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Write events to the WebSockets (`ws::writers`).
    writers: Arc<Writers>,
    origins: Arc<Origins>,
    limits: Arc<NodeLimits>,
    presence: Arc<PresenceNode>,
    subscription_hooks: Arc<SubscriptionHooks>,
    datastar: Arc<DatastarHooks>,
    /// The app's handlers for client events.
    handlers: Arc<Handlers>,
    /// Permits for HTTP catch-up long polls (`log.catch_up_max_waiting`).
    catch_up_waiting: Arc<tokio::sync::Semaphore>,
}

impl Realtime {
    /// Starts building a gateway.
    pub fn builder(config: Config, db: Db) -> RealtimeBuilder {
        RealtimeBuilder::new(config, db)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The token verifier (for the app's own routes).
    pub fn verifier(&self) -> &JwtVerifier {
        &self.inner.verifier
    }

    /// The database holding the event log.
    pub fn db(&self) -> &Db {
        &self.inner.log.db
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.inner.rules
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The broker's health on this node: up, down or silent, since when, how often
    /// the node subscribed again, and how many events it found in the log instead
    /// of hearing their doorbell. The node serves from the log whatever the state.
    pub fn broker_status(&self) -> BrokerHealth {
        self.inner.broker_health.snapshot()
    }

    /// The current log epoch.
    pub fn epoch(&self) -> Arc<str> {
        self.inner.log.epoch()
    }

    /// Who is present on `topic` (a pattern as clients subscribe to it with
    /// `"presence": true`, e.g. `chat:lobby`), across every node: each user once, with
    /// its connection count, and the total of connections, anonymous ones included.
    /// No rules apply here: the app decides whom to show it to.
    ///
    /// Another node's members are known from its messages, so they appear here within
    /// a broker round trip, and at the latest by the next `presence.sync_interval`.
    ///
    /// ```no_run
    /// # fn f(realtime: tidings::Realtime) {
    /// let lobby = realtime.presence("chat:lobby");
    /// println!("{} users, {} connections", lobby.users.len(), lobby.connections);
    /// # }
    /// ```
    pub fn presence(&self, topic: &str) -> Presence {
        self.inner.presence.presence(topic)
    }

    /// Tells the gateway the address it serves on, so that without an origin
    /// allowlist its own origins (`http://<addr>`, `http://localhost:<port>`) are
    /// allowed. Only the first call counts.
    pub fn set_local_addr(&self, addr: SocketAddr) {
        self.inner.origins.set_local_addr(addr);
    }

    /// Wraps the app's listener so that every write to a client has the deadline
    /// `connection.write_timeout`, for an app that serves with `axum::serve(realtime.
    /// listener(tcp), app)` rather than [`serve`](Self::serve) (which applies it, and
    /// the limits before the upgrade, itself). Without it, a Datastar SSE client that stops reading holds its stream
    /// (and its slot) for as long as TCP keeps the connection alive, past its token's
    /// expiry; WebSockets have their own deadline either way. Once shutdown begins, a
    /// stalled write gets at most one more second. See `docs/security.md`.
    pub fn listener<L: axum::serve::Listener>(&self, listener: L) -> crate::WriteDeadline<L> {
        crate::WriteDeadline::new(listener, self.inner.config.connection.write_timeout)
            .with_shutdown(self.inner.shutdown.clone())
    }

    /// A token that is cancelled when shutdown begins (for the app's own tasks).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Ends every connection of `user` (a token's `sub`) on every node: WebSockets
    /// close with 4003 (`revoked`), Datastar SSE streams end. This node's end at once;
    /// the others' when the broker brings them the message, within milliseconds.
    ///
    /// It does not revoke the user's tokens: a client that still holds a valid one may
    /// connect again, so revoke them in the app (or let them expire) first.
    ///
    /// Fails if the broker refused the message; this node's connections are closed
    /// anyway, and calling again is harmless.
    pub async fn disconnect_user(&self, user: &str) -> Result<(), crate::broker::BrokerError> {
        self.inner.hub.disconnect_user(user);
        self.inner.publisher.disconnect_user(user).await
    }

    /// Begins graceful shutdown: WebSocket clients get 1001, SSE streams end, the
    /// relay hands out what was committed, background tasks stop. Then waits for them,
    /// at most `shutdown_timeout`; returns false if the deadline passed.
    pub async fn shutdown(&self) -> bool {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        tokio::time::timeout(self.inner.config.shutdown_timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}

impl Realtime {
    /// The gateway's routes, mounted at `/realtime`: `subscribe` (WebSocket), `sse`
    /// (Datastar), `client.js`, `broadcast`, `disconnect`. Merge it into the app's
    /// router.
    pub fn router(&self) -> axum::Router {
        use axum::routing::{get, post};
        let websocket = axum::Router::new()
            .route("/realtime/subscribe", get(crate::ws::upgrade))
            .with_state(self.ws_state());
        let sse = axum::Router::new()
            .route("/realtime/sse", get(crate::sse::handler))
            .with_state(self.sse_state());
        let inner = &self.inner;
        let catch_up = axum::Router::new()
            .route("/realtime/events", get(crate::http::catch_up::handler))
            .with_state(crate::http::catch_up::CatchUpState {
                config: inner.config.clone(),
                authenticator: self.authenticator(),
                rules: inner.rules.clone(),
                hub: inner.hub.clone(),
                log: inner.log.clone(),
                shutdown: inner.shutdown.clone(),
                waiting: inner.catch_up_waiting.clone(),
            });
        axum::Router::new()
            .route("/realtime/client.js", get(crate::http::client_js))
            .route("/realtime/broadcast", post(crate::http::broadcast))
            .route("/realtime/disconnect", post(crate::http::disconnect))
            .with_state(self.clone())
            .merge(websocket)
            .merge(sse)
            .merge(catch_up)
    }

    /// Who an HTTP request is: the gateway's verifier and its SSE cookie. An app's
    /// routes get [`Caller`](crate::auth::Caller) and
    /// [`BearerCaller`](crate::auth::BearerCaller) by providing it from their state.
    pub fn authenticator(&self) -> Authenticator {
        Authenticator::new(
            (*self.inner.verifier).clone(),
            self.inner.config.sse.cookie_name.as_deref(),
        )
    }

    /// The model store on the log's database: every committed write becomes an event.
    pub fn store(&self) -> crate::model::Store {
        self.inner.store.clone()
    }

    /// The log position this node has delivered up to, read before a snapshot: a
    /// snapshot read after it plus the events after it is complete, though it may
    /// already show some of those events. For a read that shows exactly the events up
    /// to its cursor, use [`Store::snapshot_list`](crate::model::Store::snapshot_list)
    /// / [`snapshot_get`](crate::model::Store::snapshot_get) (and
    /// [`Realtime::settle`] after it).
    pub fn cursor(&self) -> crate::Cursor {
        crate::Cursor {
            epoch: self.inner.log.epoch(),
            seq: self.inner.hub.position(),
        }
    }

    /// After a snapshot numbered rows itself: asks this node to read the log now and
    /// waits (at most `log.catch_up_timeout`) until it has delivered up to `cursor`, so
    /// a subscription from that cursor here starts at once. Returns whether it has.
    pub async fn settle(&self, cursor: &crate::Cursor) -> bool {
        if *cursor.epoch != *self.inner.log.epoch() {
            return false;
        }
        let timeout = self.inner.config.log.catch_up_timeout;
        self.inner.hub.reach_position(cursor.seq, timeout).await
    }
}

/// The narrow parts, for the transports and the façade methods in other files.
impl Realtime {
    /// What the WebSocket transport works with.
    pub(crate) fn ws_state(&self) -> WsState {
        let inner = &self.inner;
        WsState {
            config: inner.config.clone(),
            verifier: inner.verifier.clone(),
            rules: inner.rules.clone(),
            hub: inner.hub.clone(),
            log: inner.log.clone(),
            publisher: inner.publisher.clone(),
            hooks: inner.subscription_hooks.clone(),
            metrics: inner.metrics.clone(),
            origins: inner.origins.clone(),
            limits: inner.limits.clone(),
            presence: inner.presence.clone(),
            shutdown: inner.shutdown.clone(),
            tasks: inner.tasks.clone(),
            writers: inner.writers.clone(),
            handlers: inner.handlers.clone(),
            store: self.store(),
        }
    }

    /// What the Datastar SSE transport works with.
    pub(crate) fn sse_state(&self) -> SseState {
        let inner = &self.inner;
        SseState {
            config: inner.config.clone(),
            authenticator: self.authenticator(),
            rules: inner.rules.clone(),
            hub: inner.hub.clone(),
            log: inner.log.clone(),
            subscription_hooks: inner.subscription_hooks.clone(),
            datastar: inner.datastar.clone(),
            metrics: inner.metrics.clone(),
            limits: inner.limits.clone(),
            shutdown: inner.shutdown.clone(),
            store: self.store(),
        }
    }

    /// The node's limits (connection caps, publish quotas, per-address rates).
    pub(crate) fn limits(&self) -> &Arc<NodeLimits> {
        &self.inner.limits
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    pub(crate) fn publisher(&self) -> &Publisher {
        &self.inner.publisher
    }
}

impl axum::extract::FromRef<Realtime> for Authenticator {
    fn from_ref(realtime: &Realtime) -> Self {
        realtime.authenticator()
    }
}
