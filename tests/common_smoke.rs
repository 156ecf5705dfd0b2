//! The test helpers open both databases and run the library's migrations.

mod common;

use common::{
    backend_tests,
    db::{Backend, fresh_db},
};

backend_tests!(
    async fn migrations_run_on_every_backend(backend: Backend) {
        let db = fresh_db(backend).await;
        // Migrating twice is harmless.
        db.migrate().await.expect("second migrate");
    }
);
