//! What every event of a store transaction carries besides its record: the client's
//! mutation id, and the client a handler's transaction acts for.

use crate::{
    event::LogEntry,
    mutation::MutationId,
    source::{Attribution, Source},
};

/// The marks a [`Tx`](super::Tx) puts on the events it writes.
#[derive(Debug, Clone, Default)]
pub(super) struct EventMarks {
    /// The client mutation id every event of the transaction carries.
    pub(super) mutation: Option<MutationId>,
    /// The client every event of the transaction is attributed to, if any (a
    /// handler's transaction, `Call::begin`).
    pub(super) attribution: Option<Attribution>,
}

impl EventMarks {
    /// `event` with these marks, where it has none of its own.
    pub(super) fn apply(&self, mut event: LogEntry) -> LogEntry {
        if self.mutation.is_some() && event.mutation.is_none() {
            event = event.with_mutation(self.mutation.clone());
        }
        if let Some(attribution) = &self.attribution
            && event.source == Source::Server
        {
            event.source = attribution.source_for(&event.collection);
        }
        event
    }
}
