//! The server's side of one WebSocket, as every WebSocket endpoint of the crate uses
//! it (the gateway's connections and the conformance echo): the upgrade settings, a
//! deadline on every write, read errors mapped to the close code RFC 6455 asks for,
//! and both directions of the close handshake.

use std::time::Duration;

use axum::extract::{
    WebSocketUpgrade,
    ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
};
use futures::SinkExt;

use crate::{close::CloseReason, config::ConnectionConfig};

/// How long a closed connection waits for the peer's close before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Applies the gateway's WebSocket settings (buffer sizes, message and frame limits)
/// to an upgrade. Every WebSocket route goes through here, so they cannot differ.
pub(crate) fn configure(upgrade: WebSocketUpgrade, config: &ConnectionConfig) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(config.max_message_size)
        .max_frame_size(config.max_message_size)
}

/// Why a write did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFailed {
    /// The socket is gone (reset, closed): nothing more can be said.
    Gone,
    /// The socket did not take the write within the deadline: the peer stopped
    /// reading.
    TimedOut,
}

impl WriteFailed {
    /// How the connection ends after this failure.
    pub(crate) fn reason(self) -> CloseReason {
        match self {
            Self::Gone => CloseReason::Normal,
            Self::TimedOut => CloseReason::WriteTimeout,
        }
    }
}

/// A WebSocket whose every write has a deadline.
#[derive(Debug)]
pub(crate) struct Socket {
    inner: WebSocket,
    write_timeout: Duration,
}

impl Socket {
    /// Wraps an upgraded socket; writes may wait at most `write_timeout`.
    pub(crate) fn new(inner: WebSocket, write_timeout: Duration) -> Self {
        Self {
            inner,
            write_timeout,
        }
    }

    /// The next message from the peer (pings are answered by tungstenite itself).
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        self.inner.recv().await
    }

    /// Runs one write (feeds and a flush) under the deadline.
    pub(crate) async fn write<F>(&mut self, write: F) -> Result<(), WriteFailed>
    where
        F: AsyncFnOnce(&mut WebSocket) -> Result<(), axum::Error>,
    {
        match tokio::time::timeout(self.write_timeout, write(&mut self.inner)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteFailed::Gone),
            Err(_) => Err(WriteFailed::TimedOut),
        }
    }

    /// Sends one message.
    pub(crate) async fn send(&mut self, message: Message) -> Result<(), WriteFailed> {
        self.write(async |ws: &mut WebSocket| ws.send(message).await)
            .await
    }

    /// Sends text frames in order, flushed once.
    pub(crate) async fn send_all(&mut self, frames: Vec<String>) -> Result<(), WriteFailed> {
        if frames.is_empty() {
            return Ok(());
        }
        self.write(async |ws: &mut WebSocket| {
            for frame in frames {
                ws.feed(Message::Text(frame.into())).await?;
            }
            ws.flush().await
        })
        .await
    }

    /// The peer sent a close frame: tungstenite has queued the reply (the peer's own
    /// code, or 1002 for a code no endpoint may send); write it out so the peer sees a
    /// clean close instead of 1006. The socket is done afterwards.
    pub(crate) async fn answer_close(&mut self) {
        let _ = self
            .write(async |ws: &mut WebSocket| ws.flush().await)
            .await;
    }

    /// Ends the connection with `reason`: sends the close frame (unless `Normal`: the
    /// peer is gone or closed itself), then waits at most `CLOSE_LINGER` for the
    /// peer's close or EOF before the socket is dropped.
    ///
    /// The close frame queues behind whatever is still unsent, so a slow consumer sees
    /// it once it reads again. A peer that stopped reading gets one attempt that does
    /// not wait (`WriteTimeout`: it is closed because writes do not get through), or
    /// at most the write deadline otherwise. Lingering matters when unread bytes
    /// remain: dropping at once could reset the TCP connection and lose the close
    /// frame in flight.
    pub(crate) async fn close(mut self, reason: CloseReason) {
        if reason == CloseReason::Normal {
            return;
        }
        let frame = CloseFrame {
            code: reason.code(),
            reason: Utf8Bytes::from_static(reason.text()),
        };
        let patience = match reason {
            CloseReason::WriteTimeout => Duration::ZERO,
            // Shutdown waits for every connection: a peer that does not take the
            // close frame promptly is not worth holding it up for.
            CloseReason::GoingAway => self.write_timeout.min(CLOSE_LINGER),
            _ => self.write_timeout,
        };
        let sent = tokio::time::timeout(patience, self.inner.send(Message::Close(Some(frame))));
        if !matches!(sent.await, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            loop {
                match self.inner.recv().await {
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => {}
                    // The stream may refuse to read after a protocol error: give the
                    // peer the rest of the linger to read our close.
                    Some(Err(_)) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
    }
}

/// How a failed read ends the connection (RFC 6455 section 7.4.1): a frame or message
/// over the limit 1009, invalid UTF-8 1007, any other protocol violation 1002; an I/O
/// error means the peer is gone. axum wraps tungstenite's error; the same tungstenite
/// version is a direct dependency, so it is matched by type rather than by message.
pub(crate) fn read_failure(error: &axum::Error) -> CloseReason {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::{Error as WsError, error::ProtocolError};
    tracing::debug!(%error, "WebSocket read failed");
    match error.source().and_then(|e| e.downcast_ref::<WsError>()) {
        // The TCP connection ended without a close frame: nobody left to tell.
        Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => CloseReason::Normal,
        Some(WsError::Capacity(_)) => CloseReason::MessageTooBig,
        Some(WsError::Utf8(_)) => CloseReason::InvalidPayload,
        Some(WsError::Protocol(_) | WsError::AttackAttempt) => CloseReason::ProtocolError,
        _ => CloseReason::Normal,
    }
}
