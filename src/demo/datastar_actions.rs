//! The Datastar page's writes: `POST /demo/datastar/todos` adds a todo,
//! `PATCH /demo/datastar/todos/{id}` ticks or renames one, `DELETE
//! /demo/datastar/todos/{id}` deletes one. The page calls them with `@post`, `@patch`
//! and `@delete`.
//!
//! They write through the model layer like the REST API, so each write is exactly one
//! event, and every open page (Datastar or WebSocket) learns of it from its own
//! stream: the answers carry no HTML. A successful add answers a signal patch that
//! empties the page's input; a change or a delete answers 204. Refusals are the usual
//! JSON errors with their status (Datastar does not read the body of a non-200
//! answer; the page shows a message per status).
//!
//! They authenticate as the page's stream does: a Bearer header, else the SSE cookie.
//! As the browser attaches that cookie by itself, every request must also carry
//! Datastar's `Datastar-Request: true` header: a page of another site cannot send a
//! custom header to this origin (that needs a CORS preflight, which is not granted),
//! and a plain HTML form cannot send one at all.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    DemoState, Todo,
    api::{check_text, forbidden, new_id, not_found, parse, store_error},
};
use crate::{
    auth::{Caller, Principal},
    http::HttpError,
    model::Tx,
    sse::EventCollector,
};

/// Where the actions are: `POST` here, `PATCH` and `DELETE` at `<TODOS_PATH>/{id}`.
pub(super) const TODOS_PATH: &str = "/demo/datastar/todos";

/// The header Datastar sets on every request it makes.
const DATASTAR_REQUEST: &str = "datastar-request";

/// The signal bound to the page's "new todo" input.
const DRAFT_SIGNAL: &str = "draft";

/// The signed-in caller of an action, once the request shows it comes from a Datastar
/// page (see the module docs for why).
fn page_caller(caller: Caller, headers: &HeaderMap) -> Result<Principal, HttpError> {
    let principal = caller.signed_in()?;
    let from_datastar = headers
        .get(DATASTAR_REQUEST)
        .is_some_and(|value| value.as_bytes() == b"true");
    if !from_datastar {
        return Err(HttpError::forbidden(
            "Datastar actions need the header Datastar-Request: true",
        ));
    }
    Ok(principal)
}

fn user(principal: &Principal) -> String {
    principal.user_id.as_deref().unwrap_or_default().to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTodo {
    title: String,
}

/// What `@patch` may change: the title, whether it is done, or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TodoChange {
    title: Option<String>,
    done: Option<bool>,
}

/// `POST /demo/datastar/todos` with `{"title": ...}`: adds a todo owned by the caller.
pub(crate) async fn add(
    State(state): State<DemoState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let principal = page_caller(caller, &headers)?;
    let input: NewTodo = parse(&body)?;
    check_text("title", &input.title)?;
    let todo = Todo {
        id: new_id(),
        title: input.title,
        done: false,
        owner_id: user(&principal),
        created_at: crate::event::format_ts(&chrono::Utc::now()),
    };
    let mut tx = begin(&state).await?;
    tx.insert(&todo).await.map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    clear_draft()
}

/// `PATCH /demo/datastar/todos/{id}` with `{"title": ...}`, `{"done": ...}` or both:
/// the owner's change; anyone else gets 403 and nothing is written.
pub(crate) async fn change(
    State(state): State<DemoState>,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let principal = page_caller(caller, &headers)?;
    let change: TodoChange = parse(&body)?;
    if change.title.is_none() && change.done.is_none() {
        return Err(HttpError::bad_request("give a title, done, or both"));
    }
    if let Some(title) = &change.title {
        check_text("title", title)?;
    }
    let mut tx = begin(&state).await?;
    let mut todo = owned_todo(&mut tx, &id, &principal).await?;
    if let Some(title) = change.title {
        todo.title = title;
    }
    if let Some(done) = change.done {
        todo.done = done;
    }
    tx.update(&todo).await.map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /demo/datastar/todos/{id}`: the owner's delete; anyone else gets 403.
pub(crate) async fn delete(
    State(state): State<DemoState>,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let principal = page_caller(caller, &headers)?;
    let mut tx = begin(&state).await?;
    owned_todo(&mut tx, &id, &principal).await?;
    tx.delete::<Todo>(&id).await.map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn begin(state: &DemoState) -> Result<Tx, HttpError> {
    state.realtime.store().begin().await.map_err(store_error)
}

/// The todo `id`, read in the write's transaction, if `principal` owns it: 404 when
/// there is none, 403 when it is someone else's. A refusal drops the transaction
/// unwritten.
async fn owned_todo(tx: &mut Tx, id: &str, principal: &Principal) -> Result<Todo, HttpError> {
    let todo = tx
        .get::<Todo>(id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if Some(todo.owner_id.as_str()) != principal.user_id.as_deref() {
        return Err(forbidden());
    }
    Ok(todo)
}

/// The answer to an add: a one-event SSE body that empties the page's input. The new
/// todo itself reaches the page through its stream, like everyone else's.
fn clear_draft() -> Result<Response, HttpError> {
    let mut sse = EventCollector::new();
    sse.patch_signals(&json!({ DRAFT_SIGNAL: "" }))
        .map_err(|_| HttpError::internal("could not encode the answer"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        sse.render(None),
    )
        .into_response())
}
