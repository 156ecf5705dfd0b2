//! The cost of matching one event against 10,000 subscriptions in the hub.
//!
//! Run with `cargo bench --bench matching`. Each pattern set registers one receiver per
//! pattern in a real `Hub` (demo rules) and times `Hub::count_matching` for a record
//! event (`todos:1234`) and a collection-wide event (`todos`, what a
//! `Target::Collection` broadcast is). In the same run, and on the same patterns, it
//! times two baselines, so every figure comes with a ratio:
//!
//! * `linear`: `Pattern::matches` over a `Vec` of the patterns, collecting the indexes
//!   of the matches into a fresh `Vec`: the no-index answer, producing a flat list of
//!   matches (the hub produces its matches grouped by receiver);
//! * `globset` (glob sets only): one `globset::GlobSet` over the glob sides, the
//!   "compile all globs into one automaton" answer; its one-off build time is printed
//!   too, since a hub would have to rebuild it as subscriptions come and go;
//! * `cand` (glob sets only): the linear scan with the `globset::Candidate` built once
//!   per event instead of once per glob, which is what `GlobMatcher::is_match` does.
//!
//! Environment (all optional): `MATCH_PATTERNS` (default 10000), `MATCH_SAMPLES`
//! (default 31), `MATCH_SAMPLE_MS` (default 20).
//!
//! Timing is a hand-rolled loop: a warm-up, then a calibrated batch size so one sample
//! takes about `MATCH_SAMPLE_MS`, then `MATCH_SAMPLES` samples; the median is reported
//! (with min and max), because the median shrugs off the odd scheduler hiccup that a
//! mean would absorb. See `docs/benchmarks.md`.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use globset::{Candidate, Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use tidings::{
    __private::{Closer, Delivery, Hub, Inbox, Receiver},
    Metrics, Pattern, Principal, demo,
};
use tokio::sync::mpsc;

/// The record key every set is matched against. Chosen so each set has a few
/// non-trivial matches (see `docs/benchmarks.md` for the counts).
const EVENT_KEY: &str = "1234";
const EVENT_COLLECTION: &str = "todos";

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// The four pattern kinds, each written so that pattern `i` is distinct from every other
/// pattern of its kind.
fn exact(i: usize) -> String {
    format!("todos:{i}")
}

/// `todos:<a>?<b>*` (for example `todos:12?3*`): a literal prefix, one wildcard
/// character, a literal, then anything. `a = i / 10`, `b = i % 10` keeps them distinct.
fn key_glob(i: usize) -> String {
    format!("todos:{}?{}*", i / 10, i % 10)
}

/// `c<i>*:*`, a collection glob that matches other collections; pattern 0 is `to*:*`,
/// which matches `todos`, so the set is not all misses.
fn collection_glob(i: usize) -> String {
    if i == 0 {
        "to*:*".to_owned()
    } else {
        format!("c{i}*:*")
    }
}

/// The fan-out bench's shape: every receiver on the same `todos:*`. Not distinct
/// patterns (a collection has one any-key pattern), but the common case.
fn any_key(_: usize) -> String {
    "todos:*".to_owned()
}

/// The mix: 60% exact keys, 10% `todos:*`, 20% key globs, 10% collection globs.
/// `todos:*` has one spelling, so those receivers share the text (as browsers on one
/// list page do); every other pattern is distinct.
fn mixed(i: usize) -> String {
    match i % 10 {
        0..=5 => exact(i),
        6 => "todos:*".to_owned(),
        7 | 8 => key_glob(i),
        _ => collection_glob(i - 9),
    }
}

struct PatternSet {
    name: &'static str,
    texts: Vec<String>,
    /// The glob side of each pattern, for the `globset` baseline; empty when the set
    /// is not all globs.
    globs: GlobSide,
}

#[derive(Clone, Copy, PartialEq)]
enum GlobSide {
    None,
    Key,
    Collection,
}

/// A hub with one receiver per pattern. The queues' other ends are kept so the
/// receivers look alive; `count_matching` never sends.
struct Loaded {
    hub: Hub,
    _queues: Vec<mpsc::Receiver<Delivery>>,
}

