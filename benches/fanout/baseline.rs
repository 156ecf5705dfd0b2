//! The baseline server role: the broadcast server a competent engineer writes by hand
//! with axum, the floor tidings is compared against.
//!
//! `GET /ws`: the client sends one text frame (its subscription), gets
//! `{"type":"subscribed"}`, then every published frame. `POST /publish`: the body (the
//! event's JSON payload) is wrapped once into a frame, padded to `FANOUT_FRAME_LEN`
//! bytes so it is as long as tidings' frame for the same payload, and sent to every
//! connection through a `tokio::sync::broadcast` channel.
//!
//! What makes it competent rather than naive: a 4 KiB WebSocket read buffer (the
//! 128 KiB default becomes resident per connection), and feed-then-flush batching (a
//! connection writes every frame already waiting for it, then flushes once, instead
//! of one write syscall per frame). Like the reference server it runs on Tokio's
//! default multi-thread runtime, so pinned to one CPU it has one worker.
//!
//! Prints `listening <addr>`; ends at `quit` or the end of stdin.

use std::io::{BufRead, Write};

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

use super::wire;

/// Frames a connection may fall behind before it is dropped, as tidings' default
/// `send_queue_capacity` closes a slow consumer.
const QUEUE: usize = 1024;

#[derive(Clone)]
struct Hub {
    frames: broadcast::Sender<Utf8Bytes>,
    frame_len: usize,
}

/// Runs the baseline server until `quit` or the end of stdin.
pub fn main() {
    let frame_len = wire::env_usize("FANOUT_FRAME_LEN", 0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hub = Hub {
        frames: broadcast::channel(QUEUE).0,
        frame_len,
    };
    let app = Router::new()
        .route("/ws", get(upgrade))
        .route("/publish", post(publish))
        .with_state(hub);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}")
        .and_then(|()| out.flush())
        .expect("stdout");
    drop(out);
    for line in std::io::stdin().lock().lines() {
        if line.map_or(true, |l| l.trim() == "quit") {
            break;
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
}

async fn publish(State(hub): State<Hub>, body: Bytes) -> StatusCode {
    let frame = frame_of(&body, hub.frame_len);
    // No subscriber is not an error: the load generator counts what arrives.
    let _ = hub.frames.send(frame);
    StatusCode::ACCEPTED
}

/// `{"type":"event","topic":"todos","data":<payload>,"pad":"xx…"}`, `len` bytes long
/// when `len` leaves room for it.
fn frame_of(payload: &[u8], len: usize) -> Utf8Bytes {
    let payload = String::from_utf8_lossy(payload);
    let head = r#"{"type":"event","topic":"todos","data":"#;
    let pad_key = r#","pad":""#;
    let tail = r#""}"#;
    let pad = len.saturating_sub(head.len() + payload.len() + pad_key.len() + tail.len());
    let mut frame = String::with_capacity(len.max(head.len() + payload.len() + 16));
    frame.push_str(head);
    frame.push_str(&payload);
    frame.push_str(pad_key);
    frame.extend(std::iter::repeat_n('x', pad));
    frame.push_str(tail);
    Utf8Bytes::from(frame)
}

async fn upgrade(State(hub): State<Hub>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(4096)
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
    if socket
        .send(Message::text(r#"{"type":"subscribed"}"#))
        .await
        .is_err()
    {
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
