//! One task per WebSocket connection: handshake, then a loop over the socket, the
//! deadlines and the close signals.
//!
//! Events do not pass through this task: the hub queues them on the connection's
//! `Outbound` and the node's writers write them. The task steps in only when its
//! socket does not take them at once (a slow peer), to write the rest under the write
//! deadline.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{
    WsState,
    execute::Attached,
    outbound::{DrainFailed, Outbound},
    session::{Effect, Session, SessionSettings},
    socket::{self, Socket, WriteFailed, read_failure},
    timers::{Due, Timers},
    upgrade::Upgraded101,
};
use crate::{
    auth::{Principal, unix_now},
    close::{CloseReason, Closer},
    hub::{Inbox, Receiver},
    limits::{
        Slot,
        gauge::{self, Counted},
    },
    metrics::Metrics,
    protocol::{ClientFrame, ErrorCode, ServerFrame, parse_client_frame},
};

/// Runs a connection to its end. `token` came from the upgrade request (header or
/// allowed query parameter), if any.
pub(crate) async fn run(
    state: WsState,
    stream: Upgraded101,
    token: Option<String>,
    slot: Result<Slot, CloseReason>,
) {
    let (mut socket, outbound) =
        socket::open(stream, state.writers.assign(), &state.config.connection).await;
    let mut slot = match slot {
        Ok(slot) => slot,
        Err(reason) => return socket.close(reason).await,
    };
    // Held until this function returns or unwinds: a panic cannot leave it counted.
    let _open = Counted::new(&state.metrics, gauge::websockets);
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
    match handshake {
        Ok((principal, reference)) => {
            Box::pin(serve(state, socket, outbound, principal, reference)).await;
        }
        Err(reason) => {
            count(&state.metrics, reason);
            socket.close(reason).await;
        }
    }
}

/// Counts the closes an operator watches for in `/metrics`.
fn count(metrics: &Metrics, reason: CloseReason) {
    match reason {
        CloseReason::WriteTimeout => Metrics::inc(&metrics.write_timeouts),
        CloseReason::ProtocolError | CloseReason::InvalidPayload | CloseReason::MessageTooBig => {
            Metrics::inc(&metrics.protocol_errors);
        }
        _ => {}
    }
}

