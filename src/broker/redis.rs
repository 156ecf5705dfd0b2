//! Redis pub/sub (`redis://host:port[/db]`).
//!
//! Pub/sub in Redis ignores the database number: apps sharing one Redis are kept
//! apart by [`BrokerOptions::channel_prefix`], not by `/db`.

use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Broker, BrokerError, BrokerOptions, fit::fit_payload};

/// Largest message this broker sends whole. Redis accepts far larger ones, but a
/// subscriber's output buffer is capped (32 MB by default for pub/sub clients) and
/// Redis disconnects a subscriber that exceeds it; a doorbell keeps big events
/// from ever doing that.
pub(super) const REDIS_MAX_PAYLOAD: usize = 1024 * 1024;

/// Redis pub/sub broker.
///
/// **Reconnects**: publishing goes through a lazily connected, shared multiplexed
/// connection ([`ConnectionManager`]) that reconnects by itself in the background
/// after an I/O error; a publish while Redis is down fails within
/// [`BrokerOptions::publish_timeout`]. Every [`subscribe`](Broker::subscribe) opens
/// a dedicated pub/sub connection; its stream ends when that connection closes,
/// and the node's ingest subscribes again with backoff. Nothing connects at
/// construction, so a node starts while Redis is down.
pub struct RedisBroker {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
    connect_timeout: Duration,
    publish_timeout: Duration,
}

// By hand: the clients hold connection details (a password in the URL) not to print.
impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker on the Redis at `url`, publishing to `<prefix>.events`. Must be
    /// called within a tokio runtime (the publish connection's driver lives there).
    pub fn new(url: &str, options: &BrokerOptions) -> Result<Self, BrokerError> {
        let channel = options.channel()?;
        tokio::runtime::Handle::try_current()
            .map_err(|_| BrokerError("the Redis broker needs a tokio runtime".to_owned()))?;
        let client = redis::Client::open(url).map_err(redis_error)?;
        // One quick retry, then fail: the relay publishes in order and must not
        // wait long on a broker that is down (nodes poll the log meanwhile).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.publish_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let publisher =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(redis_error)?;
        Ok(Self {
            client,
            publisher,
            channel,
            connect_timeout: options.connect_timeout,
            publish_timeout: options.publish_timeout,
        })
    }
}

impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        async move {
            let payload = fit_payload(payload, REDIS_MAX_PAYLOAD)?;
            let mut connection = self.publisher.clone();
            let mut command = redis::cmd("PUBLISH");
            command.arg(&self.channel).arg(payload.as_ref());
            let publish = command.query_async::<i64>(&mut connection);
            tokio::time::timeout(self.publish_timeout, publish)
                .await
                .map_err(|_| BrokerError("redis: publish timed out".to_owned()))?
                .map_err(redis_error)?;
            Ok(())
        }
        .boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        async move {
            let connect = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                // Returns once Redis confirms: publishes from now on reach us.
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::time::timeout(self.connect_timeout, connect)
                .await
                .map_err(|_| BrokerError("redis: subscribing timed out".to_owned()))?
                .map_err(redis_error)?;
            // The stream owns the connection's driver and ends when it closes.
            let stream = pubsub
                .into_on_message()
                .map(|message| Bytes::copy_from_slice(message.get_payload_bytes()));
            Ok(stream.boxed())
        }
        .boxed()
    }
}

fn redis_error(error: redis::RedisError) -> BrokerError {
    BrokerError(format!("redis: {error}"))
}
