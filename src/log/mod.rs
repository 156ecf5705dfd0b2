//! The event log: the outbox written with each write, the relay that sequences it,
//! the hot ring of recent events, the ingest that feeds the hub, and the replay that
//! serves resumes.

mod appender;
pub(crate) mod broker_link;
pub(crate) mod heartbeat;
pub(crate) mod ingest;
pub(crate) mod outbox;
pub(crate) mod reader;
pub(crate) mod relay;
pub(crate) mod replay;
pub(crate) mod resume_gate;
pub(crate) mod ring;
mod signal;
pub(crate) mod snapshot;

use std::sync::{Arc, RwLock};

use crate::{config::LogConfig, db::Db};

pub(crate) use appender::SqliteAppender;
pub use signal::RelaySignal;

/// This node's view of the log: the database, the current epoch and the ring.
#[derive(Debug)]
pub(crate) struct Log {
    /// Where the log lives.
    pub db: Db,
    epoch: RwLock<Arc<str>>,
    /// Recent events.
    pub ring: ring::Ring,
    /// The per-user resume rate limit.
    pub resumes: resume_gate::ResumeGate,
    /// Limits.
    pub config: LogConfig,
}

impl Log {
    /// The log at `epoch`.
    pub(crate) fn new(db: Db, epoch: &str, config: LogConfig) -> Self {
        Self {
            db,
            epoch: RwLock::new(Arc::from(epoch)),
            ring: ring::Ring::new(config.ring_capacity, config.ring_max_bytes),
            resumes: resume_gate::ResumeGate::new(&config),
            config,
        }
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> Arc<str> {
        self.epoch.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_epoch(&self, epoch: &str) {
        *self.epoch.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(epoch);
    }
}
