//! Models: typed records kept in their own table, whose every write also writes its
//! event into the outbox in the same transaction.
//!
//! See `docs/models.md` for a guide.

mod error;
mod event;
mod field;
mod marks;
mod snapshot;
mod sql;
mod store;
mod tx;

pub use error::StoreError;
pub use field::{Field, FieldKind};
pub use snapshot::Snapshot;
pub use store::Store;
/// `#[derive(Model)]`: implements [`Model`] from `#[tidings(...)]` attributes (see
/// `docs/models.md`).
pub use tidings_macros::Model;
pub use tx::Tx;

/// The statements with which a store transaction mutes capture triggers, for the
/// write-path bench to measure them alone (re-exported in `__private`; not API).
#[doc(hidden)]
pub mod capture_mute {
    pub use super::sql::{SQLITE_UNMUTE, SqliteMute, mute_sqlite};
    pub use super::store::POSTGRES_BEGIN;
}

/// The event a store insert of `record` writes, built by the store's own code when the
/// row is stored as given (no column defaults apply): for the write-path bench to
/// write the event row alone (re-exported in `__private`; not API).
#[doc(hidden)]
pub fn insert_event<M: Model>(record: &M) -> Result<crate::LogEntry, StoreError> {
    let row = event::to_row(record)?;
    event::for_write(crate::Action::Create, record, &row, None)
}

use serde_json::Value;

/// A record type stored in a table, one serde field per column.
///
/// Usually derived: `#[derive(Model)]` with `#[tidings(collection = "...")]` (see
/// `docs/models.md`). Implemented by hand it looks like this:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidings::model::Model;
///
/// #[derive(Serialize, Deserialize)]
/// struct Note {
///     id: String,
///     body: String,
///     owner_id: String,
///     internal: Option<String>,
/// }
///
/// impl Model for Note {
///     const COLLECTION: &'static str = "notes";
///     fn id(&self) -> String {
///         self.id.clone()
///     }
///     fn hidden_fields() -> &'static [&'static str] {
///         &["internal"]
///     }
///     fn rule_fields() -> &'static [&'static str] {
///         &["owner_id"]
///     }
/// }
/// ```
pub trait Model:
    serde::Serialize + serde::de::DeserializeOwned + Send + Sync + Unpin + 'static
{
    /// The collection name: the first part of every topic of this model's events.
    const COLLECTION: &'static str;
    /// The table holding the records; the collection name unless overridden.
    const TABLE: &'static str = Self::COLLECTION;
    /// The primary key column, which is also the event key.
    const ID_FIELD: &'static str = "id";

    /// The record's id, as it appears in topics (`collection:id`).
    fn id(&self) -> String;

    /// Stored in the table, never in any event, outbox payload or API projection.
    fn hidden_fields() -> &'static [&'static str] {
        &[]
    }

    /// Fields read rules need (e.g. "owner_id"); their values are copied into the
    /// event's `acl` map even if hidden.
    fn rule_fields() -> &'static [&'static str] {
        &[]
    }

    /// Every column of the model, in field order. `#[derive(Model)]` lists them; a
    /// hand-written impl may leave the default (empty), which only capture triggers
    /// ([`crate::capture`]) need, and refuse without.
    fn fields() -> &'static [Field] {
        &[]
    }
}

/// The public projection (serialized record minus hidden fields) as a JSON object.
///
/// A record that fails to serialize projects to `null` (the store reports that case as
/// [`StoreError::Json`] before any event is written); a record that serializes to a
/// non-object has no fields to hide and is returned as serialized.
pub fn public_projection<M: Model>(record: &M) -> Value {
    match serde_json::to_value(record) {
        Ok(Value::Object(fields)) => Value::Object(strip_hidden::<M>(fields)),
        Ok(other) => other,
        Err(_) => Value::Null,
    }
}

fn strip_hidden<M: Model>(
    mut fields: serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    for hidden in M::hidden_fields() {
        // Keeps the other fields in declaration order (`remove` would move the last
        // one into the gap).
        fields.shift_remove(*hidden);
    }
    fields
}
