//! One latency point: model writes at a fixed rate (open loop) and one WebSocket
//! subscriber of `todos:*`; per write, the time from its scheduled start to the
//! subscriber reading its event.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tidings::demo::Todo;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{node::Node, settings::Settings};
use crate::{
    common::server::{Client, token},
    fanout_latency::Samples,
};

/// Written into each record's title; the subscriber finds the write's number after it.
const MARKER: &str = "wp#";

/// What one point measured.
#[derive(Debug)]
pub struct Point {
    pub rate: usize,
    /// Writes issued, warm-up included.
    pub writes: usize,
    pub write_errors: usize,
    /// Events the subscriber read, warm-up included (each write's first copy).
    pub received: usize,
    pub duplicates: usize,
    /// Measured (post-warm-up) latencies, in microseconds.
    pub samples: Samples,
    /// Seconds the writer took to issue every write (a late schedule shows here).
    pub issue_secs: f64,
}

impl Point {
    pub fn missing(&self) -> usize {
        self.writes - self.received
    }
}

pub async fn run(node: &Node, rate: usize, settings: &Settings) -> Point {
    let (writes, warmup) = settings.latency_writes(rate);
    let mut client = Client::authenticated(&node.ws_url, &token("write-path-subscriber")).await;
    client.subscribe("wp", "todos:*").await;
    // Every write k is due at start + k / rate, whether or not earlier events arrived.
    let start = Instant::now() + Duration::from_millis(50);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let due = move |k: usize| start + period * u32::try_from(k).expect("write count");
    let last_due = due(writes.saturating_sub(1));
    let reader = tokio::spawn(read_events(client, writes, due, last_due + settings.drain));

    let store = node.realtime.store();
    let mut pending = JoinSet::new();
    for k in 0..writes {
        tokio::time::sleep_until(due(k).into()).await;
        let store = store.clone();
        pending.spawn(async move {
            let mut tx = store.begin().await?;
            tx.insert(&todo(rate, k)).await?;
            tx.commit().await
        });
    }
    let issue_secs = start.elapsed().as_secs_f64();
    let mut write_errors = 0;
    while let Some(result) = pending.join_next().await {
        if !matches!(result, Ok(Ok(()))) {
            write_errors += 1;
        }
    }
    let (arrivals, duplicates) = reader.await.expect("reader");
    let mut samples = Samples::default();
    for micros in arrivals.iter().skip(warmup).flatten() {
        samples.push(*micros);
    }
    Point {
        rate,
        writes,
        write_errors,
        received: arrivals.iter().flatten().count(),
        duplicates,
        samples,
        issue_secs,
    }
}

fn todo(rate: usize, k: usize) -> Todo {
    Todo {
        id: format!("lat-{rate}-{k}"),
        title: format!("{MARKER}{k}"),
        done: false,
        owner_id: "write-path-writer".to_owned(),
        created_at: "2026-11-30T00:00:00Z".to_owned(),
    }
}

/// Reads frames until every write's event arrived or `deadline`; per write, the
/// microseconds from its due time to its event, and how many events came twice.
async fn read_events(
    client: Client,
    writes: usize,
    due: impl Fn(usize) -> Instant,
    deadline: Instant,
) -> (Vec<Option<u64>>, usize) {
    let mut ws = client.ws;
    let mut arrivals: Vec<Option<u64>> = vec![None; writes];
    let (mut received, mut duplicates) = (0, 0);
    while received < writes {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), ws.next()).await
        else {
            break;
        };
        let now = Instant::now();
        let Message::Text(text) = message else {
            continue;
        };
        for k in markers(&text) {
            match arrivals.get_mut(k) {
                Some(slot @ None) => {
                    *slot = Some(now.saturating_duration_since(due(k)).as_micros() as u64);
                    received += 1;
                }
                Some(Some(_)) => duplicates += 1,
                None => {}
            }
        }
    }
    (arrivals, duplicates)
}

/// The write numbers in a frame (one per event it carries).
fn markers(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices(MARKER).filter_map(|(at, _)| {
        let rest = &text[at + MARKER.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest[..digits].parse().ok()
    })
}
