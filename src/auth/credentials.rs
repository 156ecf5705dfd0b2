//! Where a request carries its token: an `Authorization: Bearer` header, or a cookie
//! (what a browser's `EventSource` and Datastar's `@get` can send, as they cannot set
//! headers).

use axum::http::{HeaderMap, header};

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The token of a bearer header, else of the cookie `cookie_name` when one is
/// configured. The header wins so that a script can act as someone other than the
/// browser's signed-in user.
pub(crate) fn request_token(headers: &HeaderMap, cookie_name: Option<&str>) -> Option<String> {
    bearer_token(headers).or_else(|| cookie(headers, cookie_name?).map(str::to_owned))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            bearer_token(&headers)
        };
        assert_eq!(with("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(with("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(with("Basic abc"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(with("Bearer"), None);
    }

    #[test]
    fn the_header_wins_over_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("tok=from-cookie"));
        assert_eq!(
            request_token(&headers, Some("tok")).as_deref(),
            Some("from-cookie")
        );
        assert_eq!(request_token(&headers, None), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(
            request_token(&headers, Some("tok")).as_deref(),
            Some("from-header")
        );
    }
}
