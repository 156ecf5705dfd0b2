//! Custom events (`realtime_broadcast`): to a collection, a topic, connections or users.
//!
//! Collection and topic broadcasts are written to the event log, so they obey read
//! rules, carry cursors and resume like record events. Connection and user broadcasts
//! go straight to the broker: they are not in the log and are never replayed.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    app::Realtime,
    event::{DirectEvent, LogEntry, Recipients},
    topic::{Topic, TopicError},
};

/// Longest accepted event name, in characters.
pub const MAX_EVENT_NAME_LEN: usize = 128;
/// Most connection or user ids in one broadcast.
pub const MAX_TARGET_IDS: usize = 1000;

/// Who receives a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every subscriber of the collection allowed to read the event.
    Collection(String),
    /// Subscribers of `collection:key` (and of the collection) allowed to read it.
    Topic(String),
    /// These connection ids.
    Connections(Vec<String>),
    /// Every connection of these users.
    Users(Vec<String>),
}

/// A custom event to send.
///
/// ```no_run
/// # async fn f(realtime: tidings::Realtime) -> Result<(), tidings::BroadcastError> {
/// use serde_json::json;
/// use tidings::{Broadcast, Target};
///
/// // Everyone allowed to read `chat:lobby` gets it, except the sender's connection.
/// let typing = Broadcast::new(Target::Topic("chat:lobby".into()), "typing", json!({"user": "ann"}))
///     .except("3f9c0d2e");
/// realtime.broadcast(typing).await?;
/// // Every connection of these users, on every node; not logged, never replayed.
/// realtime
///     .broadcast(Broadcast::new(Target::Users(vec!["bob".into()]), "ping", json!({})))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// Receivers.
    pub target: Target,
    /// Event name.
    pub event: String,
    /// Any JSON.
    #[serde(default)]
    pub data: Value,
    /// A connection that must not receive it (usually the sender).
    #[serde(default)]
    pub except: Option<String>,
    /// The client mutation id the event carries as `"mutation"` (collection and topic
    /// broadcasts; 1-128 characters) **(addition)**.
    #[serde(default)]
    pub mutation: Option<String>,
}

impl Broadcast {
    /// A broadcast to `target`.
    pub fn new(target: Target, event: impl Into<String>, data: Value) -> Self {
        Self {
            target,
            event: event.into(),
            data,
            except: None,
            mutation: None,
        }
    }

    /// Tags the event with a client mutation id (see [`crate::MutationId`]).
    pub fn mutation(mut self, mutation: impl Into<String>) -> Self {
        self.mutation = Some(mutation.into());
        self
    }

    /// Skips the connection `connection_id`.
    pub fn except(mut self, connection_id: impl Into<String>) -> Self {
        self.except = Some(connection_id.into());
        self
    }
}

/// Why a broadcast was refused. Carries the offending input.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The collection or topic is malformed.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The event name is empty, too long or has control characters.
    #[error("invalid event name {0:?}: 1-128 characters, no control characters")]
    EventName(String),
    /// The mutation id is empty, too long or has control characters.
    #[error(transparent)]
    Mutation(#[from] crate::MutationError),
    /// Too many (or no) target ids.
    #[error("a broadcast names 1 to 1000 connections or users (got {0})")]
    TargetCount(usize),
    /// Writing to the log failed.
    #[error("writing the event failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The broker refused the event.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// Recording the event in the caller's transaction failed.
    #[error(transparent)]
    Store(#[from] crate::model::StoreError),
}

/// What a validated broadcast becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// A log event (collection or topic target).
    Logged(LogEntry),
    /// A direct event (connections or users).
    Direct(DirectEvent),
}

/// Event names: 1-128 characters, no control characters.
pub(crate) fn validate_event_name(name: &str) -> Result<(), BroadcastError> {
    let len = name.chars().count();
    if (1..=MAX_EVENT_NAME_LEN).contains(&len) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(BroadcastError::EventName(name.chars().take(200).collect()))
    }
}

