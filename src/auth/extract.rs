//! Who made an HTTP request, as axum extractors: [`Caller`] (bearer header or the
//! configured cookie, anonymous without either) and [`BearerCaller`] (a bearer header
//! is required). Both refuse an invalid token with a 401 [`HttpError`]; neither ever
//! falls back to anonymous when credentials are present but wrong.
//!
//! They work in any router whose state yields an [`Authenticator`] through
//! [`FromRef`]: the gateway's own routes and an app's routes alike.

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

use super::{
    AuthError, JwtVerifier, Principal,
    credentials::{bearer_token, request_token},
};
use crate::http::HttpError;

/// Verifies the credentials of HTTP requests: the gateway's token verifier and the
/// cookie that may carry a token (`config.sse.cookie_name`).
///
/// Get one from [`Realtime::authenticator`](crate::Realtime::authenticator). For
/// [`Caller`] and [`BearerCaller`] to work in an app's router, its state provides one:
///
/// ```
/// use axum::extract::FromRef;
/// use tidings::{Authenticator, Realtime};
///
/// #[derive(Clone)]
/// struct AppState {
///     realtime: Realtime,
/// }
///
/// impl FromRef<AppState> for Authenticator {
///     fn from_ref(state: &AppState) -> Self {
///         state.realtime.authenticator()
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticator {
    verifier: JwtVerifier,
    cookie_name: Option<Arc<str>>,
}

impl Authenticator {
    /// Verifies with `verifier`, and also reads the token from the cookie
    /// `cookie_name` when one is given.
    pub fn new(verifier: JwtVerifier, cookie_name: Option<&str>) -> Self {
        Self {
            verifier,
            cookie_name: cookie_name.map(Arc::from),
        }
    }

    /// Who the request is: the token of an `Authorization: Bearer` header, else of the
    /// configured cookie, else an anonymous principal. A token that is present but
    /// invalid is an error, never a silent fall back to anonymous.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match request_token(headers, self.cookie_name.as_deref()) {
            Some(token) => self.verifier.verify(&token),
            None => Ok(Principal::anonymous()),
        }
    }

    /// Like [`principal`](Self::principal), waiting for a due key set read when the
    /// token names a key not known yet ([`JwtVerifier::verify_fresh`]).
    pub async fn principal_fresh(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match request_token(headers, self.cookie_name.as_deref()) {
            Some(token) => self.verifier.verify_fresh(&token).await,
            None => Ok(Principal::anonymous()),
        }
    }

    /// The principal of the request's bearer header; `None` without one. The cookie
    /// is not read.
    pub fn bearer_principal(&self, headers: &HeaderMap) -> Result<Option<Principal>, AuthError> {
        bearer_token(headers)
            .map(|token| self.verifier.verify(&token))
            .transpose()
    }
}

/// An invalid token is a 401 whose message says why (it never repeats the token).
impl From<AuthError> for HttpError {
    fn from(refused: AuthError) -> Self {
        HttpError::unauthorized(refused.to_string())
    }
}

/// Who made the request: the token of an `Authorization: Bearer` header, else of the
/// configured cookie, else an anonymous principal.
///
/// Rejects an invalid token with 401 `unauthorized`. For a route that needs a
/// signed-in user, call [`Caller::signed_in`].
///
/// ```
/// use axum::Json;
/// use tidings::{Caller, HttpError};
///
/// async fn me(caller: Caller) -> Result<Json<Option<String>>, HttpError> {
///     let principal = caller.signed_in()?;
///     Ok(Json(principal.user_id.as_deref().map(str::to_owned)))
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Caller(pub Principal);

