//! `GET /realtime/events`: HTTP catch-up gives the events a WebSocket resume would
//! (rules, filters, `enter`/`leave`), pages by `limit`, long-polls with `wait`, and
//! refuses bad input with a reason.

mod common;

use std::time::{Duration, Instant};

use common::{
    backend_tests,
    db::Backend,
    server::{TestServer, token},
};
use serde_json::{Value, json};

/// `GET /realtime/events` as `sub` with these query pairs: status and JSON body.
async fn events(server: &TestServer, sub: Option<&str>, query: &[(&str, &str)]) -> (u16, Value) {
    let mut request = server
        .http()
        .get(server.url("/realtime/events"))
        .query(query);
    if let Some(sub) = sub {
        request = request.bearer_auth(token(sub));
    }
    let response = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("catch-up answered in time")
        .expect("GET /realtime/events");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// The cursor of the reference server's todo list: where "now" is. The server answers
/// once this node has delivered up to it, so it also waits for earlier writes.
async fn now(server: &TestServer) -> String {
    let response = server
        .http()
        .get(server.url("/api/todos"))
        .bearer_auth(token("ann"))
        .send()
        .await
        .unwrap();
    response.headers()["x-tidings-cursor"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn actions(body: &Value) -> Vec<(String, Value)> {
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["record"]["title"].clone(),
            )
        })
        .collect()
}

async fn patch_ok(server: &TestServer, sub: &str, collection: &str, id: &str, body: Value) {
    assert_eq!(server.patch(sub, collection, id, body).await.status(), 200);
}

backend_tests!(
    /// Pages of `limit` events, each answer's cursor the next one's `since`.
    async fn pages_through_the_events_after_a_cursor(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let since = now(&server).await;
        for title in ["a", "b", "c"] {
            server.create("bob", "todos", json!({"title": title})).await;
        }
        // A list's cursor is reached by the node before it answers: after it, the
        // node has delivered the writes above (an answer holds what it delivered).
        now(&server).await;
        let (status, all) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", &since)],
        )
        .await;
        assert_eq!(status, 200, "{all}");
        assert_eq!(all["recovered"], true);
        let titles = |body: &Value| {
            actions(body)
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        };
        assert_eq!(titles(&all), [json!("a"), json!("b"), json!("c")]);
        let last = all["events"][2]["cursor"].clone();
        assert_eq!(all["cursor"], last);
        // Event objects are the WebSocket frames' bodies.
        assert_eq!(all["events"][0]["collection"], "todos");
        assert_eq!(all["events"][0]["changes"], Value::Null);

        let (_, first) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", &since), ("limit", "2")],
        )
        .await;
        assert_eq!(titles(&first), [json!("a"), json!("b")]);
        assert_eq!(first["cursor"], first["events"][1]["cursor"]);
        let next = first["cursor"].as_str().unwrap();
        let (_, second) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", next), ("limit", "2")],
        )
        .await;
        assert_eq!(titles(&second), [json!("c")]);
        let end = second["cursor"].as_str().unwrap();
        let (_, empty) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", end)],
        )
        .await;
        assert_eq!(empty["events"], json!([]));
        assert_eq!(empty["cursor"], end);
        assert_eq!(empty["recovered"], true);
    }
);

backend_tests!(
    /// The filter and the rules apply as to a resume: a todo marked done leaves an
    /// "open" view; a note handed to bob leaves ann's (id only) and enters bob's.
    async fn filters_rules_enter_and_leave(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let since = now(&server).await;
        let todo = server.create("bob", "todos", json!({"title": "t"})).await;
        let id = todo["id"].as_str().unwrap();
        patch_ok(&server, "bob", "todos", id, json!({"done": true})).await;
        patch_ok(&server, "bob", "todos", id, json!({"title": "unseen"})).await;
        patch_ok(&server, "bob", "todos", id, json!({"done": false})).await;
        let note = server
            .create(
                "ann",
                "notes",
                json!({"body": "ANN-ONLY", "internal": "HIDDEN"}),
            )
            .await;
        let note_id = note["id"].as_str().unwrap();
        patch_ok(&server, "ann", "notes", note_id, json!({"owner_id": "bob"})).await;
        now(&server).await;

        let open = json!({"done": false}).to_string();
        let (status, body) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", &since), ("filter", &open)],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            actions(&body),
            [
                ("create".to_owned(), json!("t")),
                ("leave".to_owned(), Value::Null),
                ("enter".to_owned(), json!("unseen")),
            ]
        );

        let (_, ann) = events(
            &server,
            Some("ann"),
            &[("topics", "notes:*"), ("since", &since)],
        )
        .await;
        let ann_actions: Vec<&str> = ann["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(ann_actions, ["create", "leave"]);
        let leave = ann["events"][1].to_string();
        assert!(
            !leave.contains("ANN-ONLY") && !leave.contains("bob"),
            "{leave}"
        );
        assert_eq!(ann["events"][1]["key"], note_id);

        let (_, bob) = events(
            &server,
            Some("bob"),
            &[("topics", "notes:*"), ("since", &since)],
        )
        .await;
        assert_eq!(bob["events"].as_array().unwrap().len(), 1, "{bob}");
        assert_eq!(bob["events"][0]["action"], "enter");
        assert_eq!(bob["events"][0]["record"]["body"], "ANN-ONLY");
        assert!(!bob.to_string().contains("HIDDEN"));
    }
);

