//! tidings: live data for axum apps.

pub mod auth;
pub mod broker;
pub mod close;
pub mod config;
pub mod db;
pub mod event;
pub mod hub;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod rules;
pub mod topic;
