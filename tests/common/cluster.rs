//! A cluster of real `tidings` processes: N nodes on one fresh Postgres schema (or the
//! database `ClusterOptions::database_url` names), each on its own port with the
//! tests' JWT secret, a broker only this cluster uses, and the failures the
//! multi-process tests inject (kill -9, SIGSTOP, restart; a broker killed and started
//! again). Plus the writes (the demo's REST API) and the checks (the
//! `realtime_outbox` table, clients that must see every event once, in order).
//!
//! Every process and proxy is stopped by a drop guard, panics included. The nodes'
//! logs are kept, and their place printed, when a test fails (or always, with
//! `TIDINGS_KEEP_CLUSTER_LOGS` set).

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    brokers::{BrokerKind, BrokerServer},
    db::{Backend, fresh_database_url},
    server::{Client, SECRET, WAIT, seq_of, token},
    sse::{Group, SseStream},
};

/// Bound on a node starting (listening and answering `/readyz`) or a broker restarting.
pub const STARTUP: Duration = Duration::from_secs(30);
/// Bound on every committed row getting its seq.
pub const SEQUENCED: Duration = Duration::from_secs(30);
/// Bound on one HTTP request to a node.
const REQUEST: Duration = Duration::from_secs(10);
/// How often a condition with a deadline is checked.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// Settings every node of a cluster gets.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of nodes. Default 3.
    pub nodes: usize,
    /// `log.poll_interval`. Default 100 ms.
    pub poll_interval: Duration,
    /// `log.sequencer_timeout`. Default 5 s (the library's default).
    pub sequencer_timeout: Duration,
    /// The event log's database. Default: a fresh schema on the tests' Postgres.
    pub database_url: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            poll_interval: Duration::from_millis(100),
            sequencer_timeout: Duration::from_secs(5),
            database_url: None,
        }
    }
}

/// One `tidings` process.
pub struct Node {
    /// `a`, `b`, `c`, ...
    pub name: String,
    /// Its sessions' `application_name` in `pg_stat_activity`.
    pub app_name: String,
    /// `http://127.0.0.1:<port>` of the running process (a restart changes it).
    pub base: String,
    child: Option<Child>,
    stdout: PathBuf,
    log: PathBuf,
}

