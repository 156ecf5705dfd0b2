//! An echo endpoint for WebSocket conformance tests (the Autobahn suite, run by
//! `scripts/autobahn`): it sends every text and binary message back. It uses the
//! gateway's own socket code (`socket::configure`, `Socket`'s write deadlines, close
//! handshake and read-error mapping), so the suite tests what clients of
//! `/realtime/subscribe` get; only the JSON session is left out.
//!
//! `Realtime::router` never mounts it: a test harness does, through
//! `tidings::__private::echo_router`.

use std::sync::Arc;

use axum::{Router, extract::State, response::Response, routing::get};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Writers,
    socket::{self, Socket, WriteFailed, read_failure},
    upgrade::Upgrade,
};
use crate::{close::CloseReason, config::ConnectionConfig};

#[derive(Debug, Clone)]
struct EchoState {
    config: Arc<ConnectionConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    writers: Arc<Writers>,
}

/// A router with the echo endpoint at `path`, using `config`'s WebSocket settings.
/// Its connections end with 1001 when `shutdown` is cancelled.
pub fn echo_router(path: &str, config: ConnectionConfig, shutdown: CancellationToken) -> Router {
    let tasks = TaskTracker::new();
    let state = EchoState {
        config: Arc::new(config),
        writers: Arc::new(Writers::new(tasks.clone(), &shutdown)),
        shutdown,
        tasks,
    };
    Router::new().route(path, get(upgrade)).with_state(state)
}

async fn upgrade(State(state): State<EchoState>, upgrade: Upgrade) -> Response {
    let tasks = state.tasks.clone();
    upgrade.on_upgrade(move |stream| {
        tasks.track_future(async move {
            let (socket, _) = socket::open(stream, state.writers.assign(), &state.config).await;
            echo(socket, state.shutdown).await;
        })
    })
}

async fn echo(mut socket: Socket, shutdown: CancellationToken) {
    let reason = loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break CloseReason::GoingAway,
            message = socket.recv() => message,
        };
        let echoed = match message {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                socket.send(message).await
            }
            // Raw frames are never what a read returns.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
            Some(Ok(Message::Close(_))) => {
                socket.answer_close().await;
                break CloseReason::Normal;
            }
            Some(Err(e)) => break read_failure(&e),
            None => break CloseReason::Normal,
        };
        if let Err(failed) = echoed {
            break WriteFailed::reason(failed);
        }
    };
    socket.close(reason).await;
}
