//! Property tests over what a hostile client controls: client frames, subscription
//! patterns, filters and tokens. Whatever the bytes, parsing answers `Ok` or a clear
//! error and never panics; what it accepts behaves. `cargo test` runs a bounded number
//! of cases (`CASES`); `PROPTEST_CASES=100000 cargo test --lib hostile_input` runs more.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{
    auth::JwtVerifier,
    config::{JwtAlgorithm, JwtConfig},
    filter::{Filter, FilterLimits},
    hub::GlobLimits,
    protocol::parse_client_frame,
    topic::{Pattern, Topic},
};

/// Cases per property in a normal test run: enough to shake out panics on the paths
/// the strategies reach, few enough to cost well under a second each.
const CASES: u32 = 256;

const SECRET: &str = "hostile-input-test-secret-32-bytes!";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels, with the odd huge number and long string.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame of one of the protocol's types, its fields any JSON.
fn frame_like() -> impl Strategy<Value = String> {
    const KNOWN: [&str; 7] = [
        "auth",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "ping",
        "request",
    ];
    let kind = prop_oneof![
        prop::sample::select(&KNOWN[..]).prop_map(str::to_owned),
        ".{0,8}",
    ];
    let field = prop_oneof![
        Just("id"),
        Just("pattern"),
        Just("since"),
        Just("filter"),
        Just("token"),
        Just("topic"),
        Just("event"),
        Just("data"),
        Just("mutation"),
        Just("ref"),
        Just("presence"),
    ];
    (kind, prop::collection::vec((field, any_json()), 0..6)).prop_map(|(kind, fields)| {
        let mut frame = serde_json::Map::new();
        frame.insert("type".into(), Value::from(kind));
        for (name, value) in fields {
            frame.insert(name.into(), value);
        }
        Value::Object(frame).to_string()
    })
}

/// Pattern-shaped text: the glob characters, separators and a few letters.
fn pattern_like() -> impl Strategy<Value = String> {
    "[a-c*?:\\[\\]{},!\\\\-]{0,40}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_frames_of_any_text_never_panic(text in ".{0,200}") {
        let _ = parse_client_frame(&text);
    }

    #[test]
    fn client_frames_of_any_fields_never_panic(text in frame_like()) {
        let _ = parse_client_frame(&text);
    }

    #[test]
    fn patterns_parse_or_refuse_and_what_parses_matches_without_panic(
        text in prop_oneof![pattern_like(), ".{0,300}"],
        collection in "[a-c]{1,6}",
        key in proptest::option::of("[a-c0-9]{1,6}"),
    ) {
        if let Ok(pattern) = Pattern::parse(&text) {
            prop_assert_eq!(pattern.to_string(), text.clone());
            let _ = pattern.matches(&collection, key.as_deref());
            let _ = GlobLimits::default().check_complexity(&pattern);
        }
        let _ = Topic::parse(&text);
    }

    #[test]
    fn filters_of_any_json_never_panic_and_stay_in_their_limits(
        filter in any_json(),
        record in any_json(),
    ) {
        let limits = FilterLimits { max_conditions: 4, max_values: 4, max_bytes: 512 };
        if let Ok(filter) = Filter::parse(&filter, limits) {
            let _ = filter.matches(&record);
        }
    }

    #[test]
    fn tokens_of_any_text_are_refused_without_panic(token in ".{0,300}") {
        prop_assert!(verifier().verify(&token).is_err());
    }

    #[test]
    fn signed_tokens_with_any_claims_never_panic(claims in any_json()) {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        );
        if let Ok(token) = token {
            let _ = verifier().verify(&token);
        }
    }

    #[test]
    fn signed_tokens_with_extreme_times_never_panic(
        exp in prop_oneof![any::<u64>().prop_map(Value::from), any::<f64>().prop_map(|f| json!(f)), any_json()],
        nbf in prop_oneof![any::<u64>().prop_map(Value::from), any::<i64>().prop_map(Value::from), any_json()],
        iat in any::<i64>(),
    ) {
        let claims = json!({"sub": "ann", "exp": exp, "nbf": nbf, "iat": iat});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encodes");
        let _ = verifier().verify(&token);
    }
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new(&JwtConfig {
        secret: Some(SECRET.into()),
        algorithm: JwtAlgorithm::HS256,
        ..JwtConfig::default()
    })
    .expect("a valid key")
}
