//! Cluster figures (issue 8): real `tidings` processes on one Postgres event log, for
//! each cluster broker (redis, nats, postgres LISTEN/NOTIFY), against one node with the
//! in-memory broker measured in the same run.
//!
//! Run with `cargo bench --bench cluster`. Per round, first the baseline (one node,
//! memory broker, fresh schema), then one three-node cluster per broker (fresh schema,
//! a private `redis-server`/`nats-server` on a free port, or a killable TCP proxy in
//! front of Postgres for LISTEN/NOTIFY; all from `tests/common/cluster.rs`). On each:
//!
//! 1. **latency**: the demo REST API (`POST /api/todos`) on node `a` at a fixed rate
//!    (open loop, bounded in flight); one WebSocket subscriber to `todos:*` on node `b`
//!    (on `a` for the baseline); write start -> event received, p50/p99;
//! 2. **fan-out**: N subscribers on each of the 3 nodes (3N on the baseline's one node);
//!    closed loop, a few events in flight, each written through node `a`;
//!    deliveries per second;
//! 3. **outage** (brokers only): writes at a fixed rate through node `a`, a subscriber
//!    on node `b`; the broker is killed (-9, or the proxy's connections cut) for a few
//!    seconds and started again. Reported: how far behind the subscriber was during
//!    the outage (write start -> received), and the time from the broker listening
//!    again until the subscriber had every event written during the outage (0 when the
//!    fallback poll had already delivered them all);
//! 4. **sequencing**: writers on every node, as fast as a bounded number of requests
//!    in flight allows, for a fixed time; `realtime_meta.last_seq` read at both ends
//!    of the window gives the sequenced rows per second.
//!
//! Settings (environment, all optional): `CLUSTER_BROKERS` (`redis,nats,postgres`),
//! `CLUSTER_ROUNDS` (1), `CLUSTER_RATE` (1000 events/s), `CLUSTER_LATENCY_EVENTS`
//! (2000, after `CLUSTER_WARMUP` 200 not measured), `CLUSTER_INFLIGHT` (256 write
//! requests in flight in open loop), `CLUSTER_N` (200 subscribers per node),
//! `CLUSTER_FANOUT_EVENTS` (100), `CLUSTER_FANOUT_INFLIGHT` (4 events),
//! `CLUSTER_OUTAGE_S` (5), `CLUSTER_OUTAGE_RATE` (100 events/s), `CLUSTER_SEQ_S` (3),
//! `CLUSTER_SEQ_INFLIGHT` (32 requests in flight). Postgres is `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); the nodes are `target/release/tidings`.
//!
//! Without `--bench` (as under `cargo test --benches`) it does a tiny smoke run that
//! measures nothing. What is measured and the figures: `docs/benchmarks.md`.

// The multi-process tests' launcher and clients (its `mod.rs` allows `dead_code` and
// `unreachable_pub` itself).
#[path = "../tests/common/mod.rs"]
mod common;

// A binary: `pub` here means "for main", not an API.
#[allow(unreachable_pub)]
mod bench {
    use std::{
        collections::BTreeMap,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::{Duration, Instant},
    };

    use futures::{StreamExt, stream};
    use serde_json::json;
    use tokio::{
        sync::{Semaphore, mpsc},
        task::JoinSet,
    };
    use tokio_tungstenite::tungstenite::Message;
    use tokio_util::sync::CancellationToken;

    use crate::common::{
        brokers::BrokerKind,
        cluster::{Cluster, ClusterOptions},
        server::{Client, token},
    };

    /// Bound on any one wait for deliveries.
    const DELIVERY_WAIT: Duration = Duration::from_secs(30);
    /// Bound on one HTTP write.
    const REQUEST: Duration = Duration::from_secs(10);

