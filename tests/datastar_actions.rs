//! The demo Datastar page's write actions (`/demo/datastar/todos[/{id}]`) over real
//! HTTP, on SQLite and Postgres: each write is exactly one event that reaches
//! WebSocket clients and Datastar streams (the owner's rendering with controls, the
//! others' without); refusals (not the owner, bad input, no Datastar header, no or a
//! bad cookie) write nothing.

mod common;

use common::{
    backend_tests,
    db::Backend,
    server::{Client, Extras, TestServer, seq_of, token},
};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tidings::demo::{self, Todo};

const ACTIONS: &str = "/demo/datastar/todos";

/// A server whose SSE cookie is the demo's, as the reference server's in demo mode.
async fn start(backend: Backend) -> TestServer {
    TestServer::start_with(
        backend,
        |c| c.sse.cookie_name = Some(demo::DEMO_COOKIE.into()),
        Extras::default(),
    )
    .await
}

/// A request as the Datastar page of `sub` makes it: the SSE cookie and Datastar's
/// header.
fn action(server: &TestServer, sub: &str, method: Method, path: &str) -> RequestBuilder {
    server
        .http()
        .request(method, server.url(path))
        .header("cookie", format!("{}={}", demo::DEMO_COOKIE, token(sub)))
        .header("datastar-request", "true")
}

