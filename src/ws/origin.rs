//! The browser origin check, made before the upgrade.

use std::{net::SocketAddr, sync::OnceLock};

use axum::http::{HeaderMap, header};

/// Which browser origins may open connections: the configured allowlist, or, without
/// one, the gateway's own origins.
#[derive(Debug)]
pub(crate) struct Origins {
    allowed: Vec<String>,
    local_addr: OnceLock<SocketAddr>,
}

impl Origins {
    /// An allowlist (empty: same-origin only).
    pub(crate) fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed,
            local_addr: OnceLock::new(),
        }
    }

    /// The address the gateway serves on, so that without an allowlist its own
    /// origins (`http://<addr>`, `http://localhost:<port>`) are allowed. Only the
    /// first call counts.
    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    /// Whether the request's `Origin` may open a connection. Requests without an
    /// `Origin` header come from non-browser clients and are allowed: the origin check
    /// protects browsers' ambient credentials, which such clients do not have.
    pub(crate) fn allow(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if !self.allowed.is_empty() {
            return self.allowed.iter().any(|a| a == origin);
        }
        match self.local_addr.get() {
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
}
