//! [`HttpError`]: the one error answer of every JSON endpoint, the gateway's and the
//! demo's, with the protocol's body `{"code": ..., "message": ...}`.

use std::borrow::Cow;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::protocol::ErrorCode;

/// Seconds a client is told to wait after a 429 (protocol section 7: back off at
/// least 30 s after a connection limit).
const RETRY_AFTER_SECS: &str = "30";

/// A refused HTTP request: a status, a protocol error code and a message the client
/// may read.
///
/// As a response it is `status` with the JSON body `{"code": ..., "message": ...}`; a
/// 401 also carries `WWW-Authenticate: Bearer` and a 429 `Retry-After: 30`.
///
/// ```
/// use axum::http::StatusCode;
/// use tidings::{ErrorCode, HttpError};
///
/// let refused = HttpError::not_found("no such record");
/// assert_eq!(refused.status(), StatusCode::NOT_FOUND);
/// assert_eq!(refused.code(), ErrorCode::NotFound);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    status: StatusCode,
    code: ErrorCode,
    message: Cow<'static, str>,
}

/// The wire body; the field order is the protocol's.
#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl HttpError {
    /// Any status with any code. Never send server details in `message`: log them.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_request`: the input is invalid.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 401 `unauthorized`: credentials are missing or invalid.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 403 `forbidden`: the principal may not do this.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 500 `internal`: a server-side failure (log the details, send none).
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The protocol error code of the body.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message of the body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use serde_json::{Value, json};

    async fn answer(error: HttpError) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body");
        let body = serde_json::from_slice(&bytes).expect("a JSON body");
        (status, headers, body)
    }

    #[tokio::test]
    async fn every_constructor_maps_to_its_status_and_code() {
        let cases = [
            (HttpError::bad_request("m"), 400, "bad_request"),
            (HttpError::unauthorized("m"), 401, "unauthorized"),
            (HttpError::forbidden("m"), 403, "forbidden"),
            (HttpError::not_found("m"), 404, "not_found"),
            (HttpError::internal("m"), 500, "internal"),
            (
                HttpError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidPattern,
                    String::from("m"),
                ),
                400,
                "invalid_pattern",
            ),
            (
                HttpError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal, "m"),
                503,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            let (got_status, headers, body) = answer(error).await;
            assert_eq!(got_status.as_u16(), status);
            assert_eq!(body, json!({"code": code, "message": "m"}));
            assert_eq!(
                headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
                Some(&b"application/json"[..])
            );
        }
    }

    #[tokio::test]
    async fn the_body_is_code_then_message() {
        let response = HttpError::forbidden("no \"way\"").into_response();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body");
        assert_eq!(
            &bytes[..],
            br#"{"code":"forbidden","message":"no \"way\""}"#
        );
    }

    #[tokio::test]
    async fn a_401_asks_for_a_bearer_token() {
        let (_, headers, _) = answer(HttpError::unauthorized("sign in")).await;
        assert_eq!(
            headers
                .get(header::WWW_AUTHENTICATE)
                .map(HeaderValue::as_bytes),
            Some(&b"Bearer"[..])
        );
        assert!(headers.get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn a_429_says_when_to_retry() {
        let limit = HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::LimitExceeded,
            "busy",
        );
        let (status, headers, body) = answer(limit).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["code"], "limit_exceeded");
        assert_eq!(
            headers.get(header::RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"30"[..])
        );
        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn other_statuses_add_no_headers() {
        let (_, headers, _) = answer(HttpError::forbidden("no")).await;
        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
        assert!(headers.get(header::RETRY_AFTER).is_none());
    }
}
