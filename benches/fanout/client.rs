//! The load generator: N WebSocket clients over loopback, on a one-worker runtime.
//!
//! Each client handshakes (tidings: `auth`, `welcome`, `subscribe todos:*`,
//! `subscribed`; baseline: one frame and its reply), then counts event frames. Every
//! connection receives events in publish order, so a connection's k-th event frame
//! is event k and no frame needs parsing on the hot path: the client only stamps the
//! receive time into per-event "first" and "last" slots.
//!
//! Control lines in: `expect <k>` (reply `reached <k> <received>` once every
//! connection has k events, or `stalled <k> <received>` after no progress for
//! `FANOUT_TIMEOUT_S`), `report <from> <to>`, `quit`. First line out:
//! `ready <ok> <failed> <setup ms>`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::Semaphore,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use super::wire::{self, Kind, PATTERN, SECRET};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How every tidings event frame starts (`Event::frame`); other frames are not events.
const EVENT_PREFIX: &str = r#"{"type":"event""#;

struct Shared {
    kind: Kind,
    /// Event frames received, over all connections.
    received: AtomicU64,
    /// Their bytes.
    bytes: AtomicU64,
    /// Per event index: the earliest and the latest receive time (µs).
    first: Vec<AtomicU64>,
    last: Vec<AtomicU64>,
    /// Frames beyond the expected event count (there should be none).
    extra: AtomicU64,
    /// Connections that completed the handshake, and those that did not.
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// How connections ended (close code, error) or failed to start, with counts.
    ends: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn end(&self, why: String) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        *ends.entry(why).or_default() += 1;
    }
}

