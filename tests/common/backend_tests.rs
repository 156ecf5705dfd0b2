//! `backend_tests!`: one test body, one test function per database backend.

/// Turns each `async fn name(backend: Backend) { ... }` into a module `name` holding two
/// `#[tokio::test]` functions, `sqlite` and `postgres`, that run the body on that backend.
///
/// One function per backend (rather than a loop over both) lets each pass or fail on
/// its own, and the test output names the backend: `name::sqlite`, `name::postgres`.
/// Attributes written above a test (doc comments, `should_panic`, ...) are copied onto
/// both functions. The body sees everything the test file imports, `Backend` included
/// (the parameter's type is written as in any function).
///
/// Invoke it with parentheses: rustfmt formats the bodies inside `name!( ... )` but
/// leaves `name! { ... }` untouched.
///
/// ```ignore
/// backend_tests!(
///     /// What the test shows.
///     async fn events_arrive(backend: Backend) {
///         let server = TestServer::start(backend, |_| {}).await;
///         // ...
///     }
/// );
/// ```
// Every test file compiles `common`; some have no per-backend test.
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($(
        $(#[$attribute:meta])*
        async fn $name:ident($backend:ident: $backend_type:ty $(,)?) $body:block
    )*) => {$(
        mod $name {
            // The body is written as if at the file's top level; it may use any of
            // the file's imports and helpers, or none of them.
            #[allow(unused_imports)]
            use super::*;

            async fn run_on($backend: $backend_type) $body

            $(#[$attribute])*
            #[tokio::test]
            async fn sqlite() {
                run_on($crate::common::db::Backend::Sqlite).await
            }

            $(#[$attribute])*
            #[tokio::test]
            async fn postgres() {
                run_on($crate::common::db::Backend::Postgres).await
            }
        }
    )*};
}

// Makes the macro nameable by path (`common::backend_tests!`), like any other item.
pub(crate) use backend_tests;