impl Caller {
    /// The principal, or 401 `unauthorized` when the request carried no credentials.
    pub fn signed_in(self) -> Result<Principal, HttpError> {
        if self.0.is_authenticated() {
            Ok(self.0)
        } else {
            Err(HttpError::unauthorized("sign in first"))
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let authenticator = Authenticator::from_ref(state);
        Ok(Self(authenticator.principal_fresh(&parts.headers).await?))
    }
}

/// The signed-in principal of a request's `Authorization: Bearer` header, which is
/// required. Rejects a missing or invalid token with 401 `unauthorized`.
///
/// It does not read the cookie: the routes that use it change state, and a cookie,
/// which the browser attaches by itself, would let another site's page call them in
/// the user's name.
#[derive(Debug, Clone, PartialEq)]
pub struct BearerCaller(pub Principal);

impl<S> FromRequestParts<S> for BearerCaller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let authenticator = Authenticator::from_ref(state);
        match bearer_token(&parts.headers) {
            Some(token) => Ok(Self(authenticator.verifier.verify_fresh(&token).await?)),
            None => Err(HttpError::unauthorized("missing bearer token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{auth::unix_now, config::JwtConfig};
    use axum::http::{Request, StatusCode, header};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const COOKIE: &str = "tok";

    fn authenticator() -> Authenticator {
        let config = JwtConfig {
            secret: Some(SECRET.into()),
            ..JwtConfig::default()
        };
        let verifier = JwtVerifier::new(&config).expect("a valid test key");
        Authenticator::new(verifier, Some(COOKIE))
    }

    fn token(sub: &str) -> String {
        let claims = json!({"sub": sub, "exp": unix_now() + 60});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signing a test token")
    }

    fn request(headers: &[(header::HeaderName, String)]) -> Parts {
        let mut builder = Request::builder().uri("/");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder.body(()).expect("a valid request").into_parts().0
    }

    fn bearer(token: &str) -> (header::HeaderName, String) {
        (header::AUTHORIZATION, format!("Bearer {token}"))
    }

    fn cookie(token: &str) -> (header::HeaderName, String) {
        (header::COOKIE, format!("theme=dark; {COOKIE}={token}"))
    }

    async fn caller(headers: &[(header::HeaderName, String)]) -> Result<Caller, HttpError> {
        Caller::from_request_parts(&mut request(headers), &authenticator()).await
    }

    async fn bearer_caller(
        headers: &[(header::HeaderName, String)],
    ) -> Result<BearerCaller, HttpError> {
        BearerCaller::from_request_parts(&mut request(headers), &authenticator()).await
    }

    fn user(principal: &Principal) -> Option<&str> {
        principal.user_id.as_deref()
    }

    #[tokio::test]
    async fn caller_reads_the_header_then_the_cookie() {
        let Caller(from_header) = caller(&[bearer(&token("ann"))]).await.expect("valid");
        assert_eq!(user(&from_header), Some("ann"));
        let Caller(from_cookie) = caller(&[cookie(&token("bob"))]).await.expect("valid");
        assert_eq!(user(&from_cookie), Some("bob"));
        let Caller(both) = caller(&[bearer(&token("ann")), cookie(&token("bob"))])
            .await
            .expect("valid");
        assert_eq!(user(&both), Some("ann"));
    }

    #[tokio::test]
    async fn no_credentials_is_anonymous() {
        let Caller(nobody) = caller(&[]).await.expect("anonymous is no error");
        assert_eq!(nobody, Principal::anonymous());
        let refused = Caller(nobody).signed_in().expect_err("anonymous");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.message(), "sign in first");
    }

    #[tokio::test]
    async fn an_invalid_token_is_401_never_anonymous() {
        for headers in [
            vec![bearer("not-a-token")],
            vec![cookie("not-a-token")],
            // A bad header is not rescued by a good cookie.
            vec![bearer("not-a-token"), cookie(&token("bob"))],
        ] {
            let refused = caller(&headers).await.expect_err("invalid token");
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(refused.code(), crate::protocol::ErrorCode::Unauthorized);
            assert_eq!(refused.message(), "invalid token: malformed token");
        }
    }

    #[tokio::test]
    async fn bearer_caller_requires_the_header() {
        let BearerCaller(ann) = bearer_caller(&[bearer(&token("ann"))])
            .await
            .expect("valid");
        assert_eq!(user(&ann), Some("ann"));
        let missing = bearer_caller(&[cookie(&token("bob"))])
            .await
            .expect_err("the cookie does not count");
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.message(), "missing bearer token");
        let invalid = bearer_caller(&[bearer("x.y.z")])
            .await
            .expect_err("invalid token");
        assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn works_with_an_apps_own_state() {
        #[derive(Clone)]
        struct AppState {
            auth: Authenticator,
        }
        impl FromRef<AppState> for Authenticator {
            fn from_ref(state: &AppState) -> Self {
                state.auth.clone()
            }
        }
        let state = AppState {
            auth: authenticator(),
        };
        let mut parts = request(&[cookie(&token("cat"))]);
        let Caller(cat) = Caller::from_request_parts(&mut parts, &state)
            .await
            .expect("valid");
        assert_eq!(user(&cat), Some("cat"));
    }

    #[test]
    fn without_a_cookie_name_the_cookie_is_ignored() {
        let verifier = authenticator().verifier;
        let headers = request(&[cookie(&token("bob"))]).headers;
        let principal = Authenticator::new(verifier, None)
            .principal(&headers)
            .expect("no credentials");
        assert_eq!(principal, Principal::anonymous());
    }
}
