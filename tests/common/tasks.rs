//! Waiting for tasks a test spawned.

use std::time::Duration;

use tokio::task::JoinSet;

/// Waits for every task in `tasks`, each within `bound` of the one before, and
/// returns what they returned; panics if one panicked or the wait ran out.
pub async fn join_all_within<T: 'static>(mut tasks: JoinSet<T>, bound: Duration) -> Vec<T> {
    let mut outputs = Vec::with_capacity(tasks.len());
    while let Some(done) = tokio::time::timeout(bound, tasks.join_next())
        .await
        .expect("the tasks finish in time")
    {
        outputs.push(done.expect("a task panicked"));
    }
    outputs
}
