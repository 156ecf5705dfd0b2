//! The event log: the outbox written with each write, the relay that sequences it,
//! the hot ring of recent events, the ingest that feeds the hub, and the replay that
//! serves resumes.

pub(crate) mod broker_link;
pub(crate) mod heartbeat;
pub(crate) mod ingest;
pub(crate) mod outbox;
pub(crate) mod reader;
pub(crate) mod relay;
pub(crate) mod replay;
pub(crate) mod resume_gate;
pub(crate) mod ring;
pub(crate) mod snapshot;

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::{config::LogConfig, db::Db};

/// Wakes the relay after a commit that wrote outbox rows. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RelaySignal(Arc<Notify>);

impl RelaySignal {
    /// Tells the relay that new rows may be waiting.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Waits for the next wake-up (or returns at once if one is pending).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

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
