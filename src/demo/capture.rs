//! Capture on the demo tables: installed at startup, so a row written with psql or the
//! sqlite3 shell reaches subscribers like a REST write; and the SQL of it, which
//! `tidings capture` prints.

use super::{Note, Todo};
use crate::{
    capture::{self, Backend, CaptureError},
    db::Db,
};

/// The demo models `tidings capture --model` knows.
pub const MODELS: [&str; 2] = ["todos", "notes"];

/// The capture SQL of demo model `model` (`todos` or `notes`); `None` for another name.
pub fn capture_sql(model: &str, backend: Backend) -> Option<Result<String, CaptureError>> {
    match model {
        "todos" => Some(capture::sql::<Todo>(backend)),
        "notes" => Some(capture::sql::<Note>(backend)),
        _ => None,
    }
}

/// Installs capture on both demo tables.
pub(super) async fn install(db: &Db) -> Result<(), CaptureError> {
    capture::install::<Todo>(db).await?;
    capture::install::<Note>(db).await
}
