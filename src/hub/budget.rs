//! The matching budget: how many glob subscriptions a connection, a user and the node
//! may hold, and how complex one glob may be, so that however clients subscribe, the
//! work an event costs the hub stays bounded and one user's patterns cannot slow the
//! delivery of everyone else's events. Past a limit a subscription is refused, never
//! admitted to slow fan-out down.
//!
//! Exact patterns (`todos:*`, `todos:42`, `*:*`, `*:42`) are lookups and are not
//! counted here; only globs are (see `index::is_glob`).

use crate::{config::ConnectionConfig, protocol::ErrorCode, topic::Pattern};

/// The glob limits of one node (`connection.max_glob_*`, `connection.max_globs_per_node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobLimits {
    /// Glob subscriptions per connection or SSE stream.
    pub per_connection: usize,
    /// Glob subscriptions per user on this node, across connections and streams.
    pub per_user: usize,
    /// Distinct glob patterns on this node.
    pub per_node: usize,
    /// Wildcards in one glob pattern.
    pub max_wildcards: usize,
    /// Characters in one glob pattern.
    pub max_length: usize,
}

impl From<&ConnectionConfig> for GlobLimits {
    fn from(c: &ConnectionConfig) -> Self {
        Self {
            per_connection: c.max_glob_subscriptions,
            per_user: c.max_glob_subscriptions_per_user,
            per_node: c.max_globs_per_node,
            max_wildcards: c.max_glob_wildcards,
            max_length: c.max_glob_length,
        }
    }
}

impl Default for GlobLimits {
    fn default() -> Self {
        Self::from(&ConnectionConfig::default())
    }
}

/// Why the hub refused a subscription. The message names the limit and its setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The receiver is gone (its queue overflowed); its close is on its way.
    #[error("the connection is closing")]
    Gone,
    /// The subscription id is in use on this receiver (or repeated in one batch).
    #[error("subscription id already in use")]
    IdInUse,
    /// The glob has more wildcards than `connection.max_glob_wildcards`.
    #[error(
        "invalid pattern {pattern:?}: {count} wildcards, at most {limit} \
         (connection.max_glob_wildcards)"
    )]
    TooManyWildcards {
        /// The pattern.
        pattern: String,
        /// Its wildcards.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The glob is longer than `connection.max_glob_length`.
    #[error(
        "invalid pattern {pattern:?}: a glob of {length} characters, at most {limit} \
         (connection.max_glob_length)"
    )]
    GlobTooLong {
        /// The pattern.
        pattern: String,
        /// Its length in characters.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The connection holds `connection.max_glob_subscriptions` globs.
    #[error(
        "at most {limit} glob subscriptions per connection \
         (connection.max_glob_subscriptions); exact patterns such as todos:* are not counted"
    )]
    GlobsPerConnection {
        /// The limit.
        limit: usize,
    },
    /// The user holds `connection.max_glob_subscriptions_per_user` globs on this node.
    #[error(
        "at most {limit} glob subscriptions per user on this node \
         (connection.max_glob_subscriptions_per_user)"
    )]
    GlobsPerUser {
        /// The limit.
        limit: usize,
    },
    /// The node holds `connection.max_globs_per_node` distinct globs.
    #[error(
        "this node's matching budget is spent: {limit} distinct glob patterns \
         (connection.max_globs_per_node); a glob already in use, or an exact pattern, \
         is still accepted"
    )]
    GlobsPerNode {
        /// The limit.
        limit: usize,
    },
}

impl SubscribeError {
    /// The protocol's error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Gone | Self::IdInUse => ErrorCode::BadRequest,
            Self::TooManyWildcards { .. } | Self::GlobTooLong { .. } => ErrorCode::InvalidPattern,
            Self::GlobsPerConnection { .. }
            | Self::GlobsPerUser { .. }
            | Self::GlobsPerNode { .. } => ErrorCode::LimitExceeded,
        }
    }
}

/// The characters counted as wildcards: each opens a choice the matcher has to
/// explore (`,` is one more alternative of a `{...}`).
const WILDCARDS: [char; 5] = ['*', '?', '[', '{', ','];

impl GlobLimits {
    /// Refuses a glob pattern that is too long or has too many wildcards. Exact
    /// patterns pass: they cost a lookup whatever they look like.
    pub(crate) fn check_complexity(&self, pattern: &Pattern) -> Result<(), SubscribeError> {
        if !super::index::is_glob(pattern) {
            return Ok(());
        }
        let text = pattern.as_str();
        let length = text.chars().count();
        if length > self.max_length {
            return Err(SubscribeError::GlobTooLong {
                pattern: text.to_owned(),
                length,
                limit: self.max_length,
            });
        }
        let count = text.chars().filter(|c| WILDCARDS.contains(c)).count();
        if count > self.max_wildcards {
            return Err(SubscribeError::TooManyWildcards {
                pattern: text.to_owned(),
                count,
                limit: self.max_wildcards,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(limits: &GlobLimits, text: &str) -> Result<(), SubscribeError> {
        limits.check_complexity(&Pattern::parse(text).unwrap())
    }

    #[test]
    fn complexity_is_judged_on_globs_only() {
        let limits = GlobLimits {
            max_wildcards: 3,
            max_length: 12,
            ..GlobLimits::default()
        };
        assert!(check(&limits, "todos:*").is_ok());
        assert!(check(&limits, "*:*").is_ok());
        assert!(check(&limits, &format!("todos:{}", "k".repeat(100))).is_ok());
        assert!(check(&limits, "*:*a*b").is_ok(), "3 wildcards");
        let refused = check(&limits, "*:*a*b*").unwrap_err();
        assert!(matches!(
            refused,
            SubscribeError::TooManyWildcards { count: 4, .. }
        ));
        assert_eq!(refused.code(), ErrorCode::InvalidPattern);
        assert!(
            refused
                .to_string()
                .contains("connection.max_glob_wildcards")
        );
        let refused = check(&limits, "todos:abcdefg*").unwrap_err();
        assert!(matches!(
            refused,
            SubscribeError::GlobTooLong { length: 14, .. }
        ));
        assert!(
            check(&limits, "t:{a,b,c,d}").is_err(),
            "braces and commas count"
        );
    }
}
