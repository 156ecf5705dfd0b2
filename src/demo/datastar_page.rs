//! `GET /datastar`: the live todo list rendered on the server and kept current through
//! the Datastar bridge (its HTML, renderer and snapshot are `datastar_todos.rs`), the
//! signed-in user's notes kept current by the default signal mapping, and
//! `POST /demo/datastar/celebrate`, which patches every open page at once with
//! `datastar_broadcast`.
//!
//! Auth is the SSE cookie (`config.sse.cookie_name`): the page's `@get` of
//! `/realtime/sse` is same-origin, so the browser sends it by itself. In demo mode
//! `GET /datastar?sub=alice` mints a token for `alice`, sets it as that cookie
//! (`HttpOnly`, `SameSite=Strict`) and redirects to `/datastar`; with a real key
//! configured, the app's own login sets the cookie.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    DemoState, Note, Todo,
    datastar_todos::{LIST_LIMIT, escape, todo_form, todo_list},
    token,
};
use crate::{auth::Caller, event::Cursor, http::HttpError, model::public_projection};

/// Lifetime of the cookie token minted by `?sub=`.
const COOKIE_TTL: u64 = 3600;

/// The notes part of the page. Notes have no renderer: they arrive through the default
/// mapping as `tidings.notes.<id>` signals (`null` on a delete, and on a `leave` when
/// the note is handed to someone else; the whole record on an `enter`), and
/// `renderNotes` rebuilds `<ul id="notes">` from those signals whenever they change.
/// `notes` holds the public projections the page starts with (the user's own notes).
fn notes_section(notes: &serde_json::Map<String, Value>) -> String {
    let signals = json!({"tidings": {"notes": notes}}).to_string();
    format!(
        "<h2>Your notes</h2>\n\
         <p>Only you see them: a note handed to you appears here, one you hand to someone \
         else disappears.</p>\n\
         <ul id=\"notes\" data-signals=\"{signals}\" \
         data-effect=\"renderNotes(el, $tidings.notes)\"></ul>",
        signals = escape(&signals),
    )
}

/// Builds the notes list from the `tidings.notes` signals, with text nodes only (no
/// HTML from the data). Enumerating the signals is what makes the effect re-run when a
/// note is added or removed (see docs/datastar.md).
const RENDER_NOTES: &str = "<script>\n\
function renderNotes(list, notes) {\n\
  const items = [];\n\
  for (const id of Object.keys(notes).sort()) {\n\
    const note = notes[id];\n\
    if (!note) continue;\n\
    const item = document.createElement('li');\n\
    item.id = 'note-' + id;\n\
    const body = document.createElement('span');\n\
    body.className = 'body';\n\
    body.textContent = note.body ?? '';\n\
    item.append(body);\n\
    items.push(item);\n\
  }\n\
  list.replaceChildren(...items);\n\
}\n\
</script>";

/// The `since` of the page's stream: the older of the positions its todos and notes
/// were read at, so that the stream replays every change after either read. Events
/// between the two reads are applied again to the newer one, which the todos renderer
/// (remove, then append; morph; remove) and signal patches take without harm. `None`
/// (the stream then starts with the snapshot) when the reads straddle an epoch change
/// or the cursor has characters the URL would need to escape.
fn page_since(todos: &Cursor, notes: &Cursor) -> Option<String> {
    if todos.epoch != notes.epoch {
        return None;
    }
    let since = if todos.seq <= notes.seq { todos } else { notes }.to_string();
    let plain = since
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.'));
    plain.then_some(since)
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    sub: Option<String>,
}

fn page(title: &str, datastar_url: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <script type=\"module\" src=\"{src}\"></script>\n\
         <style>\n\
         body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }}\n\
         li.done .title {{ text-decoration: line-through; color: #777; }}\n\
         .owner {{ color: #777; }}\n\
         form.rename {{ display: inline; }}\n\
         #action-error {{ color: #a00; }}\n\
         #celebration:empty {{ display: none; }}\n\
         #celebration {{ padding: .5rem 1rem; background: #fff3c4; border-radius: .5rem; }}\n\
         </style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        title = escape(title),
        src = escape(datastar_url),
    ))
}

