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

    /// The by-reference form of a logged message; `None` for a direct or presence
    /// message, which is not in the log and so cannot be sent by reference.
    pub fn to_doorbell(&self) -> Option<Self> {
        match self {
            Self::Logged { epoch, seq, .. } | Self::Doorbell { epoch, seq } => {
                Some(Self::Doorbell {
                    epoch: epoch.clone(),
                    seq: *seq,
                })
            }
            Self::Direct { .. } | Self::Presence { .. } => None,
        }
    }
}
