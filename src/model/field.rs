//! A model's columns as `#[derive(Model)]` lists them, for what is generated from the
//! model definition rather than from a value (the capture triggers).

/// One column of a model: its name and what its values look like in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The column name (the serde field name).
    pub name: &'static str,
    /// How the value is written into an event.
    pub kind: FieldKind,
}

impl Field {
    /// A column `name` of `kind`.
    pub const fn new(name: &'static str, kind: FieldKind) -> Self {
        Self { name, kind }
    }
}

/// How a column's value appears in an event, as the model's serde output has it.
///
/// Postgres knows every column's type, so there the kind changes nothing. SQLite
/// stores values, not types: a boolean is an integer and JSON is text, so a capture
/// trigger on SQLite converts `Bool`, `Float` and `Json` columns by their kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string (`String`).
    Text,
    /// An integer (`i64`, `i32`, ...).
    Integer,
    /// A floating-point number (`f64`).
    Float,
    /// `true` / `false` (`bool`; 1/0 on SQLite).
    Bool,
    /// A timestamp (`chrono::DateTime<Utc>`; RFC 3339 text on SQLite).
    Timestamp,
    /// Any JSON value (`serde_json::Value`, `Vec<_>`, maps; text on SQLite).
    Json,
    /// Anything else: the value as stored.
    Other,
}
