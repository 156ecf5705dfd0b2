//! Core NATS (`nats://host:port`), no JetStream.

use std::{sync::Arc, time::Duration};

use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use tokio::sync::{OnceCell, watch};

use super::{Broker, BrokerError, BrokerOptions, fit::fit_payload};

/// How often the client pings an idle server, so a silent connection is noticed
/// (the client gives up on it after two unanswered pings).
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// The client's connection, as told by its events.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    connected: bool,
    /// Connections lost so far: a subscription made on one connection ends when
    /// this changes.
    losses: u64,
}

impl Link {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Connected => self.connected = true,
            Event::Disconnected | Event::Closed => {
                self.connected = false;
                self.losses += 1;
            }
            _ => {}
        }
    }
}

/// Core NATS broker.
///
/// **Reconnects**: one client per broker, created on first use with
/// `retry_on_initial_connect`, so a node starts while NATS is down. The client
/// reconnects by itself forever, with its own backoff. NATS would silently carry a
/// subscription over to the new connection, hiding the messages lost in between,
/// so each stream from [`subscribe`](Broker::subscribe) instead *ends* when the
/// connection is lost, and the node's ingest subscribes again (and catches up from
/// the log). Publishing while disconnected fails at once instead of queueing.
pub struct NatsBroker {
    address: ServerAddr,
    subject: String,
    client: OnceCell<Client>,
    link: Arc<watch::Sender<Link>>,
    connect_timeout: Duration,
    publish_timeout: Duration,
}

// By hand: the clients hold connection details (a password in the URL) not to print.
impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NatsBroker {
    /// A broker on the NATS server at `url`, publishing to `<prefix>.events`.
    pub fn new(url: &str, options: &BrokerOptions) -> Result<Self, BrokerError> {
        let subject = options.channel()?;
        let address = url
            .parse::<ServerAddr>()
            .map_err(|e| BrokerError(format!("nats: invalid URL {url:?}: {e}")))?;
        Ok(Self {
            address,
            subject,
            client: OnceCell::new(),
            link: Arc::new(watch::Sender::new(Link::default())),
            connect_timeout: options.connect_timeout,
            publish_timeout: options.publish_timeout,
        })
    }

    /// The client, created on first use. Returns at once: the connection is made
    /// in the background.
    async fn client(&self) -> Result<&Client, BrokerError> {
        self.client
            .get_or_try_init(|| {
                let link = self.link.clone();
                ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connection_timeout(self.connect_timeout)
                    .ping_interval(PING_INTERVAL)
                    .event_callback(move |event| {
                        let link = link.clone();
                        async move { link.send_modify(|state| state.apply(&event)) }
                    })
                    .connect(self.address.clone())
            })
            .await
            .map_err(|e| BrokerError(format!("nats: {e}")))
    }

    /// Waits until the server has handled every protocol line this client sent
    /// before: a server processes one connection's lines in order, so a message to
    /// a private inbox comes back only after the earlier subscription is in place.
    async fn barrier(client: &Client) -> Result<(), BrokerError> {
        let inbox = client.new_inbox();
        let mut probe = client.subscribe(inbox.clone()).await.map_err(nats_error)?;
        client
            .publish(inbox, Bytes::new())
            .await
            .map_err(nats_error)?;
        probe
            .next()
            .await
            .map(drop)
            .ok_or_else(|| BrokerError("nats: connection closed while subscribing".to_owned()))
    }
}

impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        async move {
            let client = self.client().await?;
            // While disconnected the client would queue, and once its queue is full
            // block the relay; a doorbell lost instead only costs latency.
            if !self.link.borrow().connected {
                return Err(BrokerError("nats: not connected".to_owned()));
            }
            let payload = fit_payload(payload, client.max_payload())?;
            tokio::time::timeout(
                self.publish_timeout,
                client.publish(self.subject.clone(), payload),
            )
            .await
            .map_err(|_| BrokerError("nats: publish timed out".to_owned()))?
            .map_err(nats_error)
        }
        .boxed()
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, BrokerError>> {
        async move {
            let client = self.client().await?;
            let mut link = self.link.subscribe();
            let losses = tokio::time::timeout(self.connect_timeout, async {
                link.wait_for(|state| state.connected)
                    .await
                    .map(|state| state.losses)
            })
            .await
            .map_err(|_| BrokerError("nats: not connected".to_owned()))?
            .map_err(|_| BrokerError("nats: client closed".to_owned()))?;
            let subscriber = client
                .subscribe(self.subject.clone())
                .await
                .map_err(nats_error)?;
            tokio::time::timeout(self.connect_timeout, Self::barrier(client))
                .await
                .map_err(|_| BrokerError("nats: subscribing timed out".to_owned()))??;
            if link.borrow().losses != losses {
                return Err(BrokerError(
                    "nats: connection lost while subscribing".to_owned(),
                ));
            }
            let lost = async move {
                // An error means the client is gone: that ends the stream too.
                let _ = link
                    .wait_for(|state| state.losses != losses)
                    .await
                    .map(drop);
            };
            let stream = subscriber.map(|message| message.payload).take_until(lost);
            Ok(stream.boxed())
        }
        .boxed()
    }
}

fn nats_error(error: impl std::fmt::Display) -> BrokerError {
    BrokerError(format!("nats: {error}"))
}
