//! `GET /realtime/sse?topics=<pattern>[,<pattern>...]`, and who a request is.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};

use super::stream::{Opening, Registration, StreamError, last_event_id};
use crate::{
    app::Realtime,
    auth::bearer_token,
    auth::{AuthError, Principal},
    topic::{MAX_PATTERN_LEN, Pattern},
};

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

impl Realtime {
    /// Who an SSE request (or any request of the app's own) is: the token of an
    /// `Authorization: Bearer` header, else of the cookie named by
    /// `config.sse.cookie_name`, else an anonymous principal. A token that is present
    /// but invalid is an error, never a silent fall back to anonymous.
    pub fn sse_principal(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let from_cookie = || {
            let name = self.config().sse.cookie_name.as_deref()?;
            cookie(headers, name).map(str::to_owned)
        };
        match bearer_token(headers).or_else(from_cookie) {
            Some(token) => self.verifier().verify(&token),
            None => Ok(Principal::anonymous()),
        }
    }
}

/// Splits and parses `topics`.
fn parse_topics(realtime: &Realtime, topics: Option<&str>) -> Result<Vec<Pattern>, StreamError> {
    let topics = topics.ok_or(StreamError::NoTopics)?;
    let limit = realtime.config().connection.max_subscriptions;
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

/// `GET /realtime/sse`: protocol section 6.
pub(crate) async fn handler(
    State(realtime): State<Realtime>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let opened = async {
        let principal = realtime
            .sse_principal(&headers)
            .map_err(|e| StreamError::Unauthorized(e.to_string()))?;
        let patterns = parse_topics(&realtime, query.get("topics").map(String::as_str))?;
        let mut stream = Registration::open(&realtime, Arc::new(principal))?;
        stream.subscribe_all(patterns)?;
        stream
            .start(last_event_id(&headers), Opening::Snapshot)
            .await
    };
    match opened.await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookie_finds_the_named_value() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; tok=abc"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=\"q\""));
        assert_eq!(cookie(&headers, "tok"), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("q"));
        assert_eq!(cookie(&headers, "to"), None);
        headers.append(header::COOKIE, HeaderValue::from_static("empty="));
        assert_eq!(cookie(&headers, "empty"), None);
    }
}
