//! The browser origin check, made before the upgrade.

use axum::http::{HeaderMap, header};

use crate::app::Realtime;

/// Whether the request's `Origin` may open a connection. Requests without an
/// `Origin` header come from non-browser clients and are allowed: the origin check
/// protects browsers' ambient credentials, which such clients do not have.
pub(crate) fn origin_allowed(realtime: &Realtime, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let allowed = &realtime.config().allowed_origins;
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a == origin);
    }
    match realtime.inner.local_addr.get() {
        Some(addr) => {
            origin == format!("http://{addr}")
                || origin == format!("http://localhost:{}", addr.port())
        }
        // Embedded without a known address: same-origin by the Host header.
        None => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| {
                origin == format!("http://{host}") || origin == format!("https://{host}")
            }),
    }
}
