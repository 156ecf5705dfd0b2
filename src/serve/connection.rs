//! One accepted socket served over HTTP/1.1 by hyper: the header-read timeout, the
//! idle timeout until the request becomes a WebSocket or SSE stream, the peer address
//! for the handlers, graceful shutdown.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::ConnectInfo,
    http::{Request, Response, StatusCode, header},
};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::watched::{Activity, Watched};
use crate::{config::TransportConfig, limits::keyed_count::CountGuard, write_deadline::DeadlineIo};

/// Serves `stream` until the client leaves, a timeout ends it, or shutdown (then
/// the request in flight finishes; an upgraded WebSocket is no longer ours by then).
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    socket_slot: CountGuard<std::net::IpAddr>,
    router: Router,
    config: Arc<TransportConfig>,
    write_timeout: std::time::Duration,
    shutdown: CancellationToken,
) {
    tracing::trace!(%peer, "socket accepted");
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    // Every write has a deadline: a Datastar stream whose client stopped reading is
    // only noticed here (src/write_deadline.rs).
    let io = TokioIo::new(
        DeadlineIo::new(
            Watched::new(stream, activity.clone(), socket_slot),
            write_timeout,
        )
        .with_shutdown(shutdown.clone()),
    );
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            let activity = activity.clone();
            async move {
                let response = tower_service::Service::call(&mut router, request).await?;
                if is_long_lived(&response) {
                    activity.mark_long_lived();
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            // Dropping the connection closes the socket.
            () = activity.idle_for(config.idle_timeout) => return,
        }
    }
}

/// A WebSocket upgrade or an SSE stream: watched by their own pings and keep-alives.
fn is_long_lived<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::SWITCHING_PROTOCOLS
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
}
