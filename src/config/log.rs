//! The event log: ring, retention, relay and resume.

use std::time::Duration;

use serde::Deserialize;

/// Event log, ring and resume.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Recent events kept in memory for fast resumes. Default: 10000.
    pub ring_capacity: usize,
    /// Bytes the in-memory ring may hold at most (estimated: three times each event's
    /// encoded size, plus a small overhead); the oldest events are dropped first.
    /// Default: 32 MiB.
    pub ring_max_bytes: usize,
    /// A resume that would replay more matching events than this answers
    /// `recovered:false` (`too_many`). Default: 1000.
    pub replay_cap: usize,
    /// The most log rows one resume may read, matching or not: a resume whose range
    /// `(since, position]` holds more answers `recovered:false` (`too_many`) before
    /// reading anything, whatever its pattern matches. Default: 10000.
    pub resume_scan_budget: u64,
    /// Resumes (a `subscribe` with `since`, an SSE request with `Last-Event-ID`) are
    /// rate limited per user on this node: the allowance refills by one resume every
    /// `resume_interval`, up to `resume_burst`. Anonymous clients share one allowance.
    /// A resume past it is refused (`rate_limited`, HTTP 429). Default: 200 ms (5 per
    /// second).
    #[serde(with = "humantime_serde")]
    pub resume_interval: Duration,
    /// Resumes a user may make at once (a page reconnecting all its subscriptions).
    /// Default: 50.
    pub resume_burst: u32,
    /// Sequenced events kept in the table; older ones are pruned and a resume from
    /// before them answers `too_old`. Default: 100000.
    pub retention: u64,
    /// Bytes of sequenced events kept in the table (their payload, changes and rule
    /// fields); the oldest beyond it are pruned like those beyond `retention`.
    /// Default: 256 MiB.
    pub retention_bytes: u64,
    /// How often the relay and the gap filler poll the log even without a doorbell.
    /// While the broker is down or silent the gap filler polls every
    /// `broker.fallback_poll_interval` instead. Default: 500 ms.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Rows the relay sequences per transaction; on SQLite also the most committed
    /// events waiting to be handed to it in memory. Default: 500.
    pub relay_batch: u32,
    /// Postgres: the shortest time between two of the relay's batches that find rows,
    /// while commits keep waking it. A commit that comes sooner after the last such
    /// batch waits for the rest of it, and the commits meanwhile share one sequencing
    /// transaction, which would otherwise take its share of the database's time at
    /// every commit. A commit after a quiet spell is relayed at once. `0s`
    /// relays every commit at once. At most 1 s. SQLite's relay never lingers: it only
    /// reads, and a linger would only add latency. Default: 2 ms.
    #[serde(with = "humantime_serde")]
    pub relay_linger: Duration,
    /// Postgres: how long rows may wait to settle before the relay numbers them with a
    /// flush to disk of its own. The relay numbers a row without that flush once no
    /// transaction that started writing before the row's own did is still running (see
    /// `docs/architecture.md`); rows from concurrent writers settle as those commit,
    /// but a long transaction anywhere on the database server holds them back, and
    /// this bounds what it adds to their delivery. `0s` numbers them at once. At most
    /// 1 s. Default: 20 ms.
    #[serde(with = "humantime_serde")]
    pub relay_settle: Duration,
    /// How long a resume may wait for this node to catch up with the log when its
    /// cursor is ahead of what the node has delivered (the client comes from another
    /// node whose events this one has not heard of yet). Past it, the resume answers
    /// `unknown_position`. Default: 2 s.
    #[serde(with = "humantime_serde")]
    pub catch_up_timeout: Duration,
    /// Postgres: the longest a node may hold up sequencing. A relay transaction that
    /// waits this long for the log's lock, runs a statement this long, or sits idle
    /// this long (its node hung, stopped or cut off while holding the lock) is ended by
    /// the database, so the other nodes resume sequencing within about this time,
    /// however the node failed. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub sequencer_timeout: Duration,
    /// The longest `wait` of an HTTP catch-up long poll (`GET /realtime/events`); a
    /// longer one is cut to it. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub catch_up_max_wait: Duration,
    /// Events one HTTP catch-up answer holds at most (its `limit` is cut to it; the
    /// client pages with the returned cursor). Default: 1000.
    pub catch_up_max_events: usize,
    /// HTTP catch-up long polls waiting at once on this node; past it a request
    /// answers at once instead of waiting. Default: 1000.
    pub catch_up_max_waiting: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            ring_capacity: 10_000,
            ring_max_bytes: 32 * 1024 * 1024,
            replay_cap: 1000,
            resume_scan_budget: 10_000,
            resume_interval: Duration::from_millis(200),
            resume_burst: 50,
            retention: 100_000,
            retention_bytes: 256 * 1024 * 1024,
            poll_interval: Duration::from_millis(500),
            relay_batch: 500,
            relay_linger: Duration::from_millis(2),
            relay_settle: Duration::from_millis(20),
            catch_up_timeout: Duration::from_secs(2),
            sequencer_timeout: Duration::from_secs(5),
            catch_up_max_wait: Duration::from_secs(30),
            catch_up_max_events: 1000,
            catch_up_max_waiting: 1000,
        }
    }
}
