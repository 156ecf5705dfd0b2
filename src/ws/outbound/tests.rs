//! The outbound queue over an in-memory pipe whose far end the test reads: order,
//! coalescing, parking a slow peer, the deadline, the limits, holding events back.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::*;
use crate::ws::writers::Writers;

const LIMITS: QueueLimits = QueueLimits {
    frames: 8,
    bytes: 1024,
};

/// Writers of their own, ended when dropped.
fn writers() -> Writers {
    Writers::new(TaskTracker::new(), &CancellationToken::new())
}

/// An outbound over a pipe holding at most `pipe` bytes, and the pipe's far end.
fn outbound(writers: &Writers, pipe: usize) -> (Arc<Outbound>, DuplexStream) {
    let (near, far) = duplex(pipe);
    let outbound = Arc::new(Outbound::new(Box::new(near), writers.assign(), LIMITS));
    (outbound, far)
}

async fn read_exactly(far: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    tokio::time::timeout(Duration::from_secs(5), far.read_exact(&mut bytes))
        .await
        .expect("the bytes arrive")
        .expect("the pipe is open");
    bytes
}

#[tokio::test]
async fn the_writer_writes_queued_frames_in_order() {
    let writers = writers();
    let (outbound, mut far) = outbound(&writers, 1024);
    for frame in ["one ", "two ", "three"] {
        outbound.push(Bytes::from_static(frame.as_bytes())).unwrap();
    }
    assert_eq!(read_exactly(&mut far, 13).await, b"one two three");
}

#[tokio::test]
async fn a_slow_peer_is_parked_and_drained_by_the_connection() {
    let writers = writers();
    let (outbound, mut far) = outbound(&writers, 4);
    outbound.push(Bytes::from_static(b"0123456789")).unwrap();
    // The pipe takes 4 bytes; the rest waits for the connection's task.
    let drained = tokio::spawn({
        let outbound = outbound.clone();
        async move { outbound.drain(Duration::from_secs(5)).await }
    });
    assert_eq!(read_exactly(&mut far, 10).await, b"0123456789");
    assert_eq!(drained.await.unwrap(), Ok(()));
    assert_eq!(outbound.queued(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_times_out() {
    let writers = writers();
    let (outbound, _far) = outbound(&writers, 4);
    outbound.push(Bytes::from_static(b"0123456789")).unwrap();
    assert_eq!(
        outbound.drain(Duration::from_secs(10)).await,
        Err(DrainFailed::TimedOut)
    );
}

#[tokio::test]
async fn a_gone_peer_fails_the_queue() {
    let writers = writers();
    let (outbound, far) = outbound(&writers, 64);
    drop(far);
    outbound.push(Bytes::from_static(b"lost")).unwrap();
    assert_eq!(
        outbound.drain(Duration::from_secs(5)).await,
        Err(DrainFailed::Gone)
    );
    // Later events are dropped quietly: the connection is ending.
    assert_eq!(outbound.push(Bytes::from_static(b"more")), Ok(()));
}

#[tokio::test]
async fn the_queue_is_bounded_in_frames_and_in_bytes() {
    let writers = writers();
    let (outbound, _far) = outbound(&writers, 1);
    outbound.hold();
    for _ in 0..LIMITS.frames {
        outbound.push(Bytes::from_static(b"x")).unwrap();
    }
    assert_eq!(outbound.push(Bytes::from_static(b"x")), Err(QueueFull));

    let (outbound, _far) = self::outbound(&writers, 1);
    outbound.hold();
    outbound.push(Bytes::from(vec![0; 1000])).unwrap();
    assert_eq!(outbound.push(Bytes::from(vec![0; 25])), Err(QueueFull));
    assert_eq!(outbound.queued(), (1, 1000));
}

#[tokio::test]
async fn held_events_follow_what_the_connection_wrote_meanwhile() {
    let writers = writers();
    let (outbound, mut far) = outbound(&writers, 1024);
    outbound.hold();
    outbound.push(Bytes::from_static(b"live")).unwrap();
    let mut io = OutboundIo(outbound.clone());
    io.write_all(b"reply ").await.unwrap();
    io.flush().await.unwrap();
    outbound.release();
    let drained = tokio::spawn({
        let outbound = outbound.clone();
        async move { outbound.drain(Duration::from_secs(5)).await }
    });
    assert_eq!(read_exactly(&mut far, 10).await, b"reply live");
    assert_eq!(drained.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn what_the_connection_writes_queues_behind_waiting_events() {
    let writers = writers();
    let (outbound, mut far) = outbound(&writers, 4);
    outbound.push(Bytes::from_static(b"event ")).unwrap();
    // The writer may or may not have run; either way the reply comes second.
    let mut io = OutboundIo(outbound.clone());
    io.write_all(b"reply").await.unwrap();
    let flushed = tokio::spawn(async move { io.flush().await });
    assert_eq!(read_exactly(&mut far, 11).await, b"event reply");
    flushed.await.unwrap().unwrap();
}