backend_tests!(
    /// `wait` answers as soon as an event arrives, and at the bound otherwise.
    async fn long_polls_are_bounded(backend: Backend) {
        let server = TestServer::start(backend, |c| {
            c.log.catch_up_max_wait = Duration::from_millis(600);
        })
        .await;
        let since = now(&server).await;
        // Nothing arrives: the answer comes at the (configured) bound, not after 60 s.
        let started = Instant::now();
        let (_, idle) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", &since), ("wait", "60")],
        )
        .await;
        assert_eq!(idle["events"], json!([]));
        assert_eq!(idle["cursor"], since);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
            "{waited:?}"
        );

        let server = std::sync::Arc::new(server);
        let poll = {
            let server = server.clone();
            let since = since.clone();
            tokio::spawn(async move {
                events(
                    &server,
                    Some("ann"),
                    &[("topics", "todos:*"), ("since", &since), ("wait", "60")],
                )
                .await
            })
        };
        // The write goes in while the poll waits (or just before: either way it is
        // in the answer).
        server
            .create("bob", "todos", json!({"title": "news"}))
            .await;
        let (status, body) = poll.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(actions(&body), [("create".to_owned(), json!("news"))]);
    }
);

/// Who asks, with what query, and the status and message part expected.
type Refusal<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], u16, &'a str);

/// Past `log.catch_up_max_waiting` waiting polls, a poll answers at once.
#[tokio::test]
async fn waiting_polls_are_capped() {
    let server = std::sync::Arc::new(
        TestServer::start(Backend::Sqlite, |c| {
            c.log.catch_up_max_waiting = 1;
            c.log.catch_up_max_wait = Duration::from_secs(3);
        })
        .await,
    );
    let since = now(&server).await;
    let poll = || {
        let (server, since) = (server.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, body) = events(
                &server,
                Some("ann"),
                &[("topics", "todos:*"), ("since", &since), ("wait", "60")],
            )
            .await;
            assert_eq!((status, &body["events"]), (200, &json!([])));
            started.elapsed()
        })
    };
    let (first, second) = (poll(), poll());
    let mut took = [first.await.unwrap(), second.await.unwrap()];
    took.sort();
    // One held the only permit until the bound; the other did not wait for it.
    assert!(took[1] >= Duration::from_millis(2500), "{took:?}");
    assert!(took[0] < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_reason() {
    let server = TestServer::start(Backend::Sqlite, |c| c.log.catch_up_max_events = 5).await;
    let since = now(&server).await;
    let cases: &[Refusal] = &[
        (
            Some("ann"),
            &[("topics", "todos:*")],
            400,
            "since is required",
        ),
        (Some("ann"), &[("since", "x:1")], 400, "no topics"),
        (
            Some("ann"),
            &[("topics", "todos:["), ("since", "x:1")],
            400,
            "",
        ),
        (
            Some("ann"),
            &[("topics", "secrets:*"), ("since", "x:1")],
            403,
            "not allowed",
        ),
        (None, &[("topics", "todos:*"), ("since", "x:1")], 401, ""),
        (
            Some("ann"),
            &[
                ("topics", "notes:*"),
                ("since", "x:1"),
                ("filter", r#"{"internal":"x"}"#),
            ],
            400,
            "hides",
        ),
        (
            Some("ann"),
            &[("topics", "todos:*"), ("since", "x:1"), ("filter", "{nope")],
            400,
            "not JSON",
        ),
        (
            Some("ann"),
            &[("topics", "todos:*"), ("since", "x:1"), ("limit", "0")],
            400,
            "limit",
        ),
        (
            Some("ann"),
            &[("topics", "todos:*"), ("since", "x:1"), ("wait", "-1")],
            400,
            "wait",
        ),
    ];
    for (sub, query, status, message) in cases {
        let (got, body) = events(&server, *sub, query).await;
        assert_eq!(got, *status, "{query:?}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{query:?}: {body}"
        );
    }
    // Positions that cannot be served: recovered false with the reason, and where to
    // start again.
    let epoch = since.rsplit_once(':').unwrap().0;
    for (cursor, reason) in [
        ("elsewhere:1".to_owned(), "epoch_changed"),
        ("garbage".to_owned(), "unknown_position"),
        (format!("{epoch}:999999"), "unknown_position"),
    ] {
        let (status, body) = events(
            &server,
            Some("ann"),
            &[("topics", "todos:*"), ("since", &cursor)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["recovered"], false, "{cursor}: {body}");
        assert_eq!(body["reason"], reason, "{cursor}");
        assert_eq!(body["cursor"], since);
    }
    // The limit is cut to log.catch_up_max_events.
    for n in 0..7 {
        server
            .create("bob", "todos", json!({"title": format!("t{n}")}))
            .await;
    }
    let (_, capped) = events(
        &server,
        Some("ann"),
        &[("topics", "todos:*"), ("since", &since), ("limit", "100")],
    )
    .await;
    assert_eq!(capped["events"].as_array().unwrap().len(), 5);
}
