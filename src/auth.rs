//! JWT verification and the authenticated principal.
//!
//! Keys and validation rules are built once from configuration; the accepted algorithm
//! is fixed there and never taken from a token's header. Where a request carries its
//! token is `credentials`; the axum extractors that turn a request into a
//! [`Principal`] ([`Caller`], [`BearerCaller`]) are `extract`.

mod credentials;
mod extract;
pub(crate) mod jwks;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{JwtAlgorithm, JwtConfig};

pub use credentials::bearer_token;
pub use extract::{Authenticator, BearerCaller, Caller};

/// Who is on the other end of a connection or stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The token's `sub`; `None` for anonymous principals.
    pub user_id: Option<Arc<str>>,
    /// The token's `roles` claim.
    pub roles: Vec<String>,
    /// The token's `exp` (seconds since the epoch); `None` for anonymous principals.
    pub expires_at: Option<u64>,
    /// Every claim, for custom rules.
    pub claims: Value,
}

impl Principal {
    /// An unauthenticated principal: may read public collections only.
    pub fn anonymous() -> Self {
        Self {
            user_id: None,
            roles: Vec::new(),
            expires_at: None,
            claims: Value::Null,
        }
    }

    /// A signed-in principal `sub` with `roles` and no expiry: what the server's own
    /// calls and an app's tests act as, without a token.
    ///
    /// ```
    /// let editor = tidings::Principal::user("ann", &["editor"]);
    /// assert!(editor.is_authenticated() && editor.has_role("editor"));
    /// ```
    pub fn user(sub: &str, roles: &[&str]) -> Self {
        Self {
            user_id: Some(Arc::from(sub)),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            expires_at: None,
            claims: Value::Null,
        }
    }

    /// Whether the principal carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether this is an authenticated principal.
    pub fn is_authenticated(&self) -> bool {
        self.user_id.is_some()
    }

    /// Seconds until the token expires (0 when already expired), `None` if anonymous.
    pub fn expires_in(&self, now: u64) -> Option<u64> {
        self.expires_at.map(|exp| exp.saturating_sub(now))
    }
}

/// Why a token was refused. The message is safe to send to the client: it never
/// repeats the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key is configured, so no token can be verified.
    #[error("token authentication is not configured on this server")]
    NotConfigured,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// Any other verification failure (signature, algorithm, claims, format).
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Invalid key material in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// HS256 without a secret, or RS256/ES256 without a public key.
    #[error("jwt.algorithm {0:?} needs {1}")]
    Missing(JwtAlgorithm, &'static str),
    /// The PEM could not be parsed for the algorithm.
    #[error("jwt.public_key_pem is not a valid {0:?} public key: {1}")]
    BadPem(JwtAlgorithm, String),
    /// The shared secret is too short to be safe.
    #[error("jwt.secret must be at least 32 bytes (got {0})")]
    WeakSecret(usize),
    /// A key set (`jwt.jwks`) is misconfigured, or its file cannot be read or parsed.
    #[error("jwt.jwks: {0}")]
    Jwks(String),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    roles: Vec<String>,
}

/// Verifies tokens against the configured key and claims, or against the key set of
/// the token's issuer (`jwt.jwks`).
#[derive(Clone)]
pub struct JwtVerifier {
    key: Option<Arc<(DecodingKey, Validation)>>,
    jwks: Option<Arc<jwks::Jwks>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("configured", &self.is_configured())
            .field("jwks", &self.jwks)
            .finish()
    }
}

impl JwtVerifier {
    /// Builds the verifier. With no key at all it refuses every token
    /// (anonymous-only deployments). Key set files are read here; key sets at URLs
    /// are fetched by the task [`RealtimeBuilder::build`](crate::RealtimeBuilder::build)
    /// starts.
    pub fn new(config: &JwtConfig) -> Result<Self, KeyError> {
        let jwks = jwks::Jwks::new(config)?.map(Arc::new);
        let key = Self::static_key(config)?;
        Ok(Self { key, jwks })
    }

    /// The key set task, if key sets are configured: reads them now, then on
    /// schedule and on unknown `kid`s, until `shutdown`.
    pub(crate) fn jwks_refresh(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.jwks.clone().map(|jwks| jwks.run(shutdown))
    }

