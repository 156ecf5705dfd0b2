//! Per-viewer HTML over the real Datastar SSE endpoint: the demo's todos renderer keys
//! its rendering by ownership (the owner's has the badge and the controls), so two
//! users get different HTML for the same event, live and in a replay. The database plays no part in it, so SQLite only.

mod common;

use common::{db::Backend, server::TestServer};
use serde_json::json;

const BADGE: &str = "<b class=\"yours\">yours</b>";

#[tokio::test]
async fn the_owner_and_another_user_get_different_html_for_one_event() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.sse("ann", "todos:*").await;
    let mut bob = server.sse("bob", "todos:*").await;
    let opening = ann.next_group().await;
    bob.next_group().await;

    let todo = server
        .create("bob", "todos", json!({"title": "milk"}))
        .await;
    let id = todo["id"].as_str().unwrap();
    let for_ann = ann.next_group().await;
    let for_bob = bob.next_group().await;
    assert_eq!(for_ann.id, for_bob.id, "one event, one cursor");
    let shown = "<span class=\"title\">milk</span> <small class=\"owner\">bob</small>";
    assert!(
        for_ann
            .text()
            .contains(&format!("<li id=\"todo-{id}\" class=\"open\">{shown}</li>")),
        "{for_ann:?}"
    );
    // The owner's view: the badge and the controls that call the page's actions.
    assert!(
        for_bob.text().contains(&format!("{shown} {BADGE}")),
        "{for_bob:?}"
    );
    assert!(
        for_bob
            .text()
            .contains(&format!("@delete('/demo/datastar/todos/{id}'")),
        "{for_bob:?}"
    );
    assert!(!for_ann.text().contains("@delete"), "{for_ann:?}");

    // A replay renders by the same keys.
    let mut ann_again = server.sse_resume("ann", "todos:*", &opening.id).await;
    let mut bob_again = server.sse_resume("bob", "todos:*", &opening.id).await;
    assert_eq!(ann_again.next_group().await.text(), for_ann.text());
    assert_eq!(bob_again.next_group().await.text(), for_bob.text());
}

#[tokio::test]
async fn the_snapshot_marks_the_viewers_own_todos() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    server
        .create("bob", "todos", json!({"title": "milk"}))
        .await;
    let ann = server.sse("ann", "todos:*").await.next_group().await;
    let bob = server.sse("bob", "todos:*").await.next_group().await;
    assert!(!ann.text().contains(BADGE), "{ann:?}");
    assert!(bob.text().contains(BADGE), "{bob:?}");
}
