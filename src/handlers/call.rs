//! What a handler is given: the client event, who sent it, and the app's store.

use std::sync::Arc;

use serde_json::Value;

use crate::{
    auth::Principal,
    broadcast::{Broadcast, BroadcastError},
    event::LogEntry,
    model::{Store, StoreError, Tx},
    mutation::MutationId,
    publisher::Publisher,
    rules::Rules,
    source::Attribution,
    topic::Topic,
};

/// Which client frame a call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A `publish` frame: answered `published` (or an `error`).
    Publish,
    /// A `request` frame: answered `reply` (or an `error`).
    Request,
}

/// What the gateway lends a handler: the store to write through, and the publisher
/// and rules for broadcasts. The narrow parts, not the whole `Realtime`.
#[derive(Clone)]
pub(crate) struct Services {
    pub(crate) store: Store,
    pub(crate) publisher: Publisher,
    pub(crate) rules: Arc<Rules>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// One client event on its way through the middleware chain to a handler.
///
/// It carries the event as the client sent it (topic, event name, data), who sent it
/// (principal, connection id), and the app's [`Store`]: a handler that writes through
/// [`Call::begin`] turns the event into a durable model event, attributed to the
/// client (`"source":{"kind":"client"}`).
pub struct Call {
    kind: CallKind,
    /// The event as it would be published: topic, name, data, mutation id, source.
    event: LogEntry,
    topic: Topic,
    principal: Arc<Principal>,
    connection_id: Arc<str>,
    services: Services,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("kind", &self.kind)
            .field("topic", &self.topic.to_string())
            .field("event", &self.event.event)
            .field("user_id", &self.principal.user_id)
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// The event as the client sent it (for the runner to publish a `Publish`).
    pub(crate) fn event_entry(&self) -> &LogEntry {
        &self.event
    }

    pub(crate) fn new(
        kind: CallKind,
        event: LogEntry,
        topic: Topic,
        principal: Arc<Principal>,
        connection_id: Arc<str>,
        services: Services,
    ) -> Self {
        Self {
            kind,
            event,
            topic,
            principal,
            connection_id,
            services,
        }
    }

    /// Whether this is a `publish` or a `request`.
    pub fn kind(&self) -> CallKind {
        self.kind
    }

    /// The frame's topic: `collection` or `collection:key`.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The frame's event name.
    pub fn event(&self) -> &str {
        self.event.event.as_deref().unwrap_or_default()
    }

    /// The frame's data.
    pub fn data(&self) -> &Value {
        &self.event.payload
    }

    /// The data, for a middleware or a handler to change in place.
    pub fn data_mut(&mut self) -> &mut Value {
        &mut self.event.payload
    }

    /// Takes the data out of the call (leaving `null`), to move it into a record.
    pub fn take_data(&mut self) -> Value {
        std::mem::take(&mut self.event.payload)
    }

    /// Who sent it.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The sender's `sub`; `None` when anonymous.
    pub fn user_id(&self) -> Option<&str> {
        self.principal.user_id.as_deref()
    }

    /// The sender's connection id (as in its `welcome`).
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The client mutation id of a `publish`, if it gave one.
    pub fn mutation(&self) -> Option<&str> {
        self.event.mutation.as_deref()
    }

    /// The app's store, for reads and for writes the handler wants attributed to the
    /// server (use [`Call::begin`] for the client's own).
    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// A transaction whose events are attributed to this client (their `source` is
    /// `client`, with the user id where the collection shows it) and carry the
    /// frame's mutation id. Commit it and answer [`Outcome::Done`](super::Outcome::Done):
    /// subscribers get the write's own event.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let mut tx = self.services.store.begin().await?;
        tx.attribute(Attribution::new(
            self.principal.user_id.clone(),
            self.services.rules.clone(),
        ));
        if let Some(mutation) = self.mutation().and_then(|m| MutationId::new(m).ok()) {
            tx.set_mutation(mutation);
        }
        Ok(tx)
    }

    /// Sends a custom event from the server (its `source` is `server`), to anyone:
    /// a collection, a topic, users or connections (the sender's, say).
    pub async fn broadcast(&self, broadcast: Broadcast) -> Result<(), BroadcastError> {
        self.services.publisher.send(broadcast.prepare()?).await
    }
}
