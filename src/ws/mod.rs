//! The WebSocket endpoint: the upgrade (origin check, caps) here and the handshake in
//! `upgrade`, the socket settings, write deadlines and close handshake in `socket`,
//! the outbound queue the fan-out writes to in `outbound` and the tasks that write it
//! in `writers`, the per-connection task in `connection`, frame decisions in
//! `session` and their execution in `execute`.
//! `echo` is the conformance-test endpoint (never mounted by `Realtime::router`).

mod connection;
pub(crate) mod echo;
mod execute;
mod origin;
pub(crate) mod outbound;
mod session;
mod socket;
mod timers;
mod upgrade;
mod writers;

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{JwtVerifier, bearer_token},
    close::CloseReason,
    config::Config,
    handlers::registry::Handlers,
    hooks::SubscriptionHooks,
    http::HttpError,
    hub::Hub,
    limits::{NodeLimits, SlotRefusal, Transport},
    log::Log,
    metrics::Metrics,
    model::Store,
    presence::PresenceNode,
    protocol::ErrorCode,
    publisher::Publisher,
    rules::Rules,
    serve::peer::PeerIp,
};

pub(crate) use origin::Origins;
pub(crate) use writers::Writers;

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
    /// Connection caps and publish quotas.
    pub(crate) limits: Arc<NodeLimits>,
    pub(crate) presence: Arc<PresenceNode>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// The tasks that write events to the sockets.
    pub(crate) writers: Arc<Writers>,
    /// The app's handlers for client events, and the store they write through.
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) store: Store,
}

/// `GET /realtime/subscribe`.
pub(crate) async fn upgrade(
    State(state): State<WsState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    PeerIp(ip): PeerIp,
    upgrade: upgrade::Upgrade,
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
    // The caps are checked before the upgrade: the per-address and per-user caps
    // answer 429. The node cap keeps the protocol's answer, an upgrade closed with
    // 4029, which tells a browser (that cannot see a refused upgrade's status) to
    // back off. The user is known here only from a token on the request; one that
    // does not verify is left to the handshake, which refuses it with 4001.
    let user = token
        .as_deref()
        .and_then(|token| state.verifier.verify(token).ok())
        .and_then(|principal| principal.user_id);
    let slot = match state
        .limits
        .slots
        .acquire(Transport::WebSocket, ip, user.as_ref())
    {
        Ok(slot) => Ok(slot),
        Err(SlotRefusal::Node) => {
            Metrics::inc(&state.metrics.connections_refused);
            Err(CloseReason::RateLimited)
        }
        Err(refused) => {
            Metrics::inc(&state.metrics.connections_refused);
            return HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::LimitExceeded,
                refused.to_string(),
            )
            .into_response();
        }
    };
    let tasks = state.tasks.clone();
    upgrade
        .on_upgrade(move |stream| tasks.track_future(connection::run(state, stream, token, slot)))
}
