//! `GET /realtime/sse?topics=<pattern>[,<pattern>...][&filter=<JSON>]`, and who an SSE
//! request is.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};

use super::{
    SseState,
    stream::{Opening, Registration, StreamError, last_event_id},
};
use crate::{
    app::Realtime,
    auth::{AuthError, Caller, Principal},
    config::Config,
    limits::Transport,
    serve::peer::PeerIp,
    topic::{MAX_PATTERN_LEN, Pattern},
};

impl Realtime {
    /// Who an SSE request (or any request of the app's own) is: the token of an
    /// `Authorization: Bearer` header, else of the cookie named by
    /// `config.sse.cookie_name`, else an anonymous principal. A token that is present
    /// but invalid is an error, never a silent fall back to anonymous.
    ///
    /// In a handler, the [`Caller`] extractor does the same.
    pub fn sse_principal(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        self.authenticator().principal(headers)
    }
}

/// Splits and parses `topics`.
pub(crate) fn parse_topics(
    config: &Config,
    topics: Option<&str>,
) -> Result<Vec<Pattern>, StreamError> {
    let topics = topics.ok_or(StreamError::NoTopics)?;
    let limit = config.connection.max_subscriptions;
    // Refuse an absurd list before splitting it.
    if topics.len() > limit.saturating_mul(MAX_PATTERN_LEN + 1) {
        return Err(StreamError::TooManyPatterns { limit });
    }
    let patterns = topics
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Pattern::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if patterns.is_empty() {
        return Err(StreamError::NoTopics);
    }
    if patterns.len() > limit {
        return Err(StreamError::TooManyPatterns { limit });
    }
    Ok(patterns)
}

/// `GET /realtime/sse`: protocol section 6. An invalid token or cookie is refused by
/// the [`Caller`] extractor (401) before anything else is looked at.
pub(crate) async fn handler(
    State(state): State<SseState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    PeerIp(ip): PeerIp,
    Caller(principal): Caller,
) -> Response {
    // Caps first, before any work: the stream holds its slot until it ends.
    let slot = match state
        .limits
        .slots
        .acquire(Transport::Sse, ip, principal.user_id.as_ref())
    {
        Ok(slot) => slot,
        Err(refused) => {
            crate::metrics::Metrics::inc(&state.metrics.connections_refused);
            return StreamError::from(refused).into_response();
        }
    };
    let opened = async {
        let patterns = parse_topics(&state.config, query.get("topics").map(String::as_str))?;
        let mut stream = Registration::open(state, Arc::new(principal), slot)?;
        if let Some(filter) = query.get("filter") {
            stream.filter(filter)?;
        }
        stream.subscribe_all(patterns)?;
        // `since`: the cursor a server-rendered page was rendered at, for its first
        // connection; a reconnect's Last-Event-ID is further along and wins.
        let since = last_event_id(&headers).or(query.get("since").map(String::as_str));
        stream.start(since, Opening::Snapshot).await
    };
    match opened.await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}
