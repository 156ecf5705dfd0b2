//! The demo's todos as Datastar HTML: one `<li>` per todo, the `<ul id="todos">` list,
//! the per-viewer renderer that keeps every open page's list current, and the snapshot
//! a new stream starts with.

use std::sync::Arc;

use serde_json::Value;

use super::{Todo, api::MAX_TEXT, datastar_actions::TODOS_PATH};
use crate::{
    auth::Principal,
    event::{Action, LogEntry},
    model::public_projection,
    sse::{
        ElementPatchMode, EventCollector, PatchOptions, SnapshotRequest, ViewKeyFn, ViewRenderer,
    },
};

/// Todos shown on the page at most.
pub(super) const LIST_LIMIT: u32 = 1000;

/// Escapes text for HTML element content and double-quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Ids go into `id` attributes and `#todo-<id>` selectors unescaped, so only ids that
/// are safe in both are rendered (the demo's ids are hex).
fn safe_id(id: &str) -> Option<&str> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(id)
}

/// The view key of the todos renderer: what marks a todo as the viewer's own.
const OWNER: &str = "owner";

/// One todo as `<li id="todo-<id>">`; `record` is its public projection. `mine` is the
/// owner's view: the "yours" badge and the controls (tick, rename, delete) that call
/// the page's actions (`datastar_actions.rs`). Others see the todo only; the actions
/// refuse them anyway, so hiding the controls is for clarity, not for safety.
fn todo_item(record: &Value, mine: bool) -> Option<String> {
    let id = safe_id(record.get("id")?.as_str()?)?;
    let title = escape(record.get("title").and_then(Value::as_str).unwrap_or(""));
    let done = record.get("done").and_then(Value::as_bool).unwrap_or(false);
    let owner = record.get("owner_id").and_then(Value::as_str).unwrap_or("");
    let class = if done { "done" } else { "open" };
    let shown = format!(
        "<span class=\"title\">{title}</span> <small class=\"owner\">{owner}</small>",
        owner = escape(owner),
    );
    if !mine {
        return Some(format!(
            "<li id=\"todo-{id}\" class=\"{class}\">{shown}</li>"
        ));
    }
    // The expressions hold the id only (checked by `safe_id`); the title goes in an
    // escaped attribute, and the rename reads it back from the input, not from HTML.
    let url = format!("{TODOS_PATH}/{id}");
    Some(format!(
        "<li id=\"todo-{id}\" class=\"{class}\">\
         <input type=\"checkbox\" class=\"tick\" aria-label=\"Done\"{checked} \
         data-on:change=\"@patch('{url}', {{payload: {{done: el.checked}}}})\"> \
         {shown} <b class=\"yours\">yours</b> \
         <form class=\"rename\" \
         data-on:submit=\"@patch('{url}', {{payload: {{title: el.elements.title.value}}}})\">\
         <input name=\"title\" value=\"{title}\" maxlength=\"{MAX_TEXT}\" aria-label=\"New title\"> \
         <button>Rename</button></form> \
         <button class=\"delete\" data-on:click=\"@delete('{url}', {{payload: {{}}}})\">Delete</button>\
         </li>",
        checked = if done { " checked" } else { "" },
    ))
}

/// The page's form to add a todo (its input is the `draft` signal, which a successful
/// add empties) and the line that shows why an action was refused.
pub(super) fn todo_form() -> String {
    format!(
        "{ACTION_FEEDBACK}\n\
         <form id=\"add\" data-on:submit=\"@post('{TODOS_PATH}', {{payload: {{title: $draft}}}})\">\
         <input data-bind:draft maxlength=\"{MAX_TEXT}\" placeholder=\"Something to do\" \
         aria-label=\"New todo\"> <button>Add</button></form>\n\
         <p id=\"action-error\" role=\"alert\" \
         data-on:datastar-fetch=\"actionFeedback(el, evt.detail)\"></p>"
    )
}

