//! A WebSocket's outbound side, shared by the hub's fan-out, the node's socket writers
//! and the connection's own task.
//!
//! Events are not handed to the connection's task. The hub appends the event's
//! encoded frame (one buffer shared by every receiver of the event) to the
//! connection's queue here, and one of the node's writers (`writers`) writes the
//! queue out, every frame queued since its last visit in one vectored write. A socket
//! that does not take all the bytes is handed to the connection's task ("parked"),
//! which waits for it under the write deadline. So a delivery costs an append and a
//! share of one write; no task is woken per connection unless its peer is slow.
//!
//! The connection's own frames (replies, replays, pings, the close frame) reach the
//! same queue through [`OutboundIo`], the stream tungstenite writes to, so the peer
//! gets every frame in the order it was queued. While the connection answers a
//! client frame it [holds](Outbound::hold) events back, so a `subscribed` and the
//! replay after it come before the live events that follow them.

use std::{
    collections::VecDeque,
    fmt,
    io::{self, IoSlice},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use futures::task::AtomicWaker;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

use super::writers::Writer;

/// The byte stream under a WebSocket (the upgraded HTTP connection).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Slices handed to one vectored write at most (Linux takes up to 1024; a few dozen
/// frames already fill a socket's send buffer).
const MAX_SLICES: usize = 64;

/// How much one connection may have queued and not yet written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    /// Frames (`connection.send_queue_capacity`).
    pub(crate) frames: usize,
    /// Bytes (`connection.send_queue_bytes`).
    pub(crate) bytes: usize,
}

/// The queue is over its limits: the peer does not keep up (close 4008).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

/// Who writes the queue next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing is queued.
    Idle,
    /// Frames are queued and the connection is on its writer's list.
    Waiting,
    /// The socket did not take everything: the connection's task writes the rest when
    /// the socket is ready, and ends the connection at the write deadline.
    Parked,
    /// The socket failed; nothing more can be written.
    Failed,
}

/// Events that arrived while the connection answers a client frame.
#[derive(Default)]
struct Held {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

/// In C layout so that what [`Outbound::push`] reads comes first: with the lock word
/// before it, it fills the cache line the fan-out warms (see [`Outbound::warm`]).
#[repr(C)]
struct State {
    mode: Mode,
    queued_bytes: usize,
    held: Option<Box<Held>>,
    /// Frames not yet fully written; `written` bytes of the first are.
    queued: VecDeque<Bytes>,
    // What only the writes read.
    written: usize,
    stream: Box<dyn Stream>,
    /// When the queue was parked, for the write deadline.
    parked_at: Option<Instant>,
}

// The lock word and the poison flag take the first 8 bytes of the `Mutex` (on Linux,
// where the lock is a futex word), what a push reads of the state the rest of the line.
const _: () = assert!(8 + std::mem::offset_of!(State, written) <= 64);

impl State {
    fn frames(&self) -> usize {
        self.queued.len() + self.held.as_ref().map_or(0, |held| held.frames.len())
    }

    fn bytes(&self) -> usize {
        self.queued_bytes + self.held.as_ref().map_or(0, |held| held.bytes)
    }

    fn park(&mut self) {
        self.mode = Mode::Parked;
        self.parked_at.get_or_insert_with(Instant::now);
    }

    /// Writes queued frames until none is left (`Ready(Ok)`), the socket is not ready
    /// (`Pending`, with `cx`'s waker registered) or it failed.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queued.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, frame) in self.queued.iter().take(MAX_SLICES).enumerate() {
                let skip = if i == 0 { self.written } else { 0 };
                slices[i] = IoSlice::new(&frame[skip..]);
                count += 1;
            }
            let written = match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..count])
            {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.advance(written);
        }
        // Keep an idle connection small: a burst's queue does not stay allocated.
        if self.queued.capacity() > 16 {
            self.queued = VecDeque::new();
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Forgets the first `n` written bytes.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queued.front() else {
                return;
            };
            let rest = front.len() - self.written;
            if n < rest {
                self.written += n;
                return;
            }
            n -= rest;
            self.queued_bytes -= front.len();
            self.written = 0;
            self.queued.pop_front();
        }
    }

    /// The queue is written (`Ok`) or failed: the mode that follows.
    fn settle(&mut self, result: &io::Result<()>) {
        self.parked_at = None;
        self.mode = if result.is_ok() {
            Mode::Idle
        } else {
            Mode::Failed
        };
    }
}

