//! The bridge's Rust API over real HTTP, on SQLite and Postgres: `datastar_broadcast`,
//! `datastar_stream` in an app's own route, and the demo's Datastar page.

mod common;

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use common::{
    backend_tests,
    db::Backend,
    server::{Extras, SECRET, TestServer, token},
    sse::SseStream,
};
use serde_json::json;
use tidings::{
    Realtime, demo,
    sse::{DatastarBroadcastError, SseError},
};

backend_tests!(
    async fn datastar_broadcast_reaches_matching_readable_streams_once(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut all = server.sse("ann", "todos:*").await;
        let mut one = server.sse("carl", "todos:42").await;
        let mut notes = server.sse("bob", "notes:*").await;
        let mut both = server.sse("dan", "todos:*,todos:42").await;
        for stream in [&mut all, &mut one, &mut notes, &mut both] {
            stream.next_group().await;
        }
        let realtime = &server.realtime;

        // Collection-wide: every todos stream, once each, with no cursor.
        let reached = realtime
            .datastar_broadcast("todos", |sse| {
                sse.patch_elements("<p id=\"banner\">hi</p>");
                sse.patch_signals(&json!({"flash": "saved"}))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(reached, 3);
        for stream in [&mut all, &mut one, &mut both] {
            let first = stream.next_event().await;
            assert_eq!(first.text(), "elements <p id=\"banner\">hi</p>");
            assert_eq!(first.id, None, "not logged: no cursor");
            let second = stream.next_event().await;
            assert_eq!(second.signals(), json!({"flash": "saved"}));
        }
        // One topic: only the streams whose patterns match it.
        let reached = realtime
            .datastar_broadcast("todos:7", |sse| sse.remove_elements("#todo-7").map(|_| ()))
            .unwrap();
        assert_eq!(reached, 2);
        // Owner-only notes: a broadcast has no owner field, so nobody may read it.
        let reached = realtime
            .datastar_broadcast("notes", |sse| {
                sse.patch_elements("<p id=\"x\">x</p>");
            })
            .unwrap();
        assert_eq!(reached, 0);
        // Nothing collected: nothing sent. Refusals send nothing either.
        assert_eq!(realtime.datastar_broadcast("todos", |_| {}).unwrap(), 0);
        assert!(matches!(
            realtime.datastar_broadcast("bad topic", |_| {}),
            Err(DatastarBroadcastError::Topic(_))
        ));
        assert!(matches!(
            realtime
                .datastar_broadcast("todos", |sse| sse.remove_elements("#a\nid: 1").map(|_| ())),
            Err(DatastarBroadcastError::Encoding(SseError::LineBreak { .. }))
        ));

        // Streams go on with the log; a stream with two matching patterns got each
        // broadcast once.
        let todo = server.create("bob", "todos", json!({"title": "t"})).await;
        for stream in [&mut all, &mut both] {
            let removal = stream.next_event().await;
            assert_eq!(removal.text(), "selector #todo-7\nmode remove");
            let created = stream.next_group().await;
            assert!(created.text().contains(todo["id"].as_str().unwrap()));
        }
        // carl (todos:42) got neither the todos:7 broadcast nor the create: his next
        // event is the marker sent to his topic.
        let reached = realtime
            .datastar_broadcast("todos:42", |sse| {
                sse.patch_elements("<p id=\"marker\">42</p>");
            })
            .unwrap();
        assert_eq!(reached, 3);
        assert_eq!(
            one.next_event().await.text(),
            "elements <p id=\"marker\">42</p>"
        );
    }
);

/// An app's own route: `GET /live?pattern=...` opens a stream with `datastar_stream`.
async fn live(
    State(realtime): State<Realtime>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match realtime.sse_principal(&headers) {
        Ok(p) => p,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let patterns: Vec<String> = query
        .get("patterns")
        .map(|p| {
            p.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    realtime
        .datastar_stream(&principal, &headers, |sse| {
            for pattern in &patterns {
                sse.subscribe(pattern)?;
            }
            let html = format!("<p id=\"opening\">for {}</p>", sse.connection_id().len());
            sse.patch_elements(&html);
            Ok(())
        })
        .await
}

fn live_extras() -> Extras {
    Extras {
        routes: Some(Box::new(|realtime| {
            Router::new()
                .route("/live", get(live))
                .with_state(realtime.clone())
        })),
        ..Extras::default()
    }
}

backend_tests!(
    async fn datastar_stream_opens_with_the_apps_html_then_resumes_like_the_endpoint(
        backend: Backend,
    ) {
        let server = TestServer::start_with(backend, |_| {}, live_extras()).await;
        let open = |patterns: &str, last: Option<&str>| {
            let mut request = server
                .http()
                .get(server.url("/live"))
                .query(&[("patterns", patterns)])
                .bearer_auth(token("ann"));
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            SseStream::open(request)
        };
        let mut stream = open("todos:*,notes:*", None).await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.headers["content-type"], "text/event-stream");
        let opening = stream.next_group().await;
        assert_eq!(opening.text(), "elements <p id=\"opening\">for 32</p>");
        let todo = server.create("bob", "todos", json!({"title": "t1"})).await;
        let created = stream.next_group().await;
        assert_eq!(created.seq(), opening.seq() + 1);
        assert!(created.text().contains(todo["id"].as_str().unwrap()));
        drop(stream);

        let note = server.create("ann", "notes", json!({"body": "n1"})).await;
        let mut resumed = open("todos:*,notes:*", Some(&created.id)).await;
        let replayed = resumed.next_group().await;
        assert_eq!(
            replayed.seq(),
            created.seq() + 1,
            "no opening on a served resume"
        );
        assert!(replayed.text().contains(note["id"].as_str().unwrap()));

        // Refusals are responses.
        let forbidden = open("todos:*,secrets:*", None).await;
        assert_eq!(forbidden.status, 403);
        assert_eq!(forbidden.error_code().await, "forbidden");
        let invalid = open("todos:[", None).await;
        assert_eq!(invalid.status, 400);
        assert_eq!(invalid.error_code().await, "invalid_pattern");
        let nothing = open("", None).await;
        assert_eq!(nothing.status, 500);
        assert_eq!(nothing.error_code().await, "internal");
        assert_eq!(
            server
                .realtime
                .metrics()
                .sse_streams
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "refused streams leave nothing registered"
        );
    }
);

backend_tests!(
    async fn demo_page_signs_in_with_the_sse_cookie_and_celebrates(backend: Backend) {
        let extras = Extras {
            demo: demo::DemoOptions {
                mint_secret: Some(SECRET.into()),
                datastar_url: "/assets/datastar.js".into(),
                ..demo::DemoOptions::default()
            },
            ..Extras::default()
        };
        let server = TestServer::start_with(
            backend,
            |c| c.sse.cookie_name = Some(demo::DEMO_COOKIE.into()),
            extras,
        )
        .await;
        let todo = server
            .create("bob", "todos", json!({"title": "<milk>"}))
            .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();

        let anonymous = http.get(server.url("/datastar")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        assert!(anonymous.text().await.unwrap().contains("name=\"sub\""));

        let signed = http
            .get(server.url("/datastar?sub=alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 303);
        assert_eq!(signed.headers()["location"], "/datastar");
        let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let pair = cookie.split(';').next().unwrap().to_owned();
        assert!(pair.starts_with("tidings_token="));
        let bad = http.get(server.url("/datastar?sub=")).send().await.unwrap();
        assert_eq!(bad.status(), 400);

        let page = http
            .get(server.url("/datastar"))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("<script type=\"module\" src=\"/assets/datastar.js\">"));
        assert!(html.contains("data-init=\"@get('/realtime/sse?topics=todos:*,notes:*&amp;since="));
        assert!(html.contains(&format!("<li id=\"todo-{}\"", todo["id"].as_str().unwrap())));
        assert!(html.contains("&lt;milk&gt;") && !html.contains("<milk>"));

        // The page's stream authenticates with the same cookie.
        let mut stream =
            SseStream::open(server.sse_request("todos:*").header("cookie", &pair)).await;
        assert_eq!(stream.status, 200);
        stream.next_group().await;
        let celebrate = http
            .post(server.url("/demo/datastar/celebrate"))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(celebrate.status(), 200);
        assert_eq!(
            celebrate.json::<serde_json::Value>().await.unwrap(),
            json!({"reached": 1})
        );
        // The todo created above may still be on its way (the relay runs on its own);
        // the celebration follows it.
        let celebration = loop {
            let event = stream.next_event().await;
            if event.text().contains("todo-") || event.event.is_empty() {
                continue;
            }
            break event;
        };
        assert!(
            celebration.text().contains("Celebration #"),
            "{celebration:?}"
        );
        assert!(
            celebration.text().contains("<b>alice</b>"),
            "{celebration:?}"
        );
        assert_eq!(celebration.id, None);
        let nobody = http
            .post(server.url("/demo/datastar/celebrate"))
            .send()
            .await
            .unwrap();
        assert_eq!(nobody.status(), 401);
    }
);
