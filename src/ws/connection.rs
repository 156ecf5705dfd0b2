//! One task per WebSocket connection: handshake, then a loop over the socket, the
//! outbound queue, the deadlines and the close signals.
//!
//! Outbound frames are batched: everything queued is fed to the socket, then flushed
//! once, so a burst costs one write instead of one per frame.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use tokio::{sync::mpsc, time::Instant};

use super::{
    WsState,
    execute::Attached,
    session::{Session, SessionSettings},
    timers::{Due, Timers},
};
use crate::{
    auth::{Principal, unix_now},
    close::{CloseReason, Closer},
    hub::{Delivery, Receiver},
    limits::Slot,
    metrics::Metrics,
    protocol::{ClientFrame, ErrorCode, ServerFrame, parse_client_frame},
};

/// Deliveries written per flush at most, so one busy connection still reads its
/// socket regularly.
const MAX_BATCH: usize = 256;
/// How long a closed connection waits for the peer's close before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How long an error frame may take to send during the handshake.
const HANDSHAKE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a connection to its end. `token` came from the upgrade request (header or
/// allowed query parameter), if any.
pub(crate) async fn run(
    state: WsState,
    mut socket: WebSocket,
    token: Option<String>,
    slot: Result<Slot, CloseReason>,
) {
    let mut slot = match slot {
        Ok(slot) => slot,
        Err(reason) => return close(&mut socket, reason, HANDSHAKE_WRITE_TIMEOUT).await,
    };
    let metrics = state.metrics.clone();
    Metrics::inc(&metrics.connections);
    // Boxed futures keep the long-lived connection future small: their state is
    // only allocated while they run (memory per idle connection).
    let handshake = Box::pin(handshake(&state, &mut socket, token)).await;
    // A user who authenticated with the first frame is counted now; over the cap,
    // 4029 (the upgrade was already answered).
    let handshake = handshake.and_then(|(principal, reference)| match &principal.user_id {
        Some(user) => state
            .limits
            .slots
            .claim_user(&mut slot, user)
            .map(|()| (principal, reference))
            .map_err(|_| {
                Metrics::inc(&state.metrics.connections_refused);
                CloseReason::RateLimited
            }),
        None => Ok((principal, reference)),
    });
    if let Ok((principal, reference)) = handshake {
        Box::pin(serve(state, socket, principal, reference)).await;
    } else if let Err(reason) = handshake {
        close(&mut socket, reason, HANDSHAKE_WRITE_TIMEOUT).await;
    }
    Metrics::dec(&metrics.connections);
}

/// Waits for a valid token; on failure sends an `error` frame and returns the close.
async fn handshake(
    state: &WsState,
    socket: &mut WebSocket,
    token: Option<String>,
) -> Result<(Principal, Option<serde_json::Value>), CloseReason> {
    let auth = &state.config.auth;
    let (token, reference) = match token {
        Some(token) => (Some(token), None),
        None => {
            let deadline = tokio::time::sleep(auth.auth_timeout);
            tokio::pin!(deadline);
            loop {
                let message = tokio::select! {
                    () = &mut deadline => {
                        send_error(socket, None, "no auth frame before the auth timeout").await;
                        return Err(CloseReason::Unauthorized);
                    }
                    () = state.shutdown.cancelled() => return Err(CloseReason::GoingAway),
                    message = socket.recv() => message,
                };
                match message {
                    Some(Ok(Message::Text(text))) => match parse_client_frame(&text) {
                        Ok(ClientFrame::Auth { token, reference }) => break (token, reference),
                        _ => {
                            send_error(socket, None, "the first frame must be auth").await;
                            return Err(CloseReason::Unauthorized);
                        }
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(e)) if is_too_big(&e) => return Err(CloseReason::MessageTooBig),
                    Some(Ok(Message::Binary(_))) => {
                        send_error(socket, None, "the first frame must be auth").await;
                        return Err(CloseReason::Unauthorized);
                    }
                    // Closed or broken before authenticating: nothing to say.
                    _ => return Err(CloseReason::Normal),
                }
            }
        }
    };
    match token {
        Some(token) => match state.verifier.verify_fresh(&token).await {
            Ok(principal) => Ok((principal, reference)),
            Err(e) => {
                send_error(socket, reference, &e.to_string()).await;
                Err(CloseReason::Unauthorized)
            }
        },
        None if auth.allow_anonymous => Ok((Principal::anonymous(), reference)),
        None => {
            send_error(socket, reference, "anonymous connections are not allowed").await;
            Err(CloseReason::Unauthorized)
        }
    }
}

async fn send_error(socket: &mut WebSocket, reference: Option<serde_json::Value>, message: &str) {
    let frame = ServerFrame::error(reference, None, ErrorCode::Unauthorized, message);
    let _ = tokio::time::timeout(
        HANDSHAKE_WRITE_TIMEOUT,
        socket.send(Message::Text(frame.to_text().into())),
    )
    .await;
}

/// Whether a read failed because a frame or message exceeded the size limit. axum
/// wraps tungstenite's error; the same tungstenite version is a direct dependency, so
/// the wrapped error can be matched by type rather than by its message.
fn is_too_big(error: &axum::Error) -> bool {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error as WsError;
    error
        .source()
        .and_then(|e| e.downcast_ref::<WsError>())
        .is_some_and(|e| matches!(e, WsError::Capacity(_)))
}

/// Sends the close frame, then waits (at most `CLOSE_LINGER`) for the peer's close or
/// EOF before the socket is dropped. The close frame queues behind whatever is still
/// unsent, so a slow consumer sees it once it reads again; a peer that reads nothing
/// for `patience` is dead and is dropped without it. Lingering matters when unread
/// bytes remain (an oversized frame): dropping at once would reset the TCP connection
/// and the peer would lose the close frame in flight.
async fn close(socket: &mut WebSocket, reason: CloseReason, patience: Duration) {
    if reason == CloseReason::Normal {
        return;
    }
    let frame = CloseFrame {
        code: reason.code(),
        reason: Utf8Bytes::from_static(reason.text()),
    };
    if tokio::time::timeout(patience, socket.send(Message::Close(Some(frame))))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => {}
                // The stream may refuse to read after a protocol error (an oversized
                // frame): give the peer the rest of the linger to read our close.
                Some(Err(_)) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
}

/// The authenticated part of a connection.
async fn serve(
    state: WsState,
    mut socket: WebSocket,
    principal: Principal,
    reference: Option<serde_json::Value>,
) {
    let config = state.config.clone();
    let connection_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
    let principal = Arc::new(principal);
    let (queue, mut deliveries) = mpsc::channel::<Delivery>(config.connection.send_queue_capacity);
    let closer = Closer::default();
    let key = state.hub.connect(Receiver {
        id: connection_id.clone(),
        principal: principal.clone(),
        queue,
        closer: closer.clone(),
    });
    let mut timers = Timers::new(
        config.connection.ping_interval,
        config.connection.ping_timeout,
    );
    let expires_in = principal.expires_in(unix_now());
    timers.set_token(
        expires_in,
        config.auth.refresh_notice,
        config.auth.expiry_grace,
    );
    let welcome = ServerFrame::Welcome {
        connection_id: connection_id.to_string(),
        user_id: principal.user_id.as_deref().map(str::to_owned),
        expires_in,
        protocol: 1,
        reference,
    };
    let settings = SessionSettings::new(
        state.rules.clone(),
        state.verifier.clone(),
        &config.connection,
        state.limits.publish.clone(),
    );
    let session = Session::new(settings, principal);
    // From here on, however the connection ends (a panic included), the hub forgets
    // it and the subscription hooks hear of every subscription's end.
    let mut attached = Attached::new(&state, connection_id, key, session);
    let shutdown = state.shutdown.clone();

    let reason = if socket
        .send(Message::Text(welcome.to_text().into()))
        .await
        .is_err()
    {
        CloseReason::Normal
    } else {
        loop {
            // Unbiased on purpose: under a steady stream of deliveries a biased select
            // would never read the socket (pongs, client frames) or fire the timers.
            tokio::select! {
                reason = closer.closed() => break reason,
                () = shutdown.cancelled() => break CloseReason::GoingAway,
                first = deliveries.recv() => {
                    // The hub tells a receiver why before it drops its queue: that reason wins.
                    let Some(first) = first else { break closer.reason().unwrap_or(CloseReason::Normal) };
                    let write = Box::pin(write_batch(&mut socket, first, &mut deliveries));
                    // A stuck socket must not keep the close signals waiting.
                    let written = tokio::select! {
                        result = write => result,
                        reason = closer.closed() => {
                            drop(attached);
                            close(&mut socket, reason, config.connection.ping_timeout).await;
                            return;
                        }
                        () = shutdown.cancelled() => Ok(()),
                    };
                    if written.is_err() { break CloseReason::Normal; }
                }
                frames = attached.presence_frames() => match frames {
                    Ok(frames) => if send_all(&mut socket, frames).await.is_err() { break CloseReason::Normal; },
                    Err(reason) => break reason,
                },
                message = socket.recv() => {
                    timers.heard_from_peer();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            let effects = attached.session.handle_text(&text);
                            let outcome = Box::pin(attached.execute(effects, &mut timers)).await;
                            if send_all(&mut socket, outcome.frames).await.is_err() { break CloseReason::Normal; }
                            if let Some(reason) = outcome.close { break reason; }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let frame = ServerFrame::error(None, None, ErrorCode::BadRequest, "binary frames are not supported; send JSON text");
                            if send_all(&mut socket, vec![frame.to_text()]).await.is_err() { break CloseReason::Normal; }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break CloseReason::Normal,
                        Some(Err(e)) if is_too_big(&e) => break CloseReason::MessageTooBig,
                        Some(Err(_)) => break CloseReason::Normal,
                    }
                }
                () = tokio::time::sleep_until(timers.next()) => {
                    match timers.due(Instant::now()) {
                        Some(Due::Ping) if socket.send(Message::Ping(Default::default())).await.is_err() => {
                            break CloseReason::Normal;
                        }
                        Some(Due::Ping) => {}
                        Some(Due::PeerTimeout) => break CloseReason::PeerTimeout,
                        Some(Due::RefreshNotice) => {
                            let expires_in = attached.session.principal().expires_in(unix_now()).unwrap_or(0);
                            let frame = ServerFrame::RefreshRequired { expires_in };
                            if send_all(&mut socket, vec![frame.to_text()]).await.is_err() { break CloseReason::Normal; }
                        }
                        Some(Due::Expired) => break CloseReason::Unauthorized,
                        None => {}
                    }
                }
            }
        }
    };
    drop(attached);
    close(&mut socket, reason, config.connection.ping_timeout).await;
}

/// Feeds `first` and everything else already queued, then flushes once.
async fn write_batch(
    socket: &mut WebSocket,
    first: Delivery,
    deliveries: &mut mpsc::Receiver<Delivery>,
) -> Result<(), axum::Error> {
    socket.feed(event_message(&first)).await?;
    for _ in 1..MAX_BATCH {
        match deliveries.try_recv() {
            Ok(next) => socket.feed(event_message(&next)).await?,
            Err(_) => break,
        }
    }
    socket.flush().await
}

fn event_message(delivery: &Delivery) -> Message {
    // Frames are built from `serde_json` output, so they are always UTF-8.
    let frame = delivery.event.frame(&delivery.subs);
    Message::Text(Utf8Bytes::try_from(frame).unwrap_or_default())
}

async fn send_all(socket: &mut WebSocket, frames: Vec<String>) -> Result<(), axum::Error> {
    if frames.is_empty() {
        return Ok(());
    }
    for frame in frames {
        socket.feed(Message::Text(frame.into())).await?;
    }
    socket.flush().await
}
