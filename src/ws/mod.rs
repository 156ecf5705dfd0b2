//! The WebSocket endpoint: the upgrade (origin check) here, the socket settings,
//! write deadlines and close handshake in `socket`, the per-connection task in
//! `connection`, frame decisions in `session` and their execution in `execute`.
//! `echo` is the conformance-test endpoint (never mounted by `Realtime::router`).

mod connection;
pub(crate) mod echo;
mod execute;
mod origin;
mod session;
mod socket;
mod timers;

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{JwtVerifier, bearer_token},
    config::Config,
    hooks::SubscriptionHooks,
    hub::Hub,
    log::Log,
    metrics::Metrics,
    presence::PresenceNode,
    publisher::Publisher,
    rules::Rules,
};

pub(crate) use origin::Origins;

/// The parts of the gateway the WebSocket transport works with.
#[derive(Debug, Clone)]
pub(crate) struct WsState {
    pub(crate) config: Arc<Config>,
    pub(crate) verifier: Arc<JwtVerifier>,
    pub(crate) rules: Arc<Rules>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) log: Arc<Log>,
    pub(crate) publisher: Publisher,
    pub(crate) hooks: Arc<SubscriptionHooks>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) origins: Arc<Origins>,
    pub(crate) presence: Arc<PresenceNode>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// `GET /realtime/subscribe`.
pub(crate) async fn upgrade(
    State(state): State<WsState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.origins.allow(&headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let token = bearer_token(&headers).or_else(|| {
        state
            .config
            .auth
            .allow_query_token
            .then(|| query.get("token").cloned())
            .flatten()
    });
    let tasks = state.tasks.clone();
    socket::configure(upgrade, &state.config.connection)
        .on_upgrade(move |socket| tasks.track_future(connection::run(state, socket, token)))
}
