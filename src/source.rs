//! Who caused an event: the server (the app's own writes and broadcasts), or a client
//! (a `publish` frame, or a handler acting for one). Carried by every event frame as
//! `"source"` and kept in the log (column `source`), so a replay shows the same.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rules::Rules;

/// Who caused an event (**addition** to the wire contract: the event's `"source"`).
///
/// On the wire: `{"kind":"server"}`, or `{"kind":"client"}` with `"user_id"` when the
/// collection shows its publishers ([`Rules::show_publisher`]) and the client was
/// signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The app: model writes, `realtime_broadcast`, `POST /realtime/broadcast`,
    /// capture of plain-SQL writes. Also every event logged before sources existed.
    #[default]
    Server,
    /// A client's `publish`, or what a handler wrote on a client's behalf.
    Client {
        /// The publisher's `sub`, only where the collection shows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
}

/// The `client:` prefix of the column's text form.
const CLIENT: &str = "client";

impl Source {
    /// The column's text: `NULL` for the server (so rows written before the column,
    /// and by capture triggers, read as server events), `client`, or
    /// `client:<user id>`.
    pub(crate) fn to_column(&self) -> Option<String> {
        match self {
            Self::Server => None,
            Self::Client { user_id: None } => Some(CLIENT.to_owned()),
            Self::Client {
                user_id: Some(user),
            } => Some(format!("{CLIENT}:{user}")),
        }
    }

    /// Reads the column back; anything unrecognised is the server (never an error:
    /// a log row must stay readable).
    pub(crate) fn from_column(column: Option<&str>) -> Self {
        match column {
            Some(CLIENT) => Self::Client { user_id: None },
            Some(text) => match text.strip_prefix("client:") {
                Some(user) => Self::Client {
                    user_id: Some(user.to_owned()),
                },
                None => Self::Server,
            },
            None => Self::Server,
        }
    }
}

/// Attributes events to a client: its user id, shown only in collections whose rules
/// say so. Decided when the event is written, so every receiver and every replay
/// sees the same `source`.
#[derive(Debug, Clone)]
pub(crate) struct Attribution {
    user_id: Option<Arc<str>>,
    rules: Arc<Rules>,
}

impl Attribution {
    /// Events caused by the client signed in as `user_id` (`None`: anonymous).
    pub(crate) fn new(user_id: Option<Arc<str>>, rules: Arc<Rules>) -> Self {
        Self { user_id, rules }
    }

    /// The source of an event of `collection`.
    pub(crate) fn source_for(&self, collection: &str) -> Source {
        let shown = self.rules.shows_publisher(collection);
        Source::Client {
            user_id: self.user_id.as_deref().filter(|_| shown).map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rule;
    use serde_json::json;

    #[test]
    fn the_wire_form_is_tagged_by_kind() {
        let cases = [
            (Source::Server, json!({"kind": "server"})),
            (Source::Client { user_id: None }, json!({"kind": "client"})),
            (
                Source::Client {
                    user_id: Some("ann".into()),
                },
                json!({"kind": "client", "user_id": "ann"}),
            ),
        ];
        for (source, wire) in cases {
            assert_eq!(serde_json::to_value(&source).unwrap(), wire);
            assert_eq!(
                Source::from_column(source.to_column().as_deref()),
                source,
                "column round trip"
            );
        }
        // A user id may hold anything, a colon included.
        let odd = Source::Client {
            user_id: Some("a:b".into()),
        };
        assert_eq!(Source::from_column(odd.to_column().as_deref()), odd);
        assert_eq!(Source::from_column(Some("garbage")), Source::Server);
    }

    #[test]
    fn the_user_id_is_shown_only_where_the_collection_says() {
        let rules = Arc::new(
            Rules::new()
                .collection("chat", Rule::Authenticated, Rule::Authenticated)
                .collection("votes", Rule::Authenticated, Rule::Authenticated)
                .show_publisher("chat"),
        );
        let ann = Attribution::new(Some("ann".into()), rules.clone());
        assert_eq!(
            ann.source_for("chat"),
            Source::Client {
                user_id: Some("ann".into())
            }
        );
        assert_eq!(ann.source_for("votes"), Source::Client { user_id: None });
        let anonymous = Attribution::new(None, rules);
        assert_eq!(
            anonymous.source_for("chat"),
            Source::Client { user_id: None }
        );
    }
}
