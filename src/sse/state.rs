//! [`SseState`]: the parts of the gateway the Datastar SSE transport works with.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;

use super::hooks::DatastarHooks;
use crate::{
    auth::Authenticator, config::Config, hooks::SubscriptionHooks, hub::Hub, log::Log,
    metrics::Metrics, model::Store, rules::Rules,
};

/// What `GET /realtime/sse` and `datastar_stream` need, and no more: built by
/// `Realtime::sse_state`.
#[derive(Debug, Clone)]
pub(crate) struct SseState {
    pub(crate) config: Arc<Config>,
    /// Who a request is (bearer header or the SSE cookie).
    pub(crate) authenticator: Authenticator,
    /// The access policy: admission of patterns, the per-event filter of replays.
    pub(crate) rules: Arc<Rules>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) log: Arc<Log>,
    pub(crate) subscription_hooks: Arc<SubscriptionHooks>,
    pub(crate) datastar: Arc<DatastarHooks>,
    pub(crate) metrics: Arc<Metrics>,
    /// Connection caps (node, user, address).
    pub(crate) limits: Arc<crate::limits::NodeLimits>,
    pub(crate) shutdown: CancellationToken,
    /// Handed to the app's snapshot, to read what the page shows.
    pub(crate) store: Store,
}

impl FromRef<SseState> for Authenticator {
    fn from_ref(state: &SseState) -> Self {
        state.authenticator.clone()
    }
}
