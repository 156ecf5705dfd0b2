//! [`StreamError`]: why a Datastar stream was refused or could not start, and the
//! HTTP answer of each reason.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{
    filter::FilterError, http::HttpError, hub::SubscribeError, protocol::ErrorCode, sse::SseError,
    topic::TopicError,
};

/// Why a Datastar stream was refused or could not start. Each maps to an HTTP status
/// with the protocol's error body `{"code": ..., "message": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// `topics` is missing or empty.
    #[error("no topics: pass ?topics=<pattern>[,<pattern>...]")]
    NoTopics,
    /// A pattern is invalid (400 `invalid_pattern`).
    #[error(transparent)]
    InvalidPattern(#[from] TopicError),
    /// An anonymous stream asked for a collection that is not public (401).
    #[error("{pattern} is not public: sign in to read it")]
    CredentialsRequired {
        /// The pattern as given.
        pattern: String,
    },
    /// The `filter` parameter is not a valid filter, or names a hidden field (400
    /// `bad_request`).
    #[error(transparent)]
    BadFilter(#[from] FilterError),
    /// The principal may not read the pattern's collection (403 `forbidden`).
    #[error("not allowed to read {pattern}")]
    Forbidden {
        /// The pattern as given.
        pattern: String,
    },
    /// More patterns than `connection.max_subscriptions` (400 `limit_exceeded`).
    #[error("at most {limit} patterns per stream")]
    TooManyPatterns {
        /// The limit.
        limit: usize,
    },
    /// A glob is too complex (400 `invalid_pattern`), or a glob limit of the stream,
    /// its user or the node is reached (429 `limit_exceeded`).
    #[error(transparent)]
    GlobRefused(SubscribeError),
    /// The user resumed too often (`Last-Event-ID`; 429 `rate_limited`). Carries the
    /// message naming the limit.
    #[error("{0}")]
    ResumeRateLimited(String),
    /// This node already holds `connection.max_connections` streams (429).
    #[error("too many Datastar streams on this node")]
    TooManyStreams,
    /// The user or the client address already holds
    /// `connection.max_connections_per_user` / `max_connections_per_ip` WebSocket
    /// connections and streams (429).
    #[error("too many connections for this {whose}")]
    TooManyConnections {
        /// `user` or `address`.
        whose: &'static str,
    },
    /// The app's stream setup added an event the encoding layer refused (500).
    #[error(transparent)]
    Encoding(#[from] SseError),
    /// The app's stream setup subscribed to nothing (500).
    #[error("the stream subscribed to no pattern")]
    NothingSubscribed,
    /// The hub ended the stream before it started: its queue overflowed during the
    /// start, or continuity was lost (503; the client retries).
    #[error("the stream was ended before it started; retry")]
    EndedEarly,
    /// The server is shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Reading the log failed (503; details are logged).
    #[error("reading the event log failed; retry")]
    Replay(#[source] sqlx::Error),
}

impl StreamError {
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::NoTopics | Self::BadFilter(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            Self::InvalidPattern(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidPattern),
            Self::CredentialsRequired { .. } => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::TooManyPatterns { .. } => (StatusCode::BAD_REQUEST, ErrorCode::LimitExceeded),
            Self::TooManyStreams | Self::TooManyConnections { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded)
            }
            Self::ResumeRateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::GlobRefused(refused) => match refused.code() {
                ErrorCode::LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, refused.code()),
                code => (StatusCode::BAD_REQUEST, code),
            },
            Self::Encoding(_) | Self::NothingSubscribed => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
            Self::EndedEarly | Self::ShuttingDown | Self::Replay(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
            }
        }
    }
}

impl From<crate::limits::SlotRefusal> for StreamError {
    fn from(refused: crate::limits::SlotRefusal) -> Self {
        use crate::limits::SlotRefusal;
        match refused {
            SlotRefusal::Node => Self::TooManyStreams,
            SlotRefusal::User => Self::TooManyConnections { whose: "user" },
            SlotRefusal::Ip => Self::TooManyConnections { whose: "address" },
        }
    }
}

impl From<SubscribeError> for StreamError {
    fn from(refused: SubscribeError) -> Self {
        match refused {
            // Repeated patterns were dropped before subscribing, so an id in use
            // cannot happen; both mean the stream cannot go on.
            SubscribeError::Gone | SubscribeError::IdInUse => Self::EndedEarly,
            refused => Self::GlobRefused(refused),
        }
    }
}

impl From<StreamError> for HttpError {
    fn from(refused: StreamError) -> Self {
        let (status, code) = refused.status_and_code();
        HttpError::new(status, code, refused.to_string())
    }
}

impl IntoResponse for StreamError {
    fn into_response(self) -> Response {
        // The server's own failures are logged here: the client only learns that
        // something failed.
        match &self {
            Self::Replay(e) => tracing::error!(error = %e, "Datastar stream: replay failed"),
            Self::Encoding(_) | Self::NothingSubscribed => {
                tracing::error!(error = %self, "Datastar stream setup failed");
            }
            _ => {}
        }
        HttpError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Pattern;

    fn answer(refused: StreamError) -> (u16, ErrorCode, String) {
        let http = HttpError::from(refused);
        (
            http.status().as_u16(),
            http.code(),
            http.message().to_owned(),
        )
    }

    #[test]
    fn every_refusal_has_its_status_and_code() {
        let invalid = Pattern::parse("").expect_err("an empty pattern is invalid");
        let pattern = || "notes:*".to_owned();
        let cases = [
            (StreamError::NoTopics, 400, ErrorCode::BadRequest),
            (
                StreamError::BadFilter(FilterError::BadField),
                400,
                ErrorCode::BadRequest,
            ),
            (
                StreamError::InvalidPattern(invalid),
                400,
                ErrorCode::InvalidPattern,
            ),
            (
                StreamError::CredentialsRequired { pattern: pattern() },
                401,
                ErrorCode::Unauthorized,
            ),
            (
                StreamError::Forbidden { pattern: pattern() },
                403,
                ErrorCode::Forbidden,
            ),
            (
                StreamError::TooManyPatterns { limit: 2 },
                400,
                ErrorCode::LimitExceeded,
            ),
            (StreamError::TooManyStreams, 429, ErrorCode::LimitExceeded),
            (StreamError::NothingSubscribed, 500, ErrorCode::Internal),
            (StreamError::EndedEarly, 503, ErrorCode::Internal),
            (StreamError::ShuttingDown, 503, ErrorCode::Internal),
            (
                StreamError::Replay(sqlx::Error::PoolTimedOut),
                503,
                ErrorCode::Internal,
            ),
        ];
        for (refused, status, code) in cases {
            let message = refused.to_string();
            assert_eq!(answer(refused), (status, code, message));
        }
    }

    #[test]
    fn server_failures_do_not_leak_their_cause() {
        let (_, _, message) = answer(StreamError::Replay(sqlx::Error::PoolTimedOut));
        assert_eq!(message, "reading the event log failed; retry");
    }

    #[test]
    fn a_stream_limit_says_when_to_retry() {
        let response = StreamError::TooManyStreams.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .map(axum::http::HeaderValue::as_bytes),
            Some(&b"30"[..])
        );
    }
}
