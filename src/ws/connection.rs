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
    hub::{Inbox, Receiver, ReceiverKind},
    limits::{
        Slot,
        gauge::{self, Counted},
    },
    metrics::Metrics,
    protocol::{ClientFrame, ErrorCode, ServerFrame, parse_client_frame},
};

/// Runs a connection to its end. `token` came from the upgrade request (header or
/// allowed query parameter), if any.
///
/// The two phases are separate boxed futures so an idle connection holds only the
/// second: the opening (handshake, authentication) needs several kB of future state
/// that would otherwise stay allocated for the connection's whole life.
pub(crate) async fn run(
    state: WsState,
    stream: Upgraded101,
    token: Option<String>,
    slot: Result<Slot, CloseReason>,
) {
    // Each future is boxed in a statement of its own: a value moved into a box in
    // the statement that awaits it would still take room in this future.
    let opening = Box::pin(open(state, stream, token, slot));
    let serving = match opening.await {
        Some(opened) => Box::pin(serve(Box::new(attach(opened)))),
        None => return,
    };
    serving.await;
}

/// An authenticated connection, ready to serve.
struct Opened {
    state: WsState,
    socket: Socket,
    outbound: Arc<Outbound>,
    principal: Principal,
    reference: Option<serde_json::Value>,
    /// Held until the connection ends (the connection caps).
    _slot: Slot,
    /// Held until the connection ends or unwinds: a panic cannot leave it counted.
    _open: Counted,
}

/// Starts the WebSocket protocol and authenticates the peer; `None` if the
/// connection ended there (it was refused or closed, and told why).
async fn open(
    state: WsState,
    stream: Upgraded101,
    token: Option<String>,
    slot: Result<Slot, CloseReason>,
) -> Option<Opened> {
    let opened = socket::open(stream, state.writers.assign(), &state.config.connection);
    let (mut socket, outbound) = Box::pin(opened).await;
    let mut slot = match slot {
        Ok(slot) => slot,
        Err(reason) => {
            Box::pin(socket.close(reason)).await;
            return None;
        }
    };
    let open = Counted::new(&state.metrics, gauge::websockets);
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
        Ok((principal, reference)) => Some(Opened {
            state,
            socket,
            outbound,
            principal,
            reference,
            _slot: slot,
            _open: open,
        }),
        Err(reason) => {
            count(&state.metrics, reason);
            Box::pin(socket.close(reason)).await;
            None
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

/// An authenticated connection registered with the hub: everything its loop works
/// with. [`serve`] gets it boxed and borrows its fields rather than taking it apart:
/// an async fn keeps a by-value argument twice (as passed, and as its local), so this
/// way the fields are stored once (memory per idle connection).
struct Connection {
    metrics: Arc<Metrics>,
    socket: Socket,
    outbound: Arc<Outbound>,
    closer: Closer,
    timers: Timers,
    /// Taken out (detaching from the hub) before the close frame is written.
    attached: Option<Attached>,
    shutdown: tokio_util::sync::CancellationToken,
    write_timeout: std::time::Duration,
    welcome: String,
    _slot: Slot,
    _open: Counted,
}

/// Registers an authenticated connection with the hub and sets its deadlines.
fn attach(opened: Opened) -> Connection {
    let Opened {
        state,
        socket,
        outbound,
        principal,
        reference,
        _slot,
        _open,
    } = opened;
    let config = &state.config;
    let connection_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
    let principal = Arc::new(principal);
    let closer = Closer::default();
    // In the shard its writer runs, which then both fans out to it and writes it.
    let receiver = Receiver {
        id: connection_id.clone(),
        principal: principal.clone(),
        inbox: Inbox::Socket(outbound.clone()),
        closer: closer.clone(),
    };
    let key = state
        .hub
        .connect_to(outbound.shard(), receiver, ReceiverKind::WebSocket);
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
    Connection {
        metrics: state.metrics.clone(),
        socket,
        outbound,
        closer,
        timers,
        // From here on, however the connection ends (a panic included), the hub
        // forgets it and the subscription hooks hear of every subscription's end.
        attached: Some(Attached::new(&state, connection_id, key, session)),
        shutdown: state.shutdown.clone(),
        write_timeout: config.connection.write_timeout,
        welcome: welcome.to_text(),
        _slot,
        _open,
    }
}

/// The authenticated part of a connection.
async fn serve(mut connection: Box<Connection>) {
    let Connection {
        metrics,
        socket,
        outbound,
        closer,
        timers,
        attached,
        shutdown,
        write_timeout,
        welcome,
        ..
    } = &mut *connection;
    let Some(live) = attached else {
        return;
    };
    let welcomed = Box::pin(socket.send_all(vec![std::mem::take(welcome)]));
    let reason = match welcomed.await {
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
                drained = outbound.drain(*write_timeout) => drained.map_err(|failed| match failed {
                    DrainFailed::Gone => CloseReason::Normal,
                    DrainFailed::TimedOut => CloseReason::WriteTimeout,
                }),
                // Presence changes, and the answers of handler calls (tasks of their
                // own), for this connection.
                frames = live.side_frames() => match frames {
                    Ok(frames) => {
                        let sent = Box::pin(socket.send_all(frames));
                        sent.await.map_err(WriteFailed::reason)
                    }
                    Err(reason) => Err(reason),
                },
                message = socket.recv() => {
                    timers.heard_from_peer();
                    let answered = Box::pin(on_message(message, socket, outbound, live, timers));
                    answered.await
                }
                () = tokio::time::sleep_until(timers.next()) => {
                    let done = Box::pin(on_deadline(timers.due(Instant::now()), socket, live));
                    done.await
                }
            };
            if let Err(reason) = step {
                break reason;
            }
        },
    };
    *attached = None;
    count(metrics, reason);
    let closing = Box::pin(socket.close(reason));
    closing.await;
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
