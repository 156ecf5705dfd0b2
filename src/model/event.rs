//! The outbox event a model write becomes, and the conversions between records and rows.

use serde_json::Value;

use super::{Model, StoreError, sql::Row, strip_hidden};
use crate::event::{Action, LogEntry};

/// The record's fields (hidden ones included) as a JSON object.
pub(super) fn to_row<M: Model>(record: &M) -> Result<Row, StoreError> {
    match serde_json::to_value(record) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(StoreError::NotAnObject {
            collection: M::COLLECTION.to_owned(),
        }),
        Err(source) => Err(StoreError::Json {
            collection: M::COLLECTION.to_owned(),
            id: Some(record.id()),
            source,
        }),
    }
}

/// A stored row as the model; columns the model does not declare are ignored.
pub(super) fn from_row<M: Model>(row: Row, id: &str) -> Result<M, StoreError> {
    serde_json::from_value(Value::Object(row)).map_err(|source| StoreError::Json {
        collection: M::COLLECTION.to_owned(),
        id: Some(id.to_owned()),
        source,
    })
}

/// Stored rows as models, each read by its own id column (named by the model). A row
/// without one still gets a useful error from serde, so an empty id in the message is
/// fine.
pub(super) fn from_rows<M: Model>(rows: Vec<Row>, id_field: &str) -> Result<Vec<M>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let id = row
                .get(id_field)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default();
            from_row(row, &id)
        })
        .collect()
}

/// The event for a write of `record`, whose table row is `row`.
///
/// The payload is built from the model, not from the row, so columns the model does not
/// declare never reach an event; `acl` falls back to the row for rule fields that live
/// only in the table.
pub(super) fn for_write<M: Model>(
    action: Action,
    record: &M,
    row: &Row,
    changes: Option<Vec<String>>,
) -> Result<LogEntry, StoreError> {
    let fields = to_row(record)?;
    let acl = M::rule_fields()
        .iter()
        .filter_map(|&name| {
            let value = fields.get(name).or_else(|| row.get(name))?;
            Some((name.to_owned(), value.clone()))
        })
        .collect();
    // A record's fields go out sorted by name, as capture triggers write them, so a
    // plain-SQL write and a store write of the same change give the same frame.
    let mut public = strip_hidden::<M>(fields);
    public.sort_keys();
    let public = Value::Object(public);
    Ok(LogEntry::record(M::COLLECTION, record.id(), action, public)
        .with_changes(changes)
        .with_acl(acl))
}

/// What an update of the row `old` into `new` gives: the record as stored, the names of
/// the public fields that changed, and its event.
pub(super) fn for_update<M: Model>(
    id: &str,
    old: &Row,
    new: &Row,
) -> Result<(M, Vec<String>, LogEntry), StoreError> {
    let stored: M = from_row(new.clone(), id)?;
    let changes = changed_fields(&stored, old, new);
    // The record as it was, in the same form as the payload (serde's, not the
    // driver's: timestamps with `Z`, floats with `.0`), so filters judge both alike.
    let was = to_row(&from_row::<M>(old.clone(), id)?)?;
    let previous = previous_values::<M>(&changes, old, new, &was);
    let event = for_write(Action::Update, &stored, new, Some(changes.clone()))?
        .with_previous(Some(previous));
    Ok((stored, changes, event))
}

/// Names of the public fields of `M` whose stored values differ between two rows,
/// sorted so that the list does not depend on JSON map ordering.
fn changed_fields<M: Model>(record: &M, old: &Row, new: &Row) -> Vec<String> {
    let public = match super::public_projection(record) {
        Value::Object(fields) => fields,
        _ => return Vec::new(),
    };
    let mut changed: Vec<String> = public
        .keys()
        .filter(|name| old.get(*name) != new.get(*name))
        .cloned()
        .collect();
    changed.sort();
    changed
}

/// The values before an update (`old`) of the public fields it changed and of the rule
/// fields whose value changed (even hidden ones: like `acl`, this never reaches a
/// client). With them the record as it was can be judged by the read rules and by
/// subscription filters, which is what `enter` and `leave` need. Each value is taken
/// from `was` (the old record as the model serializes it, the payload's form) when the
/// model has the field, else from the stored row.
fn previous_values<M: Model>(
    changes: &[String],
    old: &Row,
    new: &Row,
    was: &Row,
) -> serde_json::Map<String, Value> {
    let rule_fields = M::rule_fields()
        .iter()
        .map(|&name| name.to_owned())
        .filter(|name| old.get(name) != new.get(name));
    changes
        .iter()
        .cloned()
        .chain(rule_fields)
        .map(|name| {
            let value = was
                .get(&name)
                .or_else(|| old.get(&name))
                .cloned()
                .unwrap_or(Value::Null);
            (name, value)
        })
        .collect()
}
