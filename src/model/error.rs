//! What can go wrong when reading or writing models, with the input that caused it.

/// A failed model operation. Every variant names the collection (and record id where
/// there is one) so a log line says which write failed without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A table or column name that is not plain ASCII letters, digits and `_`.
    #[error(
        "collection {collection:?}: invalid {kind} name {name:?}: \
         only ASCII letters, digits and _ are allowed (at most 63)"
    )]
    InvalidIdentifier {
        /// The model's collection.
        collection: String,
        /// What the name was meant to be: `table` or `column`.
        kind: &'static str,
        /// The rejected name.
        name: String,
    },
    /// No record has this id.
    #[error("collection {collection:?}: no record with id {id:?}")]
    NotFound {
        /// The model's collection.
        collection: String,
        /// The id that was looked up.
        id: String,
    },
    /// The model's table does not exist (reported by SQLite; Postgres reports it
    /// through [`StoreError::Database`]).
    #[error("collection {collection:?}: table {table:?} does not exist")]
    UnknownTable {
        /// The model's collection.
        collection: String,
        /// The missing table.
        table: String,
    },
    /// A model field has no column of the same name.
    #[error("collection {collection:?}: field {column:?} is not a column of table {table:?}")]
    UnknownColumn {
        /// The model's collection.
        collection: String,
        /// The model's table.
        table: String,
        /// The field without a column.
        column: String,
    },
    /// The record did not serialize to a JSON object.
    #[error("collection {collection:?}: a record must serialize to a JSON object")]
    NotAnObject {
        /// The model's collection.
        collection: String,
    },
    /// A field value the database cannot store as it is.
    #[error("collection {collection:?}: field {column:?} has an unsupported value: {reason}")]
    UnsupportedValue {
        /// The model's collection.
        collection: String,
        /// The field.
        column: String,
        /// Why it cannot be stored.
        reason: String,
    },
    /// A record could not be serialized, or a stored row could not be read as the model.
    #[error("collection {collection:?}, id {id:?}: record does not match the model: {source}")]
    Json {
        /// The model's collection.
        collection: String,
        /// The record id, when known.
        id: Option<String>,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The database failed a statement.
    #[error("collection {collection:?}, id {id:?}: {op} failed: {source}")]
    Database {
        /// What was being done, e.g. `insert`, `update`, `delete`, `get`, `list`, `record`.
        op: &'static str,
        /// The collection involved.
        collection: String,
        /// The record id, when there is one.
        id: Option<String>,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Beginning, committing or rolling back a transaction failed.
    #[error("transaction {op} failed: {source}")]
    Transaction {
        /// `begin`, `commit` or `rollback`.
        op: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// SQLite: a capture trigger appeared (another connection installed it) while the
    /// transaction ran its own SQL through [`Tx::sqlite`](super::Tx::sqlite) before
    /// any model statement, so that SQL may have been captured as well as recorded;
    /// the transaction was not committed. Running it again is safe.
    #[error(
        "transaction not committed: a capture trigger appeared while it ran its own SQL, \
         which may have been recorded twice; run it again"
    )]
    CaptureAppeared,
}
