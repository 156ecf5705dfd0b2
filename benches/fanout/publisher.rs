//! The publisher of the load generator: events go over HTTP, as a backend publishes
//! them, so the publish path (HTTP handler, and for tidings the JWT check, the log
//! write, sequencing and ingest) is part of what is measured. Two schedules: closed
//! loop and fixed rate.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use serde_json::json;

use super::{
    marker,
    tally::Tally,
    wire::{Kind, SECRET},
};

/// How long the closed loop waits for the oldest event before it counts a stall and
/// publishes anyway: long enough for any healthy fan-out, short enough that a lost
/// delivery does not eat the measured time.
const STALL: Duration = Duration::from_secs(5);

/// Set once a failed publish was reported: a dead server would otherwise print one
/// line per attempt.
static ERROR_REPORTED: AtomicBool = AtomicBool::new(false);

/// How one publish went, summed over a phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct Published {
    /// Requests answered 2xx: events that are due at every subscriber.
    pub ok: u64,
    pub errors: u64,
    /// Closed loop: times the window did not free up within the timeout.
    pub stalls: u64,
}

impl Published {
    /// Counts the outcome of one spawned request.
    fn count(&mut self, outcome: Result<bool, tokio::task::JoinError>) {
        match outcome {
            Ok(true) => self.ok += 1,
            _ => self.errors += 1,
        }
    }
}

#[derive(Debug)]
pub struct Publisher {
    http: reqwest::Client,
    url: String,
    kind: Kind,
    /// `Authorization` value (tidings: a token with the `publisher` role).
    authorization: Option<String>,
    payload: usize,
    tally: Arc<Tally>,
    timeout: Duration,
    /// The next event's sequence number; they start at 1 and never repeat in a run.
    next: u64,
}

impl Publisher {
    pub fn new(
        kind: Kind,
        addr: &str,
        payload: usize,
        tally: Arc<Tally>,
        timeout: Duration,
    ) -> Self {
        let (url, authorization) = match kind {
            Kind::Tidings => (
                format!("http://{addr}/realtime/broadcast"),
                Some(format!("Bearer {}", publisher_token())),
            ),
            Kind::Baseline(_) => (format!("http://{addr}/publish"), None),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .expect("HTTP client");
        Self {
            http,
            url,
            kind,
            authorization,
            payload,
            tally,
            timeout,
            next: 1,
        }
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Publishes for `secs` seconds, never with more than `window` events that have
    /// not reached every subscriber yet. Requests go one after the other.
    pub async fn closed_loop(&mut self, window: usize, secs: f64) -> Published {
        let mut published = Published::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        while tokio::time::Instant::now() < deadline {
            let seq = self.next;
            if let Some(oldest) = seq.checked_sub(window as u64).filter(|&s| s >= 1)
                && !self.wait_complete(oldest).await
            {
                published.stalls += 1;
            }
            self.next += 1;
            match self.request(seq).await {
                true => published.ok += 1,
                false => published.errors += 1,
            }
        }
        published
    }

    /// Publishes `events_per_sec` for `secs` seconds on a fixed schedule. Each request
    /// is its own task, so a slow answer does not delay the events due after it.
    pub async fn fixed_rate(&mut self, events_per_sec: f64, secs: f64) -> Published {
        let count = (events_per_sec * secs).round().max(1.0) as u64;
        let start = tokio::time::Instant::now();
        let mut requests = tokio::task::JoinSet::new();
        for k in 0..count {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / events_per_sec))
                .await;
            let seq = self.next;
            self.next += 1;
            let one = self.one_shot();
            requests.spawn(async move { one.request(seq).await });
        }
        let mut published = Published::default();
        while let Some(ok) = requests.join_next().await {
            published.count(ok);
        }
        published
    }

    /// Publishes `count` events as fast as the server answers, `in_flight` requests at
    /// a time, without waiting for any delivery.
    pub async fn burst(&mut self, count: usize, in_flight: usize) -> Published {
        let mut requests = tokio::task::JoinSet::new();
        let mut published = Published::default();
        for _ in 0..count {
            if requests.len() >= in_flight.max(1)
                && let Some(ok) = requests.join_next().await
            {
                published.count(ok);
            }
            let seq = self.next;
            self.next += 1;
            let one = self.one_shot();
            requests.spawn(async move { one.request(seq).await });
        }
        while let Some(ok) = requests.join_next().await {
            published.count(ok);
        }
        published
    }

    /// Waits until event `seq` reached every live subscriber; false after the timeout.
    async fn wait_complete(&self, seq: u64) -> bool {
        let deadline = tokio::time::Instant::now() + STALL.min(self.timeout);
        loop {
            // Registered before the check, so a completion in between is not missed.
            let completed = self.tally.completed.notified();
            tokio::pin!(completed);
            completed.as_mut().enable();
            if self.tally.complete(seq) {
                return true;
            }
            if tokio::time::timeout_at(deadline, completed).await.is_err() {
                return self.tally.complete(seq);
            }
        }
    }

    /// A copy for a spawned request (the client shares its connection pool).
    fn one_shot(&self) -> Self {
        Self {
            http: self.http.clone(),
            url: self.url.clone(),
            kind: self.kind,
            authorization: self.authorization.clone(),
            payload: self.payload,
            tally: self.tally.clone(),
            timeout: self.timeout,
            next: self.next,
        }
    }

    /// Publishes event `seq`; true when the server answered 2xx.
    async fn request(&self, seq: u64) -> bool {
        self.tally.publishing(seq);
        // The publish time is taken last, just before the request goes out.
        let t0 = self.tally.now_micros();
        let payload = marker::payload(seq, t0, self.payload);
        let body = match self.kind {
            Kind::Tidings => {
                format!(r#"{{"target":{{"collection":"todos"}},"event":"bench","data":{payload}}}"#)
            }
            Kind::Baseline(_) => payload,
        };
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => format!("HTTP {}", response.status()),
            Err(e) => e.to_string(),
        };
        if !ERROR_REPORTED.swap(true, Relaxed) {
            eprintln!("publish {seq} failed ({failure}); later failures are only counted");
        }
        false
    }
}

/// An HS256 token with the `publisher` role, as `POST /realtime/broadcast` requires.
fn publisher_token() -> String {
    let claims = json!({
        "sub": "bench-publisher",
        "roles": ["publisher"],
        "exp": tidings::__private::unix_now() + 24 * 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign the publisher token")
}
