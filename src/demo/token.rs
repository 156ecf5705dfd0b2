//! `POST /demo/token`: demo mode only. Mints a short-lived HS256 token for any `sub`,
//! so the demo page works with no identity provider.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Deserialize;
use serde_json::json;

use super::DemoState;
use crate::{auth::unix_now, http::HttpError};

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

/// Why a token was not minted.
#[derive(Debug)]
pub(crate) enum MintError {
    /// The request is out of range; the message says how.
    BadRequest(&'static str),
    /// Signing failed.
    Signing(jsonwebtoken::errors::Error),
}

/// Mints an HS256 token for `sub` that lives `ttl` seconds.
pub(crate) fn sign(
    secret: &str,
    sub: &str,
    roles: &[String],
    ttl: u64,
) -> Result<String, MintError> {
    let sub_len = sub.chars().count();
    if sub_len == 0 || sub_len > 64 || sub.chars().any(char::is_control) {
        return Err(MintError::BadRequest(
            "sub must be 1-64 printable characters",
        ));
    }
    if !(1..=86_400).contains(&ttl) {
        return Err(MintError::BadRequest("ttl must be 1 to 86400 seconds"));
    }
    let claims = json!({"sub": sub, "exp": unix_now() + ttl, "roles": roles});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(MintError::Signing)
}

pub(crate) async fn mint(
    State(state): State<DemoState>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let Some(secret) = &state.options.mint_secret else {
        return Err(HttpError::not_found(
            "token minting is off: a JWT key is configured",
        ));
    };
    let request: TokenRequest =
        serde_json::from_slice(&body).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL);
    let token = sign(secret, &request.sub, &request.roles, ttl)?;
    Ok(Json(json!({"token": token, "expires_in": ttl})).into_response())
}

/// The answer to a refused mint, for the token endpoint and the Datastar page's sign
/// in alike; a signing failure is logged here, as the client only learns it failed.
impl From<MintError> for HttpError {
    fn from(refused: MintError) -> Self {
        match refused {
            MintError::BadRequest(why) => HttpError::bad_request(why),
            MintError::Signing(e) => {
                tracing::error!(error = %e, "minting a demo token failed");
                HttpError::internal("could not mint a token")
            }
        }
    }
}
