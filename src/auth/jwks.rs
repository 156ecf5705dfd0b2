//! Key sets (JWKS): public keys chosen by a token's `kid`, each set bound to one issuer
//! and to the algorithms configured for it. Read from a file or fetched from a URL at
//! startup, again every `jwt.jwks_refresh_interval`, and when a token names a `kid`
//! the set does not hold (at most every `jwt.jwks_min_refetch_interval`).
//!
//! Nothing a token says makes the node read a key set unless the token's algorithm and
//! issuer are already accepted by configuration: an unknown issuer or algorithm is
//! refused before any `kid` is looked up.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    jwk::{AlgorithmParameters, JwkSet},
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{AuthError, KeyError, describe};
use crate::config::{JwksConfig, JwtAlgorithm, JwtConfig};

/// One key of a set.
struct Key {
    decoding: DecodingKey,
    /// The key's own `alg`, when the set states it: the token's must match.
    alg: Option<Algorithm>,
    /// The algorithms the key's type can verify at all.
    family: &'static [Algorithm],
}

enum Source {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// One issuer's keys.
struct KeySet {
    issuer: String,
    algorithms: Vec<Algorithm>,
    source: Source,
    keys: RwLock<HashMap<String, Arc<Key>>>,
    /// When the set was last read (or tried), for the refetch rate limit.
    last_read: Mutex<Option<Instant>>,
    /// A token named a `kid` the set does not hold.
    wanted: AtomicBool,
    /// Counts the reads of the set, finished or failed: what a verification waiting
    /// for a new key watches.
    reads: tokio::sync::watch::Sender<u64>,
}

/// Every configured key set, and what their refresh needs.
pub(crate) struct Jwks {
    sets: Vec<KeySet>,
    refresh_interval: Duration,
    min_refetch: Duration,
    fetch_timeout: Duration,
    max_bytes: usize,
    audience: Option<String>,
    leeway: u64,
    wake: Notify,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.sets.iter().map(|s| s.issuer.as_str()).collect();
        f.debug_struct("Jwks")
            .field("issuers", &issuers)
            .finish_non_exhaustive()
    }
}

/// Why a key set refused a token.
enum Refusal {
    /// The token's issuer and algorithm are accepted, its `kid` is not in the set;
    /// `read_due`: the set is about to be read again.
    UnknownKid {
        read_due: bool,
    },
    Auth(AuthError),
}

impl Refusal {
    fn into_auth_error(self) -> AuthError {
        match self {
            Self::UnknownKid { .. } => AuthError::Invalid("unknown key id; retry shortly".into()),
            Self::Auth(e) => e,
        }
    }
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

impl Jwks {
    /// The sets of `config`; files are read now, URLs start empty (see [`run`]).
    ///
    /// [`run`]: Self::run
    pub(crate) fn new(config: &JwtConfig) -> Result<Option<Self>, KeyError> {
        if config.jwks.is_empty() {
            return Ok(None);
        }
        let sets = config
            .jwks
            .iter()
            .map(KeySet::new)
            .collect::<Result<Vec<_>, _>>()?;
        let jwks = Self {
            sets,
            refresh_interval: config.jwks_refresh_interval,
            min_refetch: config.jwks_min_refetch_interval,
            fetch_timeout: config.jwks_fetch_timeout,
            max_bytes: config.jwks_max_bytes,
            audience: config.audience.clone(),
            leeway: config.leeway.as_secs(),
            wake: Notify::new(),
        };
        for set in &jwks.sets {
            if let Source::File(path) = &set.source {
                let bytes = read_file(path, jwks.max_bytes)
                    .map_err(|e| KeyError::Jwks(format!("{}: {e}", path.display())))?;
                let keys = parse(&bytes, &set.issuer)
                    .map_err(|e| KeyError::Jwks(format!("{}: {e}", path.display())))?;
                set.replace(keys);
            }
        }
        Ok(Some(jwks))
    }

    /// Whether `token` claims (unverified) an issuer that has a key set here.
    pub(crate) fn handles(&self, token: &str) -> bool {
        self.set_for(token).is_some()
    }

