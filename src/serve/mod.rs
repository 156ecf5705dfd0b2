//! [`Realtime::serve`]: the gateway's own accept loop, so that limits apply before a
//! socket costs more than a file descriptor: open sockets and new sockets per second
//! per IP address (answered 429 with `Retry-After`), a deadline for the request
//! headers, and an idle timeout until the request becomes a WebSocket or SSE stream.
//! See `docs/security.md`, "Before the upgrade".
//!
//! - `connection`: one socket under hyper, with the timeouts.
//! - `watched`: the socket wrapper that records activity and holds the address's slot.
//! - `refuse`: the raw 429 for a socket refused before any request is read.
//! - `peer`: the extractor the WebSocket and SSE endpoints read the address from.

mod connection;
pub(crate) mod peer;
mod refuse;
mod watched;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::{
    app::Realtime,
    limits::{NodeLimits, keyed_count::CountGuard},
};

/// The pause after an accept error (out of file descriptors, say), so the loop does
/// not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

impl Realtime {
    /// Serves `router` (typically the app's routes merged with
    /// [`router`](Self::router)) on `listener` until [`shutdown`](Self::shutdown)
    /// begins, with the transport limits of `config.transport` applied to every
    /// socket before axum sees a request:
    ///
    /// - a socket from an address that already holds `max_sockets_per_ip` sockets, or
    ///   that opened more than `connects_per_second_per_ip`, is answered `429` with
    ///   `Retry-After` and closed;
    /// - request headers must arrive within `header_read_timeout`;
    /// - a socket that is not a WebSocket or SSE stream and moves no byte for
    ///   `idle_timeout` is closed;
    /// - every write to a client may wait at most `connection.write_timeout` (a Datastar
    ///   stream whose client stopped reading ends; see [`listener`](Self::listener));
    /// - the handlers see the peer address (`ConnectInfo<SocketAddr>`), which the
    ///   per-address connection cap of the WebSocket and SSE endpoints needs.
    ///
    /// It also calls [`set_local_addr`](Self::set_local_addr). When shutdown begins it
    /// stops accepting, lets requests in flight finish and returns once every socket
    /// it serves is closed; WebSocket connections are the gateway's and end with
    /// [`shutdown`](Self::shutdown) (1001).
    ///
    /// ```no_run
    /// # async fn f(realtime: tidings::Realtime) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let app = axum::Router::new().merge(realtime.router());
    /// let serving = tokio::spawn({
    ///     let realtime = realtime.clone();
    ///     async move { realtime.serve(listener, app).await }
    /// });
    /// // ... on SIGTERM:
    /// realtime.shutdown().await; // stops serve, WebSocket clients get 1001
    /// serving.await??;
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, listener: TcpListener, router: axum::Router) -> io::Result<()> {
        self.set_local_addr(listener.local_addr()?);
        let shutdown = self.shutdown_token();
        let limits = self.limits().clone();
        let config = Arc::new(self.config().transport.clone());
        let refusals = refuse::Refusals::default();
        let connections = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let slot = match admit(&limits, peer) {
                Ok(slot) => slot,
                Err((retry_after_secs, why)) => {
                    crate::metrics::Metrics::inc(&self.metrics().sockets_refused);
                    refusals.refuse(&connections, stream, retry_after_secs, why);
                    continue;
                }
            };
            connections.spawn(connection::serve(
                stream,
                peer,
                slot,
                router.clone(),
                config.clone(),
                self.config().connection.write_timeout,
                shutdown.clone(),
            ));
        }
        drop(listener);
        connections.close();
        connections.wait().await;
        Ok(())
    }
}

/// Takes one connect from the address's rate and one of its socket slots, or says
/// when to retry and why.
fn admit(limits: &NodeLimits, peer: SocketAddr) -> Result<CountGuard<IpAddr>, (u64, &'static str)> {
    let ip = peer::canonical(peer.ip());
    if let Err(refusal) = limits.connects.check(&ip) {
        return Err((
            refusal.retry_after_secs(Duration::from_secs(1)),
            "too many new connections from this address",
        ));
    }
    // A socket slot frees up when one of the address's sockets closes, which cannot
    // be foretold: a short wait is the honest advice.
    limits
        .sockets
        .acquire(&ip)
        .ok_or((1, "too many open connections from this address"))
}
