//! What the Datastar encoding layer refuses, and why.

use std::fmt;

use datastar::consts::ElementPatchMode;
use serde_json::Value;

/// A value that ends up on a single SSE line, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The `id:` field of an SSE event (a cursor).
    EventId,
    /// The CSS selector of a `datastar-patch-elements` event.
    Selector,
}

impl Field {
    /// The name used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventId => "SSE event id",
            Self::Selector => "selector",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input the encoding layer will not put on the wire.
///
/// Every variant carries the offending input so the caller can log it; `Display` prints
/// it with `{:?}`, so a line break in it cannot forge a log line either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single-line value contains CR or LF, which would end its SSE line early and let
    /// the rest of it become a new field or a new event.
    #[error("{field} must be a single line, but {value:?} contains CR or LF")]
    LineBreak {
        /// Which value.
        field: Field,
        /// The value as given.
        value: String,
    },
    /// A selector is empty or only whitespace; Datastar would treat it as missing.
    #[error("selector {value:?} is empty")]
    EmptySelector {
        /// The selector as given.
        value: String,
    },
    /// Only the `outer` and `replace` modes can find their target by the elements' ids;
    /// the Datastar client rejects every other mode without a selector.
    #[error("patch mode {mode:?} needs a selector")]
    SelectorRequired {
        /// The mode that was asked for.
        mode: ElementPatchMode,
    },
    /// `datastar-patch-signals` carries a JSON object (a merge patch of the signals).
    #[error("signals must be a JSON object, not {}", json_kind(.value))]
    SignalsNotObject {
        /// The value as given.
        value: Value,
    },
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
