//! The middleware chain: the app's middleware in the order it registered them, then
//! the handler. Each link gets the [`Call`] and the rest of the chain ([`Next`]); it
//! may change the call and pass it on, answer itself, or refuse, which stops the
//! chain (the links after it and the handler never run).

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Call, Outcome, Reject};

/// What a handler or a middleware returns: a boxed future, so links of any type chain.
pub type HandlerFuture = BoxFuture<'static, Result<Outcome, Reject>>;

/// A handler, as the registry keeps it.
pub(crate) type HandlerFn = Arc<dyn Fn(Call) -> HandlerFuture + Send + Sync>;

/// A middleware, as the registry keeps it.
pub(crate) type MiddlewareFn = Arc<dyn Fn(Call, Next) -> HandlerFuture + Send + Sync>;

/// The rest of the chain after a middleware: the later middleware, then the handler.
///
/// ```
/// use tidings::handlers::{Call, HandlerFuture, Next};
///
/// // Logs every handled client event, then lets it through unchanged.
/// fn log_calls(call: Call, next: Next) -> HandlerFuture {
///     tracing::info!(topic = %call.topic(), event = call.event(), "client event");
///     next.run(call)
/// }
/// ```
pub struct Next {
    middleware: Arc<[MiddlewareFn]>,
    position: usize,
    handler: HandlerFn,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field(
                "remaining_middleware",
                &(self.middleware.len() - self.position),
            )
            .finish_non_exhaustive()
    }
}

impl Next {
    /// The whole chain: every middleware, then `handler`.
    pub(crate) fn start(middleware: Arc<[MiddlewareFn]>, handler: HandlerFn) -> Self {
        Self {
            middleware,
            position: 0,
            handler,
        }
    }

    /// Runs the rest of the chain with `call`.
    pub fn run(self, call: Call) -> HandlerFuture {
        match self.middleware.get(self.position).cloned() {
            Some(link) => {
                let rest = Self {
                    position: self.position + 1,
                    ..self
                };
                link(call, rest)
            }
            None => (self.handler)(call),
        }
    }
}
