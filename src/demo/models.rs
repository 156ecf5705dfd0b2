//! The demo app's models: `todos` and `notes` (protocol.md section 9).

use serde::{Deserialize, Serialize};

use crate::model::Model;

/// A todo: any authenticated user reads and creates; only the owner changes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Todo {
    /// Record id.
    pub id: String,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
    /// The creator's `sub`.
    pub owner_id: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

impl Model for Todo {
    const COLLECTION: &'static str = "todos";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn rule_fields() -> &'static [&'static str] {
        &["owner_id"]
    }
}

/// A private note: only the owner reads or changes it; `internal` is hidden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Record id.
    pub id: String,
    /// Content.
    pub body: String,
    /// The creator's `sub`.
    pub owner_id: String,
    /// Stored, never sent: absent from every response and event.
    pub internal: Option<String>,
}

impl Model for Note {
    const COLLECTION: &'static str = "notes";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn hidden_fields() -> &'static [&'static str] {
        &["internal"]
    }
    fn rule_fields() -> &'static [&'static str] {
        &["owner_id"]
    }
}
