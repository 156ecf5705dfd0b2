//! Shared helpers for the integration tests.
#![allow(dead_code)]
// Each test binary is a crate of its own: `pub` here means "for the test files",
// which `unreachable_pub` (a lint for the library's API) cannot tell.
#![allow(unreachable_pub)]

pub mod backend_tests;
pub mod binary;
pub mod brokers;
pub mod cluster;
pub mod db;
pub mod private_postgres;
pub mod raw_ws;
pub mod server;
pub mod sqlite_writes;
pub mod sse;
pub mod tasks;

// Lets a test file write `backend_tests!( ... )` after `use common::backend_tests`; files without one ignore it.
#[allow(unused_imports)]
pub(crate) use backend_tests::backend_tests;
