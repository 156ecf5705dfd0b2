//! What a handler answers, or how it refuses.

use serde_json::Value;

use crate::protocol::ErrorCode;

/// What becomes of a client event a handler accepted.
///
/// | outcome | `publish` frame | `request` frame |
/// |---|---|---|
/// | `Publish(data)` | the event is published with `data`; `published` | the event is published with `data`; `reply` with `null` |
/// | `Done` | nothing is published by the gateway; `published` | `reply` with `null` |
/// | `Reply(value)` | nothing is published; `published` (the value is not sent) | `reply` with `value` |
///
/// `Done` is the answer of a handler that wrote through the model layer
/// ([`Call::begin`](super::Call::begin)): the write's own event is what subscribers
/// get, durable and resumable like every model event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Publish the event with this data (the client's, or a transformed one) on the
    /// frame's topic, with the frame's event name.
    Publish(Value),
    /// Handled: nothing more to publish.
    Done,
    /// The answer to a `request`.
    Reply(Value),
}

/// A refusal the client receives as an `error` frame with this code and message (and
/// the frame's `ref`). Only the sending client learns of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Reject {
    code: ErrorCode,
    message: String,
}

impl Reject {
    /// A refusal with any protocol error code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `forbidden`: the app's own authorization said no.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `bad_request`: the event's data is not what the handler accepts.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `rate_limited`: a quota of the app's (per-user middleware, say).
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RateLimited, message)
    }

    /// `internal`: the handler failed; say nothing the client should not know.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The code the client receives.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message the client receives.
    pub fn message(&self) -> &str {
        &self.message
    }
}
