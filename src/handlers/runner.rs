//! Where handler calls run: off the connection's read loop, one at a time per
//! connection, in the order their frames arrived.
//!
//! A call runs as a task of its own (tracked, so shutdown waits for it), so a slow
//! handler never stops its connection from reading frames, answering pings or
//! receiving events; only the connection's later handled frames wait behind it (at
//! most `handlers.max_pending` of them; more are refused `rate_limited`). One at a
//! time keeps a client's events in the order it sent them, which a chat needs. Each
//! call is bounded by `handlers.timeout`; a call that passes it, or panics, answers
//! `internal` to its client only. A connection that ends aborts its calls.

use std::{collections::VecDeque, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::FutureExt;
use serde_json::Value;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use super::{Call, CallKind, Next, Outcome};
use crate::{
    broadcast::Prepared,
    metrics::Metrics,
    protocol::{ErrorCode, ServerFrame},
    publisher::Publisher,
};

/// A call waiting to run: the chain, the call, and the `ref` its answer echoes.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) chain: Next,
    pub(crate) call: Call,
    pub(crate) reference: Option<Value>,
}

/// How calls run (`[handlers]` in the configuration).
#[derive(Debug, Clone)]
pub(crate) struct RunSettings {
    pub(crate) timeout: Duration,
    pub(crate) max_pending: usize,
    pub(crate) publisher: Publisher,
    pub(crate) tasks: TaskTracker,
    /// Counts timeouts and panics (`tidings_handler_failures_total`).
    pub(crate) metrics: Arc<Metrics>,
}

/// One connection's handler calls: the running one and those waiting behind it.
#[derive(Debug)]
pub(crate) struct Calls {
    settings: RunSettings,
    running: Option<AbortOnDropHandle<ServerFrame>>,
    waiting: VecDeque<Job>,
}

impl Calls {
    pub(crate) fn new(settings: RunSettings) -> Self {
        Self {
            settings,
            running: None,
            waiting: VecDeque::new(),
        }
    }

    /// Starts `job`, or queues it behind the running call; gives it back when
    /// `handlers.max_pending` calls already wait.
    pub(crate) fn push(&mut self, job: Job) -> Result<(), Box<Job>> {
        if self.running.is_none() {
            self.start(job);
            return Ok(());
        }
        if self.waiting.len() >= self.settings.max_pending {
            return Err(Box::new(job));
        }
        self.waiting.push_back(job);
        Ok(())
    }

    /// The answer of the running call, once it has one; then the next call starts.
    /// Never ready while no call runs. Cancel-safe: dropping it leaves the running
    /// call running.
    pub(crate) async fn next(&mut self) -> ServerFrame {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        let answer = running.await.unwrap_or_else(|e| {
            // The task was cancelled (shutdown) or its panic escaped `answer`'s guard.
            tracing::error!(error = %e, "handler task ended without an answer");
            ServerFrame::error(None, None, ErrorCode::Internal, "the handler failed")
        });
        self.running = None;
        if let Some(job) = self.waiting.pop_front() {
            self.start(job);
        }
        answer
    }

    fn start(&mut self, job: Job) {
        let settings = &self.settings;
        let task = answer(job, settings.clone());
        self.running = Some(AbortOnDropHandle::new(settings.tasks.spawn(task)));
    }
}

/// Runs one call through its chain and turns what it returns into the frame its
/// client gets. Never panics: a handler's panic becomes `internal`.
async fn answer(job: Job, settings: RunSettings) -> ServerFrame {
    let RunSettings {
        timeout,
        publisher,
        metrics,
        ..
    } = settings;
    let Job {
        chain,
        mut call,
        reference,
    } = job;
    let kind = call.kind();
    // What a `Publish` outcome publishes, with its data: the client's topic and event
    // name, mutation id and source. The data is set aside while the rest is copied,
    // so only the handler holds it.
    let data = call.take_data();
    let mut template = call.event_entry().clone();
    *call.data_mut() = data;
    let topic = call.topic().to_string();
    // Inside the future, so a handler that panics before its first await (while the
    // chain builds its future) is caught too.
    let run = async move { chain.run(call).await };
    let ran = tokio::time::timeout(timeout, AssertUnwindSafe(run).catch_unwind()).await;
    let outcome = match ran {
        Err(_) => {
            Metrics::inc(&metrics.handler_failures);
            tracing::warn!(%topic, ?timeout, "handler timed out");
            return ServerFrame::error(
                reference,
                None,
                ErrorCode::Internal,
                format!("the handler did not answer within {timeout:?}"),
            );
        }
        Ok(Err(_panic)) => {
            Metrics::inc(&metrics.handler_failures);
            tracing::error!(%topic, "handler panicked");
            return ServerFrame::error(reference, None, ErrorCode::Internal, "the handler failed");
        }
        Ok(Ok(Err(reject))) => {
            return ServerFrame::error(reference, None, reject.code(), reject.message());
        }
        Ok(Ok(Ok(outcome))) => outcome,
    };
    let reply = match outcome {
        Outcome::Publish(data) => {
            template.payload = data;
            if let Err(e) = publisher.send(Prepared::Logged(template)).await {
                tracing::error!(error = %e, %topic, "publishing a handler's event failed");
                return ServerFrame::error(
                    reference,
                    None,
                    ErrorCode::Internal,
                    "publish failed; try again",
                );
            }
            Value::Null
        }
        Outcome::Done => Value::Null,
        Outcome::Reply(value) => value,
    };
    match kind {
        CallKind::Publish => ServerFrame::Published { reference },
        CallKind::Request => ServerFrame::Reply {
            data: reply,
            reference,
        },
    }
}
