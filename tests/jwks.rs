//! JWT key sets: EdDSA and RS256 keys chosen by `kid`, each set bound to its issuer
//! and its algorithms, read from a file or fetched from a URL (a local axum server
//! here), fetched again on an unknown `kid` at a bounded rate and never for a token
//! whose issuer or algorithm configuration refuses. Plus EdDSA with a single PEM key.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    db::Backend,
    server::{Client, SECRET, TestServer, WAIT, now},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tidings::config::{JwksConfig, JwtAlgorithm};

const ISSUER: &str = "https://idp.test";
const ED_PRIVATE: &str = include_str!("fixtures/jwt/ed25519-private.pem");
const ED_PUBLIC: &str = include_str!("fixtures/jwt/ed25519-public.pem");
const RSA_PRIVATE: &str = include_str!("fixtures/jwt/rsa-private.pem");
/// The public halves of the fixture keys as JWK parameters.
const ED_X: &str = "noUPGh_6R_5BsGDXInAmy8eR8-fp0evveBxS9w_bNLI";
const RSA_N: &str = "yXBf4L5BilQI2uDQXs4k6Hd7QyaWxh1PU9L5sE_SUxy6CgYiHO5dbCZdVnbsYCPG1R_alZp89sqsNHgDGk-EVp4sklr6rZwvdj6kbYOeV7bQZzF0bldWVCjgQCAOXtDam_HGMtX25I2pE-5CmCjxUo4U-0sLqCF6a344qA-5pfhQSKfAuyU5axemBFIKwTULjMkt9hynQl39ezs7xfzdl2-_-ynw_xzRU5i3Mn_QcesUxTNcGfjIVP9FugGgxIzwBR9oT8kd12XuL4irAKRQGYYMMmzuJ96Xfw7F2pqvCkZiWFT6ZIFRDLzSYOvLnTR8W883af9__lAVKzM-HIfQ9Q";

fn ed_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": kid})
}

fn claims(sub: &str, iss: &str) -> Value {
    json!({"sub": sub, "iss": iss, "exp": now() + 600})
}

fn sign_with(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()),
        other => panic!("no test key for {other:?}"),
    };
    encode(&header, claims, &key).unwrap()
}

fn temp_file(contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tidings-jwks-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

fn refusal(server: &TestServer, token: &str) -> String {
    match server.realtime.verifier().verify(token) {
        Ok(principal) => panic!("accepted as {:?}", principal.user_id),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_key_set_file_chooses_keys_by_kid_and_binds_them_to_their_issuer() {
    let file = temp_file(
        &json!({"keys": [ed_jwk("ed1"), rsa_jwk("rsa1"),
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "hmac"}]})
        .to_string(),
    );
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.jwt.jwks = vec![JwksConfig::file(ISSUER, &file)];
    })
    .await;
    // Each key signs for its issuer, over a real WebSocket handshake.
    let ed = sign_with(Algorithm::EdDSA, Some("ed1"), &claims("ann", ISSUER));
    let rsa = sign_with(Algorithm::RS256, Some("rsa1"), &claims("bob", ISSUER));
    for (token, sub) in [(&ed, "ann"), (&rsa, "bob")] {
        let client = Client::authenticated(&server.ws_url(), token).await;
        assert!(!client.connection_id.is_empty());
        assert_eq!(
            server
                .realtime
                .verifier()
                .verify(token)
                .unwrap()
                .user_id
                .as_deref(),
            Some(sub)
        );
    }
    // The single HS256 key of the test configuration still serves other issuers.
    assert!(
        server
            .realtime
            .verifier()
            .verify(&common::server::token("carl"))
            .is_ok()
    );

    // Refusals.
    let cases = [
        // Right key, other issuer: not this set's token.
        (
            sign_with(
                Algorithm::EdDSA,
                Some("ed1"),
                &claims("ann", "https://evil.test"),
            ),
            "algorithm not accepted",
        ),
        // A kid the set does not hold.
        (
            sign_with(Algorithm::EdDSA, Some("nope"), &claims("ann", ISSUER)),
            "unknown key id",
        ),
        // No kid.
        (
            sign_with(Algorithm::EdDSA, None, &claims("ann", ISSUER)),
            "no key id",
        ),
        // The RSA key asked to verify an EdDSA signature.
        (
            sign_with(Algorithm::EdDSA, Some("rsa1"), &claims("ann", ISSUER)),
            "algorithm not accepted",
        ),
        // HS256 for the set's issuer, signed with a secret the attacker might know.
        (
            sign_with(Algorithm::HS256, Some("hmac"), &claims("ann", ISSUER)),
            "algorithm not accepted",
        ),
        // The symmetric key of the file was skipped, whatever the header says.
        (
            sign_with(Algorithm::HS256, Some("ed1"), &claims("ann", ISSUER)),
            "algorithm not accepted",
        ),
        // A token not yet valid.
        (
            sign_with(
                Algorithm::EdDSA,
                Some("ed1"),
                &json!({"sub": "a", "iss": ISSUER, "exp": now() + 7200, "nbf": now() + 3600}),
            ),
            "not yet valid",
        ),
    ];
    for (token, says) in cases {
        let refused = refusal(&server, &token);
        assert!(
            refused.contains(says),
            "{refused:?} should say {says:?}: {token}"
        );
    }
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn a_set_accepts_only_its_configured_algorithms_and_bad_sets_stop_the_build() {
    let file = temp_file(&json!({"keys": [ed_jwk("ed1"), rsa_jwk("rsa1")]}).to_string());
    let server = TestServer::start(Backend::Sqlite, |c| {
        let mut set = JwksConfig::file(ISSUER, &file);
        set.algorithms = vec![JwtAlgorithm::EdDSA];
        c.jwt.jwks = vec![set];
    })
    .await;
    let rsa = sign_with(Algorithm::RS256, Some("rsa1"), &claims("bob", ISSUER));
    assert!(refusal(&server, &rsa).contains("algorithm not accepted"));
    let ed = sign_with(Algorithm::EdDSA, Some("ed1"), &claims("ann", ISSUER));
    assert!(server.realtime.verifier().verify(&ed).is_ok());

    // Configuration errors name the problem.
    let broken = temp_file("{\"keys\": 42}");
    for (set, says) in [
        (JwksConfig::file(ISSUER, &broken), "not a JWKS"),
        (
            JwksConfig::file(ISSUER, "/nonexistent/jwks.json"),
            "No such file",
        ),
        (
            JwksConfig::url(ISSUER, "ftp://idp.test/jwks"),
            "not an http(s) URL",
        ),
        (
            JwksConfig {
                algorithms: vec![JwtAlgorithm::HS256],
                ..JwksConfig::file(ISSUER, &file)
            },
            "algorithms",
        ),
    ] {
        let mut config = tidings::Config::default();
        config.jwt.jwks = vec![set];
        let error = tidings::JwtVerifier::new(&config.jwt)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("jwt.jwks: ") && error.contains(says),
            "{error}"
        );
    }
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(broken);
}

