//! Capture on Postgres: one trigger function per table, fired `AFTER INSERT OR UPDATE
//! OR DELETE ... FOR EACH ROW`, plus `tidings_capture_json`, shared by every table,
//! which writes a column value the way the model's serde output would.

use super::{CaptureError, Op, Spec, outbox};

/// Every table's trigger function is named this plus the table.
pub(crate) const FUNCTION_PREFIX: &str = "tidings_capture_";

/// `to_jsonb(value)`, except where serde writes a value differently:
///
/// - `timestamptz`: chrono writes UTC with `Z` and 0, 3 or 6 fraction digits
///   (`2026-11-24T16:00:00.250Z`); `to_jsonb` writes the session's offset.
/// - `double precision`, `real`: serde writes the shortest digits that read back as
///   the same number, with `.0` on whole numbers below 1e16 (`3.0`), and `null` for
///   NaN and infinities. Postgres's text form has the same digits, so it is read as a
///   `numeric` and given its `.0`; `to_jsonb` would write `3`.
///
/// plpgsql plans each statement when it first runs, for the argument's type, so the
/// `timestamptz` branch is never planned for a text argument. `extra_float_digits` is
/// pinned because a session may lower it, and with 0 or less Postgres writes floats
/// with 15 digits, losing precision.
const JSON_FUNCTION: &str = r#"CREATE OR REPLACE FUNCTION tidings_capture_json(value anyelement) RETURNS jsonb
LANGUAGE plpgsql STABLE SET extra_float_digits = 1 AS $tidings$
DECLARE
    micros bigint;
    number numeric;
BEGIN
    IF value IS NULL THEN
        RETURN 'null'::jsonb;
    END IF;
    IF pg_typeof(value) = 'timestamp with time zone'::regtype THEN
        micros := extract(microseconds FROM (value AT TIME ZONE 'UTC'))::bigint % 1000000;
        RETURN to_jsonb(
            to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
            || CASE
                WHEN micros = 0 THEN ''
                WHEN micros % 1000 = 0 THEN '.' || lpad((micros / 1000)::text, 3, '0')
                ELSE '.' || lpad(micros::text, 6, '0')
            END
            || 'Z');
    END IF;
    IF pg_typeof(value) IN ('double precision'::regtype, 'real'::regtype) THEN
        IF value::text IN ('NaN', 'Infinity', '-Infinity') THEN
            RETURN 'null'::jsonb;
        END IF;
        number := value::text::numeric;
        IF number = trunc(number) AND abs(number) < 1e16 THEN
            RETURN to_jsonb(round(number, 1));
        END IF;
        RETURN to_jsonb(number);
    END IF;
    RETURN to_jsonb(value);
END;
$tidings$;"#;

struct Postgres;

/// `"name"`: names were checked to be `[A-Za-z0-9_]`.
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn value(row: &str, column: &str) -> String {
    format!("tidings_capture_json({row}.{})", quoted(column))
}

/// `jsonb_build_object` takes at most 100 arguments: 50 fields a call, joined by `||`.
fn object<'a>(row: &str, columns: impl Iterator<Item = &'a str>) -> String {
    let pairs: Vec<String> = columns
        .map(|c| format!("'{c}', {}", value(row, c)))
        .collect();
    if pairs.is_empty() {
        return "'{}'::jsonb".to_owned();
    }
    pairs
        .chunks(50)
        .map(|chunk| format!("jsonb_build_object({})", chunk.join(", ")))
        .collect::<Vec<_>>()
        .join(" || ")
}

impl outbox::Dialect for Postgres {
    fn payload(&self, spec: &Spec, op: Op) -> String {
        object(op.row(), spec.public.iter().map(|c| c.name))
    }

    fn changes(&self, spec: &Spec) -> String {
        // Compared as JSON, like the store compares the rows it reads back.
        let names: Vec<String> = spec
            .public
            .iter()
            .map(|c| {
                let q = quoted(c.name);
                format!(
                    "CASE WHEN to_jsonb(OLD.{q}) IS DISTINCT FROM to_jsonb(NEW.{q}) THEN '{}' END",
                    c.name
                )
            })
            .collect();
        format!(
            "to_jsonb(array_remove(ARRAY[{}]::text[], NULL))",
            names.join(", ")
        )
    }

    fn previous(&self, spec: &Spec) -> String {
        // Every candidate's old value, less the keys of those the update left alone.
        let unchanged: Vec<String> = spec
            .previous_candidates()
            .map(|c| {
                let q = quoted(c.name);
                format!(
                    "CASE WHEN to_jsonb(OLD.{q}) IS DISTINCT FROM to_jsonb(NEW.{q}) THEN NULL ELSE '{}' END",
                    c.name
                )
            })
            .collect();
        if unchanged.is_empty() {
            return "'{}'::jsonb".to_owned();
        }
        format!(
            "({}) - array_remove(ARRAY[{}]::text[], NULL)",
            object("OLD", spec.previous_candidates().map(|c| c.name)),
            unchanged.join(", ")
        )
    }

    fn acl(&self, spec: &Spec, op: Op) -> String {
        object(op.row(), spec.rules.iter().map(|c| c.name))
    }

    fn key(&self, spec: &Spec, op: Op) -> String {
        format!("{}.{}::text", op.row(), quoted(spec.id))
    }

    fn now(&self) -> &'static str {
        // The time of the write, like the store's, not the transaction's start.
        "clock_timestamp()"
    }
}

pub(super) fn script(spec: &Spec) -> Result<String, CaptureError> {
    let function = quoted(&format!("{FUNCTION_PREFIX}{}", spec.table));
    let table = quoted(spec.table);
    let branch = |op: Op| outbox::insert(&Postgres, spec, op, "        ");
    Ok(format!(
        "-- tidings: capture of plain-SQL writes to {table} as events of collection \
         '{collection}'.\n\
         -- Generated from the model; regenerate it when the model changes.\n\
         {JSON_FUNCTION}\n\n\
         -- search_path is fixed at creation, so the events land in the log next to the \
         table whoever writes.\n\
         CREATE OR REPLACE FUNCTION {function}() RETURNS trigger\n\
         LANGUAGE plpgsql SET search_path FROM CURRENT AS $tidings$\n\
         BEGIN\n    \
             -- A tidings Store transaction records its own events.\n    \
             IF current_setting('tidings.capture', true) = 'off' THEN\n        \
                 RETURN NULL;\n    \
             END IF;\n    \
             IF TG_OP = 'INSERT' THEN\n{create}\n    \
             ELSIF TG_OP = 'UPDATE' THEN\n{update}\n    \
             ELSE\n{delete}\n    \
             END IF;\n    \
             RETURN NULL;\n\
         END;\n\
         $tidings$;\n\n\
         DROP TRIGGER IF EXISTS tidings_capture ON {table};\n\
         CREATE TRIGGER tidings_capture AFTER INSERT OR UPDATE OR DELETE ON {table}\n    \
             FOR EACH ROW EXECUTE FUNCTION {function}();\n",
        collection = spec.collection,
        create = branch(Op::Create),
        update = branch(Op::Update),
        delete = branch(Op::Delete),
    ))
}
