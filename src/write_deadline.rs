//! A deadline on every socket write of the HTTP server, for what the gateway cannot
//! bound itself: a Datastar SSE body is only asked for its next chunk once hyper has
//! written the last one, so a client that stops reading stalls the stream where no
//! timer of the stream can see it (its token's expiry included). Wrapping the
//! listener makes a write that cannot proceed for `timeout` fail with `TimedOut`;
//! hyper then drops the connection and its body, which ends the stream and gives back
//! its slot. WebSockets carry their own per-frame deadline (`connection.write_timeout`)
//! and close 4008; this one is the floor under every connection.
//!
//! With a shutdown token, a stalled write gets at most `SHUTDOWN_GRACE` once shutdown
//! begins: graceful shutdown waits for every response to finish, and a stream whose
//! client does not read would otherwise hold it for the whole deadline.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::serve::Listener;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a write that makes no progress may still wait once shutdown has begun.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A [`Listener`] whose connections fail a write that cannot proceed within a
/// deadline. Serve the app with it (`axum::serve(realtime.listener(tcp), app)`, or
/// [`WriteDeadline::new`]) so that a client that stops reading is cut off after
/// `connection.write_timeout` instead of holding its connection, and its Datastar
/// stream, for as long as TCP keeps it alive.
#[derive(Debug)]
pub struct WriteDeadline<L> {
    listener: L,
    timeout: Duration,
    shutdown: Option<CancellationToken>,
}

impl<L> WriteDeadline<L> {
    /// Wraps `listener`; every write of its connections may wait at most `timeout`.
    pub fn new(listener: L, timeout: Duration) -> Self {
        Self {
            listener,
            timeout,
            shutdown: None,
        }
    }

    /// Once `shutdown` is cancelled, a write that makes no progress waits at most one
    /// more second, so graceful shutdown is not held up by clients that do not read.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

impl<L: Listener> Listener for WriteDeadline<L> {
    type Io = DeadlineIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.listener.accept().await;
        let mut io = DeadlineIo::new(io, self.timeout);
        io.shutdown = self.shutdown.clone();
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection whose writes fail with [`io::ErrorKind::TimedOut`] once they have made
/// no progress for the deadline. Reads are untouched.
#[derive(Debug)]
pub struct DeadlineIo<T> {
    inner: T,
    timeout: Duration,
    shutdown: Option<CancellationToken>,
    /// Started when a write first could not proceed; cleared by any progress.
    stalled: Option<Stall>,
}

/// A write that cannot proceed: its deadline, and shutdown, which shortens it.
struct Stall {
    deadline: Pin<Box<Sleep>>,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl std::fmt::Debug for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stall")
            .field("deadline", &self.deadline.deadline())
            .finish_non_exhaustive()
    }
}

impl<T> DeadlineIo<T> {
    /// Wraps `inner` with a write deadline of `timeout`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            shutdown: None,
            stalled: None,
        }
    }

    /// Once `shutdown` is cancelled, a write that makes no progress waits at most one
    /// more second (see [`WriteDeadline::with_shutdown`]).
    pub(crate) fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Passes a ready result through (progress: the deadline starts over), or turns
    /// a pending write into an error once it has been pending for the deadline.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let (timeout, shutdown) = (self.timeout, &self.shutdown);
        let stall = self.stalled.get_or_insert_with(|| Stall {
            deadline: Box::pin(tokio::time::sleep(timeout)),
            shutdown: shutdown
                .clone()
                .map(|token| Box::pin(token.cancelled_owned())),
        });
        if let Some(cancelled) = &mut stall.shutdown
            && cancelled.as_mut().poll(cx).is_ready()
        {
            stall.shutdown = None;
            let grace = Instant::now() + SHUTDOWN_GRACE;
            if grace < stall.deadline.deadline() {
                stall.deadline.as_mut().reset(grace);
            }
        }
        match stall.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not take a write within the write deadline",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_cannot_proceed_fails_after_the_deadline() {
        // A pipe with 64 bytes of room that nobody reads.
        let (near, _far) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(near, Duration::from_secs(5));
        io.write_all(&[0; 64]).await.unwrap();
        let start = tokio::time::Instant::now();
        let error = io.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_stalled_write_short() {
        let (near, _far) = tokio::io::duplex(64);
        let shutdown = CancellationToken::new();
        let mut io = DeadlineIo::new(near, Duration::from_secs(60));
        io.shutdown = Some(shutdown.clone());
        io.write_all(&[0; 64]).await.unwrap();
        let start = tokio::time::Instant::now();
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            shutdown.cancel();
        });
        let error = io.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(2) + SHUTDOWN_GRACE);
        cancel.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn progress_starts_the_deadline_over() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(near, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            // A slow reader: 64 bytes every 4 s, always within the deadline.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tokio::io::AsyncReadExt::read_exact(&mut far, &mut buf)
                    .await
                    .unwrap();
            }
        });
        io.write_all(&[0; 256]).await.unwrap();
        reader.await.unwrap();
    }
}