/// A JWKS endpoint that counts its requests and serves what the test puts in it.
struct KeyServer {
    url: String,
    document: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(document: Value) -> Self {
        let document = Arc::new(Mutex::new(document));
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get({
                let (document, hits) = (document.clone(), hits.clone());
                move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(document.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            document,
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Polls `verify` until it accepts `token`; the key set is fetched in the background.
async fn accepted_eventually(server: &TestServer, token: &str) {
    let deadline = Instant::now() + WAIT;
    while let Err(e) = server.realtime.verifier().verify(token) {
        assert!(Instant::now() < deadline, "never accepted: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_key_set_at_a_url_is_fetched_again_for_an_unknown_kid_at_a_bounded_rate() {
    let keys = KeyServer::start(json!({"keys": [ed_jwk("ed1")]})).await;
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.jwt.jwks = vec![JwksConfig::url(ISSUER, keys.url.clone())];
        c.jwt.jwks_refresh_interval = Duration::from_secs(3600);
        c.jwt.jwks_min_refetch_interval = Duration::from_millis(500);
    })
    .await;
    // Fetched at startup.
    let first = sign_with(Algorithm::EdDSA, Some("ed1"), &claims("ann", ISSUER));
    accepted_eventually(&server, &first).await;
    let fetched = keys.hits();
    assert_eq!(fetched, 1);

    // Tokens that configuration refuses before any key lookup fetch nothing: another
    // issuer, an algorithm the set does not accept.
    for _ in 0..20 {
        let other_issuer = sign_with(
            Algorithm::EdDSA,
            Some("new"),
            &claims("ann", "https://evil.test"),
        );
        let hmac = sign_with(Algorithm::HS256, Some("new"), &claims("ann", ISSUER));
        refusal(&server, &other_issuer);
        refusal(&server, &hmac);
    }

    // The issuer rotates its key: a token with the new kid is refused at first and
    // makes the set be fetched again, once however many such tokens arrive.
    *keys.document.lock().unwrap() = json!({"keys": [ed_jwk("ed2")]});
    tokio::time::sleep(Duration::from_millis(600)).await; // past the refetch interval
    assert_eq!(
        keys.hits(),
        fetched,
        "a refused issuer or algorithm made the set be fetched"
    );
    let rotated = sign_with(Algorithm::EdDSA, Some("ed2"), &claims("ann", ISSUER));
    for _ in 0..50 {
        let _ = server.realtime.verifier().verify(&rotated);
    }
    accepted_eventually(&server, &rotated).await;
    assert_eq!(
        keys.hits(),
        fetched + 1,
        "one fetch for a burst of unknown kids"
    );
    // The old key is gone with the old document.
    assert!(refusal(&server, &first).contains("unknown key id"));
    // Within the refetch interval, unknown kids fetch nothing more.
    assert_eq!(keys.hits(), fetched + 1);

    // Past it, a WebSocket handshake with a just-rotated key waits for the read the
    // unknown kid asks for and is accepted on the first try.
    *keys.document.lock().unwrap() = json!({"keys": [ed_jwk("ed3")]});
    tokio::time::sleep(Duration::from_millis(600)).await; // past the refetch interval
    let fresh = sign_with(Algorithm::EdDSA, Some("ed3"), &claims("ann", ISSUER));
    let client = Client::authenticated(&server.ws_url(), &fresh).await;
    assert!(!client.connection_id.is_empty());
    assert_eq!(keys.hits(), fetched + 2);
}

#[tokio::test]
async fn eddsa_with_a_single_public_key() {
    let server = TestServer::start(Backend::Sqlite, |c| {
        c.jwt.secret = None;
        c.jwt.algorithm = JwtAlgorithm::EdDSA;
        c.jwt.public_key_pem = Some(ED_PUBLIC.into());
    })
    .await;
    let token = sign_with(
        Algorithm::EdDSA,
        None,
        &json!({"sub": "ann", "exp": now() + 600}),
    );
    let client = Client::authenticated(&server.ws_url(), &token).await;
    assert!(!client.connection_id.is_empty());
    // An HS256 token is refused: the algorithm comes from configuration.
    assert!(refusal(&server, &common::server::token("ann")).contains("algorithm not accepted"));
}
