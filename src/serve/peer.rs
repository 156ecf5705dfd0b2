//! The client's address, for the per-address caps of the WebSocket and SSE endpoints.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};

/// The peer's IP address when the server provides it: [`Realtime::serve`] does, and
/// so does `axum::serve` with `into_make_service_with_connect_info::<SocketAddr>()`.
/// Without it, the per-address caps do not apply.
///
/// [`Realtime::serve`]: crate::Realtime::serve
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerIp(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| canonical(addr.ip()));
        Ok(Self(ip))
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) counts as itself.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
