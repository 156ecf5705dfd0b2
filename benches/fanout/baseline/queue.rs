//! The `axum-raw` baseline, the default: per delivery it does what the shared tool's
//! `peers/axum-raw` does, so this bench's ratios can agree with those of
//! `../shared/tools/fanout-compare.sh` within noise.
//!
//! Each connection owns a bounded `mpsc` queue of `QUEUE` frames. A registry maps a
//! connection id to the sending half of its queue; a connection is registered when
//! its subscription frame arrives and removed when it ends. `POST /publish` builds
//! the frame once and, under the registry's lock, `try_send`s a clone (a reference
//! count, not a copy) to every registered queue. A full queue drops that delivery, as
//! `axum-raw` does, and the reply counts it; the load generator counts the missing
//! deliveries.
//!
//! The socket is `split()` into halves, and one task per connection `select!`s
//! between reading the socket and its queue: on a frame it feeds that frame and
//! every frame already queued, then flushes once.
//!
//! What this costs over the `ring` design, and why it is the default anyway: a
//! publish walks every connection (one `try_send`, possibly one wake-up, each), and
//! every socket read and write goes through the lock the split halves share. That is
//! what `axum-raw` pays, and a baseline that pays less would make this bench disagree
//! with the shared tool.
//!
//! `axum-raw` keeps a registry per topic; the bench has one topic, so this one has
//! a single registry and needs no topic parsing.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, Utf8Bytes, WebSocket},
    },
    response::Response,
    routing::{get, post},
};
use futures::{SinkExt, StreamExt, stream::SplitSink};
use tokio::sync::mpsc;

use super::{QUEUE, READ_BUFFER, SUBSCRIBED, frame_of};

/// The subscribers and what a frame is padded to.
struct Hub {
    /// Connection id -> the sending half of its queue.
    subscribers: Mutex<HashMap<u64, mpsc::Sender<Utf8Bytes>>>,
    next_id: AtomicU64,
    frame_len: usize,
}

impl Hub {
    /// The registry. A poisoned lock means a task panicked while holding it; no
    /// critical section here leaves the map half-changed, so it is still sound.
    fn subscribers(&self) -> MutexGuard<'_, HashMap<u64, mpsc::Sender<Utf8Bytes>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `GET /ws` and `POST /publish` over per-connection queues; frames padded to
/// `frame_len`.
pub fn router(frame_len: usize) -> Router {
    let hub = Hub {
        subscribers: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        frame_len,
    };
    Router::new()
        .route("/ws", get(upgrade))
        .route("/publish", post(publish))
        .with_state(Arc::new(hub))
}

/// Hands one shared frame to every subscriber's queue; answers
/// `{"delivered":N,"dropped":D}`, as `axum-raw` does.
async fn publish(State(hub): State<Arc<Hub>>, body: Bytes) -> String {
    let frame = frame_of(&body, hub.frame_len);
    let (mut delivered, mut dropped) = (0_u64, 0_u64);
    for queue in hub.subscribers().values() {
        // Full (a slow consumer) or closed (a connection that is ending): drop this
        // delivery and go on, never wait for one connection.
        match queue.try_send(frame.clone()) {
            Ok(()) => delivered += 1,
            Err(_) => dropped += 1,
        }
    }
    format!(r#"{{"delivered":{delivered},"dropped":{dropped}}}"#)
}

async fn upgrade(State(hub): State<Arc<Hub>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| connection(socket, hub))
}

/// One task per connection: the subscription, then frames from the queue until
/// either side is done; unregistered at the end.
async fn connection(socket: WebSocket, hub: Arc<Hub>) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (queue, mut frames) = mpsc::channel::<Utf8Bytes>(QUEUE);
    let mut subscribed = false;
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(_))) if !subscribed => {
                    // Registered before the acknowledgement, so no frame published
                    // after it is missed.
                    hub.subscribers().insert(id, queue.clone());
                    subscribed = true;
                    if sink.send(Message::text(SUBSCRIBED)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            frame = frames.recv() => {
                // Never `None` in practice: this task holds a sender of its own queue.
                let Some(frame) = frame else { break };
                if write_batch(&mut sink, &mut frames, frame).await.is_err() {
                    break;
                }
            }
        }
    }
    hub.subscribers().remove(&id);
}

/// Feeds `first` and every frame already queued, then flushes once.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    frames: &mut mpsc::Receiver<Utf8Bytes>,
    first: Utf8Bytes,
) -> Result<(), axum::Error> {
    sink.feed(Message::Text(first)).await?;
    while let Ok(frame) = frames.try_recv() {
        sink.feed(Message::Text(frame)).await?;
    }
    sink.flush().await
}
