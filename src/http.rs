//! The gateway's plain HTTP endpoints: the browser client, server-to-server
//! broadcasts and user disconnects. [`HttpError`] (in `error`) is the error answer of
//! every JSON endpoint.

pub(crate) mod catch_up;
mod error;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

pub use error::HttpError;

use crate::{
    app::Realtime,
    auth::BearerCaller,
    broadcast::{Broadcast, BroadcastError},
};

/// The shipped browser client.
const CLIENT_JS: &str = include_str!("../static/realtime-client.js");

/// The role a token needs for `POST /realtime/broadcast` and `POST /realtime/disconnect`.
pub const PUBLISHER_ROLE: &str = "publisher";

/// `GET /realtime/client.js`: the client module, revalidated by ETag.
pub(crate) async fn client_js(headers: HeaderMap) -> Response {
    static ETAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let etag = ETAG.get_or_init(|| {
        // FNV-1a: a stable validator for the embedded bytes; not a security hash.
        let hash = CLIENT_JS.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("\"{hash:016x}\"")
    });
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.as_str())]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ETAG, etag.as_str()),
        ],
        CLIENT_JS,
    )
        .into_response()
}

/// `POST /realtime/broadcast`: a custom event from a server holding a token with the
/// `publisher` role.
pub(crate) async fn broadcast(
    State(realtime): State<Realtime>,
    BearerCaller(principal): BearerCaller,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let broadcast: Broadcast = publisher_request(&principal, &body)?;
    match realtime.broadcast(broadcast).await {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({"ok": true}))).into_response()),
        Err(
            e
            @ (BroadcastError::Database(_) | BroadcastError::Broker(_) | BroadcastError::Store(_)),
        ) => {
            tracing::error!(error = %e, "broadcast failed");
            Err(HttpError::internal("broadcast failed"))
        }
        Err(e) => Err(HttpError::bad_request(e.to_string())),
    }
}

/// The JSON body of a server-to-server request, once the caller is known to hold the
/// `publisher` role (403 otherwise; 400 for a body that is not a `T`).
fn publisher_request<T: serde::de::DeserializeOwned>(
    principal: &crate::auth::Principal,
    body: &[u8],
) -> Result<T, HttpError> {
    if !principal.has_role(PUBLISHER_ROLE) {
        return Err(HttpError::forbidden("the token lacks the publisher role"));
    }
    serde_json::from_slice(body).map_err(|e| HttpError::bad_request(e.to_string()))
}

/// The body of `POST /realtime/disconnect`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectRequest {
    /// The user whose connections end (a token's `sub`).
    user: String,
}

/// `POST /realtime/disconnect`: ends a user's WebSockets (4003) and SSE streams on
/// every node, for a server holding a token with the `publisher` role.
pub(crate) async fn disconnect(
    State(realtime): State<Realtime>,
    BearerCaller(principal): BearerCaller,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let request: DisconnectRequest = publisher_request(&principal, &body)?;
    if request.user.is_empty() {
        return Err(HttpError::bad_request("user must not be empty"));
    }
    realtime.disconnect_user(&request.user).await.map_err(|e| {
        tracing::error!(error = %e, "disconnect failed");
        HttpError::internal("disconnect failed")
    })?;
    Ok((StatusCode::ACCEPTED, Json(json!({"ok": true}))).into_response())
}
