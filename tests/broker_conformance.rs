//! The conformance suite every `Broker` must pass. Brokers are at-most-once
//! doorbells, so the suite asserts only what the log relies on: a live subscriber
//! receives what is published after it subscribed, in publish order, and every
//! subscriber receives it.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use tidings::broker::{Broker, MemoryBroker};

const WAIT: Duration = Duration::from_secs(5);

async fn next(stream: &mut futures::stream::BoxStream<'static, Bytes>) -> Bytes {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("timed out waiting for a message")
        .expect("stream ended")
}

/// Runs the whole suite against `broker`.
async fn conformance(broker: Arc<dyn Broker>) {
    let mut first = broker.subscribe().await.expect("subscribe");
    let mut second = broker.subscribe().await.expect("subscribe");
    for n in 0..100u32 {
        broker
            .publish(Bytes::from(n.to_string()))
            .await
            .expect("publish");
    }
    for stream in [&mut first, &mut second] {
        for n in 0..100u32 {
            assert_eq!(
                next(stream).await,
                Bytes::from(n.to_string()),
                "in publish order"
            );
        }
    }
    // Binary-safe, and large payloads arrive whole.
    let big = Bytes::from((0..=255u8).cycle().take(256 * 1024).collect::<Vec<_>>());
    broker.publish(big.clone()).await.expect("publish big");
    assert_eq!(next(&mut first).await, big);
    // A late subscriber sees what comes after it subscribed.
    let mut late = broker.subscribe().await.expect("subscribe");
    broker
        .publish(Bytes::from_static(b"after"))
        .await
        .expect("publish");
    assert_eq!(next(&mut late).await, Bytes::from_static(b"after"));
    // Dropping a subscriber does not disturb the others.
    drop(late);
    broker
        .publish(Bytes::from_static(b"still"))
        .await
        .expect("publish");
    assert_eq!(next(&mut second).await, big);
    assert_eq!(next(&mut second).await, Bytes::from_static(b"after"));
    assert_eq!(next(&mut second).await, Bytes::from_static(b"still"));
}

#[tokio::test]
async fn memory_broker_conforms() {
    conformance(Arc::new(MemoryBroker::new(1024))).await;
}

#[tokio::test]
async fn memory_broker_skips_rather_than_blocks_a_lagging_subscriber() {
    let broker = MemoryBroker::new(4);
    let mut slow = broker.subscribe().await.unwrap();
    for n in 0..10u32 {
        // Publishing never waits for the slow subscriber.
        tokio::time::timeout(WAIT, broker.publish(Bytes::from(n.to_string())))
            .await
            .expect("publish must not block")
            .unwrap();
    }
    // It lost the oldest messages and continues with the newest ones.
    let got = next(&mut slow).await;
    assert_ne!(got, Bytes::from_static(b"0"));
}

#[tokio::test]
async fn unknown_broker_urls_are_refused_with_the_scheme() {
    let error = tidings::broker::from_url("kafka://somewhere", 16)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("kafka"), "{error}");
    assert!(tidings::broker::from_url("memory", 16).is_ok());
}
