//! JWT verification and the handshake's deadlines.

use std::time::Duration;

use serde::Deserialize;

/// The signature algorithm accepted. It comes from configuration, never from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (default).
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256, public key in PEM.
    RS256,
    /// ECDSA P-256 with SHA-256, public key in PEM.
    ES256,
    /// Ed25519 (EdDSA), public key in PEM.
    EdDSA,
}

/// A JSON Web Key Set: public keys chosen by a token's `kid`, for tokens of one issuer.
/// A token is checked against a set only if its `iss` is the set's issuer and its
/// `alg` is one of the set's algorithms; only then is its `kid` looked up, and only an
/// unknown `kid` makes the set be read again (at most every
/// `jwt.jwks_min_refetch_interval`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// The `iss` of the tokens these keys sign; required in those tokens.
    pub issuer: String,
    /// A file holding the set (`{"keys":[...]}`). Exactly one of `file` and `url`.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// An `http://` or `https://` URL serving the set. Exactly one of `file` and
    /// `url`. Needs the `jwks-url` feature (on by default).
    #[serde(default)]
    pub url: Option<String>,
    /// Algorithms accepted from this issuer: asymmetric ones only (a key set is
    /// public). Default: RS256, ES256, EdDSA.
    #[serde(default = "JwksConfig::default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
}

impl JwksConfig {
    fn default_algorithms() -> Vec<JwtAlgorithm> {
        vec![
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ]
    }

    /// A set read from `file`, for tokens of `issuer`, with the default algorithms.
    pub fn file(issuer: impl Into<String>, file: impl Into<std::path::PathBuf>) -> Self {
        Self {
            issuer: issuer.into(),
            file: Some(file.into()),
            url: None,
            algorithms: Self::default_algorithms(),
        }
    }

    /// A set fetched from `url`, for tokens of `issuer`, with the default algorithms.
    pub fn url(issuer: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            file: None,
            url: Some(url.into()),
            algorithms: Self::default_algorithms(),
        }
    }
}

/// How tokens are verified.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Algorithm. Default: HS256.
    pub algorithm: JwtAlgorithm,
    /// Shared secret for HS256. Default: none.
    pub secret: Option<String>,
    /// PEM public key for RS256 / ES256. Default: none.
    pub public_key_pem: Option<String>,
    /// Required `iss`, when set. Default: not checked.
    pub issuer: Option<String>,
    /// Required `aud`, when set. Default: not checked (tokens with an `aud` accepted).
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, at most 30 s. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Key sets by issuer (`[[realtime.jwt.jwks]]` in TOML), besides or instead of
    /// the one key above. Default: none.
    pub jwks: Vec<JwksConfig>,
    /// How often every key set is read again. Default: 10 min.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// A token with an unknown `kid` makes its set be read again, at most this often.
    /// Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub jwks_min_refetch_interval: Duration,
    /// How long fetching a key set from a URL may take. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub jwks_fetch_timeout: Duration,
    /// Largest key set document in bytes. Default: 262144.
    pub jwks_max_bytes: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::default(),
            secret: None,
            public_key_pem: None,
            issuer: None,
            audience: None,
            // Clocks of token issuers and nodes drift by a few seconds; without a
            // leeway a fresh token can look "not yet valid".
            leeway: Duration::from_secs(5),
            jwks: Vec::new(),
            jwks_refresh_interval: Duration::from_secs(600),
            jwks_min_refetch_interval: Duration::from_secs(30),
            jwks_fetch_timeout: Duration::from_secs(5),
            jwks_max_bytes: 256 * 1024,
        }
    }
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_pem", &self.public_key_pem.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("jwks", &self.jwks)
            .field("jwks_refresh_interval", &self.jwks_refresh_interval)
            .field("jwks_min_refetch_interval", &self.jwks_min_refetch_interval)
            .field("jwks_fetch_timeout", &self.jwks_fetch_timeout)
            .field("jwks_max_bytes", &self.jwks_max_bytes)
            .finish()
    }
}

/// Handshake and token lifetime.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accept `{"type":"auth","token":null}`; anonymous principals read public
    /// collections only. Default: false.
    pub allow_anonymous: bool,
    /// Accept `?token=` on the upgrade URL (never logged). Default: false.
    pub allow_query_token: bool,
    /// Time allowed for the first `auth` frame. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// `refresh_required` is sent this long before `exp`. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub refresh_notice: Duration,
    /// A connection whose token expired is closed 4001 after this grace. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub expiry_grace: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_anonymous: false,
            allow_query_token: false,
            auth_timeout: Duration::from_secs(10),
            refresh_notice: Duration::from_secs(30),
            expiry_grace: Duration::from_secs(10),
        }
    }
}
