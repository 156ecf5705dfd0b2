//! Presence as it travels between nodes, inside
//! [`BrokerMessage::Presence`](crate::broker::BrokerMessage), and the split of a
//! node's state into messages small enough for every broker.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::broker::BrokerMessage;

/// What a node says about its presence members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceUpdate {
    /// Counts that changed on the sender, each as its new absolute value (so applying
    /// one twice, or after the full state that already holds it, changes nothing).
    Delta {
        /// The changed counts; 0 means none any more.
        entries: Vec<PresenceEntry>,
    },
    /// Part `part` (from 0) of `parts` of the sender's full state. The parts carry
    /// consecutive seqs; a receiver applies the state once it has every part, in
    /// place of everything it had from that node.
    Sync {
        /// This part's index.
        part: u32,
        /// How many parts the state has.
        parts: u32,
        /// Every non-zero count of the sender, split over the parts.
        entries: Vec<PresenceEntry>,
    },
    /// The sender is shutting down: its members are gone.
    Goodbye,
}

/// One count of the sender: `connections` of `user` on `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The topic.
    #[serde(rename = "t")]
    pub topic: Arc<str>,
    /// The user; `null` for anonymous connections.
    #[serde(rename = "u")]
    pub user: Option<Arc<str>>,
    /// The sender's connections of that user to the topic.
    #[serde(rename = "n")]
    pub connections: u32,
}

/// Groups `entries` so that each group, as a presence message from `node`, encodes
/// to at most `max_bytes`. Always at least one group (possibly empty). An entry that
/// could not fit even alone (a user id of kilobytes) is left out and logged.
pub(super) fn split(
    node: &str,
    entries: Vec<PresenceEntry>,
    max_bytes: usize,
) -> Vec<Vec<PresenceEntry>> {
    // The largest envelope any part can have: the longest numbers, no entries.
    let envelope = BrokerMessage::Presence {
        node: node.to_owned(),
        seq: u64::MAX,
        update: PresenceUpdate::Sync {
            part: u32::MAX,
            parts: u32::MAX,
            entries: Vec::new(),
        },
    }
    .encode()
    .len();
    let budget = max_bytes.saturating_sub(envelope);
    let mut groups = vec![Vec::new()];
    let mut used = 0;
    for entry in entries {
        // Plain data: serialization cannot fail; a failure would only skip the entry.
        let size = serde_json::to_vec(&entry).map_or(usize::MAX, |bytes| bytes.len() + 1);
        if size > budget {
            tracing::warn!(
                topic = %entry.topic,
                size,
                "a presence entry is larger than presence.max_message_bytes allows; left out"
            );
            continue;
        }
        if used + size > budget {
            groups.push(Vec::new());
            used = 0;
        }
        used += size;
        if let Some(group) = groups.last_mut() {
            group.push(entry);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> PresenceEntry {
        PresenceEntry {
            topic: Arc::from("chat:lobby"),
            user: Some(Arc::from(format!("user-{n:04}"))),
            connections: 1,
        }
    }

    #[test]
    fn every_part_fits_and_nothing_is_lost() {
        let node = "0123456789abcdef0123456789abcdef";
        let entries: Vec<PresenceEntry> = (0..500).map(entry).collect();
        let max = 1024;
        let groups = split(node, entries.clone(), max);
        assert!(groups.len() > 10, "{}", groups.len());
        let parts = u32::try_from(groups.len()).unwrap();
        for (part, group) in groups.iter().enumerate() {
            let message = BrokerMessage::Presence {
                node: node.into(),
                seq: 1_000_000 + part as u64,
                update: PresenceUpdate::Sync {
                    part: u32::try_from(part).unwrap(),
                    parts,
                    entries: group.clone(),
                },
            };
            let bytes = message.encode();
            assert!(bytes.len() <= max, "{} bytes", bytes.len());
            assert_eq!(BrokerMessage::decode(&bytes), Some(message));
        }
        assert_eq!(groups.concat(), entries);
    }

    #[test]
    fn an_empty_state_is_one_empty_part_and_an_oversized_entry_is_left_out() {
        assert_eq!(split("n", Vec::new(), 1024), vec![Vec::new()]);
        let huge = PresenceEntry {
            topic: Arc::from("chat"),
            user: Some(Arc::from("x".repeat(2000))),
            connections: 1,
        };
        assert_eq!(split("n", vec![huge, entry(1)], 1024), vec![vec![entry(1)]]);
    }

    #[test]
    fn the_wire_form_is_compact_json() {
        let message = BrokerMessage::Presence {
            node: "a".into(),
            seq: 3,
            update: PresenceUpdate::Delta {
                entries: vec![PresenceEntry {
                    topic: Arc::from("chat"),
                    user: None,
                    connections: 2,
                }],
            },
        };
        assert_eq!(
            String::from_utf8(message.encode().to_vec()).unwrap(),
            r#"{"kind":"presence","node":"a","seq":3,"update":{"delta":{"entries":[{"t":"chat","u":null,"n":2}]}}}"#
        );
        let goodbye = BrokerMessage::Presence {
            node: "a".into(),
            seq: 4,
            update: PresenceUpdate::Goodbye,
        };
        assert_eq!(BrokerMessage::decode(&goodbye.encode()), Some(goodbye));
    }
}
