//! Postgres LISTEN/NOTIFY (`postgres://...` or `postgresql://...`), on any database,
//! the event log's own included.

use std::{str::FromStr, time::Duration};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};

use super::{Broker, BrokerError, BrokerOptions, fit::fit_payload_by, pg_payload};

/// Postgres truncates longer identifiers, and `pg_notify` refuses them.
const MAX_CHANNEL_BYTES: usize = 63;

/// How the broker's sessions show in `pg_stat_activity`.
const APPLICATION_NAME: &str = "tidings broker";

/// Postgres LISTEN/NOTIFY broker.
///
/// A NOTIFY payload is text shorter than 8000 bytes: broker messages (UTF-8 JSON)
/// go as they are, other bytes as base64, and a logged event that does not fit
/// goes by reference.
///
/// **Reconnects**: publishing uses a small, lazily connected pool (`pg_notify`),
/// which opens a new connection whenever one is needed, so nothing connects at
/// construction and a node starts while the database is down. Every
/// [`subscribe`](Broker::subscribe) opens a dedicated listening session; its stream
/// ends when that session is lost (server restart, `pg_terminate_backend`, network),
/// and the node's ingest subscribes again with backoff.
pub struct PostgresBroker {
    connect_options: PgConnectOptions,
    publisher: PgPool,
    channel: String,
    connect_timeout: Duration,
    publish_timeout: Duration,
}

// By hand: the clients hold connection details (a password in the URL) not to print.
impl std::fmt::Debug for PostgresBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBroker")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl PostgresBroker {
    /// A broker on the database at `url`, notifying `<prefix>.events`. Must be
    /// called within a tokio runtime (the pool lives there).
    pub fn new(url: &str, options: &BrokerOptions) -> Result<Self, BrokerError> {
        let channel = options.channel()?;
        if channel.len() > MAX_CHANNEL_BYTES {
            return Err(BrokerError(format!(
                "postgres: channel {channel:?} is longer than {MAX_CHANNEL_BYTES} bytes; \
                 use a shorter channel prefix"
            )));
        }
        tokio::runtime::Handle::try_current()
            .map_err(|_| BrokerError("the Postgres broker needs a tokio runtime".to_owned()))?;
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(postgres_error)?
            .application_name(APPLICATION_NAME);
        let publisher = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(options.publish_timeout)
            .connect_lazy_with(connect_options.clone());
        Ok(Self {
            connect_options,
            publisher,
            channel,
            connect_timeout: options.connect_timeout,
            publish_timeout: options.publish_timeout,
        })
    }

    /// A listening session on the channel, established before this returns.
    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        // A pool of one dedicated session, never recycled: a listener must not
        // lose its session except when the session itself is lost.
        let session = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.connect_timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(self.connect_options.clone());
        let mut listener = PgListener::connect_with(&session).await?;
        // Report a lost session (the stream ends) instead of reconnecting silently
        // and hiding the notifications lost meanwhile.
        listener.eager_reconnect(false);
        listener.listen(&self.channel).await?;
        Ok(listener)
    }
}

impl Broker for PostgresBroker {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        async move {
            let payload = fit_payload_by(payload, |candidate| {
                pg_payload::encoded_len(candidate) <= pg_payload::NOTIFY_MAX_BYTES
            })?;
            let notify = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(pg_payload::encode(&payload))
                .execute(&self.publisher);
            tokio::time::timeout(self.publish_timeout, notify)
                .await
                .map_err(|_| BrokerError("postgres: NOTIFY timed out".to_owned()))?
                .map_err(postgres_error)?;
            Ok(())
        }
        .boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        async move {
            let listener = tokio::time::timeout(self.connect_timeout, self.listen())
                .await
                .map_err(|_| BrokerError("postgres: LISTEN timed out".to_owned()))?
                .map_err(postgres_error)?;
            let stream = futures::stream::unfold(listener, |mut listener| async move {
                loop {
                    // `Ok(None)` is a lost session; an error ends the stream too.
                    let notification = listener.try_recv().await.ok()??;
                    match pg_payload::decode(notification.payload()) {
                        Some(payload) => return Some((payload, listener)),
                        None => tracing::warn!(
                            channel = notification.channel(),
                            "ignoring a NOTIFY payload not sent by a tidings broker"
                        ),
                    }
                }
            });
            Ok(stream.boxed())
        }
        .boxed()
    }
}

fn postgres_error(error: sqlx::Error) -> BrokerError {
    BrokerError(format!("postgres: {error}"))
}
