//! The echo server `scripts/autobahn` runs the Autobahn WebSocket conformance suite
//! against. It serves `tidings::__private::echo_router`, which goes through the
//! gateway's own WebSocket code (upgrade settings, write deadlines, close handshake,
//! protocol-error close codes); only the JSON session is left out. The reference
//! server never mounts it.
//!
//! `cargo run --example autobahn_echo [ADDR]` (default `127.0.0.1:0`); prints
//! `listening on ws://<addr>/` once it accepts connections.

use tidings::{__private::echo_router, Config};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let mut connection = Config::default().connection;
    // The suite's section 9 sends messages of up to 16 MiB; every other setting is
    // the gateway's default.
    connection.max_message_size = 16 << 20;
    let app = echo_router("/", connection, CancellationToken::new());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
