//! The app's subscription callbacks (`on_subscribe`, `on_unsubscribe`), told about
//! every subscription of every transport: WebSocket connections and Datastar streams.

use std::{
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

/// Called with `(pattern, connection_id)` when a connection or a Datastar stream
/// subscribes to a pattern, or when that subscription ends (see
/// [`RealtimeBuilder::on_subscribe`](crate::RealtimeBuilder::on_subscribe)).
pub type SubscriptionCallback = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The callbacks registered on the builder; fixed once the gateway is built.
#[derive(Clone, Default)]
pub(crate) struct SubscriptionHooks {
    pub(crate) on_subscribe: Vec<SubscriptionCallback>,
    pub(crate) on_unsubscribe: Vec<SubscriptionCallback>,
}

impl fmt::Debug for SubscriptionHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionHooks")
            .field("on_subscribe", &self.on_subscribe.len())
            .field("on_unsubscribe", &self.on_unsubscribe.len())
            .finish()
    }
}

impl SubscriptionHooks {
    /// `connection_id` subscribed to `pattern`.
    pub(crate) fn subscribed(&self, pattern: &str, connection_id: &str) {
        Self::notify(&self.on_subscribe, "on_subscribe", pattern, connection_id);
    }

    /// A subscription of `connection_id` to `pattern` ended.
    pub(crate) fn unsubscribed(&self, pattern: &str, connection_id: &str) {
        Self::notify(
            &self.on_unsubscribe,
            "on_unsubscribe",
            pattern,
            connection_id,
        );
    }

    fn notify(callbacks: &[SubscriptionCallback], name: &str, pattern: &str, id: &str) {
        for callback in callbacks {
            // Runs from drop guards too, where a panic while unwinding would abort.
            if catch_unwind(AssertUnwindSafe(|| callback(pattern, id))).is_err() {
                tracing::error!(callback = name, pattern, "subscription callback panicked");
            }
        }
    }
}