/// Runs the client role until `quit`.
pub fn main() {
    let kind = Kind::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(kind));
    // Sockets are dropped with the runtime; the server sees EOF, which is all it needs.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn run(kind: Kind) {
    let addr = wire::env_required("FANOUT_ADDR");
    let connections = wire::env_usize("FANOUT_CONNECTIONS", 10_000);
    let events = wire::env_usize("FANOUT_WARMUP", 10) + wire::env_usize("FANOUT_EVENTS", 200);
    let parallel = wire::env_usize("FANOUT_CONNECT_PARALLEL", 64).max(1);
    let timeout = Duration::from_secs(wire::env_usize("FANOUT_TIMEOUT_S", 60) as u64);
    let url = match kind {
        Kind::Tidings => format!("ws://{addr}/realtime/subscribe"),
        Kind::Baseline => format!("ws://{addr}/ws"),
    };
    let shared = Arc::new(Shared {
        kind,
        received: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        first: (0..events).map(|_| AtomicU64::new(u64::MAX)).collect(),
        last: (0..events).map(|_| AtomicU64::new(0)).collect(),
        extra: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        ends: Mutex::new(BTreeMap::new()),
    });

    // Bounded handshakes in flight: a burst of 10,000 SYNs would overflow the
    // listener's backlog and turn the setup into a retransmission benchmark.
    let permits = Arc::new(Semaphore::new(parallel));
    let setup = Instant::now();
    for i in 0..connections {
        let (shared, permits, url) = (shared.clone(), permits.clone(), url.clone());
        tokio::spawn(async move {
            let permit = permits.acquire_owned().await.expect("semaphore");
            let opened = tokio::time::timeout(timeout, open(&url, kind, i)).await;
            drop(permit);
            match opened {
                Ok(Ok(socket)) => {
                    shared.ready.fetch_add(1, Relaxed);
                    receive(socket, &shared).await;
                }
                Ok(Err(e)) => {
                    shared.failed.fetch_add(1, Relaxed);
                    shared.end(format!("setup: {e}"));
                }
                Err(_) => {
                    shared.failed.fetch_add(1, Relaxed);
                    shared.end("setup: timed out".to_owned());
                }
            }
        });
    }
    let deadline = Instant::now() + timeout * 2;
    while shared.ready.load(Relaxed) + shared.failed.load(Relaxed) < connections
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    say(&format!(
        "ready {} {} {}",
        shared.ready.load(Relaxed),
        shared.failed.load(Relaxed),
        setup.elapsed().as_millis()
    ))
    .await;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (command, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match command {
            "expect" => {
                let per_connection: u64 = rest.trim().parse().expect("expect <k>");
                let reply = wait_for(&shared, per_connection, timeout).await;
                say(&reply).await;
            }
            "report" => {
                let range = wire::numbers(rest);
                let (from, to) = (range[0] as usize, range[1] as usize);
                let first: Vec<u64> = shared.first[from..to]
                    .iter()
                    .map(|t| t.load(Relaxed))
                    .collect();
                let last: Vec<u64> = shared.last[from..to]
                    .iter()
                    .map(|t| t.load(Relaxed))
                    .collect();
                say(&format!("first {}", wire::join(&first))).await;
                say(&format!("last {}", wire::join(&last))).await;
                let ends = shared
                    .ends
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let ends: Vec<String> = ends.iter().map(|(k, v)| format!("{k}={v}")).collect();
                say(&format!(
                    "summary received={} bytes={} extra={} ends={}",
                    shared.received.load(Relaxed),
                    shared.bytes.load(Relaxed),
                    shared.extra.load(Relaxed),
                    if ends.is_empty() {
                        "none".to_owned()
                    } else {
                        ends.join(";")
                    }
                ))
                .await;
            }
            "quit" => break,
            other => panic!("unknown client command {other:?}"),
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

/// Waits until every ready connection has `per_connection` events, or until the count
/// stops moving for `timeout`. Polling is fine here: the figures come from the
/// per-event receive stamps, not from when this loop notices.
async fn wait_for(shared: &Shared, per_connection: u64, timeout: Duration) -> String {
    let target = per_connection * shared.ready.load(Relaxed) as u64;
    let mut seen = shared.received.load(Relaxed);
    let mut progress = Instant::now();
    loop {
        let now = shared.received.load(Relaxed);
        if now >= target {
            return format!("reached {per_connection} {now}");
        }
        if now != seen {
            seen = now;
            progress = Instant::now();
        } else if progress.elapsed() > timeout {
            return format!("stalled {per_connection} {now}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Connects and completes the handshake of `kind`.
async fn open(url: &str, kind: Kind, index: usize) -> Result<Socket, String> {
    // The client side keeps small buffers too: 10,000 default 128 KiB read buffers
    // would cost the load generator over a gigabyte.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match kind {
        Kind::Tidings => {
            let claims = json!({"sub": format!("bench{index}"), "exp": tidings::__private::unix_now() + 3600});
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .map_err(|e| format!("sign: {e}"))?;
            send(&mut socket, json!({"type": "auth", "token": token})).await?;
            reply(&mut socket, "welcome").await?;
            send(
                &mut socket,
                json!({"type": "subscribe", "id": "s1", "pattern": PATTERN}),
            )
            .await?;
            reply(&mut socket, "subscribed").await?;
        }
        Kind::Baseline => {
            send(&mut socket, json!({"type": "subscribe"})).await?;
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

/// Counts event frames until the connection ends (or the process does).
async fn receive(mut socket: Socket, shared: &Shared) {
    let mut count = 0usize;
    let why = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                if shared.kind == Kind::Tidings && !text.starts_with(EVENT_PREFIX) {
                    continue;
                }
                let now = wire::now_micros();
                match (shared.first.get(count), shared.last.get(count)) {
                    (Some(first), Some(last)) => {
                        first.fetch_min(now, Relaxed);
                        last.fetch_max(now, Relaxed);
                    }
                    _ => {
                        shared.extra.fetch_add(1, Relaxed);
                    }
                }
                count += 1;
                shared.bytes.fetch_add(text.len() as u64, Relaxed);
                shared.received.fetch_add(1, Relaxed);
            }
            Some(Ok(Message::Close(frame))) => {
                break frame.map_or_else(
                    || "close without code".to_owned(),
                    |f| format!("close {}", u16::from(f.code)),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error {e}"),
            None => break "eof".to_owned(),
        }
    };
    shared.end(why);
}