impl Broadcast {
    /// Validates and turns the broadcast into the event it will be.
    pub fn prepare(self) -> Result<Prepared, BroadcastError> {
        validate_event_name(&self.event)?;
        let ts = chrono::Utc::now();
        let Self {
            target,
            event,
            data,
            except,
            mutation,
        } = self;
        let mutation = mutation.map(crate::MutationId::new).transpose()?;
        let logged = |topic: Topic| {
            Prepared::Logged(
                LogEntry::broadcast(
                    topic.collection_name(),
                    topic.key().map(str::to_owned),
                    event.clone(),
                    data.clone(),
                )
                .except(except.clone())
                .with_mutation(mutation.clone())
                .at(ts),
            )
        };
        let direct = |target: Recipients| {
            Prepared::Direct(DirectEvent {
                target,
                event: event.clone(),
                data: data.clone(),
                except: except.clone(),
                ts,
            })
        };
        Ok(match target {
            Target::Collection(c) => logged(Topic::collection(&c)?),
            Target::Topic(t) => logged(Topic::parse(&t)?),
            Target::Connections(ids) => direct(Recipients::Connections(check_ids(ids)?)),
            Target::Users(ids) => direct(Recipients::Users(check_ids(ids)?)),
        })
    }
}

fn check_ids(ids: Vec<String>) -> Result<Vec<String>, BroadcastError> {
    if ids.is_empty() || ids.len() > MAX_TARGET_IDS {
        Err(BroadcastError::TargetCount(ids.len()))
    } else {
        Ok(ids)
    }
}

impl Realtime {
    /// Sends a custom event (see the module docs). Collection and topic broadcasts are
    /// durable once this returns; delivery follows as soon as the relay sequences them.
    pub async fn broadcast(&self, broadcast: Broadcast) -> Result<(), BroadcastError> {
        self.publisher().send(broadcast.prepare()?).await
    }

    /// Sends a custom event only if `tx` commits: collection and topic broadcasts are
    /// written to the log inside `tx`; user and connection broadcasts are sent right
    /// after the commit (and never after a rollback).
    pub async fn broadcast_in(
        &self,
        tx: &mut crate::model::Tx,
        broadcast: Broadcast,
    ) -> Result<(), BroadcastError> {
        self.publisher().send_in(tx, broadcast.prepare()?).await
    }
}

/// `realtime.broadcast(broadcast)` as a free function, the name the docs use.
pub async fn realtime_broadcast(
    realtime: &Realtime,
    broadcast: Broadcast,
) -> Result<(), BroadcastError> {
    realtime.broadcast(broadcast).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prepares_every_target() {
        let logged = Broadcast::new(Target::Topic("todos:42".into()), "ping", json!({"a":1}))
            .except("c1")
            .prepare()
            .unwrap();
        let Prepared::Logged(event) = logged else {
            panic!("topic broadcasts are logged")
        };
        assert_eq!(
            (event.collection.as_str(), event.key.as_deref()),
            ("todos", Some("42"))
        );
        assert_eq!(event.except.as_deref(), Some("c1"));
        let direct = Broadcast::new(Target::Users(vec!["ann".into()]), "x", json!(null))
            .prepare()
            .unwrap();
        assert!(matches!(direct, Prepared::Direct(_)));
    }

    #[test]
    fn refuses_bad_input() {
        let bad = [
            Broadcast::new(Target::Collection("bad name".into()), "x", json!(1)),
            Broadcast::new(Target::Topic("todos:".into()), "x", json!(1)),
            Broadcast::new(Target::Collection("todos".into()), "", json!(1)),
            Broadcast::new(Target::Collection("todos".into()), "a\nb", json!(1)),
            Broadcast::new(Target::Users(vec![]), "x", json!(1)),
        ];
        for b in bad {
            assert!(b.clone().prepare().is_err(), "{b:?}");
        }
    }
}
