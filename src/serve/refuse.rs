//! The answer to a socket refused before any request is read: a complete 429 with
//! `Retry-After`, written with a deadline, by a bounded number of tasks at a time so
//! that a flood of refused sockets cannot itself hold sockets for long.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};
use tokio_util::task::TaskTracker;

use crate::protocol::ErrorCode;

/// How long writing the refusal, and then draining what the client sent, may take.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// Bytes of the client's request read and dropped after the refusal, so that closing
/// does not reset the connection before the client has read the answer.
const DRAIN_BYTES: usize = 16 * 1024;
/// Refusals being written at once; past that, a refused socket is closed at once.
pub(super) const MAX_CONCURRENT_REFUSALS: usize = 256;

/// Bounds the refusals in flight.
#[derive(Debug, Clone)]
pub(super) struct Refusals(Arc<Semaphore>);

impl Default for Refusals {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_CONCURRENT_REFUSALS)))
    }
}

impl Refusals {
    /// Answers `stream` with 429 and closes it, in a task of its own on `tasks`.
    pub(super) fn refuse(
        &self,
        tasks: &TaskTracker,
        mut stream: TcpStream,
        retry_after_secs: u64,
        message: &str,
    ) {
        let Ok(permit) = self.0.clone().try_acquire_owned() else {
            return; // Too many at once: dropping the socket closes it.
        };
        let response = too_many_requests(retry_after_secs, message);
        tasks.spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
                stream.write_all(response.as_bytes()).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 1024];
                let mut drained = 0;
                while drained < DRAIN_BYTES {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => drained += n,
                    }
                }
                std::io::Result::Ok(())
            })
            .await;
        });
    }
}

/// The whole response: status line, headers, the protocol's JSON error body.
fn too_many_requests(retry_after_secs: u64, message: &str) -> String {
    let body = serde_json::json!({"code": ErrorCode::RateLimited, "message": message}).to_string();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\n\
         retry-after: {retry_after_secs}\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = too_many_requests(3, "slow down");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains("retry-after: 3\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            serde_json::json!({"code": "rate_limited", "message": "slow down"})
        );
    }
}