/// Sends `request` with a JSON `body`; the status and the error code, if any.
async fn refused(request: RequestBuilder, body: &str) -> (u16, String) {
    let response = request
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let error: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        error["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Sends a logged broadcast and checks it is `client`'s next event, right after
/// `after`: no other event was written in between.
async fn expect_nothing_after(server: &TestServer, client: &mut Client, after: u64) {
    server.broadcast_to("todos", "marker", json!({})).await;
    let next = client.recv_event().await;
    assert_eq!(next["event"], "marker", "an unexpected event: {next}");
    assert_eq!(seq_of(&next), after + 1);
}

backend_tests!(
    async fn each_action_is_one_event_seen_by_every_page(backend: Backend) {
        let server = start(backend).await;
        let mut watcher = server.connect("carl").await;
        watcher.subscribe("s1", "todos:*").await;
        let mut ann_page = server.sse("ann", "todos:*").await;
        let mut bob_page = server.sse("bob", "todos:*").await;
        ann_page.next_group().await;
        bob_page.next_group().await;

        let added = action(&server, "ann", Method::POST, ACTIONS)
            .json(&json!({"title": "tea"}))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 200);
        assert_eq!(added.headers()["content-type"], "text/event-stream");
        assert_eq!(
            added.text().await.unwrap(),
            "event: datastar-patch-signals\ndata: signals {\"draft\":\"\"}\n\n",
            "the answer only empties the input"
        );
        let created = watcher.recv_event().await;
        assert_eq!(created["action"], "create");
        assert_eq!(created["record"]["title"], "tea");
        assert_eq!(created["record"]["owner_id"], "ann");
        assert_eq!(created["record"]["done"], false);
        let id = created["key"].as_str().unwrap().to_owned();

        // The pages' streams: the owner's rendering has the controls, bob's has none.
        let for_ann = ann_page.next_group().await.text();
        let for_bob = bob_page.next_group().await.text();
        assert!(for_ann.contains(&format!("id=\"todo-{id}\"")), "{for_ann}");
        assert!(for_ann.contains("class=\"delete\""), "{for_ann}");
        assert!(for_bob.contains(&format!("id=\"todo-{id}\"")), "{for_bob}");
        assert!(!for_bob.contains("class=\"delete\""), "{for_bob}");
        assert!(!for_bob.contains("@patch"), "{for_bob}");

        let item = format!("{ACTIONS}/{id}");
        let ticked = action(&server, "ann", Method::PATCH, &item)
            .json(&json!({"done": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(ticked.status(), 204);
        let done = watcher.recv_event().await;
        assert_eq!(done["action"], "update");
        assert_eq!(done["changes"], json!(["done"]));
        assert_eq!(done["record"]["done"], true);
        assert!(
            bob_page
                .next_group()
                .await
                .text()
                .contains("class=\"done\"")
        );

        let renamed = action(&server, "ann", Method::PATCH, &item)
            .json(&json!({"title": "green tea"}))
            .send()
            .await
            .unwrap();
        assert_eq!(renamed.status(), 204);
        let retitled = watcher.recv_event().await;
        assert_eq!(retitled["changes"], json!(["title"]));
        assert_eq!(retitled["record"]["title"], "green tea");
        assert!(bob_page.next_group().await.text().contains("green tea"));

        let deleted = action(&server, "ann", Method::DELETE, &item)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        let gone = watcher.recv_event().await;
        assert_eq!(gone["action"], "delete");
        assert_eq!(gone["key"], id.as_str());
        assert!(
            bob_page
                .next_group()
                .await
                .text()
                .contains(&format!("selector #todo-{id}\nmode remove"))
        );

        let seqs: Vec<u64> = [&created, &done, &retitled, &gone]
            .iter()
            .map(|e| seq_of(e))
            .collect();
        for pair in seqs.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "one event per write: {seqs:?}");
        }
        expect_nothing_after(&server, &mut watcher, seqs[3]).await;
        assert!(
            server
                .realtime
                .store()
                .get::<Todo>(&id)
                .await
                .unwrap()
                .is_none(),
            "deleted"
        );
    }
);

backend_tests!(
    async fn refusals_are_clear_and_write_nothing(backend: Backend) {
        let server = start(backend).await;
        let mut watcher = server.connect("carl").await;
        watcher.subscribe("s1", "todos:*").await;
        let todo = server
            .create("ann", "todos", json!({"title": "ann's"}))
            .await;
        let created = watcher.recv_event().await;
        let id = todo["id"].as_str().unwrap();
        let item = format!("{ACTIONS}/{id}");
        let long = "x".repeat(10_001);

        let cases: Vec<(&str, RequestBuilder, String, u16, &str)> = vec![
            (
                "a tick by someone else",
                action(&server, "bob", Method::PATCH, &item),
                json!({"done": true}).to_string(),
                403,
                "forbidden",
            ),
            (
                "a rename by someone else",
                action(&server, "bob", Method::PATCH, &item),
                json!({"title": "mine now"}).to_string(),
                403,
                "forbidden",
            ),
            (
                "a delete by someone else",
                action(&server, "bob", Method::DELETE, &item),
                String::new(),
                403,
                "forbidden",
            ),
            (
                "a todo that does not exist",
                action(&server, "ann", Method::PATCH, &format!("{ACTIONS}/nope")),
                json!({"done": true}).to_string(),
                404,
                "not_found",
            ),
            (
                "an empty title",
                action(&server, "ann", Method::POST, ACTIONS),
                json!({"title": ""}).to_string(),
                400,
                "bad_request",
            ),
            (
                "an oversized title",
                action(&server, "ann", Method::POST, ACTIONS),
                json!({ "title": long }).to_string(),
                400,
                "bad_request",
            ),
            (
                "an empty rename",
                action(&server, "ann", Method::PATCH, &item),
                json!({"title": ""}).to_string(),
                400,
                "bad_request",
            ),
            (
                "an oversized rename",
                action(&server, "ann", Method::PATCH, &item),
                json!({ "title": long }).to_string(),
                400,
                "bad_request",
            ),
            (
                "a change of nothing",
                action(&server, "ann", Method::PATCH, &item),
                "{}".into(),
                400,
                "bad_request",
            ),
            (
                "a field the page cannot change",
                action(&server, "ann", Method::PATCH, &item),
                json!({"owner_id": "bob"}).to_string(),
                400,
                "bad_request",
            ),
            (
                "a body that is not JSON",
                action(&server, "ann", Method::POST, ACTIONS),
                "title=tea".into(),
                400,
                "bad_request",
            ),
            (
                "a request without Datastar's header",
                server
                    .http()
                    .post(server.url(ACTIONS))
                    .header("cookie", format!("{}={}", demo::DEMO_COOKIE, token("ann"))),
                json!({"title": "tea"}).to_string(),
                403,
                "forbidden",
            ),
            (
                "no credentials",
                server
                    .http()
                    .post(server.url(ACTIONS))
                    .header("datastar-request", "true"),
                json!({"title": "tea"}).to_string(),
                401,
                "unauthorized",
            ),
            (
                "a cookie that is not a valid token",
                server
                    .http()
                    .delete(server.url(&item))
                    .header("cookie", format!("{}=x.y.z", demo::DEMO_COOKIE))
                    .header("datastar-request", "true"),
                String::new(),
                401,
                "unauthorized",
            ),
        ];
        for (what, request, body, status, code) in cases {
            assert_eq!(
                refused(request, &body).await,
                (status, code.to_owned()),
                "{what}"
            );
        }

        expect_nothing_after(&server, &mut watcher, seq_of(&created)).await;
        let stored = server.realtime.store().get::<Todo>(id).await.unwrap();
        let stored = stored.expect("still there");
        assert_eq!((stored.title.as_str(), stored.done), ("ann's", false));
        assert_eq!(stored.owner_id, "ann");
    }
);

/// A Bearer header counts as the page's cookie does (the stream accepts both).
#[tokio::test]
async fn a_bearer_token_works_too() {
    let server = start(Backend::Sqlite).await;
    let added = server
        .http()
        .post(server.url(ACTIONS))
        .bearer_auth(token("ann"))
        .header("datastar-request", "true")
        .json(&json!({"title": "from a script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let todos = server.realtime.store().list::<Todo>(10).await.unwrap();
    assert_eq!(todos.len(), 1);
    assert_eq!(todos[0].owner_id, "ann");
}
