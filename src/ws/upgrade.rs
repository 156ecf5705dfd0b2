//! The WebSocket opening handshake (RFC 6455 section 4.2) on an HTTP/1.1 request.
//!
//! The gateway does it itself rather than through axum's `WebSocketUpgrade` because
//! it needs the upgraded byte stream, not a finished WebSocket: events are written to
//! that stream directly from the fan-out (see `outbound`), tungstenite handles the
//! rest of the protocol on top of it.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A valid WebSocket upgrade request, ready to be answered with 101.
#[derive(Debug)]
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade, answered with the status RFC 6455 and
/// HTTP suggest and a plain-text reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAnUpgrade {
    status: StatusCode,
    reason: &'static str,
}

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.reason).into_response();
        if self.status == StatusCode::UPGRADE_REQUIRED {
            // What to ask for instead (RFC 6455 section 4.4 for the version).
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

const fn refuse(status: StatusCode, reason: &'static str) -> NotAnUpgrade {
    NotAnUpgrade { status, reason }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade must be a GET request",
            ));
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks WebSocket: the Connection header must include upgrade",
            ));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks WebSocket: the Upgrade header must be websocket",
            ));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "Sec-WebSocket-Version must be 13",
            ));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key is missing",
            ));
        };
        // Absent when the connection cannot be taken over (HTTP/2 without extended
        // CONNECT, or a server that does not support upgrades).
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded to a WebSocket",
            ));
        };
        Ok(Self { key, on_upgrade })
    }
}

/// Whether the comma-separated header `name` holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .unwrap_or_default()
            .split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}

/// The upgraded connection's byte stream.
pub(crate) type Upgraded101 = TokioIo<Upgraded>;

impl Upgrade {
    /// Answers 101 and runs `connection` on the upgraded stream once hyper hands it
    /// over (a connection that goes away before that never runs it).
    pub(crate) fn on_upgrade<F, Fut>(self, connection: F) -> Response
    where
        F: FnOnce(Upgraded101) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self { key, on_upgrade } = self;
        tokio::spawn(async move {
            match on_upgrade.await {
                // Boxed: this task lives as long as the connection, and only the
                // connection's own state should stay allocated that long.
                Ok(upgraded) => Box::pin(connection(TokioIo::new(upgraded))).await,
                Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
            }
        });
        let accept = derive_accept_key(key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        // The accept key is base64: always a valid header value.
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}