fn load_hub(texts: &[String]) -> Loaded {
    let hub = Hub::new(Arc::new(demo::rules()), Arc::new(Metrics::default()), 0);
    let mut queues = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let (queue, rx) = mpsc::channel(1);
        queues.push(rx);
        let user: Arc<str> = Arc::from(format!("user{i}"));
        let key = hub.connect(Receiver {
            id: Arc::from(format!("conn{i}")),
            principal: Arc::new(Principal {
                user_id: Some(user),
                roles: Vec::new(),
                expires_at: None,
                claims: serde_json::Value::Null,
            }),
            inbox: Inbox::Queue(queue),
            closer: Closer::default(),
        });
        let pattern = Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        hub.subscribe(key, Arc::from("s1"), Arc::new(pattern))
            .expect("fresh receiver, fresh id");
    }
    Loaded {
        hub,
        _queues: queues,
    }
}

/// The glob side of every pattern, compiled with the options of
/// `topic::GlobPart::compile`, so both sides match alike.
fn globs_of(texts: &[String], side: GlobSide) -> Vec<Glob> {
    texts
        .iter()
        .map(|text| {
            let (collection, key) = text.split_once(':').expect("every set pattern has a ':'");
            let glob = if side == GlobSide::Key {
                key
            } else {
                collection
            };
            GlobBuilder::new(glob)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .expect("valid glob")
        })
        .collect()
}

/// A `GlobSet` of `globs` and how long building it took.
fn globset_of(globs: &[Glob]) -> (GlobSet, Duration) {
    let start = Instant::now();
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(glob.clone());
    }
    let set = builder.build().expect("globset");
    (set, start.elapsed())
}

/// Median, min and max nanoseconds per call.
#[derive(Clone, Copy)]
struct Timing {
    median: f64,
    min: f64,
    max: f64,
}

