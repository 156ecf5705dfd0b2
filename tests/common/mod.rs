//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod backend_tests;
pub mod db;
pub mod server;
pub mod sse;

// Lets a test file write `backend_tests!( ... )` after `use common::backend_tests`; files without one ignore it.
#[allow(unused_imports)]
pub(crate) use backend_tests::backend_tests;