/// Datastar reports each fetch of the page as a `datastar-fetch` event on the
/// document; those of the todo actions (elements in `#add` or `#todos`; the stream's
/// own are on `<main>`) clear the line when they start and fill it when refused.
/// Datastar does not read the body of a non-200 answer, so the message comes from the
/// status.
const ACTION_FEEDBACK: &str = "<script>\n\
function actionFeedback(line, detail) {\n\
  if (!(detail.el instanceof Element) || !detail.el.closest('#add, #todos')) return;\n\
  if (detail.type === 'started') line.textContent = '';\n\
  if (detail.type !== 'error') return;\n\
  const why = {\n\
    400: 'A title needs 1 to 10000 characters.',\n\
    401: 'Your session ended: reload the page to sign in again.',\n\
    403: 'Only its owner may change a todo.',\n\
    404: 'That todo is gone.',\n\
  };\n\
  const status = detail.argsRaw?.status;\n\
  line.textContent = why[status] ?? 'That did not work (' + status + ').';\n\
}\n\
</script>";

/// Whether `viewer` owns the todo `record` (a public projection).
fn owned_by(record: &Value, viewer: Option<&str>) -> bool {
    let owner = record.get("owner_id").and_then(Value::as_str);
    owner.is_some() && owner == viewer
}

/// The whole list as `<ul id="todos">`, oldest first, as `viewer` sees it.
pub(super) fn todo_list(mut todos: Vec<Todo>, viewer: Option<&str>) -> String {
    todos.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let mut html = String::from("<ul id=\"todos\">");
    for todo in &todos {
        let record = public_projection(todo);
        if let Some(item) = todo_item(&record, owned_by(&record, viewer)) {
            html.push_str(&item);
        }
    }
    html.push_str("</ul>");
    html
}

/// The view key of the demo's todos renderer: `"owner"` for the todo's owner, `"other"`
/// for everyone else. Two renderings per event at most, whatever the number of streams.
pub fn todos_view_key() -> ViewKeyFn {
    Arc::new(|principal: &Principal, event: &LogEntry| {
        let mine = owned_by(&event.payload, principal.user_id.as_deref());
        Arc::from(if mine { OWNER } else { "other" })
    })
}

/// The demo's renderer for `todos`: a create (or a todo entering the stream's view)
/// appends the item to `#todos`, an update morphs it, a delete (or a todo leaving the
/// view) removes it. The owner's view has the "yours" badge and the controls.
/// Broadcasts keep the default mapping.
pub fn todos_renderer() -> ViewRenderer {
    Arc::new(|event: &LogEntry, view: &str| {
        let mine = view == OWNER;
        let key = safe_id(event.key.as_deref()?)?;
        let mut sse = EventCollector::new();
        match event.action {
            Action::Create | Action::Enter => {
                // The stream's snapshot is read after it subscribed, so it may already
                // hold this todo: remove first, and the append never duplicates it.
                sse.remove_elements(&format!("#todo-{key}")).ok()?;
                let options = PatchOptions {
                    selector: Some("#todos".into()),
                    mode: ElementPatchMode::Append,
                    ..PatchOptions::default()
                };
                sse.patch_elements_with(&todo_item(&event.payload, mine)?, options)
                    .ok()?;
            }
            Action::Update => {
                sse.patch_elements(&todo_item(&event.payload, mine)?);
            }
            Action::Delete | Action::Leave => {
                sse.remove_elements(&format!("#todo-{key}")).ok()?;
            }
            Action::Broadcast => return None,
        }
        Some(sse)
    })
}

