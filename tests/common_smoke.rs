//! The test helpers open both databases and run the library's migrations.

mod common;

use common::db::{BACKENDS, fresh_db};

#[tokio::test]
async fn migrations_run_on_every_backend() {
    for backend in BACKENDS {
        let Some(db) = fresh_db(backend).await else {
            continue;
        };
        // Migrating twice is harmless.
        db.migrate().await.expect("second migrate");
    }
}