    fn static_key(config: &JwtConfig) -> Result<Option<Arc<(DecodingKey, Validation)>>, KeyError> {
        let key = match (config.algorithm, &config.secret, &config.public_key_pem) {
            (JwtAlgorithm::HS256, None, None) => return Ok(None),
            // Key sets alone: no single key needed.
            (_, None, None) if !config.jwks.is_empty() => return Ok(None),
            (JwtAlgorithm::HS256, Some(secret), _) => {
                if secret.len() < 32 {
                    return Err(KeyError::WeakSecret(secret.len()));
                }
                DecodingKey::from_secret(secret.as_bytes())
            }
            (JwtAlgorithm::HS256, None, Some(_)) => {
                return Err(KeyError::Missing(JwtAlgorithm::HS256, "jwt.secret"));
            }
            (alg, _, None) => return Err(KeyError::Missing(alg, "jwt.public_key_pem")),
            (JwtAlgorithm::RS256, _, Some(pem)) => DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| KeyError::BadPem(JwtAlgorithm::RS256, e.to_string()))?,
            (JwtAlgorithm::ES256, _, Some(pem)) => DecodingKey::from_ec_pem(pem.as_bytes())
                .map_err(|e| KeyError::BadPem(JwtAlgorithm::ES256, e.to_string()))?,
            (JwtAlgorithm::EdDSA, _, Some(pem)) => DecodingKey::from_ed_pem(pem.as_bytes())
                .map_err(|e| KeyError::BadPem(JwtAlgorithm::EdDSA, e.to_string()))?,
        };
        let algorithm = match config.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        // `nbf` is checked with the same leeway when present; a malformed one (a
        // string, say) is refused rather than ignored.
        validation.validate_nbf = true;
        match &config.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            // Without a configured audience a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        Ok(Some(Arc::new((key, validation))))
    }

    /// Whether any key (or key set) is configured.
    pub fn is_configured(&self) -> bool {
        self.key.is_some() || self.jwks.is_some()
    }

    /// Verifies `token` and returns its principal. A token whose `iss` has a key set
    /// is verified against that set only; any other against the single key.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = match (&self.jwks, &self.key) {
            (Some(jwks), _) if jwks.handles(token) => jwks.verify(token)?,
            (Some(jwks), None) => jwks.verify(token)?,
            (_, Some(key)) => {
                let (key, validation) = key.as_ref();
                // The configured algorithm only: said plainly, before the signature.
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| AuthError::Invalid(describe(e.kind())))?;
                if !validation.algorithms.contains(&header.alg) {
                    return Err(AuthError::Invalid("algorithm not accepted".into()));
                }
                decode::<Value>(token, key, validation)
                    .map_err(|e| match e.kind() {
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        kind => AuthError::Invalid(describe(kind)),
                    })?
                    .claims
            }
            (None, None) => return Err(AuthError::NotConfigured),
        };
        Self::principal(claims)
    }

    /// Like [`verify`](Self::verify), but a token naming a key its issuer's key set
    /// does not hold yet waits (at most `jwt.jwks_fetch_timeout`) for the set to be
    /// read again when a read is due, then is checked again: a freshly rotated key is
    /// accepted on the first try. The WebSocket handshake uses it.
    pub async fn verify_fresh(&self, token: &str) -> Result<Principal, AuthError> {
        match &self.jwks {
            Some(jwks) if jwks.handles(token) || self.key.is_none() => {
                Self::principal(jwks.verify_waiting(token).await?)
            }
            _ => self.verify(token),
        }
    }

    /// The principal of verified `claims`.
    fn principal(claims_json: Value) -> Result<Principal, AuthError> {
        // Claims we need are typed; the rest is kept as JSON for custom rules. Both
        // come from the one verified payload.
        let claims: Claims = serde_json::from_value(claims_json.clone())
            .map_err(|e| AuthError::Invalid(format!("claims: {e}")))?;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".into()));
        }
        Ok(Principal {
            user_id: Some(Arc::from(claims.sub)),
            roles: claims.roles,
            expires_at: Some(claims.exp),
            claims: claims_json,
        })
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "algorithm not accepted".into()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
        ErrorKind::InvalidClaimFormat(c) => format!("claim {c} has the wrong type"),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::ImmatureSignature => "token not yet valid".into(),
        _ => "malformed token".into(),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(f: impl FnOnce(&mut JwtConfig)) -> JwtVerifier {
        let mut config = JwtConfig {
            secret: Some(SECRET.into()),
            ..JwtConfig::default()
        };
        f(&mut config);
        JwtVerifier::new(&config).unwrap()
    }

    fn sign(claims: Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn accepts_a_good_token_with_roles() {
        let p = verifier(|_| {})
            .verify(&sign(
                json!({"sub":"ann","exp":unix_now()+60,"roles":["publisher"]}),
            ))
            .unwrap();
        assert_eq!(p.user_id.as_deref(), Some("ann"));
        assert!(p.has_role("publisher"));
    }

    #[test]
    fn refuses_bad_tokens() {
        let v = verifier(|c| {
            c.issuer = Some("me".into());
            c.audience = Some("app".into());
        });
        let exp = unix_now() + 60;
        let good = json!({"sub":"a","exp":exp,"iss":"me","aud":"app"});
        assert!(v.verify(&sign(good)).is_ok());
        let cases = [
            json!({"sub":"a","exp":exp,"iss":"other","aud":"app"}),
            json!({"sub":"a","exp":exp,"iss":"me","aud":"other"}),
            json!({"sub":"a","exp":exp.to_string(),"iss":"me","aud":"app"}),
            json!({"sub":"a","iss":"me","aud":"app"}),
            json!({"exp":exp,"iss":"me","aud":"app"}),
            json!({"sub":"a","exp":exp,"aud":"app"}),
        ];
        for claims in cases {
            assert!(v.verify(&sign(claims.clone())).is_err(), "{claims}");
        }
        assert_eq!(
            v.verify(&sign(
                json!({"sub":"a","exp":unix_now()-100,"iss":"me","aud":"app"})
            )),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn not_before_is_checked_with_the_default_leeway() {
        let v = verifier(|_| {});
        let now = unix_now();
        let exp = now + 3600;
        assert_eq!(
            v.verify(&sign(json!({"sub":"a","exp":exp,"nbf":now + 3600}))),
            Err(AuthError::Invalid("token not yet valid".into()))
        );
        assert_eq!(
            v.verify(&sign(json!({"sub":"a","exp":exp,"nbf":"tomorrow"}))),
            Err(AuthError::Invalid("claim nbf has the wrong type".into()))
        );
        // Within the documented default leeway of 5 s: a clock a little behind.
        assert_eq!(
            JwtConfig::default().leeway,
            std::time::Duration::from_secs(5)
        );
        assert!(
            v.verify(&sign(json!({"sub":"a","exp":exp,"nbf":now + 3})))
                .is_ok()
        );
        assert!(
            v.verify(&sign(json!({"sub":"a","exp":exp,"nbf":now})))
                .is_ok()
        );
        // Past the leeway on the other side too: exp a little in the past passes,
        // further in the past does not.
        assert!(v.verify(&sign(json!({"sub":"a","exp":now - 3}))).is_ok());
        assert_eq!(
            v.verify(&sign(json!({"sub":"a","exp":now - 30}))),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn refuses_alg_none_and_garbage() {
        let v = verifier(|_| {});
        // {"alg":"none","typ":"JWT"} . {"sub":"a","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(v.verify(none).is_err());
        assert!(v.verify("not a token").is_err());
        assert!(v.verify("").is_err());
    }

    #[test]
    fn weak_or_missing_keys_are_config_errors() {
        let short = JwtConfig {
            secret: Some("short".into()),
            ..JwtConfig::default()
        };
        assert_eq!(
            JwtVerifier::new(&short).unwrap_err(),
            KeyError::WeakSecret(5)
        );
        let rs = JwtConfig {
            algorithm: JwtAlgorithm::RS256,
            ..JwtConfig::default()
        };
        assert!(matches!(JwtVerifier::new(&rs), Err(KeyError::Missing(..))));
        let bad_pem = JwtConfig {
            algorithm: JwtAlgorithm::ES256,
            public_key_pem: Some("nope".into()),
            ..JwtConfig::default()
        };
        assert!(matches!(
            JwtVerifier::new(&bad_pem),
            Err(KeyError::BadPem(..))
        ));
        assert!(
            !JwtVerifier::new(&JwtConfig::default())
                .unwrap()
                .is_configured()
        );
    }
}
