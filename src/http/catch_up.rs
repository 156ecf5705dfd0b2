//! `GET /realtime/events?topics=<patterns>&since=<cursor>[&filter=][&limit=N][&wait=<s>]`:
//! HTTP catch-up. The same events, rules, filters and `enter`/`leave` table a
//! WebSocket resume from `since` would give, as one JSON answer, paged by `limit`; with
//! `wait`, a long poll that answers as soon as something arrives (bounded).
//!
//! ```json
//! {"events":[{"cursor":"e:8","topic":"todos:1",...}],"cursor":"e:8","recovered":true}
//! {"events":[],"cursor":"e:12","recovered":false,"reason":"too_old"}
//! ```
//!
//! The next call passes the answer's `cursor` as `since`. Auth is the SSE bridge's
//! (bearer header or cookie; anonymous for public collections), and so is the
//! admission of each pattern (`access.rs`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::HttpError;
use crate::{
    access::Interest,
    auth::{Authenticator, Caller, Principal},
    config::Config,
    event::{Cursor, Event},
    filter::Filter,
    hub::Hub,
    log::{Log, replay::ReplayError},
    protocol::ResyncReason,
    rules::Rules,
    sse::{StreamError, admit, parse_topics},
    topic::Pattern,
};

/// Events per answer when the request names no `limit`.
const DEFAULT_LIMIT: usize = 100;

/// What `GET /realtime/events` works with, built by `Realtime::router`.
#[derive(Debug, Clone)]
pub(crate) struct CatchUpState {
    pub(crate) config: Arc<Config>,
    pub(crate) authenticator: Authenticator,
    pub(crate) rules: Arc<Rules>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) log: Arc<Log>,
    pub(crate) shutdown: CancellationToken,
    /// One permit per long poll waiting now (`log.catch_up_max_waiting`), released on
    /// drop however the request ends.
    pub(crate) waiting: Arc<Semaphore>,
}

impl axum::extract::FromRef<CatchUpState> for Authenticator {
    fn from_ref(state: &CatchUpState) -> Self {
        state.authenticator.clone()
    }
}

/// A checked request.
struct Request {
    patterns: Vec<Arc<Pattern>>,
    filter: Option<Filter>,
    since: Option<Cursor>,
    limit: usize,
    wait: Duration,
}

fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> HttpError {
    HttpError::bad_request(message)
}

impl Request {
    fn parse(
        state: &CatchUpState,
        principal: &Principal,
        query: &HashMap<String, String>,
    ) -> Result<Self, HttpError> {
        let config = &state.config;
        let patterns = parse_topics(config, query.get("topics").map(String::as_str))?;
        let filter = match query.get("filter") {
            Some(json) => Some(
                Filter::parse_str(json, config.connection.filter_limits())
                    .map_err(StreamError::from)?,
            ),
            None => None,
        };
        for pattern in &patterns {
            admit(&state.rules, principal, pattern)?;
            if let Some(filter) = &filter {
                state
                    .rules
                    .check_filter(pattern, filter)
                    .map_err(StreamError::from)?;
            }
        }
        let since = query
            .get("since")
            .ok_or_else(|| bad("since is required: the cursor to catch up from"))?;
        let max = config.log.catch_up_max_events;
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT.min(max),
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => n.min(max),
                _ => {
                    return Err(bad(format!(
                        "limit must be a whole number from 1 (at most {max} are sent)"
                    )));
                }
            },
        };
        let wait = match query.get("wait") {
            None => Duration::ZERO,
            Some(s) => match s.parse::<u64>() {
                // Checked before any arithmetic: cut to the configured bound.
                Ok(s) => Duration::from_secs(s).min(config.log.catch_up_max_wait),
                Err(_) => return Err(bad("wait must be a whole number of seconds")),
            },
        };
        Ok(Self {
            patterns: patterns.into_iter().map(Arc::new).collect(),
            filter: filter.filter(|f| !f.is_empty()),
            // A malformed cursor is answered like a WebSocket resume: unknown_position.
            since: since.parse().ok(),
            limit,
            wait,
        })
    }
}

