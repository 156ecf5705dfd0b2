//! The load generator's shared state: which event reached how many subscribers, what
//! the measured deliveries took, and how connections ended. Subscribers write it, the
//! publisher reads it to hold its window, the control loop reports it.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Instant,
};

use tokio::sync::{Notify, watch};

use super::latency::Samples;

/// Events tracked at once. The closed loop has `window` events in flight and the
/// fixed rate a handful per second, so a slot is long done before it is reused.
const RING: usize = 1 << 16;

#[derive(Debug)]
pub struct Tally {
    /// The clock of every publish and receive time (µs since this instant).
    clock: Instant,
    /// Per event (by sequence number modulo `RING`): subscribers that have it.
    reached: Vec<AtomicU32>,
    /// Rung whenever an event has reached every live subscriber.
    pub completed: Notify,
    /// Connections subscribed and not ended.
    pub live: AtomicUsize,
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    /// Events from this sequence number on are measured.
    measure_from: AtomicU64,
    /// Measured deliveries and the time of the last one.
    pub received: AtomicU64,
    pub last_receive: AtomicU64,
    samples: Mutex<Samples>,
    /// Every event frame, warm-up included: count and bytes, for the frame size.
    pub frames: AtomicU64,
    pub frame_bytes: AtomicU64,
    /// How connections ended (close code, error) or failed to start, with counts.
    ends: Mutex<BTreeMap<String, u64>>,
    /// True while the subscribers are told to stop reading (burst mode).
    pub pause: watch::Sender<bool>,
    /// Subscribers that have stopped reading.
    pub paused: AtomicUsize,
    /// The receive buffer the kernel gave the subscribers' sockets (all ask alike).
    pub receive_buffer: AtomicU64,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            clock: Instant::now(),
            reached: (0..RING).map(|_| AtomicU32::new(0)).collect(),
            completed: Notify::new(),
            live: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            measure_from: AtomicU64::new(u64::MAX),
            received: AtomicU64::new(0),
            last_receive: AtomicU64::new(0),
            samples: Mutex::new(Samples::default()),
            frames: AtomicU64::new(0),
            frame_bytes: AtomicU64::new(0),
            ends: Mutex::new(BTreeMap::new()),
            pause: watch::Sender::new(false),
            paused: AtomicUsize::new(0),
            receive_buffer: AtomicU64::new(0),
        }
    }

    pub fn now_micros(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Called just before event `seq` is published: its slot starts from zero.
    pub fn publishing(&self, seq: u64) {
        self.reached[slot(seq)].store(0, Relaxed);
    }

    /// Whether event `seq` has reached every live subscriber.
    pub fn complete(&self, seq: u64) -> bool {
        self.reached[slot(seq)].load(Relaxed) as usize >= self.live.load(Relaxed)
    }

    /// A subscriber received event `seq`, published at `t0`, in a frame of `bytes`.
    pub fn delivered(&self, seq: u64, t0: u64, bytes: usize) {
        let now = self.now_micros();
        self.frames.fetch_add(1, Relaxed);
        self.frame_bytes.fetch_add(bytes as u64, Relaxed);
        let reached = self.reached[slot(seq)].fetch_add(1, Relaxed) as usize + 1;
        if reached >= self.live.load(Relaxed) {
            self.completed.notify_waiters();
        }
        if seq >= self.measure_from.load(Relaxed) {
            self.received.fetch_add(1, Relaxed);
            self.last_receive.fetch_max(now, Relaxed);
            self.lock_samples().push(now.saturating_sub(t0));
        }
    }

    /// Starts a measurement with event `seq`: counters and samples from zero.
    pub fn measure_from(&self, seq: u64) {
        self.received.store(0, Relaxed);
        self.last_receive.store(0, Relaxed);
        self.lock_samples().clear();
        self.measure_from.store(seq, Relaxed);
    }

    /// Ends the measurement and hands over its samples.
    pub fn take_samples(&self) -> Samples {
        self.measure_from.store(u64::MAX, Relaxed);
        std::mem::take(&mut *self.lock_samples())
    }

    pub fn end(&self, why: String) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        *ends.entry(why).or_default() += 1;
    }

    /// `why=count;…`, or `none`.
    pub fn ends(&self) -> String {
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        if ends.is_empty() {
            return "none".to_owned();
        }
        ends.iter()
            .map(|(why, count)| format!("{why}={count}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    fn lock_samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn slot(seq: u64) -> usize {
    (seq % RING as u64) as usize
}
