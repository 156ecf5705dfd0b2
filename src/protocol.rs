//! The WebSocket wire format (protocol.md section 3): client frames in, server frames
//! out, as tagged enums. Event frames are not here: they are encoded once per event in
//! `event.rs` and shared by every receiver.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::presence::PresenceUser;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum ClientFrame {
    /// Authenticate, or refresh the token on a live connection.
    Auth {
        /// The JWT, or `null` for anonymous.
        token: Option<String>,
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
    /// Subscribe to a pattern.
    Subscribe {
        /// Client-chosen id, unique per connection.
        id: String,
        /// The pattern.
        pattern: String,
        /// Resume position.
        #[serde(default)]
        since: Option<String>,
        /// Only record events whose public fields meet this filter **(addition)**;
        /// validated by `filter.rs`.
        #[serde(default)]
        filter: Option<Value>,
        /// Count this connection in the topic's presence and send it `join`/`leave`
        /// frames **(addition)**.
        #[serde(default)]
        presence: bool,
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
    /// End a subscription.
    Unsubscribe {
        /// The subscription id.
        id: String,
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
    /// Liveness check.
    Ping {
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
    /// Who is present on a topic **(addition)**.
    Presence {
        /// The topic: a pattern as written in `subscribe`.
        topic: String,
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
    /// Publish a custom event on a topic.
    Publish {
        /// `collection` or `collection:key`.
        topic: String,
        /// Event name.
        event: String,
        /// Any JSON.
        #[serde(default)]
        data: Value,
        /// A client mutation id the event carries **(addition)**.
        #[serde(default)]
        mutation: Option<String>,
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
    /// Ask the app's handler for `topic` for an answer **(addition)**: an RPC over
    /// the socket, answered `reply` (or `error`) with the same `ref`.
    Request {
        /// `collection` or `collection:key`: picks the handler.
        topic: String,
        /// What is asked (a method name); same rules as a publish's event name.
        event: String,
        /// Any JSON.
        #[serde(default)]
        data: Value,
        /// Echoed in the reply.
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
}

/// Error codes of protocol.md section 3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or unexpected frame.
    BadRequest,
    /// Token missing or invalid.
    Unauthorized,
    /// Not allowed by the rules.
    Forbidden,
    /// The pattern is invalid.
    InvalidPattern,
    /// Too many frames.
    RateLimited,
    /// A configured limit was reached.
    LimitExceeded,
    /// Unknown subscription id.
    NotFound,
    /// A refresh token with another `sub`.
    AuthMismatch,
    /// Server-side failure (details are logged, not sent).
    Internal,
}

/// Why a resume could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The cursor's epoch is not the log's.
    EpochChanged,
    /// The position is older than the retained log.
    TooOld,
    /// More events than the replay cap.
    TooMany,
    /// The position is ahead of the log.
    UnknownPosition,
}

/// A frame to the client (event frames excepted, see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerFrame {
    /// Handshake succeeded.
    Welcome {
        /// Opaque, unique connection id.
        connection_id: String,
        /// The token's `sub`, or null.
        user_id: Option<String>,
        /// Seconds until the token expires, or null.
        expires_in: Option<u64>,
        /// Protocol version: 1.
        protocol: u32,
        /// Echo of the auth frame's ref.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// A token refresh succeeded.
    Refreshed {
        /// Seconds until the new token expires.
        expires_in: Option<u64>,
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// The token expires soon: send a fresh one.
    RefreshRequired {
        /// Seconds left.
        expires_in: u64,
    },
    /// A subscription is live.
    Subscribed {
        /// The subscription id.
        id: String,
        /// The pattern.
        pattern: String,
        /// Where the subscription starts.
        cursor: String,
        /// Present only when `since` was given.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Why recovery failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<ResyncReason>,
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// A subscription ended.
    Unsubscribed {
        /// The subscription id.
        id: String,
        /// Set when the server ended it (`forbidden` after a refresh).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// Reply to `ping`.
    Pong {
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// Reply to `publish`.
    Published {
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// The answer to a `request` **(addition)**.
    Reply {
        /// What the handler answered.
        data: Value,
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// Who is present on a topic: the reply to a `presence` frame (with its `ref`),
    /// or the start of a presence subscription (with its `id`).
    Presence {
        /// The presence subscription this starts, when it is not a reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The topic.
        topic: String,
        /// The users present, by user id, each with their connection count.
        users: Vec<PresenceUser>,
        /// Every connection present, anonymous ones included.
        connections: usize,
        /// Set when `users` was cut at `presence.max_users_listed`.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// Echo.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// A user's first connection to a topic appeared somewhere in the cluster.
    Join {
        /// The presence subscription told.
        id: String,
        /// The topic.
        topic: String,
        /// Who joined.
        user_id: String,
    },
    /// A user's last connection to a topic went away, and did not come back within
    /// `presence.grace`.
    Leave {
        /// The presence subscription told.
        id: String,
        /// The topic.
        topic: String,
        /// Who left.
        user_id: String,
    },
    /// A refused frame.
    Error {
        /// Echo of the offending frame's ref.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        /// The subscription id concerned, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

impl ServerFrame {
    /// An error frame.
    pub(crate) fn error(
        reference: Option<Value>,
        id: Option<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self::Error {
            reference,
            id,
            code,
            message: message.into(),
        }
    }

    /// The frame as JSON text.
    pub(crate) fn to_text(&self) -> String {
        // Plain data: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(r#"{"type":"error","code":"internal","message":"encoding"}"#)
        })
    }
}

/// Why a client frame could not be used, with the `ref` to echo when one was readable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FrameError {
    /// The frame's `ref`, if it had a valid one.
    pub reference: Option<Value>,
    /// What was wrong.
    pub message: String,
}

/// Parses a client text frame. Never panics; a bad frame yields the reason and the
/// `ref` to echo.
pub(crate) fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
        reference: None,
        message: format!("not JSON: {e}"),
    })?;
    let reference = value
        .get("ref")
        .filter(|r| r.is_string() || r.is_number())
        .cloned();
    if value.get("ref").is_some() && reference.is_none() {
        return Err(FrameError {
            reference: None,
            message: "ref must be a string or a number".into(),
        });
    }
    if !value.is_object() {
        return Err(FrameError {
            reference,
            message: "a frame must be a JSON object".into(),
        });
    }
    serde_json::from_value(value).map_err(|e| FrameError {
        reference,
        message: format!("bad frame: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            parse_client_frame(r#"{"type":"auth","token":null}"#).unwrap(),
            ClientFrame::Auth {
                token: None,
                reference: None
            }
        );
        assert!(matches!(
            parse_client_frame(
                r#"{"type":"subscribe","id":"s1","pattern":"todos:*","since":"e:1","ref":7}"#
            )
            .unwrap(),
            ClientFrame::Subscribe {
                since: Some(_),
                reference: Some(_),
                ..
            }
        ));
        assert!(matches!(
            parse_client_frame(
                r#"{"type":"subscribe","id":"p","pattern":"chat:lobby","presence":true}"#
            )
            .unwrap(),
            ClientFrame::Subscribe { presence: true, .. }
        ));
        assert_eq!(
            parse_client_frame(r#"{"type":"presence","topic":"chat:lobby","ref":1}"#).unwrap(),
            ClientFrame::Presence {
                topic: "chat:lobby".into(),
                reference: Some(json!(1))
            }
        );
        assert!(matches!(
            parse_client_frame(r#"{"type":"publish","topic":"chat","event":"x","data":{"a":1}}"#)
                .unwrap(),
            ClientFrame::Publish { .. }
        ));
    }

    #[test]
    fn bad_frames_keep_their_ref() {
        for bad in [
            "",
            "nul",
            "[]",
            "42",
            r#"{"type":"nope","ref":"r"}"#,
            r#"{"ref":"r"}"#,
            r#"{"type":"subscribe","ref":"r"}"#,
            r#"{"type":"subscribe","id":1,"pattern":"x","ref":"r"}"#,
            r#"{"type":"ping","ref":{"a":1}}"#,
            r#"{"type":"ping","extra":1,"ref":"r"}"#,
        ] {
            let err = parse_client_frame(bad).unwrap_err();
            if bad.contains(r#""ref":"r""#) {
                assert_eq!(err.reference, Some(json!("r")), "{bad}");
            }
        }
    }

    #[test]
    fn server_frames_match_the_contract() {
        let f = ServerFrame::Subscribed {
            id: "s1".into(),
            pattern: "todos:*".into(),
            cursor: "e:3".into(),
            recovered: Some(false),
            reason: Some(ResyncReason::TooMany),
            reference: Some(json!(1)),
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"type":"subscribed","id":"s1","pattern":"todos:*","cursor":"e:3","recovered":false,"reason":"too_many","ref":1})
        );
        let e = ServerFrame::error(None, Some("s1".into()), ErrorCode::InvalidPattern, "bad");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type":"error","id":"s1","code":"invalid_pattern","message":"bad"})
        );
        let p = ServerFrame::Presence {
            id: None,
            topic: "chat:lobby".into(),
            users: vec![PresenceUser {
                user_id: "ann".into(),
                connections: 2,
            }],
            connections: 3,
            truncated: false,
            reference: Some(json!(1)),
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"type":"presence","topic":"chat:lobby","users":[{"user_id":"ann","connections":2}],"connections":3,"ref":1})
        );
        let j = ServerFrame::Join {
            id: "p".into(),
            topic: "chat:lobby".into(),
            user_id: "ann".into(),
        };
        assert_eq!(
            j.to_text(),
            r#"{"type":"join","id":"p","topic":"chat:lobby","user_id":"ann"}"#
        );
        let reply = ServerFrame::Reply {
            data: json!({"n": 1}),
            reference: Some(json!("r1")),
        };
        assert_eq!(
            reply.to_text(),
            r#"{"type":"reply","data":{"n":1},"ref":"r1"}"#
        );
        assert!(matches!(
            parse_client_frame(r#"{"type":"request","topic":"todos","event":"count","ref":2}"#)
                .unwrap(),
            ClientFrame::Request {
                data: Value::Null,
                reference: Some(_),
                ..
            }
        ));
        let r = ServerFrame::RefreshRequired { expires_in: 5 };
        assert_eq!(r.to_text(), r#"{"type":"refresh_required","expires_in":5}"#);
    }
}
