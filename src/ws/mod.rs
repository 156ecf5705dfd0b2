//! The WebSocket endpoint: the upgrade (origin check, buffer sizes, limits) here, the
//! per-connection task in `connection`, frame handling in `session`.

mod connection;
mod origin;
mod session;
mod timers;

use std::collections::HashMap;

use axum::{
    extract::{Query, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::app::Realtime;

pub(crate) use origin::origin_allowed;

/// `GET /realtime/subscribe`.
pub(crate) async fn upgrade(
    State(realtime): State<Realtime>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&realtime, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let config = &realtime.config().connection;
    let token = bearer_token(&headers).or_else(|| {
        realtime
            .config()
            .auth
            .allow_query_token
            .then(|| query.get("token").cloned())
            .flatten()
    });
    let tasks = realtime.inner.tasks.clone();
    upgrade
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(config.max_message_size)
        .max_frame_size(config.max_message_size)
        .on_upgrade(move |socket| tasks.track_future(connection::run(realtime, socket, token)))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}
