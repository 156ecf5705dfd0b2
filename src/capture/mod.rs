//! Capture of writes made with plain SQL: database triggers, generated from a model's
//! definition, that write the model's events into the log in the writing transaction.
//!
//! With capture installed on a model's table, `UPDATE notes SET body = ... WHERE id =
//! ...` from psql, another service or the app's own sqlx code emits the same event a
//! [`Tx::update`](crate::model::Tx::update) would have: once, and only if the
//! transaction commits. Writes through the [`Store`](crate::model::Store) are not
//! captured a second time: a store transaction mutes the triggers for itself (on
//! Postgres with the transaction-local setting `tidings.capture = 'off'`, on SQLite
//! with a row in `realtime_capture_off` that only its own transaction ever sees), and
//! records its events itself.
//!
//! Commit [`sql`]'s output as a migration, or call
//! [`Store::install_capture`](crate::model::Store::install_capture) at startup. See
//! `docs/models.md`.

mod install;
mod outbox;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

pub use install::install;

use crate::model::{FieldKind, Model};

/// The database a capture script is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: three `AFTER` triggers per table.
    Sqlite,
    /// Postgres: one trigger function and one row trigger per table.
    Postgres,
}

impl std::str::FromStr for Backend {
    type Err = CaptureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            other => Err(CaptureError::UnknownBackend(other.to_owned())),
        }
    }
}

/// Why capture cannot be generated or installed for a model.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The model does not list its fields: implement `Model::fields` or use
    /// `#[derive(Model)]`.
    #[error(
        "model {collection:?} lists no fields: capture needs them; use #[derive(Model)] \
         or implement Model::fields"
    )]
    NoFields {
        /// The model's collection.
        collection: String,
    },
    /// The id field is not one of the model's fields.
    #[error("model {collection:?}: its id field {id:?} is not one of its fields")]
    IdNotAField {
        /// The model's collection.
        collection: String,
        /// `Model::ID_FIELD`.
        id: String,
    },
    /// A table or column name that cannot be spliced into SQL, or a collection name
    /// that is not one.
    #[error("model {collection:?}: invalid {kind} name {name:?} for a capture trigger: {expected}")]
    InvalidName {
        /// The model's collection.
        collection: String,
        /// `table`, `column` or `collection`.
        kind: &'static str,
        /// The offending name.
        name: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// SQLite's `json_object` takes at most 127 arguments.
    #[error(
        "model {collection:?} has {count} public fields; capture on SQLite supports at most {max}"
    )]
    TooManyFields {
        /// The model's collection.
        collection: String,
        /// How many it has.
        count: usize,
        /// The most supported.
        max: usize,
    },
    /// A backend name other than `sqlite` or `postgres`.
    #[error("unknown backend {0:?}: expected sqlite or postgres")]
    UnknownBackend(String),
    /// Installing the triggers failed.
    #[error("installing capture on table {table:?} failed: {source}")]
    Database {
        /// The table.
        table: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// The SQL that installs capture on `M`'s table, for `backend`: idempotent (it
/// replaces earlier versions of itself), so it can be committed as a migration and
/// run again after the model changes.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
/// #[tidings(collection = "notes")]
/// struct Note { id: String, body: String, #[tidings(hidden)] internal: Option<String> }
///
/// let sql = tidings::capture::sql::<Note>(tidings::capture::Backend::Postgres).unwrap();
/// assert!(sql.contains("CREATE TRIGGER"));
/// assert!(!sql.contains("'internal'")); // hidden fields never reach an event
/// ```
pub fn sql<M: Model>(backend: Backend) -> Result<String, CaptureError> {
    let spec = Spec::of::<M>()?;
    match backend {
        Backend::Postgres => postgres::script(&spec),
        Backend::Sqlite => sqlite::script(&spec),
    }
}

/// One public or rule column of the model, its name checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub kind: FieldKind,
}

/// What a trigger needs from a model, with every name validated for splicing.
#[derive(Debug)]
pub(crate) struct Spec {
    pub collection: &'static str,
    pub table: &'static str,
    pub id: &'static str,
    /// The payload's fields, sorted by name: the order `changes` lists them in.
    pub public: Vec<Column>,
    /// The `acl` fields, hidden or not.
    pub rules: Vec<Column>,
}

impl Spec {
    /// The columns `previous` may name: every public field and every rule field, once.
    pub(crate) fn previous_candidates(&self) -> impl Iterator<Item = &Column> {
        let hidden_rules = self
            .rules
            .iter()
            .filter(|rule| !self.public.iter().any(|c| c.name == rule.name));
        self.public.iter().chain(hidden_rules)
    }

    pub(crate) fn of<M: Model>() -> Result<Self, CaptureError> {
        let collection = M::COLLECTION;
        let fields = M::fields();
        if fields.is_empty() {
            return Err(CaptureError::NoFields {
                collection: collection.to_owned(),
            });
        }
        let invalid = |kind, name: &str, expected| CaptureError::InvalidName {
            collection: collection.to_owned(),
            kind,
            name: name.to_owned(),
            expected,
        };
        // The collection is spliced as a string literal: the topic alphabet has no quote.
        if crate::topic::validate_collection(collection).is_err() {
            return Err(invalid(
                "collection",
                collection,
                "1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        // The function is named after the table, and Postgres cuts names at 63 bytes.
        let identifier = |kind, name: &str, max: usize| {
            let ok = !name.is_empty()
                && name.len() <= max
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if ok {
                Ok(())
            } else {
                Err(invalid(
                    kind,
                    name,
                    "1-47 (table) or 1-63 (column) characters of [A-Za-z0-9_]",
                ))
            }
        };
        identifier("table", M::TABLE, 63 - postgres::FUNCTION_PREFIX.len())?;
        for field in fields {
            identifier("column", field.name, 63)?;
        }
        let column = |f: &crate::model::Field| Column {
            name: f.name,
            kind: f.kind,
        };
        if !fields.iter().any(|f| f.name == M::ID_FIELD) {
            return Err(CaptureError::IdNotAField {
                collection: collection.to_owned(),
                id: M::ID_FIELD.to_owned(),
            });
        }
        let mut public: Vec<Column> = fields
            .iter()
            .filter(|f| !M::hidden_fields().contains(&f.name))
            .map(column)
            .collect();
        // `Tx::update` sorts its change list by name; so does the trigger's.
        public.sort_by_key(|c| c.name);
        // A rule field the model does not declare never reaches the store's acl either.
        let rules = M::rule_fields()
            .iter()
            .filter_map(|rule| fields.iter().find(|f| f.name == *rule).map(column))
            .collect();
        Ok(Self {
            collection,
            table: M::TABLE,
            id: M::ID_FIELD,
            public,
            rules,
        })
    }
}

/// The action a trigger fired for, and which row image it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub(crate) const ALL: [Op; 3] = [Op::Create, Op::Update, Op::Delete];

    pub(crate) fn action(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    /// The row image the event describes: the new row, or for a delete the row before
    /// it disappeared.
    pub(crate) fn row(self) -> &'static str {
        match self {
            Self::Delete => "OLD",
            Self::Create | Self::Update => "NEW",
        }
    }
}
