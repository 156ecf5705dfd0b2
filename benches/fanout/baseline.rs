//! The baseline server role: the broadcast server a competent engineer writes by hand
//! with axum, the floor tidings is compared against. `FANOUT_BASELINE` picks how it
//! hands a published frame to its connections:
//!
//! * `axum-raw` (`baseline/queue.rs`): a bounded queue per connection, the design of
//!   the shared tool's `peers/axum-raw`, so that this bench's ratios and those of
//!   `../shared/tools/fanout-compare.sh` are against the same server;
//! * `ring` (`baseline/ring.rs`): one `tokio::sync::broadcast` ring every connection
//!   reads, cheaper per delivery: a second, stronger floor.
//!
//! Both speak one protocol. `GET /ws`: the client sends one text frame (its
//! subscription), gets `{"type":"subscribed"}`, then every published frame.
//! `POST /publish`: the body (the event's JSON payload) is wrapped once into a frame
//! (`frame_of`) that every connection shares.
//!
//! What makes both competent rather than naive: a 4 KiB WebSocket read buffer (the
//! 128 KiB default becomes resident per connection), and feed-then-flush batching (a
//! connection writes every frame already waiting for it, then flushes once, instead
//! of one write syscall per frame). Like the reference server they run on Tokio's
//! default multi-thread runtime, so pinned to one CPU they have one worker.
//!
//! Prints `listening <addr>`; ends at `quit` or the end of stdin.

pub mod queue;
pub mod ring;

use std::io::{BufRead, Write};

use axum::{Router, extract::ws::Utf8Bytes, serve::ListenerExt};

use super::wire::{self, Baseline};

/// Frames a connection may fall behind by, as tidings' default `send_queue_capacity`
/// (and `axum-raw`'s queue).
const QUEUE: usize = 1024;

/// The WebSocket read buffer of every connection, as `fanout-compare.sh` runs
/// `axum-raw` (`READ_BUF=4096`).
const READ_BUFFER: usize = 4096;

/// The answer to a client's subscription frame.
const SUBSCRIBED: &str = r#"{"type":"subscribed"}"#;

/// Runs the baseline `FANOUT_BASELINE` names until `quit` or the end of stdin.
pub fn main() {
    let name = wire::env_required("FANOUT_BASELINE");
    let design =
        Baseline::parse(&name).unwrap_or_else(|| panic!("unknown FANOUT_BASELINE {name:?}"));
    let frame_len = wire::env_usize("FANOUT_FRAME_LEN", 0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app: Router = match design {
        Baseline::AxumRaw => queue::router(frame_len),
        Baseline::Ring => ring::router(frame_len),
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Small frames go out at once, as tidings sends them: with Nagle's algorithm on, a
    // frame waits for the client's delayed ACK of the previous one (up to 40 ms).
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
    });
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

/// `{"type":"event","topic":"todos","data":<payload>,"pad":"xx…"}`, `len` bytes long
/// when `len` leaves room for it: padded to the size of tidings' frames, so both
/// servers move the same bytes per delivery (`axum-raw`'s own frame is shorter).
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