    fn setting(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// What one run does.
    #[derive(Debug, Clone)]
    pub struct Settings {
        measuring: bool,
        brokers: Vec<BrokerKind>,
        rounds: usize,
        rate: u64,
        latency_events: usize,
        warmup: usize,
        inflight: usize,
        per_node: usize,
        fanout_events: usize,
        fanout_inflight: usize,
        outage: Duration,
        outage_rate: u64,
        seq_time: Duration,
        seq_inflight: usize,
    }

    impl Settings {
        fn from_env() -> Self {
            let measuring = std::env::args().any(|a| a == "--bench");
            let brokers = std::env::var("CLUSTER_BROKERS")
                .unwrap_or_else(|_| "redis,nats,postgres".into())
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| match s.trim() {
                    "redis" => BrokerKind::Redis,
                    "nats" => BrokerKind::Nats,
                    "postgres" => BrokerKind::Postgres,
                    other => panic!("CLUSTER_BROKERS: unknown broker {other:?}"),
                })
                .collect();
            if measuring {
                Self {
                    measuring,
                    brokers,
                    rounds: setting("CLUSTER_ROUNDS", 1) as usize,
                    rate: setting("CLUSTER_RATE", 1000),
                    latency_events: setting("CLUSTER_LATENCY_EVENTS", 2000) as usize,
                    warmup: setting("CLUSTER_WARMUP", 200) as usize,
                    inflight: setting("CLUSTER_INFLIGHT", 256) as usize,
                    per_node: setting("CLUSTER_N", 200) as usize,
                    fanout_events: setting("CLUSTER_FANOUT_EVENTS", 100) as usize,
                    fanout_inflight: setting("CLUSTER_FANOUT_INFLIGHT", 4) as usize,
                    outage: Duration::from_secs(setting("CLUSTER_OUTAGE_S", 5)),
                    outage_rate: setting("CLUSTER_OUTAGE_RATE", 100),
                    seq_time: Duration::from_secs(setting("CLUSTER_SEQ_S", 3)),
                    seq_inflight: setting("CLUSTER_SEQ_INFLIGHT", 32) as usize,
                }
            } else {
                Self {
                    measuring,
                    brokers,
                    rounds: 1,
                    rate: 100,
                    latency_events: 20,
                    warmup: 5,
                    inflight: 8,
                    per_node: 3,
                    fanout_events: 5,
                    fanout_inflight: 2,
                    outage: Duration::from_secs(1),
                    outage_rate: 20,
                    seq_time: Duration::from_secs(1),
                    seq_inflight: 4,
                }
            }
        }
    }

    // -----------------------------------------------------------------------
    // Writes and subscribers
    // -----------------------------------------------------------------------

    /// Writes todos through the demo REST API with one pooled HTTP client.
    #[derive(Clone)]
    struct Writes {
        http: reqwest::Client,
        token: Arc<String>,
    }

    impl Writes {
        fn new() -> Self {
            Self {
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(1024)
                    .build()
                    .expect("HTTP client"),
                token: Arc::new(token("ann")),
            }
        }

        async fn create(&self, base: &str, title: &str) -> bool {
            let sent = self
                .http
                .post(format!("{base}/api/todos"))
                .bearer_auth(self.token.as_str())
                .timeout(REQUEST)
                .json(&json!({ "title": title }))
                .send()
                .await;
            matches!(sent, Ok(response) if response.status() == 201)
        }
    }

    /// Open loop: `count` writes titled `{prefix}{i}` through `base`, one every
    /// `1/rate` s (on schedule, whatever the replies), at most `inflight` at a time.
    /// Returns the start instant of each write and the number that failed.
    async fn write_at_rate(
        writes: &Writes,
        base: &str,
        prefix: &str,
        count: usize,
        rate: u64,
        inflight: usize,
    ) -> (Vec<Instant>, usize) {
        let limit = Arc::new(Semaphore::new(inflight));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut starts = Vec::with_capacity(count);
        let mut tasks = JoinSet::new();
        for i in 0..count {
            tick.tick().await;
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            starts.push(Instant::now());
            let (writes, base, title) = (writes.clone(), base.to_owned(), format!("{prefix}{i}"));
            tasks.spawn(async move {
                let ok = writes.create(&base, &title).await;
                drop(permit);
                ok
            });
        }
        let mut failed = 0;
        while let Some(ok) = tasks.join_next().await {
            if !ok.expect("write task") {
                failed += 1;
            }
        }
        (starts, failed)
    }

