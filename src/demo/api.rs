//! `GET/POST /api/{collection}`, `GET/PATCH/DELETE /api/{collection}/{id}` for the demo
//! collections. Every write goes through the model layer, so it becomes an event.

use axum::{
    Json,
    extract::{FromRef, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::Value;

use super::{DemoState, Note, Todo};
use crate::{
    auth::{Authenticator, BearerCaller, Principal},
    event::Cursor,
    http::HttpError,
    model::{Model, StoreError, Tx, public_projection},
    mutation::MutationId,
};

/// Longest accepted title or note body, in characters.
pub(super) const MAX_TEXT: usize = 10_000;
/// Records returned by a list at most.
const LIST_LIMIT: u32 = 1000;

/// The demo's handlers learn who calls through the gateway's extractors.
impl FromRef<DemoState> for Authenticator {
    fn from_ref(state: &DemoState) -> Self {
        state.realtime.authenticator()
    }
}

fn sub(principal: &Principal) -> String {
    principal.user_id.as_deref().unwrap_or_default().to_owned()
}

pub(super) fn store_error(e: StoreError) -> HttpError {
    match e {
        StoreError::NotFound { .. } => not_found(),
        other => {
            tracing::error!(error = %other, "demo api: store failed");
            HttpError::internal("storage failed")
        }
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::bad_request(e.to_string()))
}

pub(super) fn check_text(field: &str, text: &str) -> Result<(), HttpError> {
    let len = text.chars().count();
    if len == 0 || len > MAX_TEXT {
        return Err(HttpError::bad_request(format!(
            "{field} must be 1-{MAX_TEXT} characters"
        )));
    }
    Ok(())
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(super) fn not_found() -> HttpError {
    HttpError::not_found("no such record")
}

pub(super) fn forbidden() -> HttpError {
    HttpError::forbidden("only the owner may change this record")
}

/// Which demo collection a path names.
enum Collection {
    Todos,
    Notes,
}

fn collection(name: &str) -> Result<Collection, HttpError> {
    match name {
        "todos" => Ok(Collection::Todos),
        "notes" => Ok(Collection::Notes),
        _ => Err(HttpError::not_found("no such collection")),
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

/// The header carrying the log position a read is at (addition to protocol section 9):
/// subscribing with `since` set to it yields exactly the changes after the read.
const CURSOR_HEADER: &str = "x-tidings-cursor";

/// `response` with the cursor of the snapshot it shows, once this node has delivered
/// up to it (so a subscription from it here starts at once).
async fn at_cursor(state: &DemoState, cursor: &Cursor, response: Response) -> Response {
    state.realtime.settle(cursor).await;
    let mut response = response;
    if let Ok(value) = HeaderValue::from_str(&cursor.to_string()) {
        response.headers_mut().insert(CURSOR_HEADER, value);
    }
    response
}

pub(crate) async fn list(
    State(state): State<DemoState>,
    Path(name): Path<String>,
    BearerCaller(principal): BearerCaller,
) -> Result<Response, HttpError> {
    let store = state.realtime.store();
    let (records, cursor) = match collection(&name)? {
        Collection::Todos => {
            let read = store
                .snapshot_list::<Todo>(LIST_LIMIT)
                .await
                .map_err(store_error)?;
            let records: Vec<Value> = read.data.iter().map(public_projection).collect();
            (records, read.cursor)
        }
        Collection::Notes => {
            let read = store
                .snapshot_list::<Note>(LIST_LIMIT)
                .await
                .map_err(store_error)?;
            let records = read
                .data
                .iter()
                .filter(|n| readable_note(n, &principal))
                .map(public_projection)
                .collect();
            (records, read.cursor)
        }
    };
    Ok(at_cursor(&state, &cursor, Json(records).into_response()).await)
}

pub(crate) async fn read(
    State(state): State<DemoState>,
    Path((name, id)): Path<(String, String)>,
    BearerCaller(principal): BearerCaller,
) -> Result<Response, HttpError> {
    let store = state.realtime.store();
    let (found, cursor) = match collection(&name)? {
        Collection::Todos => {
            let read = store.snapshot_get::<Todo>(&id).await.map_err(store_error)?;
            (
                read.data.map(|t| projected(StatusCode::OK, &t)),
                read.cursor,
            )
        }
        Collection::Notes => {
            let read = store.snapshot_get::<Note>(&id).await.map_err(store_error)?;
            let note = read.data.filter(|n| readable_note(n, &principal));
            (note.map(|n| projected(StatusCode::OK, &n)), read.cursor)
        }
    };
    let response = found.ok_or_else(not_found)?;
    Ok(at_cursor(&state, &cursor, response).await)
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
    Path(name): Path<String>,
    BearerCaller(principal): BearerCaller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let (kind, mut tx) = begin_write(&state, &name, &headers).await?;
    let response = match kind {
        Collection::Todos => {
            let input: NewTodo = parse(&body)?;
            check_text("title", &input.title)?;
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
            let input: NewNote = parse(&body)?;
            check_text("body", &input.body)?;
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
    /// Hands the todo to another user (addition to protocol section 9).
    owner_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotePatch {
    body: Option<String>,
    internal: Option<String>,
    /// Hands the note to another user (addition to protocol section 9).
    owner_id: Option<String>,
}

/// Longest accepted user id when a record is handed over, in characters (a JWT
/// `sub` is rarely longer).
const MAX_USER_ID: usize = 256;

/// A new owner's id: any non-empty user id.
fn check_owner(owner: &str) -> Result<(), HttpError> {
    let len = owner.chars().count();
    if len == 0 || len > MAX_USER_ID || owner.chars().any(char::is_control) {
        return Err(HttpError::bad_request(format!(
            "owner_id must be 1-{MAX_USER_ID} characters, without control characters"
        )));
    }
    Ok(())
}

pub(crate) async fn update(
    State(state): State<DemoState>,
    Path((name, id)): Path<(String, String)>,
    BearerCaller(principal): BearerCaller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let (kind, mut tx) = begin_write(&state, &name, &headers).await?;
    let owner = sub(&principal);
    let response = match kind {
        Collection::Todos => {
            let patch: TodoPatch = parse(&body)?;
            let mut todo = tx
                .get::<Todo>(&id)
                .await
                .map_err(store_error)?
                .ok_or_else(not_found)?;
            if todo.owner_id != owner {
                return Err(forbidden());
            }
            if let Some(title) = patch.title {
                check_text("title", &title)?;
                todo.title = title;
            }
            if let Some(done) = patch.done {
                todo.done = done;
            }
            if let Some(new_owner) = patch.owner_id {
                check_owner(&new_owner)?;
                todo.owner_id = new_owner;
            }
            tx.update(&todo)
                .await
                .map(|(t, _)| projected(StatusCode::OK, &t))
        }
        Collection::Notes => {
            let patch: NotePatch = parse(&body)?;
            let mut note = match tx.get::<Note>(&id).await.map_err(store_error)? {
                Some(n) if n.owner_id == owner => n,
                // Someone else's note is as invisible as a missing one.
                _ => return Err(not_found()),
            };
            if let Some(body) = patch.body {
                check_text("body", &body)?;
                note.body = body;
            }
            if patch.internal.is_some() {
                note.internal = patch.internal;
            }
            if let Some(new_owner) = patch.owner_id {
                check_owner(&new_owner)?;
                note.owner_id = new_owner;
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
    Path((name, id)): Path<(String, String)>,
    BearerCaller(principal): BearerCaller,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (kind, mut tx) = begin_write(&state, &name, &headers).await?;
    let owner = sub(&principal);
    let owned = match kind {
        Collection::Todos => match tx.get::<Todo>(&id).await.map_err(store_error)? {
            Some(t) if t.owner_id == owner => tx.delete::<Todo>(&id).await.map(|_| ()),
            Some(_) => return Err(forbidden()),
            None => return Err(not_found()),
        },
        Collection::Notes => match tx.get::<Note>(&id).await.map_err(store_error)? {
            Some(n) if n.owner_id == owner => tx.delete::<Note>(&id).await.map(|_| ()),
            _ => return Err(not_found()),
        },
    };
    let response = owned.map(|()| StatusCode::NO_CONTENT.into_response());
    commit_then(tx, response).await
}

/// The header tagging a write with the client's mutation id (addition to protocol
/// section 9): its event carries it as `"mutation"`.
const MUTATION_HEADER: &str = "x-tidings-mutation";

/// Resolves the collection and opens the write transaction (the caller is already
/// authenticated by the extractor), tagged with the request's mutation id if any.
async fn begin_write(
    state: &DemoState,
    name: &str,
    headers: &HeaderMap,
) -> Result<(Collection, Tx), HttpError> {
    let kind = collection(name)?;
    let mutation = match headers.get(MUTATION_HEADER) {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| HttpError::bad_request("X-Tidings-Mutation must be visible ASCII"))?;
            Some(MutationId::new(text).map_err(|e| HttpError::bad_request(e.to_string()))?)
        }
    };
    let mut tx = state.realtime.store().begin().await.map_err(store_error)?;
    if let Some(mutation) = mutation {
        tx.set_mutation(mutation);
    }
    Ok((kind, tx))
}

/// Commits and answers `response`, or answers the error of the write or the commit.
async fn commit_then(
    tx: Tx,
    response: Result<Response, StoreError>,
) -> Result<Response, HttpError> {
    let response = response.map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(response)
}
