//! [`EventCollector`]: Datastar events gathered first, rendered to SSE bytes once.

use bytes::Bytes;
use datastar::{
    DatastarEvent,
    consts::{ElementPatchMode, EventType},
    execute_script::ExecuteScript,
    patch_elements::PatchElements,
    patch_signals::PatchSignals,
};
use serde::Serialize;
use serde_json::Value;

use super::{
    error::{Field, SseError},
    sanitize,
};

/// Options of [`EventCollector::patch_elements_with`]; the default is what
/// [`EventCollector::patch_elements`] uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchOptions {
    /// CSS selector of the target. Without one, Datastar finds each target by the id of
    /// the top-level element being patched, which works in `outer` and `replace` mode.
    pub selector: Option<String>,
    /// How the elements go into the DOM; Datastar's default is `outer` (morph).
    pub mode: ElementPatchMode,
    /// Whether to run the patch inside a view transition, where the browser has them.
    pub use_view_transition: bool,
}

/// An ordered list of Datastar events that renders to SSE wire text.
///
/// A renderer or a broadcast fills one collector per log event; the hub renders it once
/// with the event's cursor and hands the same [`Bytes`] to every stream, so the cost of
/// formatting does not grow with the number of subscribers.
///
/// Every input that could break the SSE framing is checked when it is added, and the
/// renderer re-splits data lines as a last guard, so no string given to a collector can
/// start a new SSE field or event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCollector {
    events: Vec<DatastarEvent>,
}

impl EventCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Morphs `html` into the DOM, each top-level element replacing the element with the
    /// same id (`datastar-patch-elements`, mode `outer`, no selector).
    ///
    /// Multi-line HTML is fine: CRLF, CR and LF all become separate `elements` lines.
    pub fn patch_elements(&mut self, html: &str) -> &mut Self {
        self.push(PatchElements::new(sanitize::normalize_newlines(html)));
        self
    }

    /// Patches `html` into the DOM with a selector, a mode or a view transition.
    ///
    /// Fails when the selector is empty or spans lines, or when the mode needs a
    /// selector (every mode but `outer` and `replace`) and there is none.
    pub fn patch_elements_with(
        &mut self,
        html: &str,
        options: PatchOptions,
    ) -> Result<&mut Self, SseError> {
        let PatchOptions {
            selector,
            mode,
            use_view_transition,
        } = options;
        match &selector {
            Some(selector) => check_selector(selector)?,
            None if !matches!(mode, ElementPatchMode::Outer | ElementPatchMode::Replace) => {
                return Err(SseError::SelectorRequired { mode });
            }
            None => {}
        }
        let mut patch = PatchElements::new(sanitize::normalize_newlines(html))
            .mode(mode)
            .use_view_transition(use_view_transition);
        patch.selector = selector;
        self.push(patch);
        Ok(self)
    }

    /// Removes every element that matches `selector` (`datastar-patch-elements`, mode
    /// `remove`).
    pub fn remove_elements(&mut self, selector: &str) -> Result<&mut Self, SseError> {
        check_selector(selector)?;
        self.push(PatchElements::new_remove(selector));
        Ok(self)
    }

    /// Merges `signals` into the page's signals (`datastar-patch-signals`).
    ///
    /// The value is a JSON merge patch (RFC 7396): nested objects merge key by key, and
    /// `null` removes a signal. Anything but an object is refused.
    pub fn patch_signals(&mut self, signals: &Value) -> Result<&mut Self, SseError> {
        if !signals.is_object() {
            return Err(SseError::SignalsNotObject {
                value: signals.clone(),
            });
        }
        Ok(self.patch_signals_object(signals))
    }

    /// Adds a `datastar-patch-signals` event for a value the caller knows serializes to
    /// a JSON object.
    pub(crate) fn patch_signals_object<T: Serialize + ?Sized>(&mut self, signals: &T) -> &mut Self {
        // Compact JSON has no raw line breaks (they are escaped inside strings), so the
        // patch is always one `signals` line. Serializing plain maps, structs and
        // `Value`s cannot fail; should it ever, dropping the patch beats a panic.
        match serde_json::to_string(signals) {
            Ok(json) => self.push(PatchSignals::new(json)),
            Err(err) => tracing::error!(%err, "could not serialize Datastar signals"),
        }
        self
    }

    /// Runs `js` in the browser.
    ///
    /// This is the Datastar 1.0 form: a `datastar-patch-elements` that appends
    /// `<script data-effect="el.remove()">` to `body`, so the script removes itself
    /// once it has run. (The `datastar-execute-script` event of the release candidates
    /// is gone from 1.0.) The script is trusted app code: it is not escaped, so a
    /// `</script>` inside it ends the element early.
    pub fn execute_script(&mut self, js: &str) -> &mut Self {
        self.push(ExecuteScript::new(sanitize::normalize_newlines(js)));
        self
    }

    /// The collected events, in order.
    pub fn events(&self) -> &[DatastarEvent] {
        &self.events
    }

    /// How many SSE events the collector renders to.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing was collected; such a collector renders to no bytes.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Renders every event once, each with `id: <id>` when an id is given.
    ///
    /// CR and LF are stripped from the id, so a malformed id still cannot split its
    /// line; use [`EventCollector::try_render`] to refuse it instead.
    pub fn render(&self, id: Option<&str>) -> Bytes {
        let id = id.map(sanitize::strip_line_breaks);
        self.write(id.as_deref())
    }

    /// Like [`EventCollector::render`], but refuses an id that contains CR or LF.
    pub fn try_render(&self, id: Option<&str>) -> Result<Bytes, SseError> {
        if let Some(id) = id {
            sanitize::check_single_line(Field::EventId, id)?;
        }
        Ok(self.write(id))
    }

    fn push(&mut self, event: impl Into<DatastarEvent>) {
        self.events.push(event.into());
    }

    // The framing is written here rather than with `DatastarEvent`'s `Display`: that
    // would need a clone of every event to set the id, and it writes ids and data lines
    // unchecked. The crate still decides what the data lines of each event are.
    fn write(&self, id: Option<&str>) -> Bytes {
        let id_len = id.map_or(0, |id| id.len() + 5);
        let size: usize = self
            .events
            .iter()
            .map(|e| {
                let data: usize = e.data.iter().map(|line| line.len() + 7).sum();
                32 + id_len + data
            })
            .sum();
        let mut out = String::with_capacity(size);
        for event in &self.events {
            out.push_str("event: ");
            out.push_str(event_name(event.event));
            out.push('\n');
            if let Some(id) = id {
                out.push_str("id: ");
                out.push_str(id);
                out.push('\n');
            }
            for line in &event.data {
                // Lines from this collector never contain a break; the split only
                // matters if that ever stops being true.
                for line in sanitize::lines(line) {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out.push('\n');
        }
        Bytes::from(out)
    }
}

// `EventType::as_str` is private to the datastar crate; the names are Datastar 1.0's.
fn event_name(event: EventType) -> &'static str {
    match event {
        EventType::PatchElements => "datastar-patch-elements",
        EventType::PatchSignals => "datastar-patch-signals",
    }
}

fn check_selector(selector: &str) -> Result<(), SseError> {
    sanitize::check_single_line(Field::Selector, selector)?;
    if selector.trim().is_empty() {
        return Err(SseError::EmptySelector {
            value: selector.to_owned(),
        });
    }
    Ok(())
}
