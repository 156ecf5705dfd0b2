//! `POST /demo/token`: demo mode only. Mints a short-lived HS256 token for any `sub`,
//! so the demo page works with no identity provider.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Deserialize;
use serde_json::json;

use super::DemoState;
use crate::{auth::unix_now, http::error};

/// Lifetime of a minted token unless asked otherwise.
const DEFAULT_TTL: u64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    /// Seconds, 1 to 86400.
    #[serde(default)]
    ttl: Option<u64>,
}

pub(crate) async fn mint(State(state): State<DemoState>, body: axum::body::Bytes) -> Response {
    let Some(secret) = &state.options.mint_secret else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "token minting is off: a JWT key is configured",
        );
    };
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let sub_len = request.sub.chars().count();
    if sub_len == 0 || sub_len > 64 || request.sub.chars().any(char::is_control) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "sub must be 1-64 printable characters",
        );
    }
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL);
    if !(1..=86_400).contains(&ttl) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "ttl must be 1 to 86400 seconds",
        );
    }
    let claims = json!({"sub": request.sub, "exp": unix_now() + ttl, "roles": request.roles});
    match encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    ) {
        Ok(token) => Json(json!({"token": token, "expires_in": ttl})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "minting a demo token failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not mint a token",
            )
        }
    }
}
