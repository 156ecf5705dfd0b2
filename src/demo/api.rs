//! `GET/POST /api/{collection}`, `GET/PATCH/DELETE /api/{collection}/{id}` for the demo
//! collections. Every write goes through the model layer, so it becomes an event.

// Handlers return early with a finished `Response` as the error; boxing it would only
// add noise to a demo.
#![allow(clippy::result_large_err)]

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::Value;

use super::{DemoState, Note, Todo};
use crate::{
    auth::Principal,
    auth::bearer_token,
    http::error,
    model::{Model, StoreError, Tx, public_projection},
};

/// Longest accepted title or note body, in characters.
const MAX_TEXT: usize = 10_000;
/// Records returned by a list at most.
const LIST_LIMIT: u32 = 1000;

fn authenticate(state: &DemoState, headers: &HeaderMap) -> Result<Principal, Response> {
    let token = bearer_token(headers).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing bearer token",
        )
    })?;
    state
        .realtime
        .verifier()
        .verify(&token)
        .map_err(|e| error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()))
}

fn sub(principal: &Principal) -> String {
    principal.user_id.as_deref().unwrap_or_default().to_owned()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound { .. } => error(StatusCode::NOT_FOUND, "not_found", "no such record"),
        other => {
            tracing::error!(error = %other, "demo api: store failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "storage failed",
            )
        }
    }
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", &message.to_string())
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(bad_request)
}

fn check_text(field: &str, text: &str) -> Result<(), Response> {
    let len = text.chars().count();
    if len == 0 || len > MAX_TEXT {
        return Err(bad_request(format!(
            "{field} must be 1-{MAX_TEXT} characters"
        )));
    }
    Ok(())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such record")
}

fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "only the owner may change this record",
    )
}

/// Which demo collection a path names.
enum Collection {
    Todos,
    Notes,
}

fn collection(name: &str) -> Result<Collection, Response> {
    match name {
        "todos" => Ok(Collection::Todos),
        "notes" => Ok(Collection::Notes),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such collection",
        )),
    }
}

fn projected<M: Model>(status: StatusCode, record: &M) -> Response {
    (status, Json(public_projection(record))).into_response()
}

/// Reads of notes are owner-only; someone else's note looks absent, not forbidden,
/// so ids do not leak.
fn readable_note(note: &Note, principal: &Principal) -> bool {
    principal.user_id.as_deref() == Some(note.owner_id.as_str())
}

