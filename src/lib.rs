//! tidings: live data for axum apps.

pub mod db;
pub mod event;
pub mod log;
pub mod sse;
pub mod topic;