fn sign_in_page(state: &DemoState, why: &str) -> Response {
    let how = if state.options.mint_secret.is_some() {
        "<form method=\"get\" action=\"/datastar\">\
         <label>Your name <input name=\"sub\" required maxlength=\"64\"></label> \
         <button>Sign in</button></form>"
    } else {
        "<p>This server has a JWT key configured: sign in through your app, which sets \
         the SSE cookie.</p>"
    };
    let body = format!(
        "<h1>Live todos with Datastar</h1>\n<p>{}</p>\n{how}",
        escape(why)
    );
    let mut response =
        page("tidings · Datastar", &state.options.datastar_url, &body).into_response();
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

/// `GET /datastar[?sub=<name>]`.
pub(crate) async fn show(
    State(state): State<DemoState>,
    Query(query): Query<PageQuery>,
    // A refused token is answered with the sign-in page, not the JSON 401.
    caller: Result<Caller, HttpError>,
) -> Result<Response, HttpError> {
    let Some(cookie_name) = state.realtime.config().sse.cookie_name.clone() else {
        return Err(HttpError::not_found(
            "the Datastar page needs an SSE cookie: set sse.cookie_name (TIDINGS_SSE_COOKIE)",
        ));
    };
    if let Some(sub) = query.sub {
        return sign_in(&state, &cookie_name, &sub);
    }
    let principal = match caller {
        Ok(Caller(p)) if p.is_authenticated() => p,
        Ok(_) => return Ok(sign_in_page(&state, "Sign in to see the live list.")),
        Err(refused) => {
            let why = format!("Your session ended ({}).", refused.message());
            return Ok(sign_in_page(&state, &why));
        }
    };
    let store = state.realtime.store();
    let (todos, notes) = match (
        store.snapshot_list::<Todo>(LIST_LIMIT).await,
        store.snapshot_list::<Note>(LIST_LIMIT).await,
    ) {
        (Ok(todos), Ok(notes)) => (todos, notes),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "demo: listing todos or notes failed");
            return Err(HttpError::internal("storage failed"));
        }
    };
    let user = principal.user_id.as_deref().unwrap_or_default();
    // Notes are owner-only: the page starts with the user's own, as their streams'
    // read rule would deliver them.
    let own_notes: serde_json::Map<String, Value> = notes
        .data
        .iter()
        .filter(|n| n.owner_id == user)
        .map(|n| (n.id.clone(), public_projection(n)))
        .collect();
    let since = page_since(&todos.cursor, &notes.cursor);
    let mut stream = String::from("/realtime/sse?topics=todos:*,notes:*");
    if let Some(since) = &since {
        // This node delivered up to it: the stream starts at once.
        state
            .realtime
            .settle(&Cursor {
                epoch: todos.cursor.epoch.clone(),
                seq: todos.cursor.seq.min(notes.cursor.seq),
            })
            .await;
        let _ = write!(stream, "&since={since}");
    }
    let mut body = String::new();
    // `retry: 'always'` reconnects after clean ends too (deploys, restarts), resuming
    // from the last id; the page sends none of its signals along (the notes are in
    // them).
    let _ = write!(
        body,
        "{script}\n\
         <main data-init=\"@get('{stream}', \
         {{retry: 'always', retryMaxCount: Infinity, filterSignals: {{exclude: /.*/}}}})\">\n\
         <h1>Live todos with Datastar</h1>\n\
         <p>Signed in as <b id=\"user\">{user}</b>. Todos created, changed or deleted \
         anywhere appear here without a reload; yours have controls.</p>\n\
         <div id=\"celebration\"></div>\n\
         {form}\n{list}\n{notes}\n</main>",
        script = RENDER_NOTES,
        stream = escape(&stream),
        user = escape(user),
        form = todo_form(),
        list = todo_list(todos.data, principal.user_id.as_deref()),
        notes = notes_section(&own_notes),
    );
    Ok(page(
        "tidings · Datastar todos",
        &state.options.datastar_url,
        &body,
    )
    .into_response())
}

fn sign_in(state: &DemoState, cookie_name: &str, sub: &str) -> Result<Response, HttpError> {
    let Some(secret) = &state.options.mint_secret else {
        return Err(HttpError::not_found(
            "signing in with ?sub= is for demo mode only: a JWT key is configured",
        ));
    };
    let token = token::sign(secret, sub, &[], COOKIE_TTL)?;
    let cookie =
        format!("{cookie_name}={token}; Path=/; Max-Age={COOKIE_TTL}; HttpOnly; SameSite=Strict");
    // A cookie name from configuration that is not a valid header value.
    let value =
        HeaderValue::from_str(&cookie).map_err(|_| HttpError::internal("bad cookie name"))?;
    let mut response = Redirect::to("/datastar").into_response();
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}

/// Celebrations sent by this process, so each one shows a new number.
static CELEBRATIONS: AtomicU64 = AtomicU64::new(0);

/// `POST /demo/datastar/celebrate`: shows a banner on every open todo page of this
/// node, through `datastar_broadcast` (not logged: a page that is reconnecting misses
/// it). Answers `{"reached": <streams>}`.
pub(crate) async fn celebrate(
    State(state): State<DemoState>,
    caller: Caller,
) -> Result<Response, HttpError> {
    let principal = caller.signed_in()?;
    let n = CELEBRATIONS.fetch_add(1, Ordering::Relaxed) + 1;
    let user = escape(principal.user_id.as_deref().unwrap_or_default());
    let reached = state.realtime.datastar_broadcast("todos", |sse| {
        sse.patch_elements(&format!(
            "<div id=\"celebration\">🎉 Celebration #{n} by <b>{user}</b></div>"
        ));
    });
    match reached {
        Ok(reached) => Ok(Json(json!({"reached": reached})).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "demo: celebrate failed");
            Err(HttpError::internal("broadcast failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's stream starts at the older of its two reads, and only with a cursor
    /// that needs no escaping in the URL.
    #[test]
    fn the_page_stream_starts_at_the_older_read() {
        let at = |epoch: &str, seq| Cursor {
            epoch: epoch.into(),
            seq,
        };
        assert_eq!(
            page_since(&at("3f9c", 7), &at("3f9c", 5)).as_deref(),
            Some("3f9c:5")
        );
        assert_eq!(
            page_since(&at("3f9c", 4), &at("3f9c", 5)).as_deref(),
            Some("3f9c:4")
        );
        assert_eq!(page_since(&at("3f9c", 4), &at("a1", 5)), None);
        assert_eq!(page_since(&at("a&b", 4), &at("a&b", 5)), None);
    }

    /// The notes' signals are escaped for the attribute they sit in.
    #[test]
    fn the_notes_section_escapes_its_signals() {
        let mut notes = serde_json::Map::new();
        notes.insert(
            "n1".into(),
            json!({"id": "n1", "body": "<b>\"x\"</b>", "owner_id": "ann"}),
        );
        let html = notes_section(&notes);
        assert!(
            html.contains(
                "data-signals=\"{&quot;tidings&quot;:{&quot;notes&quot;:{&quot;n1&quot;:"
            )
        );
        assert!(!html.contains("<b>"), "{html}");
    }
}