pub(crate) async fn list(
    State(state): State<DemoState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let principal = match authenticate(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let store = state.realtime.store();
    let result = match collection(&name) {
        Err(r) => return r,
        Ok(Collection::Todos) => store
            .list::<Todo>(LIST_LIMIT)
            .await
            .map(|v| v.iter().map(public_projection).collect::<Vec<Value>>()),
        Ok(Collection::Notes) => store.list::<Note>(LIST_LIMIT).await.map(|v| {
            v.iter()
                .filter(|n| readable_note(n, &principal))
                .map(public_projection)
                .collect()
        }),
    };
    match result {
        Ok(records) => Json(records).into_response(),
        Err(e) => store_error(e),
    }
}

pub(crate) async fn read(
    State(state): State<DemoState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let principal = match authenticate(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let store = state.realtime.store();
    match collection(&name) {
        Err(r) => r,
        Ok(Collection::Todos) => match store.get::<Todo>(&id).await {
            Ok(Some(todo)) => projected(StatusCode::OK, &todo),
            Ok(None) => not_found(),
            Err(e) => store_error(e),
        },
        Ok(Collection::Notes) => match store.get::<Note>(&id).await {
            Ok(Some(note)) if readable_note(&note, &principal) => projected(StatusCode::OK, &note),
            Ok(_) => not_found(),
            Err(e) => store_error(e),
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    body: String,
    #[serde(default)]
    internal: Option<String>,
}

pub(crate) async fn create(
    State(state): State<DemoState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (principal, kind, mut tx) = match begin_write(&state, &headers, &name).await {
        Ok(started) => started,
        Err(r) => return r,
    };
    let response = match kind {
        Collection::Todos => {
            let input: NewTodo = match parse(&body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = check_text("title", &input.title) {
                return r;
            }
            let todo = Todo {
                id: new_id(),
                title: input.title,
                done: input.done,
                owner_id: sub(&principal),
                created_at: crate::event::format_ts(&chrono::Utc::now()),
            };
            tx.insert(&todo)
                .await
                .map(|t| projected(StatusCode::CREATED, &t))
        }
        Collection::Notes => {
            let input: NewNote = match parse(&body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = check_text("body", &input.body) {
                return r;
            }
            let note = Note {
                id: new_id(),
                body: input.body,
                owner_id: sub(&principal),
                internal: input.internal,
            };
            tx.insert(&note)
                .await
                .map(|n| projected(StatusCode::CREATED, &n))
        }
    };
    commit_then(tx, response).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TodoPatch {
    title: Option<String>,
    done: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotePatch {
    body: Option<String>,
    internal: Option<String>,
}

pub(crate) async fn update(
    State(state): State<DemoState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let (principal, kind, mut tx) = match begin_write(&state, &headers, &name).await {
        Ok(started) => started,
        Err(r) => return r,
    };
    let owner = sub(&principal);
    let response = match kind {
        Collection::Todos => {
            let patch: TodoPatch = match parse(&body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let mut todo = match tx.get::<Todo>(&id).await {
                Ok(Some(t)) => t,
                Ok(None) => return not_found(),
                Err(e) => return store_error(e),
            };
            if todo.owner_id != owner {
                return forbidden();
            }
            if let Some(title) = patch.title {
                if let Err(r) = check_text("title", &title) {
                    return r;
                }
                todo.title = title;
            }
            if let Some(done) = patch.done {
                todo.done = done;
            }
            tx.update(&todo)
                .await
                .map(|(t, _)| projected(StatusCode::OK, &t))
        }
        Collection::Notes => {
            let patch: NotePatch = match parse(&body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let mut note = match tx.get::<Note>(&id).await {
                Ok(Some(n)) if n.owner_id == owner => n,
                // Someone else's note is as invisible as a missing one.
                Ok(_) => return not_found(),
                Err(e) => return store_error(e),
            };
            if let Some(body) = patch.body {
                if let Err(r) = check_text("body", &body) {
                    return r;
                }
                note.body = body;
            }
            if patch.internal.is_some() {
                note.internal = patch.internal;
            }
            tx.update(&note)
                .await
                .map(|(n, _)| projected(StatusCode::OK, &n))
        }
    };
    commit_then(tx, response).await
}

pub(crate) async fn delete(
    State(state): State<DemoState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let (principal, kind, mut tx) = match begin_write(&state, &headers, &name).await {
        Ok(started) => started,
        Err(r) => return r,
    };
    let owner = sub(&principal);
    let owned = match kind {
        Collection::Todos => match tx.get::<Todo>(&id).await {
            Ok(Some(t)) if t.owner_id == owner => tx.delete::<Todo>(&id).await.map(|_| ()),
            Ok(Some(_)) => return forbidden(),
            Ok(None) => return not_found(),
            Err(e) => return store_error(e),
        },
        Collection::Notes => match tx.get::<Note>(&id).await {
            Ok(Some(n)) if n.owner_id == owner => tx.delete::<Note>(&id).await.map(|_| ()),
            Ok(_) => return not_found(),
            Err(e) => return store_error(e),
        },
    };
    let response = owned.map(|()| StatusCode::NO_CONTENT.into_response());
    commit_then(tx, response).await
}

/// Authenticates, resolves the collection and opens the write transaction.
async fn begin_write(
    state: &DemoState,
    headers: &HeaderMap,
    name: &str,
) -> Result<(Principal, Collection, Tx), Response> {
    let principal = authenticate(state, headers)?;
    let kind = collection(name)?;
    let tx = state.realtime.store().begin().await.map_err(store_error)?;
    Ok((principal, kind, tx))
}

/// Commits and answers `response`, or answers the error of the write or the commit.
async fn commit_then(tx: Tx, response: Result<Response, StoreError>) -> Response {
    match response {
        Ok(response) => match tx.commit().await {
            Ok(()) => response,
            Err(e) => store_error(e),
        },
        Err(e) => store_error(e),
    }
}