/// One WebSocket's outbound queue and the stream it is written to.
///
/// Aligned to a cache line, with the state's lock first, so the lock word and what a
/// push reads share one line; the limits follow the state, on the line that holds
/// what a write reads (the stream and how much of the first frame is written).
#[repr(C, align(64))]
pub struct Outbound {
    state: Mutex<State>,
    limits: QueueLimits,
    writer: Arc<Writer>,
    /// The connection's task, woken when its queue is parked or failed.
    owner: AtomicWaker,
}

// The limits end within the second line (see `Outbound`).
const _: () =
    assert!(std::mem::offset_of!(Outbound, limits) + std::mem::size_of::<QueueLimits>() <= 128);

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl Outbound {
    /// The outbound side of `stream`, written by `writer`.
    pub(crate) fn new(stream: Box<dyn Stream>, writer: Arc<Writer>, limits: QueueLimits) -> Self {
        Self {
            state: Mutex::new(State {
                stream,
                queued: VecDeque::new(),
                written: 0,
                queued_bytes: 0,
                held: None,
                mode: Mode::Idle,
                parked_at: None,
            }),
            writer,
            owner: AtomicWaker::new(),
            limits,
        }
    }

    /// The hub shard whose writer writes this queue.
    pub(crate) fn shard(&self) -> usize {
        self.writer.shard()
    }

    /// Reads the word beside the queue's lock and the queue's limits: plain reads that
    /// bring in the two cache lines a push or a write starts with, so that a fan-out
    /// or a writer can warm many connections at once instead of missing the cache on
    /// each in turn.
    pub(crate) fn warm(&self) {
        std::hint::black_box(self.state.is_poisoned());
        std::hint::black_box(self.limits.frames);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is completed before anything that could panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event's frame (the fan-out). `QueueFull` if the connection's queue is
    /// over its limits; a connection whose socket failed takes it and drops it (its
    /// task is ending).
    pub(crate) fn push(self: &Arc<Self>, frame: Bytes) -> Result<(), QueueFull> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.mode == Mode::Failed {
            return Ok(());
        }
        if state.frames() >= self.limits.frames || state.bytes() + frame.len() > self.limits.bytes {
            return Err(QueueFull);
        }
        if let Some(held) = &mut state.held {
            held.bytes += frame.len();
            held.frames.push_back(frame);
            return Ok(());
        }
        state.queued_bytes += frame.len();
        state.queued.push_back(frame);
        if state.mode != Mode::Idle {
            return Ok(());
        }
        state.mode = Mode::Waiting;
        drop(guard);
        self.writer.enqueue(self.clone());
        Ok(())
    }

    /// The writer's turn: writes what is queued without waiting for the socket. What
    /// the socket does not take is parked for the connection's task.
    pub(crate) fn write_waiting(&self) {
        let mut state = self.lock();
        if state.mode != Mode::Waiting {
            return;
        }
        match state.write_out(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => {
                let failed = result.is_err();
                state.settle(&result);
                drop(state);
                if failed {
                    self.owner.wake();
                }
            }
            Poll::Pending => {
                state.park();
                drop(state);
                self.owner.wake();
            }
        }
    }

    /// Holds events back (queued behind the connection's own frames) until
    /// [`Outbound::release`].
    pub(crate) fn hold(&self) {
        self.lock().held.get_or_insert_default();
    }

    /// Queues the events held back since [`Outbound::hold`], after everything the
    /// connection wrote meanwhile; its task writes them.
    pub(crate) fn release(&self) {
        let mut state = self.lock();
        let Some(held) = state.held.take() else {
            return;
        };
        if held.frames.is_empty() {
            return;
        }
        state.queued_bytes += held.bytes;
        state.queued.extend(held.frames);
        if state.mode != Mode::Failed {
            state.park();
            drop(state);
            self.owner.wake();
        }
    }

    /// Resolves once the queue is parked or failed (the connection's task waits for
    /// this between its other work); then writes the rest as the socket takes it, for
    /// at most `write_timeout` from when it was parked. `Ok` once all is written.
    pub(crate) async fn drain(&self, write_timeout: Duration) -> Result<(), DrainFailed> {
        let parked_at = std::future::poll_fn(|cx| {
            self.owner.register(cx.waker());
            let state = self.lock();
            match state.mode {
                Mode::Parked => Poll::Ready(Ok(state.parked_at.unwrap_or_else(Instant::now))),
                Mode::Failed => Poll::Ready(Err(DrainFailed::Gone)),
                Mode::Idle | Mode::Waiting => Poll::Pending,
            }
        })
        .await?;
        // Boxed: an idle connection waits in the first stage, and only that stage
        // should take room in its future.
        let written = std::future::poll_fn(|cx| self.poll_flush_queue(cx));
        let written = Box::pin(tokio::time::timeout_at(parked_at + write_timeout, written));
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(DrainFailed::Gone),
            Err(_) => Err(DrainFailed::TimedOut),
        }
    }

    /// Writes the whole queue with `cx`'s waker (the connection's task).
    fn poll_flush_queue(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if state.mode == Mode::Failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        match state.write_out(cx) {
            Poll::Ready(result) => {
                state.settle(&result);
                Poll::Ready(result)
            }
            Poll::Pending => {
                // The waker registered with the socket is this task's: the writer
                // must leave the queue alone now.
                state.park();
                Poll::Pending
            }
        }
    }

    /// Bytes and frames queued or held (tests).
    #[cfg(test)]
    fn queued(&self) -> (usize, usize) {
        let state = self.lock();
        (state.frames(), state.bytes())
    }
}

