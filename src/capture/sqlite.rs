//! Capture on SQLite: `AFTER INSERT`, `AFTER UPDATE` and `AFTER DELETE` triggers per
//! table. SQLite stores values, not types, so each value is converted by the model
//! field's [`FieldKind`] into what the model's serde output would be.

use super::{CaptureError, Op, Spec, outbox};
use crate::model::FieldKind;

/// `json_object` takes at most 127 arguments (SQLite's default limit).
const MAX_FIELDS: usize = 63;

struct Sqlite;

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The JSON value of one column. `json(...)` marks text as JSON for `json_object`;
/// it is applied outside the `CASE`, which would not keep that mark.
fn value(row: &str, column: &str, kind: FieldKind) -> String {
    let v = format!("{row}.{}", quoted(column));
    match kind {
        FieldKind::Bool => {
            format!("json(CASE WHEN {v} IS NULL THEN 'null' WHEN {v} THEN 'true' ELSE 'false' END)")
        }
        // The shortest of 15, 16 or 17 digits that reads back as the same number: the
        // digits serde writes, whatever this SQLite's own JSON number format (older
        // versions write 15 digits, which loses precision). Infinities are null in
        // serde's JSON.
        FieldKind::Float => {
            let digits = |n: u8| format!("printf('%!.{n}g', {v})");
            format!(
                "json(CASE WHEN {v} IS NULL OR abs({v}) > 1.7976931348623157e308 THEN 'null' \
                 WHEN CAST({d15} AS REAL) = {v} THEN {d15} \
                 WHEN CAST({d16} AS REAL) = {v} THEN {d16} ELSE {d17} END)",
                d15 = digits(15),
                d16 = digits(16),
                d17 = digits(17),
            )
        }
        // As the store reads a JSON column: parsed if it is JSON, else a string.
        FieldKind::Json => format!(
            "json(CASE WHEN {v} IS NULL THEN 'null' WHEN json_valid({v}) THEN {v} \
             ELSE json_quote({v}) END)"
        ),
        FieldKind::Text | FieldKind::Integer | FieldKind::Timestamp | FieldKind::Other => v,
    }
}

fn object<'a>(row: &str, columns: impl Iterator<Item = &'a super::Column>) -> String {
    let pairs: Vec<String> = columns
        .map(|c| format!("'{}', {}", c.name, value(row, c.name, c.kind)))
        .collect();
    format!("json_object({})", pairs.join(", "))
}

impl outbox::Dialect for Sqlite {
    fn payload(&self, spec: &Spec, op: Op) -> String {
        object(op.row(), spec.public.iter())
    }

    fn changes(&self, spec: &Spec) -> String {
        // Built as text in the sorted field order; names are [A-Za-z0-9_], no escaping.
        if spec.public.is_empty() {
            return "'[]'".to_owned();
        }
        let names: Vec<String> = spec
            .public
            .iter()
            .map(|c| {
                let q = quoted(c.name);
                format!(
                    "CASE WHEN OLD.{q} IS NOT NEW.{q} THEN '\"{}\",' ELSE '' END",
                    c.name
                )
            })
            .collect();
        format!("'[' || rtrim({}, ',') || ']'", names.join(" || "))
    }

    fn previous(&self, spec: &Spec) -> String {
        // Every candidate's old value, less those the update left alone. Removing a
        // path that is not there changes nothing, so a changed field's path is one no
        // object has.
        let removals: Vec<String> = spec
            .previous_candidates()
            .map(|c| {
                let q = quoted(c.name);
                format!(
                    "CASE WHEN OLD.{q} IS NOT NEW.{q} THEN '$.\"tidings:kept\"' ELSE '$.{}' END",
                    c.name
                )
            })
            .collect();
        let old = object("OLD", spec.previous_candidates());
        if removals.is_empty() {
            return old;
        }
        format!("json_remove({old}, {})", removals.join(", "))
    }

    fn acl(&self, spec: &Spec, op: Op) -> String {
        object(op.row(), spec.rules.iter())
    }

    fn key(&self, spec: &Spec, op: Op) -> String {
        format!("CAST({}.{} AS TEXT)", op.row(), quoted(spec.id))
    }

    fn now(&self) -> &'static str {
        // RFC 3339 in UTC, which the log reader parses.
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    }
}

pub(super) fn script(spec: &Spec) -> Result<String, CaptureError> {
    let fields = spec.previous_candidates().count();
    if fields > MAX_FIELDS {
        return Err(CaptureError::TooManyFields {
            collection: spec.collection.to_owned(),
            count: fields,
            max: MAX_FIELDS,
        });
    }
    let table = quoted(spec.table);
    let mut out = format!(
        "-- tidings: capture of plain-SQL writes to {table} as events of collection \
         '{}'.\n-- Generated from the model; regenerate it when the model changes.\n\n\
         -- A tidings Store transaction puts a row here (never committed) to record its \
         own events itself.\n\
         CREATE TABLE IF NOT EXISTS realtime_capture_off (id INTEGER PRIMARY KEY CHECK (id = 1));\n",
        spec.collection
    );
    for op in Op::ALL {
        let (event, suffix) = match op {
            Op::Create => ("INSERT", "insert"),
            Op::Update => ("UPDATE", "update"),
            Op::Delete => ("DELETE", "delete"),
        };
        let trigger = quoted(&format!("tidings_capture_{}_{suffix}", spec.table));
        out.push_str(&format!(
            "\nDROP TRIGGER IF EXISTS {trigger};\n\
             CREATE TRIGGER {trigger} AFTER {event} ON {table}\n\
             WHEN NOT EXISTS (SELECT 1 FROM realtime_capture_off)\n\
             BEGIN\n{insert}\nEND;\n",
            insert = outbox::insert(&Sqlite, spec, op, "    "),
        ));
    }
    Ok(out)
}
