//! The tidings reference server.

fn main() {}
