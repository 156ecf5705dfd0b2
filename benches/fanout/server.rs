//! The server role: a tidings gateway or the baseline broadcast server, on a
//! one-worker Tokio runtime, driven by control lines on stdin.
//!
//! `FANOUT_PUBLISHER=thread` (tidings only) runs the publishing loop on a runtime of its
//! own on the main thread instead of as a task of the server's runtime.
//!
//! Control lines in: `publish <count>` (publish `count` events, reply `published` with
//! each publish's start time), `stats`, `quit`. First line out: `listening <addr>
//! <frame bytes>`.

use std::{
    io::{BufRead, Write},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, Utf8Bytes, WebSocket},
    },
    response::Response,
    routing::get,
};
use serde_json::json;
use tidings::{
    __private::{Event, Prepared},
    Broadcast, Config, Cursor, Db, Realtime, Target, demo,
};
use tokio::{runtime::Runtime, sync::broadcast};

use super::wire::{self, Kind, SECRET};

/// The event name of every bench broadcast.
const EVENT_NAME: &str = "bench";

/// Runs the server role until `quit` or the end of stdin.
pub fn main() {
    let kind = Kind::from_env();
    let connections = wire::env_usize("FANOUT_CONNECTIONS", 10_000);
    // One worker: the server gets about one core, the load generator the other.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut server = match kind {
        Kind::Tidings => runtime.block_on(Server::tidings(connections)),
        Kind::Baseline => runtime.block_on(Server::baseline()),
    };
    server.publisher = (std::env::var("FANOUT_PUBLISHER").as_deref() == Ok("thread")).then(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("publisher runtime")
    });
    say(&format!("listening {} {}", server.addr, server.frame_len()));
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let (command, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match command {
            "publish" => {
                let count = rest.trim().parse().expect("publish <count>");
                let times = server.publish(&runtime, count);
                say(&format!("published {}", wire::join(&times)));
            }
            "stats" => say(&format!("stats {}", server.stats())),
            "quit" => break,
            other => panic!("unknown server command {other:?}"),
        }
    }
    if let Backend::Tidings(realtime) = &server.backend {
        let realtime = realtime.clone();
        // Tells every connection 1001 and stops the relay; bounded by shutdown_timeout.
        runtime.block_on(async move { realtime.shutdown().await });
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

enum Backend {
    Tidings(Realtime),
    Baseline {
        sender: broadcast::Sender<Utf8Bytes>,
        frame_len: usize,
    },
}

struct Server {
    addr: SocketAddr,
    backend: Backend,
    /// Events published so far, so every event carries a distinct index.
    published: u64,
    /// The publisher's own runtime, when it is not to share the server's worker.
    publisher: Option<Runtime>,
}

impl Server {
    async fn tidings(connections: usize) -> Self {
        let dir = wire::env_required("FANOUT_DB_DIR");
        let mut config = Config::default();
        config.jwt.secret = Some(SECRET.into());
        if let Ok(queue) = std::env::var("FANOUT_QUEUE") {
            config.connection.send_queue_capacity = queue.parse().expect("FANOUT_QUEUE");
        }
        // The default cap is exactly 10,000; only a larger run needs more.
        config.connection.max_connections = config.connection.max_connections.max(connections);
        let url = format!("sqlite:{dir}/bench.db");
        let db = Db::connect(&url).await.expect("open the SQLite log");
        let realtime = Realtime::builder(config, db)
            .rules(demo::rules())
            .build()
            .await
            .expect("build the gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        realtime.set_local_addr(addr);
        let app = realtime.router();
        let shutdown = realtime.shutdown_token();
        let listener = nodelay(listener);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Self {
            addr,
            backend: Backend::Tidings(realtime),
            published: 0,
            publisher: None,
        }
    }

    async fn baseline() -> Self {
        let frame_len = wire::env_usize("FANOUT_FRAME_LEN", 256);
        let events = wire::env_usize("FANOUT_WARMUP", 10) + wire::env_usize("FANOUT_EVENTS", 200);
        // Room for every event of the run: a lagging receiver would lose frames, and
        // the baseline has no resume to make up for them.
        let (sender, _) = broadcast::channel(events + 16);
        let app = Router::new()
            .route("/ws", get(baseline_upgrade))
            .with_state(sender.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = nodelay(listener);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            backend: Backend::Baseline { sender, frame_len },
            published: 0,
            publisher: None,
        }
    }

    /// The size of an event frame as a client will receive it. For tidings it is
    /// built through the same public API the gateway uses, with a cursor of the
    /// magnitude the run will reach.
    fn frame_len(&self) -> usize {
        match &self.backend {
            Backend::Tidings(realtime) => {
                let Ok(Prepared::Logged(event)) = broadcast_of(100).prepare() else {
                    panic!("a collection broadcast is a logged event")
                };
                let cursor = Cursor {
                    epoch: realtime.epoch(),
                    seq: 100,
                };
                Event::logged(&cursor, event)
                    .frame(&[Arc::from("s1")])
                    .len()
            }
            Backend::Baseline { frame_len, .. } => *frame_len,
        }
    }

    /// Publishes `count` events back to back; returns each publish's start time.
    fn publish(&mut self, runtime: &Runtime, count: u64) -> Vec<u64> {
        let first = self.published;
        self.published += count;
        match &self.backend {
            Backend::Tidings(realtime) => {
                let realtime = realtime.clone();
                let publish = async move {
                    let mut times = Vec::with_capacity(count as usize);
                    for i in first..first + count {
                        times.push(wire::now_micros());
                        realtime
                            .broadcast(broadcast_of(i))
                            .await
                            .expect("broadcast");
                    }
                    times
                };
                match &self.publisher {
                    Some(own) => own.block_on(publish),
                    // Spawned, not run by `block_on`, so the publisher shares the
                    // server's one worker as an app handler calling `broadcast` would.
                    None => runtime.block_on(runtime.spawn(publish)).expect("publisher"),
                }
            }
            Backend::Baseline { sender, frame_len } => (first..first + count)
                .map(|i| {
                    let time = wire::now_micros();
                    // No receivers is not an error here: the client reports misses.
                    let _ = sender.send(baseline_frame(i, *frame_len));
                    time
                })
                .collect(),
        }
    }

    fn stats(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.backend {
            Backend::Tidings(realtime) => {
                let m = realtime.metrics();
                format!(
                    "connections={} subscriptions={} events_published={} events_delivered={} queue_overflows={} gaps_filled={}",
                    m.connections.load(Relaxed),
                    m.subscriptions.load(Relaxed),
                    m.events_published.load(Relaxed),
                    m.events_delivered.load(Relaxed),
                    m.queue_overflows.load(Relaxed),
                    m.gaps_filled.load(Relaxed),
                )
            }
            Backend::Baseline { sender, .. } => {
                format!("receivers={}", sender.receiver_count())
            }
        }
    }
}

/// Both servers accept as the reference server does (`axum::serve`, Nagle on) unless
/// `FANOUT_NODELAY=1`: Nagle only matters when a connection gets frames faster than
/// loopback ACKs come back, which is the small-N case, so it is a switch, not a default.
fn nodelay(listener: tokio::net::TcpListener) -> impl axum::serve::Listener<Addr = SocketAddr> {
    use axum::serve::ListenerExt;
    let on = std::env::var("FANOUT_NODELAY").is_ok_and(|v| v == "1");
    listener.tap_io(move |stream| {
        if on {
            let _ = stream.set_nodelay(true);
        }
    })
}

fn broadcast_of(i: u64) -> Broadcast {
    Broadcast::new(
        Target::Collection("todos".into()),
        EVENT_NAME,
        json!({ "i": i }),
    )
}

/// A JSON text frame of exactly `len` bytes (when `len` allows it), so the baseline
/// moves as many bytes per delivery as tidings does.
fn baseline_frame(i: u64, len: usize) -> Utf8Bytes {
    let head = format!(r#"{{"type":"event","i":{i},"pad":""#);
    let pad = len.saturating_sub(head.len() + 2);
    let mut frame = String::with_capacity(len);
    frame.push_str(&head);
    frame.extend(std::iter::repeat_n('x', pad));
    frame.push_str("\"}");
    Utf8Bytes::from(frame)
}

async fn baseline_upgrade(
    State(sender): State<broadcast::Sender<Utf8Bytes>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The only setting the baseline makes: the 4 KiB read buffer measured in
    // design.md (the 128 KiB default becomes resident per connection).
    upgrade
        .read_buffer_size(4096)
        .on_upgrade(move |socket| baseline_connection(socket, sender))
}

/// The minimal broadcast connection: subscribe, answer the client's first frame, then
/// forward every broadcast frame with one `send` (write and flush) each.
async fn baseline_connection(mut socket: WebSocket, sender: broadcast::Sender<Utf8Bytes>) {
    let mut frames = sender.subscribe();
    match socket.recv().await {
        Some(Ok(Message::Text(_))) => {}
        _ => return,
    }
    if socket
        .send(Message::Text(r#"{"type":"subscribed"}"#.into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if socket.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                // Lagged or closed: the client counts what is missing.
                Err(_) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
