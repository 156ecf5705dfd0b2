//! Why the server closes a connection, and the WebSocket close code for each reason
//! (protocol.md section 7). One exhaustive match, so a new reason cannot go unmapped.

/// A server-initiated close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Normal closure.
    Normal,
    /// The server is shutting down.
    GoingAway,
    /// A client frame exceeded the message limit.
    MessageTooBig,
    /// The client broke the WebSocket protocol (RFC 6455): reserved bits, unknown
    /// opcode, unmasked frame, fragmented or oversized control frame, bad close frame.
    ProtocolError,
    /// A text frame (or a close reason) that is not valid UTF-8.
    InvalidPayload,
    /// Token missing, invalid or expired (includes the auth timeout).
    Unauthorized,
    /// Forbidden: origin, banned, revoked.
    Forbidden,
    /// The app ended the user's sessions (`Realtime::disconnect_user`): 4003, like
    /// [`CloseReason::Forbidden`], with its own reason text.
    Revoked,
    /// The send queue overflowed.
    SlowConsumer,
    /// The peer's socket did not take a write within `connection.write_timeout`: it
    /// stopped reading. 4008, like [`CloseReason::SlowConsumer`].
    WriteTimeout,
    /// The connection reached `connection.max_connection_age`: reconnect (and resume).
    MaxAge,
    /// The server lost continuity for this connection.
    ContinuityLost,
    /// A connection or rate limit (includes a client that keeps sending faster than
    /// `connection.messages_per_second`).
    RateLimited,
    /// Repeated protocol misuse.
    ProtocolMisuse,
    /// The peer stopped answering pings.
    PeerTimeout,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            // The peer is gone; 1001 tells a client that is still there to reconnect.
            Self::PeerTimeout => 1001,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::MessageTooBig => 1009,
            // "Service restart": the client reconnects with jitter and resumes.
            Self::MaxAge => 1012,
            Self::Unauthorized => 4001,
            Self::Forbidden | Self::Revoked => 4003,
            Self::SlowConsumer | Self::WriteTimeout => 4008,
            Self::ContinuityLost => 4010,
            Self::RateLimited => 4029,
            Self::ProtocolMisuse => 4400,
        }
    }

    /// The close frame's reason text (short: at most 123 bytes are allowed).
    pub fn text(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::GoingAway => "server going away",
            Self::PeerTimeout => "no pong",
            Self::MessageTooBig => "message too big",
            Self::ProtocolError => "protocol error",
            Self::InvalidPayload => "invalid UTF-8",
            Self::MaxAge => "connection age limit; reconnect",
            Self::WriteTimeout => "write timeout",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Revoked => "revoked",
            Self::SlowConsumer => "slow consumer",
            Self::ContinuityLost => "continuity lost",
            Self::RateLimited => "rate limited",
            Self::ProtocolMisuse => "protocol misuse",
        }
    }
}

/// Lets one side (the hub, shutdown) tell a connection task to close, and why.
/// The first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct Closer(std::sync::Arc<CloserInner>);

#[derive(Debug, Default)]
struct CloserInner {
    reason: std::sync::OnceLock<CloseReason>,
    token: tokio_util::sync::CancellationToken,
}

impl Closer {
    /// Asks the connection to close with `reason` (ignored if already asked).
    pub fn close(&self, reason: CloseReason) {
        let _ = self.0.reason.set(reason);
        self.0.token.cancel();
    }

    /// Waits until asked to close; returns the reason.
    pub async fn closed(&self) -> CloseReason {
        self.0.token.cancelled().await;
        self.reason().unwrap_or(CloseReason::Normal)
    }

    /// The reason, if asked to close.
    pub fn reason(&self) -> Option<CloseReason> {
        self.0.reason.get().copied()
    }
}