/// Waits for a valid token; on failure sends an `error` frame and returns the close.
async fn handshake(
    state: &WsState,
    socket: &mut Socket,
    token: Option<String>,
) -> Result<(Principal, Option<serde_json::Value>), CloseReason> {
    let auth = &state.config.auth;
    let (token, reference) = match token {
        Some(token) => (Some(token), None),
        None => {
            let deadline = tokio::time::sleep(auth.auth_timeout);
            tokio::pin!(deadline);
            let mut control_frames = 0u32;
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
                    // tungstenite queues a pong for every ping, even while the peer
                    // does not read: before auth, control frames get a budget.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        control_frames += 1;
                        if control_frames > state.config.connection.messages_per_second {
                            return Err(CloseReason::RateLimited);
                        }
                    }
                    Some(Ok(Message::Binary(_) | Message::Frame(_))) => {
                        send_error(socket, None, "the first frame must be auth").await;
                        return Err(CloseReason::Unauthorized);
                    }
                    Some(Ok(Message::Close(_))) => {
                        socket.answer_close().await;
                        return Err(CloseReason::Normal);
                    }
                    Some(Err(e)) => return Err(read_failure(&e)),
                    // The socket ended without a close frame: nothing to say.
                    None => return Err(CloseReason::Normal),
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

async fn send_error(socket: &mut Socket, reference: Option<serde_json::Value>, message: &str) {
    let frame = ServerFrame::error(reference, None, ErrorCode::Unauthorized, message);
    let _ = socket.send_all(vec![frame.to_text()]).await;
}

/// The authenticated part of a connection.
async fn serve(
    state: WsState,
    mut socket: Socket,
    outbound: Arc<Outbound>,
    principal: Principal,
    reference: Option<serde_json::Value>,
) {
    let config = state.config.clone();
    let connection_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
    let principal = Arc::new(principal);
    let closer = Closer::default();
    let key = state.hub.connect(Receiver {
        id: connection_id.clone(),
        principal: principal.clone(),
        inbox: Inbox::Socket(outbound.clone()),
        closer: closer.clone(),
    });
    let write_timeout = config.connection.write_timeout;
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
    if let Some(age) = config.connection.max_connection_age {
        timers.set_max_age(jittered(age));
    }
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
        state.handlers.clone(),
    );
    let session = Session::new(settings, principal);
    // From here on, however the connection ends (a panic included), the hub forgets
    // it and the subscription hooks hear of every subscription's end.
    let mut attached = Attached::new(&state, connection_id, key, session);
    let shutdown = state.shutdown.clone();

    let reason = match socket.send_all(vec![welcome.to_text()]).await {
        Err(failed) => failed.reason(),
        Ok(()) => loop {
            // Unbiased on purpose: under a steady stream of deliveries a biased select
            // would never read the socket (pongs, client frames) or fire the timers.
            // Every write below is under the write deadline (`Socket`), so a peer that
            // stops reading cannot hold this loop: the timers, the closer and
            // shutdown are back in charge within `connection.write_timeout`.
            let step = tokio::select! {
                reason = closer.closed() => Err(reason),
                () = shutdown.cancelled() => Err(CloseReason::GoingAway),
                // Events the socket did not take at once: written from here, under
                // the write deadline (which `drain` keeps from when they were
                // parked, however often this loop turns meanwhile).
                drained = outbound.drain(write_timeout) => drained.map_err(|failed| match failed {
                    DrainFailed::Gone => CloseReason::Normal,
                    DrainFailed::TimedOut => CloseReason::WriteTimeout,
                }),
                // Presence changes, and the answers of handler calls (tasks of their
                // own), for this connection.
                frames = attached.side_frames() => match frames {
                    Ok(frames) => socket.send_all(frames).await.map_err(WriteFailed::reason),
                    Err(reason) => Err(reason),
                },
                message = socket.recv() => {
                    timers.heard_from_peer();
                    let answered = on_message(message, &mut socket, &outbound, &mut attached, &mut timers);
                    Box::pin(answered).await
                }
                () = tokio::time::sleep_until(timers.next()) => {
                    Box::pin(on_deadline(timers.due(Instant::now()), &mut socket, &attached)).await
                }
            };
            if let Err(reason) = step {
                break reason;
            }
        },
    };
    drop(attached);
    count(&state.metrics, reason);
    socket.close(reason).await;
}

/// Handles what the peer sent; `Err` ends the connection with that reason.
async fn on_message(
    message: Option<Result<Message, WsError>>,
    socket: &mut Socket,
    outbound: &Outbound,
    attached: &mut Attached,
    timers: &mut Timers,
) -> Result<(), CloseReason> {
    let effects = match message {
        Some(Ok(Message::Text(text))) => attached.session.handle_text(&text),
        // Every frame counts against the rate; binary ones are also misuse.
        Some(Ok(Message::Binary(_) | Message::Frame(_))) => attached.session.handle_binary(),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => attached.session.handle_control(),
        Some(Ok(Message::Close(_))) => {
            socket.answer_close().await;
            return Err(CloseReason::Normal);
        }
        Some(Err(e)) => return Err(read_failure(&e)),
        None => return Err(CloseReason::Normal),
    };
    if effects.is_empty() {
        return Ok(());
    }
    if let [Effect::Close(reason)] = effects.as_slice() {
        return Err(*reason);
    }
    // Events that arrive meanwhile wait behind the answer: a `subscribed` and its
    // replay come before the live events after them.
    outbound.hold();
    let outcome = Box::pin(attached.execute(effects, timers)).await;
    let sent = socket.send_all(outcome.frames).await;
    outbound.release();
    sent.map_err(WriteFailed::reason)?;
    outcome.close.map_or(Ok(()), Err)
}

/// Does what a passed deadline asks; `Err` ends the connection with that reason.
async fn on_deadline(
    due: Option<Due>,
    socket: &mut Socket,
    attached: &Attached,
) -> Result<(), CloseReason> {
    let sent = match due {
        None => return Ok(()),
        Some(Due::Ping) => socket.send(Message::Ping(Default::default())).await,
        Some(Due::PeerTimeout) => return Err(CloseReason::PeerTimeout),
        Some(Due::RefreshNotice) => {
            let principal = attached.session.principal();
            let expires_in = principal.expires_in(unix_now()).unwrap_or(0);
            let frame = ServerFrame::RefreshRequired { expires_in };
            socket.send_all(vec![frame.to_text()]).await
        }
        Some(Due::Expired) => return Err(CloseReason::Unauthorized),
        Some(Due::MaxAge) => return Err(CloseReason::MaxAge),
    };
    sent.map_err(WriteFailed::reason)
}

/// `age` shortened by up to 10% at random, so connections opened together (after a
/// deploy) do not all reach it at once.
fn jittered(age: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u32;
    let tenth = age / 10;
    age.saturating_sub(tenth.mul_f64(f64::from(random) / f64::from(u32::MAX)))
}