/// Why [`Outbound::drain`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainFailed {
    /// The socket failed.
    Gone,
    /// It did not take the queue within the write deadline.
    TimedOut,
}

/// The stream tungstenite reads from and writes to: reads go to the socket, writes
/// join the connection's queue (so they stay in order with the events), and a flush
/// writes the queue out.
#[derive(Debug, Clone)]
pub(crate) struct OutboundIo(pub(crate) Arc<Outbound>);

impl AsyncRead for OutboundIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.lock().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for OutboundIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outbound = &self.0;
        let mut state = outbound.lock();
        if state.mode == Mode::Failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Past the byte limit, the connection's own frames are refused too; below
        // it, one frame of any size is taken (its size is bounded by what the
        // connection answers: an echo, a replay page).
        if state.queued_bytes > outbound.limits.bytes {
            return Poll::Ready(Err(io::Error::other("send queue full")));
        }
        // Straight to the socket when nothing is ahead of these bytes.
        let taken = if state.queued.is_empty() {
            match Pin::new(&mut state.stream).poll_write(cx, buf) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    state.mode = Mode::Failed;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => 0,
            }
        } else {
            0
        };
        if taken < buf.len() {
            state.queued_bytes += buf.len() - taken;
            state
                .queued
                .push_back(Bytes::copy_from_slice(&buf[taken..]));
            if state.mode == Mode::Idle {
                // This task's waker is registered with the socket: it writes the rest
                // when it flushes.
                state.park();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_flush_queue(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.0.poll_flush_queue(cx))?;
        Pin::new(&mut self.0.lock().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
