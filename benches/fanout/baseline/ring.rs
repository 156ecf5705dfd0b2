//! The `ring` baseline: one `tokio::sync::broadcast` channel of `QUEUE` frames that
//! every connection reads. A publish is one `send`, whatever the number of
//! subscribers, and a connection wakes for its next frame without any per-connection
//! queue: cheaper per delivery than `axum-raw`, so a stronger floor, but not the
//! design the shared tool measures against (`FANOUT_BASELINES=ring` runs it).
//!
//! A connection that falls `QUEUE` frames behind is dropped (the ring has moved on
//! without it), as tidings closes a slow consumer; the load generator counts the
//! missing deliveries.

use axum::{
    Router,
    body::Bytes,
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, Utf8Bytes, WebSocket},
    },
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use futures::SinkExt;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::{QUEUE, READ_BUFFER, SUBSCRIBED, frame_of};

#[derive(Clone)]
struct Hub {
    frames: broadcast::Sender<Utf8Bytes>,
    frame_len: usize,
}

/// `GET /ws` and `POST /publish` over one ring; frames padded to `frame_len`.
pub fn router(frame_len: usize) -> Router {
    let hub = Hub {
        frames: broadcast::channel(QUEUE).0,
        frame_len,
    };
    Router::new()
        .route("/ws", get(upgrade))
        .route("/publish", post(publish))
        .with_state(hub)
}

async fn publish(State(hub): State<Hub>, body: Bytes) -> StatusCode {
    let frame = frame_of(&body, hub.frame_len);
    // No subscriber is not an error: the load generator counts what arrives.
    let _ = hub.frames.send(frame);
    StatusCode::ACCEPTED
}

async fn upgrade(State(hub): State<Hub>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| connection(socket, hub.frames))
}

/// Subscribe handshake, then forward frames in batches until either side is done.
async fn connection(mut socket: WebSocket, hub: broadcast::Sender<Utf8Bytes>) {
    match socket.recv().await {
        Some(Ok(Message::Text(_))) => {}
        _ => return,
    }
    // Subscribed before the acknowledgement, so no frame published after it is missed.
    let mut frames = hub.subscribe();
    if socket.send(Message::text(SUBSCRIBED)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => {
                // Lagged (slow consumer) or closed: drop the connection; the load
                // generator counts the missing deliveries.
                let Ok(frame) = frame else { return };
                if write_batch(&mut socket, &mut frames, frame).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Feeds `first` and every frame already waiting, then flushes once.
async fn write_batch(
    socket: &mut WebSocket,
    frames: &mut broadcast::Receiver<Utf8Bytes>,
    first: Utf8Bytes,
) -> Result<(), axum::Error> {
    socket.feed(Message::Text(first)).await?;
    loop {
        match frames.try_recv() {
            Ok(frame) => socket.feed(Message::Text(frame)).await?,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => {
                return Err(axum::Error::new("slow consumer"));
            }
        }
    }
    socket.flush().await
}