    fn set_for(&self, token: &str) -> Option<&KeySet> {
        let claims: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        let issuer = claims.iss?;
        self.sets.iter().find(|set| set.issuer == issuer)
    }

    /// Verifies `token` against its issuer's key set; the verified claims. A token
    /// naming an unknown `kid` is refused at once (and the set is read again soon).
    pub(crate) fn verify(&self, token: &str) -> Result<Value, AuthError> {
        self.check(token).map_err(Refusal::into_auth_error)
    }

    /// Like [`verify`](Self::verify), but a token naming an unknown `kid` of an
    /// accepted issuer and algorithm waits for the set's next read (when one is due:
    /// not within `jwks_min_refetch_interval` of the last), at most
    /// `jwks_fetch_timeout`, and is checked again: a key the issuer just rotated in is
    /// accepted on the first try.
    pub(crate) async fn verify_waiting(&self, token: &str) -> Result<Value, AuthError> {
        // Watching before checking, so a read that ends in between is not missed.
        let mut reads = self.set_for(token).map(|set| set.reads.subscribe());
        match self.check(token) {
            Err(Refusal::UnknownKid { read_due: true }) => {
                if let Some(reads) = &mut reads {
                    let _ = tokio::time::timeout(self.fetch_timeout, reads.changed()).await;
                }
                self.verify(token)
            }
            other => other.map_err(Refusal::into_auth_error),
        }
    }

    fn check(&self, token: &str) -> Result<Value, Refusal> {
        let invalid = |why: &str| Refusal::Auth(AuthError::Invalid(why.to_owned()));
        let header = decode_header(token)
            .map_err(|e| Refusal::Auth(AuthError::Invalid(describe(e.kind()))))?;
        // Configuration first: the issuer, then the algorithm, then the key.
        let set = self.set_for(token).ok_or_else(|| invalid("wrong issuer"))?;
        if !set.algorithms.contains(&header.alg) {
            return Err(invalid("algorithm not accepted"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id (kid)"))?;
        let Some(key) = set.key(&kid) else {
            let read_due = self.want(set);
            return Err(Refusal::UnknownKid { read_due });
        };
        if key.alg.is_some_and(|alg| alg != header.alg) || !key.family.contains(&header.alg) {
            return Err(invalid("algorithm not accepted"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&set.issuer]);
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        decode::<Value>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                Refusal::Auth(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    kind => AuthError::Invalid(describe(kind)),
                })
            })
    }

    /// Asks the refresh task to read `set` again, unless it did so recently; whether
    /// a read is coming.
    fn want(&self, set: &KeySet) -> bool {
        let recently = set
            .last_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < self.min_refetch);
        if !recently && !set.wanted.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        !recently
    }

    /// Reads every set now (URLs for the first time), then every `refresh_interval`
    /// and whenever a token asked for an unknown `kid`, until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let first = tokio::time::Instant::now() + self.refresh_interval;
        let mut ticks = tokio::time::interval_at(first, self.refresh_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut everything = true;
        loop {
            for set in &self.sets {
                let wanted = set.wanted.swap(false, Ordering::AcqRel);
                if everything || wanted {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.refresh(set) => {}
                    }
                }
            }
            everything = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => true,
                () = self.wake.notified() => false,
            };
        }
    }

    async fn refresh(&self, set: &KeySet) {
        *set.last_read.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // This read answers every request made before it started.
        set.wanted.store(false, Ordering::Release);
        let read = match &set.source {
            Source::File(path) => {
                let (path, max) = (path.clone(), self.max_bytes);
                tokio::task::spawn_blocking(move || read_file(&path, max))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
            Source::Url(url) => fetch(url, self.fetch_timeout, self.max_bytes).await,
        };
        match read.and_then(|bytes| parse(&bytes, &set.issuer)) {
            Ok(keys) => {
                tracing::debug!(issuer = %set.issuer, keys = keys.len(), "key set read");
                set.replace(keys);
            }
            // The keys held so far stay in force.
            Err(e) => {
                tracing::warn!(issuer = %set.issuer, source = %set.source, error = %e, "reading a key set failed")
            }
        }
        set.reads
            .send_modify(|reads| *reads = reads.wrapping_add(1));
    }
}

