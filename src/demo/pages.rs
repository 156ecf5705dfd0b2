//! The demo's HTML pages.

use axum::response::Html;

/// `GET /`: the live todo list, using the shipped browser client.
pub(crate) async fn index() -> Html<&'static str> {
    Html(include_str!("../../static/index.html"))
}
