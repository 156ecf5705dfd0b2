//! Limits, each held as a guard released on drop or checked against a keyed rate:
//! connection caps (`slots`) and the open-connection gauges (`gauge`), publish size and quotas (`publish`), and the building
//! blocks, a count per key (`keyed_count`) and a rate per key with bounded memory
//! (`keyed_rate`). The limits applied before an HTTP request exists (sockets and
//! connects per IP, header and idle timeouts) are in `serve`.

pub(crate) mod gauge;
pub(crate) mod keyed_count;
pub(crate) mod keyed_rate;
pub(crate) mod publish;
pub(crate) mod slots;

pub(crate) use publish::PublishLimits;
pub(crate) use slots::{ConnectionSlots, Slot, SlotRefusal, Transport};

use std::{net::IpAddr, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Every limit kept per node, built once from the configuration.
#[derive(Debug)]
pub(crate) struct NodeLimits {
    /// WebSocket and SSE connection caps.
    pub slots: ConnectionSlots,
    /// Publish size and quotas.
    pub publish: Arc<PublishLimits>,
    /// Open sockets per IP address (`Realtime::serve`).
    pub sockets: keyed_count::KeyedCount<IpAddr>,
    /// New sockets per IP address (`Realtime::serve`).
    pub connects: keyed_rate::KeyedRate<IpAddr>,
}

impl NodeLimits {
    pub(crate) fn new(config: &Config) -> Self {
        let t = &config.transport;
        Self {
            slots: ConnectionSlots::new(&config.connection),
            publish: Arc::new(PublishLimits::new(&config.publish, t.max_tracked_keys)),
            sockets: keyed_count::KeyedCount::new(t.max_sockets_per_ip),
            connects: keyed_rate::KeyedRate::new(
                t.connects_per_second_per_ip.saturating_mul(2),
                std::time::Duration::from_secs(2),
                t.max_tracked_keys,
            ),
        }
    }

    /// Forgets, every `interval`, the keys whose rate budget is full again, so many
    /// distinct addresses or users cost memory only while they are active.
    pub(crate) async fn prune_every(
        self: Arc<Self>,
        interval: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    self.connects.prune();
                    self.publish.prune();
                }
            }
        }
    }
}
