//! Connection caps: WebSocket connections and SSE streams per node, per user and per
//! IP address. A connection holds a [`Slot`] for as long as it lives; every part of
//! it is released on drop, so a panic or an abandoned upgrade never leaks one.
//!
//! The node cap is a semaphore: taking a permit is the check, so two connections
//! arriving together can never both pass a count that only one of them fits.

use std::{net::IpAddr, sync::Arc};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::keyed_count::{CountGuard, KeyedCount};
use crate::config::ConnectionConfig;

/// Which node cap a connection counts against (each has `max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A WebSocket connection.
    WebSocket,
    /// A Datastar SSE stream.
    Sse,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SlotRefusal {
    /// The node holds `connection.max_connections` of this transport.
    #[error("this node is at its connection limit")]
    Node,
    /// This IP address holds `connection.max_connections_per_ip`.
    #[error("too many connections from this address")]
    Ip,
    /// This user holds `connection.max_connections_per_user`.
    #[error("too many connections for this user")]
    User,
}

/// The caps of one node.
#[derive(Debug)]
pub(crate) struct ConnectionSlots {
    websockets: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    per_ip: KeyedCount<IpAddr>,
    per_user: KeyedCount<Arc<str>>,
}

/// What one connection holds; dropping it releases everything.
#[derive(Debug)]
pub(crate) struct Slot {
    _node: OwnedSemaphorePermit,
    _ip: Option<CountGuard<IpAddr>>,
    user: Option<CountGuard<Arc<str>>>,
}

impl ConnectionSlots {
    pub(crate) fn new(config: &ConnectionConfig) -> Self {
        Self {
            websockets: Arc::new(Semaphore::new(config.max_connections)),
            streams: Arc::new(Semaphore::new(config.max_connections)),
            per_ip: KeyedCount::new(config.max_connections_per_ip),
            per_user: KeyedCount::new(config.max_connections_per_user),
        }
    }

    /// A slot for a new connection from `ip` (when known) as `user` (when known
    /// yet; a WebSocket that authenticates with its first frame claims it later with
    /// [`claim_user`](Self::claim_user)).
    pub(crate) fn acquire(
        &self,
        transport: Transport,
        ip: Option<IpAddr>,
        user: Option<&Arc<str>>,
    ) -> Result<Slot, SlotRefusal> {
        let node = match transport {
            Transport::WebSocket => &self.websockets,
            Transport::Sse => &self.streams,
        };
        let node = node
            .clone()
            .try_acquire_owned()
            .map_err(|_| SlotRefusal::Node)?;
        let ip = match ip {
            Some(ip) => Some(self.per_ip.acquire(&ip).ok_or(SlotRefusal::Ip)?),
            None => None,
        };
        let mut slot = Slot {
            _node: node,
            _ip: ip,
            user: None,
        };
        if let Some(user) = user {
            self.claim_user(&mut slot, user)?;
        }
        Ok(slot)
    }

    /// Counts `slot` against `user` too; a slot already counted for `user` passes.
    pub(crate) fn claim_user(&self, slot: &mut Slot, user: &Arc<str>) -> Result<(), SlotRefusal> {
        if slot.user.as_ref().is_some_and(|held| held.key() == user) {
            return Ok(());
        }
        slot.user = Some(self.per_user.acquire(user).ok_or(SlotRefusal::User)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_ip: usize, per_user: usize) -> ConnectionSlots {
        ConnectionSlots::new(&ConnectionConfig {
            max_connections: max,
            max_connections_per_ip: per_ip,
            max_connections_per_user: per_user,
            ..ConnectionConfig::default()
        })
    }

    #[test]
    fn each_cap_refuses_with_its_reason_and_drop_releases() {
        let slots = slots(3, 2, 1);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let ann: Arc<str> = Arc::from("ann");
        let first = slots
            .acquire(Transport::WebSocket, Some(ip), Some(&ann))
            .unwrap();
        assert_eq!(
            slots
                .acquire(Transport::Sse, Some(other), Some(&ann))
                .unwrap_err(),
            SlotRefusal::User
        );
        let mut second = slots.acquire(Transport::WebSocket, Some(ip), None).unwrap();
        assert_eq!(
            slots
                .acquire(Transport::WebSocket, Some(ip), None)
                .unwrap_err(),
            SlotRefusal::Ip
        );
        assert_eq!(slots.claim_user(&mut second, &ann), Err(SlotRefusal::User));
        let _third = slots
            .acquire(Transport::WebSocket, Some(other), None)
            .unwrap();
        assert_eq!(
            slots.acquire(Transport::WebSocket, None, None).unwrap_err(),
            SlotRefusal::Node
        );
        // SSE streams have their own node cap.
        let _stream = slots.acquire(Transport::Sse, None, None).unwrap();
        drop(first);
        slots.claim_user(&mut second, &ann).unwrap();
        slots.claim_user(&mut second, &ann).unwrap();
        assert_eq!(slots.per_user.count(&ann), 1);
    }
}