/// The demo's snapshot: the current list, for streams that show `todos`.
pub async fn todos_snapshot(request: SnapshotRequest) -> Option<EventCollector> {
    if !request.wants("todos") {
        return None;
    }
    match request.store.list::<Todo>(LIST_LIMIT).await {
        Ok(todos) => {
            let mut sse = EventCollector::new();
            let viewer = request.principal.user_id.as_deref();
            sse.patch_elements(&todo_list(todos, viewer));
            Some(sse)
        }
        Err(e) => {
            // Without a snapshot a failed resume still gets the reset patch.
            tracing::warn!(error = %e, "demo: listing todos for a snapshot failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_escape_titles_and_refuse_odd_ids() {
        let item = todo_item(
            &json!({"id": "a1", "title": "<b>\"x\"</b>", "done": true, "owner_id": "ann"}),
            false,
        );
        assert_eq!(
            item.as_deref(),
            Some(
                "<li id=\"todo-a1\" class=\"done\"><span class=\"title\">&lt;b&gt;&quot;x&quot;&lt;/b&gt;</span> \
                 <small class=\"owner\">ann</small></li>"
            )
        );
        assert_eq!(todo_item(&json!({"id": "a\"1", "title": "x"}), true), None);
        assert_eq!(todo_item(&json!({"id": "#a b", "title": "x"}), true), None);
    }

    /// A todo entering a filtered stream's view is appended like a new one; one
    /// leaving it is removed like a deleted one.
    #[test]
    fn the_renderer_treats_enter_as_create_and_leave_as_delete() {
        let renderer = todos_renderer();
        let record = json!({"id": "a1", "title": "x", "done": false, "owner_id": "ann"});
        let render = |action, payload: &Value| {
            let event = LogEntry::record("todos", "a1", action, payload.clone());
            let collector = renderer(&event, "other").expect("rendered");
            String::from_utf8(collector.render(None).to_vec()).unwrap()
        };
        assert_eq!(
            render(Action::Enter, &record),
            render(Action::Create, &record)
        );
        assert_eq!(
            render(Action::Leave, &Value::Null),
            render(Action::Delete, &record)
        );
        assert!(render(Action::Leave, &Value::Null).contains("#todo-a1"));
    }

    /// Only the owner's view of a todo has the badge, and only the owner gets that view.
    #[test]
    fn only_the_owner_sees_yours() {
        let record = json!({"id": "a1", "title": "x", "done": false, "owner_id": "ann"});
        let event = LogEntry::record("todos", "a1", Action::Update, record);
        let key = todos_view_key();
        assert_eq!(&*key(&Principal::user("ann", &[]), &event), OWNER);
        assert_eq!(&*key(&Principal::user("bob", &[]), &event), "other");
        assert_eq!(&*key(&Principal::anonymous(), &event), "other");
        let render = |view| {
            let collector = todos_renderer()(&event, view).expect("rendered");
            String::from_utf8(collector.render(None).to_vec()).unwrap()
        };
        assert!(render(OWNER).contains("class=\"yours\""));
        assert!(!render("other").contains("yours"));
    }

    /// The owner's item has the controls, each calling its action on this todo; the
    /// title the rename starts from is escaped in its attribute. Others get none.
    #[test]
    fn only_the_owner_gets_the_controls() {
        let record = json!({"id": "a1", "title": "<\"x\">", "done": true, "owner_id": "ann"});
        let mine = todo_item(&record, true).expect("rendered");
        assert!(mine.contains(
            "class=\"tick\" aria-label=\"Done\" checked \
             data-on:change=\"@patch('/demo/datastar/todos/a1', {payload: {done: el.checked}})\""
        ));
        assert!(mine.contains(
            "@patch('/demo/datastar/todos/a1', {payload: {title: el.elements.title.value}})"
        ));
        assert!(mine.contains("value=\"&lt;&quot;x&quot;&gt;\""));
        assert!(mine.contains("@delete('/demo/datastar/todos/a1', {payload: {}})"));
        assert!(!mine.contains("<\"x\">"), "{mine}");
        let theirs = todo_item(&record, false).expect("rendered");
        for control in ["@patch", "@delete", "<input", "<button", "<form"] {
            assert!(!theirs.contains(control), "{theirs}");
        }
    }

    /// The refusal message for 400 states the limit the actions enforce.
    #[test]
    fn the_feedback_states_the_title_limit() {
        assert!(ACTION_FEEDBACK.contains(&format!("1 to {MAX_TEXT} characters")));
        assert!(todo_form().contains(&format!("maxlength=\"{MAX_TEXT}\"")));
    }
}
