//! A socket that remembers when it last moved a byte, and holds the per-address
//! socket count for as long as it lives (through a WebSocket upgrade too: hyper hands
//! this very socket to the upgraded connection).

use std::{
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

use crate::limits::keyed_count::CountGuard;

/// When a socket last moved a byte, and whether it became a long-lived stream.
#[derive(Debug)]
pub(super) struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last byte read or written.
    last_ms: AtomicU64,
    /// Set once the socket carries a WebSocket or an SSE stream: those have their own
    /// liveness (pings, keep-alives), so the idle timeout no longer applies.
    long_lived: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            long_lived: AtomicBool::new(false),
        })
    }

    /// Records that a byte moved now, unless the socket is a long-lived stream, which
    /// the idle timeout no longer watches. Returns whether it is one.
    fn touch(&self) -> bool {
        if self.long_lived.load(Ordering::Relaxed) {
            return true;
        }
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
        false
    }

    pub(super) fn mark_long_lived(&self) {
        self.long_lived.store(true, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `timeout`; never for a long-lived stream.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            let deadline = self.started + Duration::from_millis(last) + timeout;
            tokio::time::sleep_until(deadline).await;
            if self.long_lived.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            if self.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// A socket with its activity record and its place in the per-address count.
#[derive(Debug)]
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// Seen long-lived: from then on nothing is recorded per read or write. Kept here
    /// so a stream's every write does not read the clock and the shared record.
    long_lived: bool,
    _socket_slot: CountGuard<IpAddr>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>, slot: CountGuard<IpAddr>) -> Self {
        Self {
            inner,
            activity,
            long_lived: false,
            _socket_slot: slot,
        }
    }

    fn touch(&mut self) {
        if !self.long_lived {
            self.long_lived = self.activity.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
