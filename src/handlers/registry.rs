//! Which handler a client frame goes to, and the app's middleware.
//!
//! Handlers are looked up by the frame's topic against the patterns they were
//! registered with, in registration order: the first match wins, so register the
//! specific (`chat:admin`) before the general (`chat:*`). A frame without a handler
//! is not slowed down: a `publish` goes straight to subscribers (if the publish rule
//! allows), and a `request` is refused with `not_found`.

use std::sync::Arc;

use super::{
    CallKind,
    chain::{HandlerFn, MiddlewareFn, Next},
};
use crate::topic::{Pattern, Topic, TopicError};

/// The handlers and middleware of one gateway; frozen once built.
#[derive(Clone, Default)]
pub(crate) struct Handlers {
    publish: Vec<(Pattern, HandlerFn)>,
    request: Vec<(Pattern, HandlerFn)>,
    /// One slice every call's chain shares (rebuilt only while registering).
    middleware: Arc<[MiddlewareFn]>,
    /// Patterns that did not parse, reported by the build.
    invalid: Vec<(String, TopicError)>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let patterns = |list: &[(Pattern, HandlerFn)]| {
            list.iter()
                .map(|(p, _)| p.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        f.debug_struct("Handlers")
            .field("publish", &patterns(&self.publish))
            .field("request", &patterns(&self.request))
            .field("middleware", &self.middleware.len())
            .finish_non_exhaustive()
    }
}

impl Handlers {
    /// Registers `handler` for frames of `kind` whose topic matches `pattern`.
    pub(crate) fn add(&mut self, kind: CallKind, pattern: &str, handler: HandlerFn) {
        let pattern = match Pattern::parse(pattern) {
            Ok(pattern) => pattern,
            Err(e) => return self.invalid.push((pattern.to_owned(), e)),
        };
        match kind {
            CallKind::Publish => self.publish.push((pattern, handler)),
            CallKind::Request => self.request.push((pattern, handler)),
        }
    }

    /// Appends a middleware to the chain.
    pub(crate) fn add_middleware(&mut self, middleware: MiddlewareFn) {
        self.middleware = self
            .middleware
            .iter()
            .cloned()
            .chain(std::iter::once(middleware))
            .collect();
    }

    /// The first pattern that did not parse, for the build to refuse.
    pub(crate) fn first_invalid(&self) -> Option<&(String, TopicError)> {
        self.invalid.first()
    }

    /// The chain for a frame of `kind` on `topic`, if a handler is registered for it.
    pub(crate) fn chain(&self, kind: CallKind, topic: &Topic) -> Option<Next> {
        let list = match kind {
            CallKind::Publish => &self.publish,
            CallKind::Request => &self.request,
        };
        let (_, handler) = list
            .iter()
            .find(|(pattern, _)| pattern.matches(topic.collection_name(), topic.key()))?;
        Some(Next::start(self.middleware.clone(), handler.clone()))
    }
}