/// `GET /realtime/events`.
pub(crate) async fn handler(
    State(state): State<CatchUpState>,
    Query(query): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let request = match Request::parse(&state, &principal, &query) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    match catch_up(&state, &principal, request).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(error = %e, "HTTP catch-up: reading the log failed");
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::protocol::ErrorCode::Internal,
                "reading the event log failed; retry",
            )
            .into_response()
        }
    }
}

async fn catch_up(
    state: &CatchUpState,
    principal: &Principal,
    request: Request,
) -> Result<Response, sqlx::Error> {
    let Some(since) = request.since else {
        return Ok(resync(state, ResyncReason::UnknownPosition));
    };
    let interest = Interest::new(
        &state.rules,
        principal,
        &request.patterns,
        request.filter.as_ref(),
    );
    // A cursor from a node further along: this node reads the log up to it first.
    let caught_up = tokio::select! {
        caught_up = state.log.catch_up(&since, &state.hub) => caught_up,
        () = state.shutdown.cancelled() => Err(ReplayError::Resync(ResyncReason::UnknownPosition)),
    };
    if let Err(e) = caught_up {
        return answer_error(state, e);
    }
    let deadline = Instant::now().checked_add(request.wait);
    // Taken at the first wait and held until the answer.
    let mut permit: Option<OwnedSemaphorePermit> = None;
    loop {
        let upto = state.hub.position().max(since.seq);
        let page = state
            .log
            .page(&since, upto, request.limit, |e| interest.deliverable(e))
            .await;
        let (events, next) = match page {
            Ok(page) => page,
            Err(e) => return answer_error(state, e),
        };
        let mut left = deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if events.is_empty() && !left.is_zero() && permit.is_none() {
            // Too many polls waiting already: answer now rather than wait.
            permit = state.waiting.clone().try_acquire_owned().ok();
            if permit.is_none() {
                left = Duration::ZERO;
            }
        }
        if !events.is_empty() || left.is_zero() {
            let cursor = Cursor {
                epoch: since.epoch.clone(),
                seq: next,
            };
            return Ok(recovered(&events, &cursor));
        }
        tokio::select! {
            _ = state.hub.wait_beyond(upto, left) => {}
            () = state.shutdown.cancelled() => {
                let cursor = Cursor { epoch: since.epoch.clone(), seq: upto };
                return Ok(recovered(&[], &cursor));
            }
        }
    }
}

fn answer_error(state: &CatchUpState, error: ReplayError) -> Result<Response, sqlx::Error> {
    match error {
        ReplayError::Resync(reason) => Ok(resync(state, reason)),
        ReplayError::Database(e) => Err(e),
    }
}

/// `{"events":[...],"cursor":...,"recovered":true}`, written from each event's shared
/// body (encoded once, like a WebSocket frame) rather than re-serialized.
fn recovered(events: &[Arc<Event>], cursor: &Cursor) -> Response {
    let mut out = Vec::with_capacity(64 + events.iter().map(|e| e.body.len() + 2).sum::<usize>());
    out.extend_from_slice(br#"{"events":["#);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        out.extend_from_slice(&event.body);
    }
    out.extend_from_slice(br#"],"cursor":"#);
    // A cursor is plain text, but escape it as JSON all the same.
    out.extend_from_slice(
        serde_json::to_string(&cursor.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(br#","recovered":true}"#);
    json(out)
}

/// `recovered:false`: none of the events, and the position to start again from after
/// refetching.
fn resync(state: &CatchUpState, reason: ResyncReason) -> Response {
    let cursor = Cursor {
        epoch: state.log.epoch(),
        seq: state.hub.position(),
    };
    let body = serde_json::json!({
        "events": [],
        "cursor": cursor.to_string(),
        "recovered": false,
        "reason": reason,
    });
    json(body.to_string().into_bytes())
}

fn json(body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