impl KeySet {
    fn new(config: &JwksConfig) -> Result<Self, KeyError> {
        let fail = |why: String| Err(KeyError::Jwks(format!("issuer {:?}: {why}", config.issuer)));
        if config.issuer.is_empty() {
            return fail("the issuer must not be empty".into());
        }
        let source = match (&config.file, &config.url) {
            (Some(path), None) => Source::File(path.clone()),
            (None, Some(url)) if !cfg!(feature = "jwks-url") => {
                return fail(format!(
                    "{url:?}: fetching key sets needs the `jwks-url` feature"
                ));
            }
            (None, Some(url)) if url.starts_with("https://") && !cfg!(feature = "jwks-https") => {
                return fail(format!(
                    "{url:?}: https key set URLs need the `jwks-https` feature"
                ));
            }
            (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Source::Url(url.clone())
            }
            (None, Some(url)) => return fail(format!("{url:?} is not an http(s) URL")),
            _ => return fail("set exactly one of `file` and `url`".into()),
        };
        if config.algorithms.is_empty() || config.algorithms.contains(&JwtAlgorithm::HS256) {
            return fail("algorithms must be a non-empty list of RS256, ES256, EdDSA".into());
        }
        Ok(Self {
            issuer: config.issuer.clone(),
            algorithms: config.algorithms.iter().copied().map(algorithm).collect(),
            source,
            keys: RwLock::default(),
            last_read: Mutex::new(None),
            wanted: AtomicBool::new(false),
            reads: tokio::sync::watch::Sender::new(0),
        })
    }

    fn key(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    fn replace(&self, keys: HashMap<String, Arc<Key>>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }
}

fn read_file(path: &std::path::Path, max_bytes: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "too large" from "exactly the limit".
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > max_bytes {
        return Err(format!("larger than jwt.jwks_max_bytes ({max_bytes})"));
    }
    Ok(bytes)
}

#[cfg(feature = "jwks-url")]
async fn fetch(url: &str, timeout: Duration, max_bytes: usize) -> Result<Vec<u8>, String> {
    use futures::StreamExt;
    let fetched = async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = response.bytes_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
            if bytes.len() > max_bytes {
                return Err(format!("larger than jwt.jwks_max_bytes ({max_bytes})"));
            }
        }
        Ok(bytes)
    };
    tokio::time::timeout(timeout, fetched)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

#[cfg(not(feature = "jwks-url"))]
async fn fetch(_: &str, _: Duration, _: usize) -> Result<Vec<u8>, String> {
    Err("fetching key sets from a URL needs the `jwks-url` feature".into())
}

/// The usable keys of a JWKS document: public keys (RSA, EC, OKP) with a `kid`.
/// Symmetric (`oct`) keys are refused: a key set is public, so a shared secret in it
/// would let anyone sign.
fn parse(bytes: &[u8], issuer: &str) -> Result<HashMap<String, Arc<Key>>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            tracing::warn!(issuer, "key without kid skipped");
            continue;
        };
        let family: &'static [Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(_) => &[Algorithm::ES256, Algorithm::ES384],
            AlgorithmParameters::OctetKeyPair(_) => &[Algorithm::EdDSA],
            _ => {
                tracing::warn!(
                    issuer,
                    kid,
                    "symmetric or unknown key type in a key set skipped"
                );
                continue;
            }
        };
        let alg = match jwk.common.key_algorithm.map(Algorithm::try_from) {
            None => None,
            Some(Ok(alg)) => Some(alg),
            Some(Err(_)) => {
                tracing::warn!(issuer, kid, "key with an unsupported alg skipped");
                continue;
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(decoding) => {
                keys.insert(
                    kid.clone(),
                    Arc::new(Key {
                        decoding,
                        alg,
                        family,
                    }),
                );
            }
            Err(e) => tracing::warn!(issuer, kid, error = %e, "unusable key skipped"),
        }
    }
    Ok(keys)
}
