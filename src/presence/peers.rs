//! What this node knows of the other nodes: when each was last heard from (a node
//! silent for `presence.node_ttl` is dead), the last message applied (an older one
//! arriving late is stale), and the full state being assembled from its parts.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::wire::PresenceEntry;

/// How a message from a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard {
    /// Newer than anything applied from that node: apply it.
    Fresh {
        /// The first message from that node (or the first since it expired).
        new_node: bool,
    },
    /// Not newer than a message already applied: ignore its content.
    Stale,
}

/// A full state whose parts are arriving.
#[derive(Debug)]
struct Round {
    /// The seq of part 0; part `n` has seq `first_seq + n`.
    first_seq: u64,
    parts: u32,
    next_part: u32,
    entries: Vec<PresenceEntry>,
}

#[derive(Debug)]
struct Peer {
    last_heard: Instant,
    last_seq: u64,
    round: Option<Round>,
}

/// Every other node heard from and not yet expired.
#[derive(Debug, Default)]
pub(super) struct Peers {
    peers: HashMap<Arc<str>, Peer>,
}

impl Peers {
    /// A message `seq` from `node` arrived at `now`: the node is alive.
    pub(super) fn heard(&mut self, node: &Arc<str>, seq: u64, now: Instant) -> Heard {
        match self.peers.get_mut(node) {
            Some(peer) => {
                peer.last_heard = now;
                if seq <= peer.last_seq {
                    return Heard::Stale;
                }
                peer.last_seq = seq;
                Heard::Fresh { new_node: false }
            }
            None => {
                self.peers.insert(
                    node.clone(),
                    Peer {
                        last_heard: now,
                        last_seq: seq,
                        round: None,
                    },
                );
                Heard::Fresh { new_node: true }
            }
        }
    }

    /// Part `part` of `parts` of a full state from `node`, carried by message `seq`.
    /// Every entry of the state once its last part arrives; a state with a missing or
    /// out-of-order part is dropped (the next one repairs it).
    pub(super) fn assemble(
        &mut self,
        node: &str,
        seq: u64,
        part: u32,
        parts: u32,
        entries: Vec<PresenceEntry>,
    ) -> Option<Vec<PresenceEntry>> {
        let peer = self.peers.get_mut(node)?;
        if part == 0 {
            peer.round = Some(Round {
                first_seq: seq,
                parts,
                next_part: 0,
                entries: Vec::new(),
            });
        }
        let round = peer.round.as_mut()?;
        let in_order = round.parts == parts
            && round.next_part == part
            && round.first_seq.checked_add(u64::from(part)) == Some(seq);
        if !in_order || part >= parts {
            peer.round = None;
            return None;
        }
        round.entries.extend(entries);
        round.next_part += 1;
        if round.next_part < parts {
            return None;
        }
        peer.round.take().map(|round| round.entries)
    }

    /// Forgets `node` (it said goodbye).
    pub(super) fn forget(&mut self, node: &str) {
        self.peers.remove(node);
    }

    /// Forgets and returns the nodes not heard from within `ttl` before `now`.
    pub(super) fn expire(&mut self, now: Instant, ttl: Duration) -> Vec<Arc<str>> {
        let dead: Vec<Arc<str>> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.last_heard + ttl <= now)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &dead {
            self.peers.remove(node);
        }
        dead
    }

    /// When the next node expires if it stays silent.
    pub(super) fn next_expiry(&self, ttl: Duration) -> Option<Instant> {
        self.peers.values().map(|peer| peer.last_heard + ttl).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str) -> PresenceEntry {
        PresenceEntry {
            topic: Arc::from("chat"),
            user: Some(Arc::from(user)),
            connections: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn late_messages_are_stale_and_silent_nodes_expire() {
        let mut peers = Peers::default();
        let b: Arc<str> = Arc::from("b");
        let ttl = Duration::from_secs(6);
        assert_eq!(
            peers.heard(&b, 5, Instant::now()),
            Heard::Fresh { new_node: true }
        );
        assert_eq!(peers.heard(&b, 4, Instant::now()), Heard::Stale);
        assert_eq!(
            peers.heard(&b, 6, Instant::now()),
            Heard::Fresh { new_node: false }
        );
        assert_eq!(peers.next_expiry(ttl), Some(Instant::now() + ttl));
        tokio::time::advance(ttl - Duration::from_millis(1)).await;
        assert!(peers.expire(Instant::now(), ttl).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(peers.expire(Instant::now(), ttl), [b]);
        assert_eq!(peers.next_expiry(ttl), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_state_is_whole_or_not_at_all() {
        let mut peers = Peers::default();
        let b: Arc<str> = Arc::from("b");
        let now = Instant::now();
        peers.heard(&b, 10, now);
        assert_eq!(peers.assemble("b", 10, 0, 2, vec![entry("ann")]), None);
        peers.heard(&b, 11, now);
        let whole = peers.assemble("b", 11, 1, 2, vec![entry("bob")]).unwrap();
        assert_eq!(whole, [entry("ann"), entry("bob")]);
        // Part 1 of the next state is lost: part 2 alone completes nothing, and
        // neither does a part without its start.
        peers.assemble("b", 12, 0, 3, vec![entry("ann")]);
        assert_eq!(peers.assemble("b", 14, 2, 3, vec![entry("cy")]), None);
        assert_eq!(peers.assemble("b", 15, 1, 2, vec![entry("cy")]), None);
        assert_eq!(
            peers.assemble("b", 16, 0, 1, vec![]),
            Some(vec![]),
            "an empty state is a state"
        );
        assert_eq!(peers.assemble("b", 17, 0, 0, vec![]), None, "zero parts");
    }
}
