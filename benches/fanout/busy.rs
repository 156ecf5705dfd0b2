//! Burst mode's clock: how long the server kept working on a burst, read from the CPU
//! time of its threads in `/proc`, so that the load generator (whose subscribers do
//! not read meanwhile) takes no part in the figure. Linux only.

use std::time::{Duration, Instant};

/// How often the server's CPU time is read.
const SAMPLE: Duration = Duration::from_millis(2);

/// A sample counts as busy when the server ran for at least this share of it on some
/// CPU: a burst keeps at least one worker running all the time, while what an idle
/// server does (a timer, the relay's poll) takes a small part of one sample.
const BUSY_SHARE: f64 = 0.5;

/// How the server spent a burst.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    /// From `start` to the end of the last busy sample.
    pub window: Duration,
    /// CPU time of all the server's threads in that window.
    pub cpu: Duration,
    /// The server was still busy when the timeout ended the sampling: the window is
    /// too short and its figure wrong.
    pub timed_out: bool,
}

/// Samples the CPU time of `pid` from `start` until it has not been busy for `quiet`
/// (or `timeout` passed); returns the window up to its last busy sample.
pub fn until_quiet(pid: u32, start: Instant, quiet: Duration, timeout: Duration) -> Busy {
    let first = cpu_nanos(pid);
    let mut previous = (start, first);
    let mut last_busy = previous;
    loop {
        std::thread::sleep(SAMPLE);
        let now = (Instant::now(), cpu_nanos(pid));
        let ran = now.1.saturating_sub(previous.1) as f64;
        let elapsed = now.0.duration_since(previous.0).as_nanos() as f64;
        if ran >= BUSY_SHARE * elapsed {
            last_busy = now;
        }
        previous = now;
        let quiet_now = now.0.duration_since(last_busy.0) >= quiet;
        if quiet_now || now.0.duration_since(start) >= timeout {
            return Busy {
                window: last_busy.0.duration_since(start),
                cpu: Duration::from_nanos(last_busy.1.saturating_sub(first)),
                timed_out: !quiet_now,
            };
        }
    }
}

/// Nanoseconds all threads of `pid` have run: the first field of each thread's
/// `schedstat`, finer than the clock ticks of `/proc/<pid>/stat`.
fn cpu_nanos(pid: u32) -> u64 {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    threads
        .filter_map(Result::ok)
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
