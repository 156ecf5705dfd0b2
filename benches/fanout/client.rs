//! The load generator role: N WebSocket subscribers and one HTTP publisher over
//! loopback, on a one-worker runtime (the orchestrator pins it to a CPU of its own).
//!
//! Each subscriber handshakes (tidings: `auth`, `welcome`, `subscribe todos:*`,
//! `subscribed`; baseline: one frame and its reply), then finds the event's sequence
//! number and publish time in every frame (`marker.rs`) and records the delivery.
//!
//! Control lines in: `run <max|fixed|burst>` (warm up, then measure; replies
//! `measuring` when the measured publishing starts and `result <json>` after the
//! drain), `quit`. In burst mode the subscribers stop reading before `measuring`, and
//! read again, to drain, once the orchestrator says `resume`.
//! First line out: `ready <ok> <failed> <setup ms>`.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin},
    net::{TcpSocket, TcpStream},
    sync::Semaphore,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use super::{
    marker,
    publisher::{Published, Publisher},
    settings::{Mode, Settings},
    tally::Tally,
    wire::{self, Kind, PATTERN, SECRET},
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The orchestrator's control lines.
type Control = Lines<BufReader<Stdin>>;

/// The share of a socket's receive buffer (as the kernel reports it) a burst may fill
/// while its reader does not read: 3/8, well under the half or so of it that holds
/// data. With Linux's default buffer of 128 KiB that is 48 KiB.
const BURST_SHARE_OF_BUFFER: (u64, u64) = (3, 8);

/// Handshakes in flight: a burst of 10,000 SYNs would overflow the listener's backlog
/// and turn the setup into a retransmission benchmark.
const CONNECT_PARALLEL: usize = 64;

/// Runs the client role until `quit`.
pub fn main() {
    let kind = Kind::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(kind, Settings::from_env(true)));
    // Sockets are dropped with the runtime; the server sees EOF, which is all it needs.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn run(kind: Kind, settings: Settings) {
    let addr = wire::env_required("FANOUT_ADDR");
    // Burst phases: the receive buffer each subscriber asks for before it connects.
    let receive_buffer = wire::env_usize("FANOUT_CLIENT_RCVBUF", 0);
    let tally = Arc::new(Tally::new());
    connect_all(kind, &addr, receive_buffer, &settings, &tally).await;
    let mut publisher = Publisher::new(
        kind,
        &addr,
        settings.payload,
        tally.clone(),
        settings.timeout,
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (command, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match command {
            "run" => {
                let mode = Mode::parse(rest.trim());
                let result = match mode {
                    Mode::Burst => burst(&settings, &mut publisher, &tally, &mut lines).await,
                    _ => measure(mode, &settings, &mut publisher, &tally).await,
                };
                say(&format!("result {result}")).await;
            }
            "quit" => break,
            other => panic!("unknown client command {other:?}"),
        }
    }
}

/// Opens every connection, at most `CONNECT_PARALLEL` handshakes at a time, and says
/// `ready` once each is subscribed or has failed.
async fn connect_all(
    kind: Kind,
    addr: &str,
    receive_buffer: usize,
    settings: &Settings,
    tally: &Arc<Tally>,
) {
    let url = match kind {
        Kind::Tidings => format!("ws://{addr}/realtime/subscribe"),
        Kind::Baseline(_) => format!("ws://{addr}/ws"),
    };
    // One subscriber token for every connection, as `fanout-compare.sh` does.
    let token = subscriber_token();
    let addr: SocketAddr = addr.parse().expect("FANOUT_ADDR is host:port");
    let permits = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let setup = Instant::now();
    for _ in 0..settings.connections {
        let (tally, permits, url, token) =
            (tally.clone(), permits.clone(), url.clone(), token.clone());
        let timeout = settings.timeout;
        tokio::spawn(async move {
            let permit = permits.acquire_owned().await.expect("semaphore");
            let opened = tokio::time::timeout(
                timeout,
                open(&url, addr, kind, &token, receive_buffer, &tally),
            )
            .await;
            drop(permit);
            match opened {
                Ok(Ok(socket)) => {
                    tally.live.fetch_add(1, Relaxed);
                    tally.ready.fetch_add(1, Relaxed);
                    let why = receive(socket, &tally).await;
                    tally.live.fetch_sub(1, Relaxed);
                    // One subscriber fewer may complete the event the publisher waits for.
                    tally.completed.notify_waiters();
                    tally.end(why);
                }
                Ok(Err(e)) => {
                    tally.failed.fetch_add(1, Relaxed);
                    tally.end(format!("setup: {e}"));
                }
                Err(_) => {
                    tally.failed.fetch_add(1, Relaxed);
                    tally.end("setup: timed out".to_owned());
                }
            }
        });
    }
    let deadline = Instant::now() + settings.timeout * 2;
    while tally.ready.load(Relaxed) + tally.failed.load(Relaxed) < settings.connections
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    say(&format!(
        "ready {} {} {}",
        tally.ready.load(Relaxed),
        tally.failed.load(Relaxed),
        setup.elapsed().as_millis()
    ))
    .await;
}

/// One phase: unmeasured warm-up, the measured publishing, then the drain; returns
/// the phase's figures as a JSON object.
async fn measure(
    mode: Mode,
    settings: &Settings,
    publisher: &mut Publisher,
    tally: &Tally,
) -> Value {
    if settings.warmup_secs > 0.0 {
        publish(mode, settings, publisher, settings.warmup_secs).await;
    }
    let live = tally.live.load(Relaxed) as u64;
    let first_seq = publisher.next_seq();
    tally.measure_from(first_seq);
    say("measuring").await;
    let started = tally.now_micros();
    let published = publish(mode, settings, publisher, settings.secs(mode)).await;
    let publishing_s = (tally.now_micros() - started) as f64 / 1e6;
    let expected = published.ok * live;
    drain(tally, expected, settings.timeout).await;
    let mut result = outcome(mode, live, published, publishing_s, tally);
    let received = tally.received.load(Relaxed);
    let last = tally.last_receive.load(Relaxed);
    let samples = tally.take_samples().sorted();
    let window_s = last.saturating_sub(started) as f64 / 1e6;
    result["first_publish_to_last_delivery_s"] = json!(window_s);
    result["deliveries_per_sec"] = json!(if window_s > 0.0 {
        received as f64 / window_s
    } else {
        0.0
    });
    result["lat_p50_ms"] = json!(samples.quantile_ms(0.5));
    result["lat_p99_ms"] = json!(samples.quantile_ms(0.99));
    result["lat_max_ms"] = json!(samples.quantile_ms(1.0));
    result["cdf_ms"] = json!(samples.cdf_ms());
    result
}

/// What every mode reports once the deliveries are drained: what was published to
/// `live` subscribers, what arrived, the frame size and how connections ended.
fn outcome(mode: Mode, live: u64, published: Published, publishing_s: f64, tally: &Tally) -> Value {
    let frames = tally.frames.load(Relaxed).max(1);
    json!({
        "mode": mode.name(),
        "live": live,
        "published": published.ok,
        "publish_errors": published.errors,
        "stalls": published.stalls,
        "publishing_s": publishing_s,
        "expected": published.ok * live,
        "received": tally.received.load(Relaxed),
        "frame_bytes": tally.frame_bytes.load(Relaxed) as f64 / frames as f64,
        "ends": tally.ends(),
    })
}

/// A burst: unmeasured warm-up with the subscribers reading, then they stop reading,
/// `burst_events` events go out at once, and after the orchestrator's `resume` (the
/// server has gone quiet) they drain them. The orchestrator times the server; this
/// side checks that every due delivery arrived.
async fn burst(
    settings: &Settings,
    publisher: &mut Publisher,
    tally: &Tally,
    control: &mut Control,
) -> Value {
    if settings.warmup_secs > 0.0 {
        publish(Mode::Max, settings, publisher, settings.warmup_secs).await;
    }
    // What each subscriber's socket must hold (frame sizes from the warm-up).
    let frame = tally.frame_bytes.load(Relaxed) / tally.frames.load(Relaxed).max(1);
    let share = frame.max(1) * settings.burst_events as u64;
    let (part, whole) = BURST_SHARE_OF_BUFFER;
    let share_max = tally.receive_buffer.load(Relaxed) * part / whole;
    assert!(
        share <= share_max,
        "a burst of {} events of {frame} bytes is {share} bytes per subscriber, more \
         than its socket takes unread ({share_max}): the server would stall on full \
         sockets and the figure would be wrong; lower FANOUT_BURST_EVENTS or raise \
         FANOUT_BURST_RCVBUF (within net.core.rmem_max)",
        settings.burst_events
    );
    let live = tally.live.load(Relaxed);
    tally.pause.send_replace(true);
    let deadline = Instant::now() + settings.timeout;
    while tally.paused.load(Relaxed) < tally.live.load(Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Fewer means readers took part in the figure: the phase then fails (`paused`).
    let paused = tally.paused.load(Relaxed);
    let first_seq = publisher.next_seq();
    tally.measure_from(first_seq);
    say("measuring").await;
    let started = tally.now_micros();
    let published = publish(Mode::Burst, settings, publisher, settings.secs(Mode::Burst)).await;
    let publishing_s = (tally.now_micros() - started) as f64 / 1e6;
    match control.next_line().await {
        Ok(Some(line)) if line == "resume" => {}
        other => panic!("expected resume from the orchestrator, got {other:?}"),
    }
    tally.pause.send_replace(false);
    let live = live as u64;
    drain(tally, published.ok * live, settings.timeout).await;
    let mut result = outcome(Mode::Burst, live, published, publishing_s, tally);
    tally.take_samples();
    result["paused"] = json!(paused);
    result
}

async fn publish(
    mode: Mode,
    settings: &Settings,
    publisher: &mut Publisher,
    secs: f64,
) -> Published {
    match mode {
        Mode::Max => publisher.closed_loop(settings.window, secs).await,
        Mode::Fixed => publisher.fixed_rate(settings.events_per_sec(), secs).await,
        Mode::Burst => {
            publisher
                .burst(settings.burst_events, settings.window)
                .await
        }
    }
}

/// Waits until the due deliveries arrived, or nothing arrived for `timeout`.
async fn drain(tally: &Tally, expected: u64, timeout: Duration) {
    let mut seen = tally.received.load(Relaxed);
    let mut progress = Instant::now();
    while tally.received.load(Relaxed) < expected && progress.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = tally.received.load(Relaxed);
        if now != seen {
            (seen, progress) = (now, Instant::now());
        }
    }
}

async fn say(line: &str) {
    let mut out = tokio::io::stdout();
    out.write_all(format!("{line}\n").as_bytes())
        .await
        .expect("stdout");
    out.flush().await.expect("stdout");
}

fn subscriber_token() -> String {
    let claims = json!({"sub": "bench", "exp": tidings::__private::unix_now() + 24 * 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign the subscriber token")
}

/// Connects and completes the handshake of `kind`. A `receive_buffer` above 0 is
/// asked for before connecting, when the window it allows is agreed on.
async fn open(
    url: &str,
    addr: SocketAddr,
    kind: Kind,
    token: &str,
    receive_buffer: usize,
    tally: &Tally,
) -> Result<Socket, String> {
    let tcp = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if receive_buffer > 0 {
        tcp.set_recv_buffer_size(u32::try_from(receive_buffer).unwrap_or(u32::MAX))
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    // What the kernel gave (Linux doubles what was asked, up to net.core.rmem_max).
    let granted = tcp
        .recv_buffer_size()
        .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    tally.receive_buffer.store(u64::from(granted), Relaxed);
    let stream = tcp
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    // Small buffers on this side too: 10,000 default 128 KiB read buffers would cost
    // the load generator over a gigabyte and their zero-filling most of its CPU.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await
    .map_err(|e| format!("handshake: {e}"))?;
    match kind {
        Kind::Tidings => {
            send(&mut socket, json!({"type": "auth", "token": token})).await?;
            reply(&mut socket, "welcome").await?;
            send(
                &mut socket,
                json!({"type": "subscribe", "id": "s1", "pattern": PATTERN}),
            )
            .await?;
            reply(&mut socket, "subscribed").await?;
        }
        Kind::Baseline(_) => {
            send(&mut socket, json!({"type": "subscribe", "topic": "todos"})).await?;
            reply(&mut socket, "subscribed").await?;
        }
    }
    Ok(socket)
}

async fn send(socket: &mut Socket, frame: Value) -> Result<(), String> {
    socket
        .send(Message::text(frame.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Reads until a frame of type `kind`; an `error` frame or a close fails.
async fn reply(socket: &mut Socket, kind: &str) -> Result<(), String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).map_err(|e| format!("json: {e}"))?;
                if frame["type"] == kind {
                    return Ok(());
                }
                if frame["type"] == "error" {
                    return Err(format!("error frame waiting for {kind}: {text}"));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "closed waiting for {kind}: {}",
                    frame.map_or_else(|| "no close frame".to_owned(), |f| f.code.to_string())
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read waiting for {kind}: {e}")),
            None => return Err(format!("eof waiting for {kind}")),
        }
    }
}

/// Records every event frame until the connection ends; returns how it ended. Stops
/// reading while the tally says pause: a read already waiting is dropped (nothing
/// was taken off the socket yet), so what the server writes stays in the kernel.
async fn receive(mut socket: Socket, tally: &Tally) -> String {
    let mut pause = tally.pause.subscribe();
    loop {
        let message = tokio::select! {
            biased;
            // A bool, so that no borrow of `pause` outlives the branch.
            _ = async { pause.wait_for(|&paused| paused).await.is_ok() } => None,
            message = socket.next() => Some(message),
        };
        let Some(message) = message else {
            tally.paused.fetch_add(1, Relaxed);
            let resumed = pause.wait_for(|&paused| !paused).await.is_ok();
            tally.paused.fetch_sub(1, Relaxed);
            if !resumed {
                return "the load generator ended".to_owned();
            }
            continue;
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                if let Some((seq, t0)) = marker::parse(&text) {
                    tally.delivered(seq, t0, text.len());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return frame.map_or_else(
                    || "close without code".to_owned(),
                    |f| format!("close {}", u16::from(f.code)),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return format!("error {e}"),
            None => return "eof".to_owned(),
        }
    }
}