    /// The number in `"title":"{prefix}<n>"` of an event frame.
    fn title_index(text: &str, prefix: &str) -> Option<usize> {
        let marker = format!("\"title\":\"{prefix}");
        let at = text.find(&marker)? + marker.len();
        let digits: &str = &text[at..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    }

    /// A WebSocket subscriber to `todos:*` on `ws_url`, authenticated as `ann`.
    async fn subscriber(ws_url: &str) -> Client {
        let mut client = Client::authenticated(ws_url, &token("ann")).await;
        client.subscribe("s", "todos:*").await;
        client
    }

    /// Reads events titled `{prefix}<i>` (i < count) until each arrived once or
    /// `stop` is cancelled; the receive instant of each.
    fn record_arrivals(
        mut client: Client,
        prefix: String,
        count: usize,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<Vec<Option<Instant>>> {
        tokio::spawn(async move {
            let mut arrived = vec![None; count];
            let mut left = count;
            while left > 0 {
                let message = tokio::select! {
                    () = stop.cancelled() => break,
                    message = client.ws.next() => message,
                };
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                let now = Instant::now();
                if let Some(i) = title_index(&text, &prefix)
                    && i < count
                    && arrived[i].is_none()
                {
                    arrived[i] = Some(now);
                    left -= 1;
                }
            }
            arrived
        })
    }

    /// The arrivals, once every event arrived or at most `DELIVERY_WAIT` from now.
    async fn arrivals_within(
        arrivals: tokio::task::JoinHandle<Vec<Option<Instant>>>,
        stop: &CancellationToken,
    ) -> Vec<Option<Instant>> {
        let watchdog = tokio::spawn({
            let stop = stop.clone();
            async move {
                tokio::time::sleep(DELIVERY_WAIT).await;
                stop.cancel();
            }
        });
        let arrived = arrivals.await.expect("reader");
        watchdog.abort();
        arrived
    }

    fn percentile(sorted: &[f64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn millis(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    // -----------------------------------------------------------------------
    // Phases
    // -----------------------------------------------------------------------

    /// Figures of one cluster (or the baseline node) in one round.
    #[derive(Debug, Default, Clone)]
    pub struct Figures {
        latency_p50_ms: f64,
        latency_p99_ms: f64,
        latency_rate: f64,
        latency_lost: usize,
        fanout_dps: f64,
        fanout_subscribers: usize,
        outage_behind_p50_ms: f64,
        outage_behind_max_ms: f64,
        outage_catch_up_ms: f64,
        outage_events: usize,
        outage_lost: usize,
        seq_rate: f64,
        seq_acked_rate: f64,
        seq_backlog: i64,
        failed_writes: usize,
    }

    async fn latency(cluster: &Cluster, settings: &Settings, writes: &Writes, f: &mut Figures) {
        let reader = cluster.nodes.len().min(2) - 1;
        let count = settings.warmup + settings.latency_events;
        let client = subscriber(&cluster.node(reader).ws_url()).await;
        let stop = CancellationToken::new();
        let arrivals = record_arrivals(client, "lat".into(), count, stop.clone());
        let (starts, failed) = write_at_rate(
            writes,
            &cluster.node(0).base,
            "lat",
            count,
            settings.rate,
            settings.inflight,
        )
        .await;
        let wrote = starts[count - 1].duration_since(starts[settings.warmup]);
        let arrived = arrivals_within(arrivals, &stop).await;
        let mut ms: Vec<f64> = (settings.warmup..count)
            .filter_map(|i| arrived[i].map(|at| millis(at.duration_since(starts[i]))))
            .collect();
        ms.sort_by(f64::total_cmp);
        f.latency_lost = settings.latency_events - ms.len();
        f.latency_p50_ms = percentile(&ms, 50.0);
        f.latency_p99_ms = percentile(&ms, 99.0);
        f.latency_rate = (settings.latency_events - 1) as f64 / wrote.as_secs_f64();
        f.failed_writes += failed;
    }

    async fn fanout(
        cluster: &Cluster,
        settings: &Settings,
        writes: &Writes,
        per_node: usize,
        f: &mut Figures,
    ) {
        let warmup = 5;
        let events = warmup + settings.fanout_events;
        let urls: Vec<String> = cluster
            .nodes
            .iter()
            .flat_map(|node| std::iter::repeat_n(node.ws_url(), per_node))
            .collect();
        let subscribers = urls.len();
        let clients: Vec<Client> = stream::iter(urls)
            .map(|url| async move { subscriber(&url).await })
            .buffer_unordered(64)
            .collect()
            .await;
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new((0..events).map(|_| AtomicUsize::new(0)).collect());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
        let stop = CancellationToken::new();
        let mut readers = JoinSet::new();
        for mut client in clients {
            let (counts, done_tx, stop) = (counts.clone(), done_tx.clone(), stop.clone());
            readers.spawn(async move {
                let mut seen = 0;
                while seen < events {
                    let message = tokio::select! {
                        () = stop.cancelled() => break,
                        message = client.ws.next() => message,
                    };
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(i) = title_index(&text, "fan")
                                && i < events
                            {
                                seen += 1;
                                if counts[i].fetch_add(1, Ordering::Relaxed) + 1 == subscribers {
                                    let _ = done_tx.send(i);
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            });
        }
        drop(done_tx);
        let base = cluster.node(0).base.clone();
        let mut written = 0;
        let mut completed = 0;
        let mut started = Instant::now();
        let mut writers = JoinSet::new();
        let write = |i: usize, writers: &mut JoinSet<bool>| {
            let (writes, base) = (writes.clone(), base.clone());
            writers.spawn(async move { writes.create(&base, &format!("fan{i}")).await });
        };
        while written < settings.fanout_inflight.min(events) {
            write(written, &mut writers);
            written += 1;
        }
        let deadline = Instant::now() + DELIVERY_WAIT + Duration::from_secs(events as u64);
        let mut finished = None;
        while completed < events {
            let next = tokio::time::timeout_at(deadline.into(), done_rx.recv()).await;
            let Ok(Some(_)) = next else { break };
            completed += 1;
            if completed == warmup {
                started = Instant::now();
            }
            if written < events {
                write(written, &mut writers);
                written += 1;
            }
            if completed == events {
                finished = Some(Instant::now());
            }
        }
        stop.cancel();
        while readers.join_next().await.is_some() {}
        while let Some(ok) = writers.join_next().await {
            if !ok.expect("writer") {
                f.failed_writes += 1;
            }
        }
        f.fanout_subscribers = subscribers;
        f.fanout_dps = match finished {
            Some(end) => {
                (settings.fanout_events * subscribers) as f64
                    / end.duration_since(started).as_secs_f64()
            }
            None => f64::NAN,
        };
    }

    async fn outage(cluster: &mut Cluster, settings: &Settings, writes: &Writes, f: &mut Figures) {
        let before = Duration::from_secs(1);
        let after = Duration::from_secs(2);
        let total = before + settings.outage + after;
        let count = (total.as_secs_f64() * settings.outage_rate as f64) as usize;
        let client = subscriber(&cluster.node(1).ws_url()).await;
        let stop = CancellationToken::new();
        let arrivals = record_arrivals(client, "out".into(), count, stop.clone());
        let writer = tokio::spawn({
            let (writes, base) = (writes.clone(), cluster.node(0).base.clone());
            let rate = settings.outage_rate;
            async move { write_at_rate(&writes, &base, "out", count, rate, 256).await }
        });
        tokio::time::sleep(before).await;
        let killed = Instant::now();
        cluster.broker.kill().await;
        tokio::time::sleep(settings.outage).await;
        let restarting = Instant::now();
        cluster.broker.restart().await;
        let listening = Instant::now();
        let (starts, failed) = writer.await.expect("writer");
        let arrived = arrivals_within(arrivals, &stop).await;
        let during: Vec<usize> = (0..count)
            .filter(|&i| starts[i] >= killed && starts[i] < restarting)
            .collect();
        let mut behind: Vec<f64> = during
            .iter()
            .filter_map(|&i| arrived[i].map(|at| millis(at.duration_since(starts[i]))))
            .collect();
        behind.sort_by(f64::total_cmp);
        let last = during.iter().filter_map(|&i| arrived[i]).max();
        f.outage_events = during.len();
        f.outage_lost = arrived.iter().filter(|a| a.is_none()).count();
        f.outage_behind_p50_ms = percentile(&behind, 50.0);
        f.outage_behind_max_ms = behind.last().copied().unwrap_or(f64::NAN);
        f.outage_catch_up_ms = match last {
            Some(last) => millis(last.saturating_duration_since(listening)),
            None => f64::NAN,
        };
        f.failed_writes += failed;
    }

    async fn sequencing(cluster: &Cluster, settings: &Settings, writes: &Writes, f: &mut Figures) {
        let db = cluster.db().await;
        let last_seq = || async {
            sqlx::query_scalar::<_, i64>("SELECT last_seq FROM realtime_meta WHERE id = 1")
                .fetch_one(&db)
                .await
                .expect("reading realtime_meta")
        };
        let stop = CancellationToken::new();
        let acked = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let bases: Vec<String> = cluster.nodes.iter().map(|n| n.base.clone()).collect();
        let mut tasks = JoinSet::new();
        for w in 0..settings.seq_inflight {
            let (writes, stop, acked, failed) =
                (writes.clone(), stop.clone(), acked.clone(), failed.clone());
            let base = bases[w % bases.len()].clone();
            tasks.spawn(async move {
                let mut n = 0;
                while !stop.is_cancelled() {
                    if writes.create(&base, &format!("seq{w}-{n}")).await {
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            });
        }
        // Ramp up for half a second, then measure a window of `seq_time`.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (seq0, acked0, t0) = (
            last_seq().await,
            acked.load(Ordering::Relaxed),
            Instant::now(),
        );
        tokio::time::sleep(settings.seq_time).await;
        let (seq1, acked1, t1) = (
            last_seq().await,
            acked.load(Ordering::Relaxed),
            Instant::now(),
        );
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM realtime_outbox WHERE seq IS NULL")
                .fetch_one(&db)
                .await
                .expect("reading realtime_outbox");
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        let window = t1.duration_since(t0).as_secs_f64();
        f.seq_rate = (seq1 - seq0) as f64 / window;
        f.seq_acked_rate = (acked1 - acked0) as f64 / window;
        f.seq_backlog = backlog;
        f.failed_writes += failed.load(Ordering::Relaxed);
        db.close().await;
    }

    // -----------------------------------------------------------------------
    // Orchestration and report
    // -----------------------------------------------------------------------

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    }

    fn name(kind: BrokerKind) -> &'static str {
        match kind {
            BrokerKind::Memory => "memory x1",
            BrokerKind::Redis => "redis x3",
            BrokerKind::Nats => "nats x3",
            BrokerKind::Postgres => "postgres x3",
        }
    }

    async fn measure(kind: BrokerKind, settings: &Settings) -> Figures {
        let nodes = if kind == BrokerKind::Memory { 1 } else { 3 };
        let mut cluster = Cluster::start(
            kind,
            ClusterOptions {
                nodes,
                ..ClusterOptions::default()
            },
        )
        .await;
        let writes = Writes::new();
        let mut f = Figures {
            outage_behind_p50_ms: f64::NAN,
            outage_behind_max_ms: f64::NAN,
            outage_catch_up_ms: f64::NAN,
            ..Figures::default()
        };
        eprintln!("  {}: latency (load {})", name(kind), loadavg());
        latency(&cluster, settings, &writes, &mut f).await;
        eprintln!("  {}: fan-out (load {})", name(kind), loadavg());
        let per_node = settings.per_node * 3 / nodes;
        fanout(&cluster, settings, &writes, per_node, &mut f).await;
        if kind != BrokerKind::Memory {
            eprintln!("  {}: outage (load {})", name(kind), loadavg());
            outage(&mut cluster, settings, &writes, &mut f).await;
        }
        eprintln!("  {}: sequencing (load {})", name(kind), loadavg());
        sequencing(&cluster, settings, &writes, &mut f).await;
        f
    }

    fn median(values: &mut [f64]) -> f64 {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn cell(value: f64, base: f64, decimals: usize) -> String {
        if value.is_nan() {
            return "-".into();
        }
        if base.is_nan() || base == 0.0 {
            return format!("{value:.decimals$}");
        }
        format!("{value:.decimals$} ({:.2}x)", value / base)
    }

    pub fn main() {
        let settings = Settings::from_env();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let began = Instant::now();
        let load_before = loadavg();
        let mut kinds = vec![BrokerKind::Memory];
        kinds.extend(settings.brokers.iter().copied());
        let mut all: BTreeMap<usize, Vec<Figures>> = BTreeMap::new();
        runtime.block_on(async {
            for round in 0..settings.rounds {
                for (k, &kind) in kinds.iter().enumerate() {
                    eprintln!("round {}: {}", round + 1, name(kind));
                    let f = measure(kind, &settings).await;
                    eprintln!("  {f:?}");
                    all.entry(k).or_default().push(f);
                }
            }
        });
        let load_after = loadavg();
        report(
            &settings,
            &kinds,
            &all,
            &load_before,
            &load_after,
            began.elapsed(),
        );
    }

    fn report(
        settings: &Settings,
        kinds: &[BrokerKind],
        all: &BTreeMap<usize, Vec<Figures>>,
        load_before: &str,
        load_after: &str,
        took: Duration,
    ) {
        type Pick = fn(&Figures) -> f64;
        let rows: [(&str, Pick, usize, bool); 10] = [
            ("latency p50 (ms)", |f| f.latency_p50_ms, 1, true),
            ("latency p99 (ms)", |f| f.latency_p99_ms, 1, true),
            (
                "latency: write rate reached (events/s)",
                |f| f.latency_rate,
                0,
                true,
            ),
            ("fan-out deliveries/s", |f| f.fanout_dps, 0, true),
            (
                "sequenced rows/s (log on Postgres)",
                |f| f.seq_rate,
                0,
                true,
            ),
            (
                "acknowledged writes/s in that window",
                |f| f.seq_acked_rate,
                0,
                true,
            ),
            (
                "unsequenced rows at the window's end",
                |f| f.seq_backlog as f64,
                0,
                false,
            ),
            (
                "outage: behind p50 (ms)",
                |f| f.outage_behind_p50_ms,
                0,
                false,
            ),
            (
                "outage: behind max (ms)",
                |f| f.outage_behind_max_ms,
                0,
                false,
            ),
            (
                "outage: catch-up after restart (ms)",
                |f| f.outage_catch_up_ms,
                0,
                false,
            ),
        ];
        println!();
        if !settings.measuring {
            println!("SMOKE RUN (no --bench argument, as under cargo test): not a measurement");
        }
        println!("== cluster summary ==");
        println!("command: cargo bench --bench cluster");
        println!(
            "settings: rounds {}, latency {} events at {}/s after {} warm-up (<= {} in flight), \
             fan-out {} events ({} in flight) to {} subscribers per node x3 or {} on one node, \
             outage {:?} at {}/s, sequencing {:?} with {} requests in flight",
            settings.rounds,
            settings.latency_events,
            settings.rate,
            settings.warmup,
            settings.inflight,
            settings.fanout_events,
            settings.fanout_inflight,
            settings.per_node,
            settings.per_node * 3,
            settings.outage,
            settings.outage_rate,
            settings.seq_time,
            settings.seq_inflight
        );
        println!(
            "machine: {} cores; load average (1/5/15 min) {load_before} before, {load_after} after",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "figures: medians of {} round(s); (ratio to memory x1)",
            settings.rounds
        );
        print!("{:<40}", "");
        for &kind in kinds {
            print!("{:>22}", name(kind));
        }
        println!();
        let base = &all[&0];
        for (label, pick, decimals, ratio) in rows {
            print!("{label:<40}");
            let mut b: Vec<f64> = base.iter().map(pick).collect();
            let b = median(&mut b);
            for k in 0..kinds.len() {
                let mut v: Vec<f64> = all[&k].iter().map(pick).collect();
                let v = median(&mut v);
                let text = if k == 0 || !ratio {
                    cell(v, f64::NAN, decimals)
                } else {
                    cell(v, b, decimals)
                };
                print!("{text:>22}");
            }
            println!();
        }
        for (k, &kind) in kinds.iter().enumerate() {
            let lost: Vec<String> = all[&k]
                .iter()
                .map(|f| {
                    format!(
                        "latency lost {}, outage events {} lost {}, failed writes {}",
                        f.latency_lost, f.outage_events, f.outage_lost, f.failed_writes
                    )
                })
                .collect();
            println!("{}: {}", name(kind), lost.join("; "));
        }
        println!("total bench time {:.1} s", took.as_secs_f64());
    }
}

fn main() {
    bench::main();
}
