//! The demo app's models: `todos` and `notes` (protocol.md section 9).

use serde::{Deserialize, Serialize};

use crate::model::Model;

/// A todo: any authenticated user reads and creates; only the owner changes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[tidings(collection = "todos")]
pub struct Todo {
    /// Record id.
    pub id: String,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
    /// The creator's `sub`.
    #[tidings(rule)]
    pub owner_id: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A private note: only the owner reads or changes it; `internal` is hidden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Model)]
#[tidings(collection = "notes")]
pub struct Note {
    /// Record id.
    pub id: String,
    /// Content.
    pub body: String,
    /// The creator's `sub`.
    #[tidings(rule)]
    pub owner_id: String,
    /// Stored, never sent: absent from every response and event.
    #[tidings(hidden)]
    pub internal: Option<String>,
}
