//! The server's side of one WebSocket, as every WebSocket endpoint of the crate uses
//! it (the gateway's connections and the conformance echo): the upgrade settings, a
//! deadline on every write, read errors mapped to the close code RFC 6455 asks for,
//! and both directions of the close handshake.

use std::{sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Error as WsError, Message, Utf8Bytes,
        error::ProtocolError,
        protocol::{CloseFrame, Role, WebSocketConfig},
    },
};

use super::{
    outbound::{Outbound, OutboundIo, QueueLimits},
    upgrade::Upgraded101,
    writers::Writer,
};
use crate::{close::CloseReason, config::ConnectionConfig};

/// The WebSocket protocol over a connection's outbound queue.
pub(crate) type WebSocket = WebSocketStream<OutboundIo>;

/// How long a closed connection waits for the peer's close before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Starts the WebSocket protocol on an upgraded stream with the gateway's settings
/// (buffer sizes, message and frame limits), its outbound side written by `writer`.
/// Every WebSocket route goes through here, so they cannot differ.
pub(crate) async fn open(
    stream: Upgraded101,
    writer: Arc<Writer>,
    config: &ConnectionConfig,
) -> (Socket, Arc<Outbound>) {
    let outbound = Arc::new(Outbound::new(
        Box::new(stream),
        writer,
        QueueLimits {
            frames: config.send_queue_capacity,
            bytes: config.send_queue_bytes,
        },
    ));
    let settings = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let ws = WebSocketStream::from_raw_socket(
        OutboundIo(outbound.clone()),
        Role::Server,
        Some(settings),
    )
    .await;
    (Socket::new(ws, config.write_timeout), outbound)
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
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        self.inner.next().await
    }

    /// Runs one write (feeds and a flush) under the deadline.
    pub(crate) async fn write<F>(&mut self, write: F) -> Result<(), WriteFailed>
    where
        F: AsyncFnOnce(&mut WebSocket) -> Result<(), WsError>,
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
    /// frame in flight. The socket is done afterwards.
    pub(crate) async fn close(&mut self, reason: CloseReason) {
        if reason == CloseReason::Normal {
            return;
        }
        let frame = CloseFrame {
            code: reason.code().into(),
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
                match self.inner.next().await {
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
/// error means the peer is gone.
pub(crate) fn read_failure(error: &WsError) -> CloseReason {
    tracing::debug!(%error, "WebSocket read failed");
    match error {
        // The TCP connection ended without a close frame: nobody left to tell.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => CloseReason::Normal,
        WsError::Capacity(_) => CloseReason::MessageTooBig,
        WsError::Utf8(_) => CloseReason::InvalidPayload,
        WsError::Protocol(_) | WsError::AttackAttempt => CloseReason::ProtocolError,
        _ => CloseReason::Normal,
    }
}