impl Node {
    /// `http://<node>{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!(
            "{}/realtime/subscribe",
            self.base.replace("http://", "ws://")
        )
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node runs").id()
    }

    /// A WebSocket authenticated as `ann`, subscribed (`s`) to `pattern`.
    pub async fn ws(&self, pattern: &str) -> Client {
        let mut client = Client::authenticated(&self.ws_url(), &token("ann")).await;
        client.subscribe("s", pattern).await;
        client
    }

    /// A WebSocket authenticated as `ann` that subscribes (`s`) to `pattern` from
    /// `since`; returns the `subscribed` frame too.
    pub async fn ws_resume(&self, pattern: &str, since: &str) -> (Client, Value) {
        let mut client = Client::authenticated(&self.ws_url(), &token("ann")).await;
        client
            .send(json!({"type": "subscribe", "id": "s", "pattern": pattern, "since": since}))
            .await;
        let subscribed = client.recv().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        (client, subscribed)
    }

    /// A Datastar SSE stream of `topics` as `ann`, from `last_event_id` if given.
    pub async fn sse(&self, topics: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = reqwest::Client::new()
            .get(self.url("/realtime/sse"))
            .query(&[("topics", topics)])
            .bearer_auth(token("ann"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let stream = SseStream::open(request).await;
        assert_eq!(stream.status, 200, "SSE {topics} on node {}", self.name);
        stream
    }

    /// Creates a todo through this node's REST API; its id, or why it failed.
    pub async fn create_todo(&self, title: &str) -> Result<String, String> {
        create_todo(&self.base, title).await
    }
}

/// `POST {base}/api/todos` as `ann`; the new todo's id, or why it failed.
pub async fn create_todo(base: &str, title: &str) -> Result<String, String> {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/todos"))
        .bearer_auth(token("ann"))
        .timeout(REQUEST)
        .json(&json!({ "title": title }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 201 {
        return Err(format!("status {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(body["id"].as_str().expect("an id").to_owned())
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Several `tidings` processes on one event log.
pub struct Cluster {
    /// The nodes, `a` first.
    pub nodes: Vec<Node>,
    /// The broker between them.
    pub broker: BrokerServer,
    /// The event log (a fresh schema on the tests' Postgres).
    pub database_url: String,
    id: String,
    dir: PathBuf,
    config: PathBuf,
}

impl Cluster {
    /// Starts a broker of `kind` and `options.nodes` nodes, one after the other (the
    /// first creates the tables), and waits until each answers `/readyz`.
    pub async fn start(kind: BrokerKind, options: ClusterOptions) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let dir = std::env::temp_dir().join(format!("tidings-cluster-{id}"));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let config = dir.join("tidings.toml");
        std::fs::write(
            &config,
            format!(
                "[realtime.log]\npoll_interval = \"{}ms\"\nsequencer_timeout = \"{}ms\"\n",
                options.poll_interval.as_millis(),
                options.sequencer_timeout.as_millis()
            ),
        )
        .expect("config file");
        let database_url = match options.database_url {
            Some(url) => url,
            None => fresh_database_url(Backend::Postgres).await,
        };
        let broker = BrokerServer::start(kind).await;
        let mut cluster = Self {
            nodes: Vec::new(),
            broker,
            database_url,
            id,
            dir,
            config,
        };
        for n in 0..options.nodes {
            let name = char::from(b'a' + u8::try_from(n).expect("few nodes")).to_string();
            let node = Node {
                app_name: format!("tidings-{}-{name}", cluster.id),
                base: String::new(),
                child: None,
                stdout: cluster.dir.join(format!("{name}.stdout")),
                log: cluster.dir.join(format!("{name}.log")),
                name,
            };
            cluster.nodes.push(node);
            cluster.restart(n).await;
        }
        cluster
    }

    /// Node `n` (0 is `a`).
    pub fn node(&self, n: usize) -> &Node {
        &self.nodes[n]
    }

    /// Kills node `n` with SIGKILL and reaps it.
    pub fn kill(&mut self, n: usize) {
        let mut child = self.nodes[n].child.take().expect("the node runs");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    /// Stops node `n` with SIGSTOP: it holds its connections and answers nothing.
    pub fn pause(&self, n: usize) {
        signal(self.nodes[n].pid(), "-STOP");
    }

    /// Starts node `n` (again), on a new port, and waits until it is ready.
    pub async fn restart(&mut self, n: usize) {
        assert!(self.nodes[n].child.is_none(), "node {n} still runs");
        let node = &self.nodes[n];
        let sep = if self.database_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let database_url = format!(
            "{}{sep}application_name={}",
            self.database_url, node.app_name
        );
        let stdout = File::create(&node.stdout).expect("stdout file");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("TIDINGS_BIND", "127.0.0.1:0")
            .env("TIDINGS_DATABASE_URL", database_url)
            .env("TIDINGS_BROKER_URL", self.broker.url())
            .env("TIDINGS_JWT_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("spawn tidings");
        let node = &mut self.nodes[n];
        node.child = Some(child);
        node.base = wait_for_url(node).await;
        wait_ready(node).await;
    }

    /// A pool on the event log's schema.
    pub async fn db(&self) -> PgPool {
        tokio::time::timeout(WAIT, PgPool::connect(&self.database_url))
            .await
            .expect("connecting to the event log timed out")
            .expect("connecting to the event log")
    }

    /// Makes node `n`'s relay hold the log's lock for at least `hold` whenever it
    /// sequences: a statement trigger on `realtime_outbox` that sleeps in sessions
    /// with that node's `application_name` (only relays update the table).
    pub async fn slow_sequencing(&self, n: usize, hold: Duration) {
        let db = self.db().await;
        let function = format!(
            "CREATE FUNCTION slow_relay() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF current_setting('application_name') = '{}' THEN PERFORM pg_sleep({}); END IF; \
               RETURN NULL; \
             END $$",
            self.nodes[n].app_name,
            hold.as_secs_f64()
        );
        sqlx::query(sqlx::AssertSqlSafe(function))
            .execute(&db)
            .await
            .expect("trigger function");
        sqlx::query(
            "CREATE TRIGGER slow_relay BEFORE UPDATE ON realtime_outbox \
             FOR EACH STATEMENT EXECUTE FUNCTION slow_relay()",
        )
        .execute(&db)
        .await
        .expect("trigger");
        db.close().await;
    }

    /// Waits (at most `within`) until node `n`'s relay is inside its sequencing
    /// statement, holding the log's lock, for less than `fresh`; false if it was not
    /// seen there in time. Needs [`slow_sequencing`](Self::slow_sequencing).
    pub async fn wait_sequencing(
        &self,
        db: &PgPool,
        n: usize,
        fresh: Duration,
        within: Duration,
    ) -> bool {
        let deadline = Instant::now() + within;
        let fresh_ms = i64::try_from(fresh.as_millis()).expect("short");
        while Instant::now() < deadline {
            let inside: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event = 'PgSleep' \
                 AND clock_timestamp() - query_start < $2 * interval '1 millisecond')",
            )
            .bind(&self.nodes[n].app_name)
            .bind(fresh_ms)
            .fetch_one(db)
            .await
            .expect("reading pg_stat_activity");
            if inside {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear(); // kills them
        if std::thread::panicking() || std::env::var_os("TIDINGS_KEEP_CLUSTER_LOGS").is_some() {
            eprintln!(
                "cluster {}: node logs kept in {}",
                self.id,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {which} {pid} failed");
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits for the node's "listening on" line; panics with its log if it exits.
async fn wait_for_url(node: &mut Node) -> String {
    let deadline = Instant::now() + STARTUP;
    loop {
        let stdout = std::fs::read_to_string(&node.stdout).unwrap_or_default();
        if let Some(url) = stdout
            .lines()
            .find_map(|line| line.split("listening on ").nth(1))
        {
            return url.trim().to_owned();
        }
        let child = node.child.as_mut().expect("spawned");
        if let Some(status) = child.try_wait().expect("try_wait") {
            node.child = None;
            panic!(
                "node {} exited ({status}) before listening:\n{}",
                node.name,
                tail(&node.log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "node {} did not listen within {STARTUP:?}:\n{}",
            node.name,
            tail(&node.log)
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_ready(node: &Node) {
    let deadline = Instant::now() + STARTUP;
    let http = reqwest::Client::new();
    loop {
        let ready = http
            .get(node.url("/readyz"))
            .timeout(REQUEST)
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} was not ready within {STARTUP:?}:\n{}",
            node.name,
            tail(&node.log)
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

/// What a [`Writer`] did.
#[derive(Debug, Default)]
pub struct WriteLog {
    /// Ids of the todos whose creation was acknowledged (201), in order.
    pub acked: Vec<String>,
    /// Failed writes: the node's base URL and the error.
    pub failed: Vec<(String, String)>,
}

/// Creates todos one after another, round robin through some nodes, until stopped.
pub struct Writer {
    stop: CancellationToken,
    acked: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<WriteLog>,
}

impl Writer {
    /// Starts writing through `bases` (node base URLs), one write every `pace`.
    pub fn start(bases: Vec<String>, pace: Duration) -> Self {
        let stop = CancellationToken::new();
        let (count, acked) = watch::channel(0);
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut log = WriteLog::default();
                let mut tick = tokio::time::interval(pace);
                for n in 0.. {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let base = &bases[n % bases.len()];
                    match create_todo(base, &format!("w{n}")).await {
                        Ok(id) => {
                            log.acked.push(id);
                            count.send_replace(log.acked.len());
                        }
                        Err(e) => log.failed.push((base.clone(), e)),
                    }
                }
                log
            }
        });
        Self { stop, acked, task }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        *self.acked.borrow()
    }

    /// Waits until at least `n` writes were acknowledged.
    pub async fn wait_for(&mut self, n: usize) {
        tokio::time::timeout(SEQUENCED, self.acked.wait_for(|acked| *acked >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} writes acknowledged within {SEQUENCED:?}"))
            .expect("the writer stopped");
    }

    /// Stops and returns what was written.
    pub async fn finish(self) -> WriteLog {
        self.stop.cancel();
        tokio::time::timeout(SEQUENCED, self.task)
            .await
            .expect("the writer did not stop")
            .expect("the writer panicked")
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// Waits until every row of `realtime_outbox` has a seq, then checks the seqs are
/// exactly 1..=n (each row one seq, no gap) and returns the record keys in seq order.
pub async fn wait_sequenced(db: &PgPool) -> Vec<String> {
    let deadline = Instant::now() + SEQUENCED;
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM realtime_outbox WHERE seq IS NULL")
                .fetch_one(db)
                .await
                .expect("reading the outbox");
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} committed events still without a seq after {SEQUENCED:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, record_key FROM realtime_outbox ORDER BY seq")
            .fetch_all(db)
            .await
            .expect("reading the outbox");
    let seqs: Vec<i64> = rows.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<i64> = (1..=i64::try_from(rows.len()).expect("few")).collect();
    assert_eq!(
        seqs, expected,
        "every committed event has one seq, without gaps"
    );
    let last: i64 = sqlx::query_scalar("SELECT last_seq FROM realtime_meta WHERE id = 1")
        .fetch_one(db)
        .await
        .expect("reading the meta row");
    assert_eq!(
        last,
        i64::try_from(rows.len()).expect("few"),
        "last_seq is the last seq handed out"
    );
    rows.into_iter().map(|(_, key)| key).collect()
}

/// Asserts every acknowledged write is in the log exactly once.
pub fn assert_all_logged(acked: &[String], keys: &[String]) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for key in keys {
        *count.entry(key).or_default() += 1;
    }
    for id in acked {
        assert_eq!(
            count.get(id.as_str()),
            Some(&1),
            "acknowledged write {id} is in the log exactly once"
        );
    }
}

/// Reads WebSocket events and asserts they are exactly the events after seq `after`,
/// up to the last of `keys` (the log's record keys in seq order), once each, in order.
pub async fn expect_ws(client: &mut Client, after: u64, keys: &[String], who: &str) {
    for expected in after + 1..=keys.len() as u64 {
        let event = client.recv_event().await;
        assert_eq!(
            seq_of(&event),
            expected,
            "{who}: events in seq order, none twice, none missed"
        );
        assert_eq!(
            event["key"].as_str(),
            Some(keys[expected as usize - 1].as_str()),
            "{who}: seq {expected} is the log's event"
        );
    }
}

/// Like [`expect_ws`], for a Datastar SSE stream (one group per event).
pub async fn expect_sse(stream: &mut SseStream, after: u64, keys: &[String], who: &str) {
    for expected in after + 1..=keys.len() as u64 {
        let group = stream.next_group().await;
        assert_sse_event(&group, expected, keys, who);
    }
}

/// Asserts `group` is the patch of the log's event `seq` (not a snapshot).
pub fn assert_sse_event(group: &Group, seq: u64, keys: &[String], who: &str) {
    assert_eq!(
        group.seq(),
        seq,
        "{who}: events in seq order, none twice, none missed"
    );
    let text = group.text();
    assert!(
        !text.contains("<ul id=\"todos\">"),
        "{who}: seq {seq} is an event, not a snapshot: {text}"
    );
    assert!(
        text.contains(&format!("<li id=\"todo-{}\"", keys[seq as usize - 1])),
        "{who}: seq {seq} is the log's event: {text}"
    );
}

/// Reads WebSocket events until the connection ends (its node was killed); the seq of
/// each, in the order received.
pub async fn ws_until_end(client: &mut Client) -> Vec<u64> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut seqs = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, client.ws.next())
            .await
            .expect("the connection neither ended nor sent anything");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                if frame["type"] == "event" {
                    seqs.push(seq_of(&frame));
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return seqs,
            Some(Ok(_)) => {}
        }
    }
}

/// Reads SSE groups until the stream ends or breaks (its node was killed); a group
/// cut short is dropped.
pub async fn sse_until_end(stream: &mut SseStream) -> Vec<Group> {
    use super::sse::Item;
    let mut groups = Vec::new();
    let mut events = Vec::new();
    while let Ok(item) = stream.next_item().await {
        let Item::Event(event) = item else { continue };
        if event.event.is_empty() {
            let id = event.id.expect("closing event has an id");
            groups.push(Group {
                events: std::mem::take(&mut events),
                id,
            });
        } else {
            events.push(event);
        }
    }
    groups
}

/// Asserts `seqs` are `after+1, after+2, ...`: in order, none twice, none missed.
pub fn assert_consecutive(seqs: &[u64], after: u64, who: &str) {
    let expected: Vec<u64> = (after + 1..=after + seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "{who}: events in seq order, none twice, none missed"
    );
}