fn time_it(samples: usize, sample_time: Duration, mut f: impl FnMut() -> usize) -> Timing {
    // Warm-up: caches, branch predictors, the allocator's free lists.
    let warm_until = Instant::now() + sample_time * 5;
    while Instant::now() < warm_until {
        black_box(f());
    }
    // Calibrate the batch so one sample is about `sample_time`: the clock is read
    // twice per sample, never per call.
    let mut batch: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        if start.elapsed() >= sample_time / 4 || batch >= 1 << 30 {
            let per_call = start.elapsed().as_secs_f64() / batch as f64;
            batch = ((sample_time.as_secs_f64() / per_call).ceil() as u64).max(1);
            break;
        }
        batch *= 2;
    }
    let mut per_call: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    Timing {
        median: per_call[per_call.len() / 2],
        min: per_call[0],
        max: per_call[per_call.len() - 1],
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Row {
    set: &'static str,
    event: &'static str,
    matches: usize,
    hub: Timing,
    linear: Timing,
    globset: Option<Timing>,
    /// Linear scan of compiled globs with one `Candidate` per event.
    candidate: Option<Timing>,
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: a tiny, untimed
    // smoke run keeps that fast while still exercising the code.
    let benching = std::env::args().any(|a| a == "--bench");
    let count = if benching {
        env_usize("MATCH_PATTERNS", 10_000)
    } else {
        100
    };
    let samples = if benching {
        env_usize("MATCH_SAMPLES", 31).max(1)
    } else {
        3
    };
    let sample_time = Duration::from_millis(if benching {
        env_usize("MATCH_SAMPLE_MS", 20) as u64
    } else {
        1
    });

    let sets = [
        PatternSet {
            name: "exact",
            texts: (0..count).map(exact).collect(),
            globs: GlobSide::None,
        },
        PatternSet {
            name: "any-key",
            texts: (0..count).map(any_key).collect(),
            globs: GlobSide::None,
        },
        PatternSet {
            name: "key-glob",
            texts: (0..count).map(key_glob).collect(),
            globs: GlobSide::Key,
        },
        PatternSet {
            name: "collection-glob",
            texts: (0..count).map(collection_glob).collect(),
            globs: GlobSide::Collection,
        },
        PatternSet {
            name: "mix",
            texts: (0..count).map(mixed).collect(),
            globs: GlobSide::None,
        },
    ];

    let started = Instant::now();
    let load_before = loadavg();
    let mut rows = Vec::new();
    let mut builds = Vec::new();
    for set in &sets {
        let loaded = load_hub(&set.texts);
        let patterns: Vec<Pattern> = set
            .texts
            .iter()
            .map(|t| Pattern::parse(t).expect("valid"))
            .collect();
        let globs = (set.globs != GlobSide::None).then(|| globs_of(&set.texts, set.globs));
        let globset = globs.as_deref().map(globset_of);
        if let Some((_, built)) = &globset {
            builds.push((set.name, built.as_secs_f64() * 1e3));
        }
        let matchers: Vec<GlobMatcher> =
            globs.iter().flatten().map(Glob::compile_matcher).collect();
        for (event, key) in [("todos:1234", Some(EVENT_KEY)), ("todos", None)] {
            let hub = &loaded.hub;
            let matches = hub.count_matching(EVENT_COLLECTION, key);
            let linear = |collection: &str, key: Option<&str>| {
                let mut found = Vec::new();
                for (i, pattern) in patterns.iter().enumerate() {
                    if pattern.matches(collection, key) {
                        found.push(i);
                    }
                }
                found.len()
            };
            // Both must agree, or the comparison means nothing.
            assert_eq!(
                matches,
                linear(EVENT_COLLECTION, key),
                "{} {event}",
                set.name
            );
            let hub_time = time_it(samples, sample_time, || {
                hub.count_matching(black_box(EVENT_COLLECTION), black_box(key))
            });
            let linear_time = time_it(samples, sample_time, || {
                linear(black_box(EVENT_COLLECTION), black_box(key))
            });
            // What the glob side is tested against; a collection-wide event has no
            // key for a key-side glob to test (every key glob matches it).
            let subject = match (set.globs, key) {
                (GlobSide::Key, Some(key)) => Some(key),
                (GlobSide::Collection, _) => Some(EVENT_COLLECTION),
                _ => None,
            };
            let (globset_time, candidate_time) = match (&globset, subject) {
                (Some((gs, _)), Some(subject)) => {
                    let mut found = Vec::new();
                    let set_time = time_it(samples, sample_time, || {
                        gs.matches_candidate_into(&Candidate::new(black_box(subject)), &mut found);
                        found.len()
                    });
                    let scan_time = time_it(samples, sample_time, || {
                        let candidate = Candidate::new(black_box(subject));
                        matchers
                            .iter()
                            .filter(|m| m.is_match_candidate(&candidate))
                            .count()
                    });
                    (Some(set_time), Some(scan_time))
                }
                _ => (None, None),
            };
            rows.push(Row {
                set: set.name,
                event,
                matches,
                hub: hub_time,
                linear: linear_time,
                globset: globset_time,
                candidate: candidate_time,
            });
        }
    }

    println!();
    println!("== matching summary ==");
    println!(
        "{count} subscriptions per set (one receiver each); {samples} samples of ~{} ms; \
         median ns per event [min..max]",
        sample_time.as_millis()
    );
    println!(
        "{:<16} {:<11} {:>7} {:>28} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "set",
        "event",
        "matches",
        "hub ns/event [min..max]",
        "ns/pattern",
        "linear ns",
        "hub/lin",
        "globset ns",
        "cand ns"
    );
    let ns = |t: Option<Timing>| t.map_or_else(|| "-".to_owned(), |t| format!("{:.0}", t.median));
    for row in &rows {
        println!(
            "{:<16} {:<11} {:>7} {:>28} {:>10.2} {:>10.0} {:>8.3} {:>10} {:>10}",
            row.set,
            row.event,
            row.matches,
            format!(
                "{:.0} [{:.0}..{:.0}]",
                row.hub.median, row.hub.min, row.hub.max
            ),
            row.hub.median / count as f64,
            row.linear.median,
            row.hub.median / row.linear.median,
            ns(row.globset),
            ns(row.candidate),
        );
    }
    for (set, ms) in &builds {
        println!("building the {set} GlobSet ({count} globs) took {ms:.1} ms");
    }
    println!(
        "machine: {} cores; load average (1/5/15 min) {load_before} before, {} after; \
         total bench time {:.1} s",
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}
