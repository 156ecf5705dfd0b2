//! One access table, three judges: the access policy itself (`Rules::admit`), a
//! WebSocket `subscribe`, and a Datastar `GET /realtime/sse`. Every row must get the
//! same answer from all three, so no transport can drift from the policy.

mod common;

use common::{
    db::Backend,
    server::{Extras, TestServer, token, token_with_roles},
    sse::SseStream,
};
use serde_json::json;
use tidings::{Admission, Pattern, Principal, Rule, Rules};

/// Who asks.
#[derive(Debug, Clone, Copy)]
enum Who {
    Anonymous,
    /// An authenticated user without roles.
    Ann,
    /// An authenticated user with the `admin` role.
    Admin,
}

/// What every transport must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Admitted,
    /// 401 / `unauthorized`: signing in could change the answer.
    SignIn,
    /// 403 / `forbidden`.
    Forbidden,
}

fn rules() -> Rules {
    Rules::new()
        .collection("news", Rule::Public, Rule::Deny)
        .collection("todos", Rule::Authenticated, Rule::Deny)
        .collection("notes", Rule::Owner("owner_id".into()), Rule::Deny)
        .collection("audit", Rule::Role("admin".into()), Rule::Deny)
        .collection("vault", Rule::Deny, Rule::Deny)
}

/// pattern x principal -> answer, for rules of every kind and patterns of every
/// shape (exact collection, collection globs, a character class, a bare collection).
/// No `{a,b}` alternatives: SSE's `topics` list is comma-separated.
const TABLE: &[(&str, Who, Answer)] = &[
    ("news:*", Who::Anonymous, Answer::Admitted),
    ("news:1", Who::Ann, Answer::Admitted),
    ("todos:*", Who::Anonymous, Answer::SignIn),
    ("todos:4?", Who::Ann, Answer::Admitted),
    ("notes:*", Who::Anonymous, Answer::SignIn),
    ("notes:*", Who::Ann, Answer::Admitted),
    ("audit:*", Who::Ann, Answer::Forbidden),
    ("audit:*", Who::Admin, Answer::Admitted),
    ("vault:*", Who::Admin, Answer::Forbidden),
    ("unknown:*", Who::Ann, Answer::Forbidden),
    ("*:*", Who::Anonymous, Answer::Admitted),
    ("*:*", Who::Ann, Answer::Admitted),
    ("[va]*:*", Who::Ann, Answer::Forbidden),
    ("[va]*:*", Who::Admin, Answer::Admitted),
    ("no*:*", Who::Ann, Answer::Admitted),
    ("no*:*", Who::Anonymous, Answer::SignIn),
    ("x*:*", Who::Admin, Answer::Forbidden),
    ("t?dos", Who::Ann, Answer::Admitted),
];

fn principal(who: Who) -> Principal {
    match who {
        Who::Anonymous => Principal::anonymous(),
        Who::Ann => Principal::user("ann", &[]),
        Who::Admin => Principal::user("root", &["admin"]),
    }
}

fn bearer(who: Who) -> Option<String> {
    match who {
        Who::Anonymous => None,
        Who::Ann => Some(token("ann")),
        Who::Admin => Some(token_with_roles("root", &["admin"])),
    }
}

fn policy_answer(admission: Admission) -> Answer {
    match admission {
        Admission::Allow | Admission::PerEvent => Answer::Admitted,
        Admission::Deny { anonymous: true } => Answer::SignIn,
        Admission::Deny { anonymous: false } => Answer::Forbidden,
    }
}

async fn websocket_answer(server: &TestServer, who: Who, pattern: &str) -> Answer {
    let mut client = server.open().await;
    client
        .send(json!({"type": "auth", "token": bearer(who)}))
        .await;
    client.recv_type("welcome").await;
    client
        .send(json!({"type": "subscribe", "id": "s", "pattern": pattern}))
        .await;
    let reply = client.recv().await;
    match (reply["type"].as_str(), reply["code"].as_str()) {
        (Some("subscribed"), _) => Answer::Admitted,
        (Some("error"), Some("unauthorized")) => Answer::SignIn,
        (Some("error"), Some("forbidden")) => Answer::Forbidden,
        _ => panic!("unexpected reply to subscribe {pattern}: {reply}"),
    }
}

async fn sse_answer(server: &TestServer, who: Who, pattern: &str) -> Answer {
    let mut request = server.sse_request(pattern);
    if let Some(token) = bearer(who) {
        request = request.bearer_auth(token);
    }
    let stream = SseStream::open(request).await;
    match stream.status.as_u16() {
        200 => Answer::Admitted,
        401 => {
            assert_eq!(stream.error_code().await, "unauthorized");
            Answer::SignIn
        }
        403 => {
            assert_eq!(stream.error_code().await, "forbidden");
            Answer::Forbidden
        }
        other => panic!("unexpected status {other} for SSE {pattern}"),
    }
}

#[tokio::test]
async fn every_transport_gives_the_policy_answer() {
    let extras = Extras {
        builder: Some(Box::new(|builder| builder.rules(rules()))),
        ..Extras::default()
    };
    let server =
        TestServer::start_with(Backend::Sqlite, |c| c.auth.allow_anonymous = true, extras).await;
    let rules = rules();
    for &(pattern, who, expected) in TABLE {
        let parsed = Pattern::parse(pattern).expect("valid pattern");
        let row = format!("{pattern} as {who:?}");
        assert_eq!(
            policy_answer(rules.admit(&principal(who), &parsed)),
            expected,
            "policy: {row}"
        );
        assert_eq!(
            websocket_answer(&server, who, pattern).await,
            expected,
            "WebSocket: {row}"
        );
        assert_eq!(
            sse_answer(&server, who, pattern).await,
            expected,
            "SSE: {row}"
        );
    }
}
