//! The outbox row a capture trigger writes, column by column, for both backends.
//!
//! This is the one place that names the log columns the triggers fill. A new column of
//! `realtime_outbox` that triggers must fill is one more entry in [`columns`], with its
//! SQL on each backend; columns left out get their default: `seq` (SQLite numbers the
//! row as it is inserted, Postgres's relay later), `event_name` and `except_connection`
//! (NULL: record events have neither).

use super::{Op, Spec};

/// How one backend spells the parts of a row (each returns an SQL expression).
pub(crate) trait Dialect {
    /// The record's public projection, as JSON.
    fn payload(&self, spec: &Spec, op: Op) -> String;
    /// The names of the public fields an update changed, as a JSON array (sorted).
    fn changes(&self, spec: &Spec) -> String;
    /// The values before an update of the public fields it changed and of the rule
    /// fields whose value changed, as a JSON object (what the store writes as
    /// `previous`, so readers can judge the record as it was: `enter` and `leave`).
    fn previous(&self, spec: &Spec) -> String;
    /// The rule fields, as a JSON object.
    fn acl(&self, spec: &Spec, op: Op) -> String;
    /// The record key as text.
    fn key(&self, spec: &Spec, op: Op) -> String;
    /// The current time, as the log column stores it.
    fn now(&self) -> &'static str;
}

/// `(column, SQL expression)` for every column the trigger writes, in insert order.
pub(crate) fn columns(d: &dyn Dialect, spec: &Spec, op: Op) -> Vec<(&'static str, String)> {
    vec![
        ("collection", format!("'{}'", spec.collection)),
        ("record_key", d.key(spec, op)),
        ("action", format!("'{}'", op.action())),
        ("payload", d.payload(spec, op)),
        (
            "changes",
            match op {
                Op::Update => d.changes(spec),
                Op::Create | Op::Delete => "NULL".to_owned(),
            },
        ),
        (
            "previous",
            match op {
                Op::Update => d.previous(spec),
                Op::Create | Op::Delete => "NULL".to_owned(),
            },
        ),
        ("acl", d.acl(spec, op)),
        ("created_at", d.now().to_owned()),
    ]
}

/// `INSERT INTO realtime_outbox (...) VALUES (...)` for one action.
pub(crate) fn insert(d: &dyn Dialect, spec: &Spec, op: Op, indent: &str) -> String {
    let columns = columns(d, spec, op);
    let names = columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    let values = columns
        .iter()
        .map(|(_, value)| format!("{indent}    {value}"))
        .collect::<Vec<_>>()
        .join(",\n");
    format!("{indent}INSERT INTO realtime_outbox ({names})\n{indent}VALUES (\n{values}\n{indent});")
}
