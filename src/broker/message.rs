//! What travels over a broker, encoded as JSON so every backend carries plain bytes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    event::{DirectEvent, LogEntry},
    presence::wire::PresenceUpdate,
};

/// One broker message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BrokerMessage {
    /// A sequenced log event.
    Logged {
        /// The log's epoch.
        epoch: String,
        /// The event's seq.
        seq: u64,
        /// The event.
        event: LogEntry,
    },
    /// Consecutive sequenced log events, in seq order: what one relay batch
    /// sequenced, sent as one message so a batch costs one broker round trip, not one
    /// per event.
    Batch {
        /// The log's epoch.
        epoch: String,
        /// `(seq, event)`, seqs consecutive and increasing.
        events: Vec<(u64, LogEntry)>,
    },
    /// A connection- or user-targeted event (not logged).
    Direct {
        /// The event.
        event: DirectEvent,
    },
    /// A logged event sent by reference: "the log has reached `seq` at `epoch`".
    /// Used when the whole event would not fit in the backend's message; the
    /// receiving nodes read the rows from the log.
    Doorbell {
        /// The log's epoch.
        epoch: String,
        /// The seq the log has reached.
        seq: u64,
    },
    /// "End every connection of `user`" (`Realtime::disconnect_user`): each node
    /// closes that user's WebSockets (4003) and ends their SSE streams. Not logged.
    Disconnect {
        /// The user id (a token's `sub`).
        user: String,
    },
    /// "This node is alive and its broker carries messages": every node publishes one
    /// every `broker.heartbeat_interval`. Every node's ingest counts any message,
    /// its own heartbeats included, as a sign that the broker works; a subscription
    /// that hears nothing for `broker.silence_timeout` is taken for dead.
    Heartbeat {
        /// The sending node's random id (one per running gateway).
        node: String,
    },
    /// Presence: a node's members changed, or its full state (`src/presence`).
    Presence {
        /// The sending node, random per process start.
        node: String,
        /// Increases with every presence message of the sender: a message older than
        /// one already applied is stale.
        seq: u64,
        /// What the sender says.
        update: PresenceUpdate,
    },
}

impl BrokerMessage {
    /// Encodes for the wire.
    pub fn encode(&self) -> Bytes {
        // Plain data: serialization cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes; `None` for bytes that are not a message of ours.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// The by-reference form of a logged message; `None` for every other kind (direct,
    /// disconnect, heartbeat, presence), which is not in the log and so cannot be sent
    /// by reference.
    pub fn to_doorbell(&self) -> Option<Self> {
        match self {
            Self::Logged { epoch, seq, .. } | Self::Doorbell { epoch, seq } => {
                Some(Self::Doorbell {
                    epoch: epoch.clone(),
                    seq: *seq,
                })
            }
            // The doorbell of its last event: a node reads the whole batch from the log.
            Self::Batch { epoch, events } => events.last().map(|(seq, _)| Self::Doorbell {
                epoch: epoch.clone(),
                seq: *seq,
            }),
            Self::Direct { .. }
            | Self::Disconnect { .. }
            | Self::Heartbeat { .. }
            | Self::Presence { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnect_travels_as_plain_json_and_never_by_reference() {
        let message = BrokerMessage::Disconnect { user: "ann".into() };
        let bytes = message.encode();
        assert_eq!(&bytes[..], br#"{"kind":"disconnect","user":"ann"}"#);
        assert_eq!(BrokerMessage::decode(&bytes), Some(message.clone()));
        assert_eq!(message.to_doorbell(), None);
    }

    #[test]
    fn a_batch_round_trips_and_goes_by_reference_as_its_last_seq() {
        let entry = |n: u64| {
            LogEntry::record(
                "todos",
                n.to_string(),
                crate::event::Action::Create,
                serde_json::json!({"n": n}),
            )
        };
        let batch = BrokerMessage::Batch {
            epoch: "e1".into(),
            events: (5..=7).map(|n| (n, entry(n))).collect(),
        };
        assert_eq!(BrokerMessage::decode(&batch.encode()), Some(batch.clone()));
        let doorbell = BrokerMessage::Doorbell {
            epoch: "e1".into(),
            seq: 7,
        };
        assert_eq!(batch.to_doorbell(), Some(doorbell.clone()));
        let fitted =
            crate::broker::fit::fit_payload(batch.encode(), 60).expect("fits by reference");
        assert_eq!(BrokerMessage::decode(&fitted), Some(doorbell));
    }
}
