//! Golden tests of the Datastar encoding layer against the Datastar 1.0 SSE format.
//!
//! Most tests compare exact bytes. The injection tests also run the output through an
//! SSE parser written here from the spec (independent of `tidings::sse::sanitize`) to
//! show that no input adds a field or an event.

use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use serde_json::{Map, Value, json};
use tidings::{
    __private::{
        DirectEvent, Recipients, direct_mapping, encode_cursor, encode_event, keep_alive,
        reset_signals,
    },
    Action, LogEntry,
    sse::{
        ElementPatchMode, EventCollector, Field, PatchOptions, Renderer, SseError, default_mapping,
    },
};

fn text(bytes: Bytes) -> String {
    String::from_utf8(bytes.to_vec()).expect("SSE output is UTF-8")
}

fn event(action: Action, key: Option<&str>, name: Option<&str>, payload: Value) -> LogEntry {
    LogEntry {
        collection: "todos".to_owned(),
        key: key.map(str::to_owned),
        action,
        event: name.map(str::to_owned),
        payload,
        changes: None,
        acl: Map::new(),
        previous: None,
        mutation: None,
        source: Default::default(),
        except: None,
        ts: DateTime::UNIX_EPOCH,
    }
}

/// One dispatched SSE event as a spec-conforming parser sees it.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    event: String,
    id: Option<String>,
    data: Vec<String>,
    /// Field names other than event, id, data and retry.
    unknown: Vec<String>,
}

/// Parses SSE text per the HTML spec: CR, LF and CRLF end lines, a blank line
/// dispatches, `:` starts a comment, one space after the colon is dropped.
fn parse_sse(wire: &str) -> Vec<Parsed> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = wire.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    assert!(current.is_empty(), "stream ends inside a line: {current:?}");

    let mut events = Vec::new();
    let mut block = Parsed::default();
    let mut touched = false;
    for line in lines {
        if line.is_empty() {
            if touched {
                events.push(std::mem::take(&mut block));
                touched = false;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        touched = true;
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match name {
            "event" => block.event = value.to_owned(),
            "id" => block.id = Some(value.to_owned()),
            "data" => block.data.push(value.to_owned()),
            "retry" => {}
            other => block.unknown.push(other.to_owned()),
        }
    }
    assert!(!touched, "stream ends inside an event");
    events
}

/// Asserts the wire text holds exactly `count` well-formed Datastar events without ids,
/// every data line under a key Datastar knows, then (when `id` is given) one event
/// holding only that id.
fn assert_framing(wire: &str, count: usize, id: Option<&str>) {
    let mut events = parse_sse(wire);
    if let Some(id) = id {
        let closing = events.pop().expect("an id-only event");
        assert_eq!(
            closing,
            Parsed {
                id: Some(id.to_owned()),
                ..Parsed::default()
            },
            "{wire:?}"
        );
    }
    assert_eq!(events.len(), count, "{wire:?}");
    for parsed in events {
        assert!(
            matches!(
                parsed.event.as_str(),
                "datastar-patch-elements" | "datastar-patch-signals"
            ),
            "{parsed:?}"
        );
        assert_eq!(
            parsed.id, None,
            "only the closing event has an id: {parsed:?}"
        );
        assert!(parsed.unknown.is_empty(), "{parsed:?}");
        for line in &parsed.data {
            let key = line.split(' ').next().unwrap_or_default();
            assert!(
                [
                    "selector",
                    "mode",
                    "useViewTransition",
                    "elements",
                    "signals"
                ]
                .contains(&key),
                "unexpected data line {line:?} in {wire:?}"
            );
        }
    }
}

// ---- patch-elements ----

#[test]
fn patch_elements_default_mode() {
    let mut sse = EventCollector::new();
    sse.patch_elements(r#"<li id="todo-42">milk</li>"#);
    assert_eq!(
        text(sse.render(None)),
        concat!(
            "event: datastar-patch-elements\n",
            "data: elements <li id=\"todo-42\">milk</li>\n",
            "\n",
        )
    );
}

#[test]
fn patch_elements_with_selector_and_mode() {
    let mut sse = EventCollector::new();
    sse.patch_elements_with(
        "<li>milk</li>",
        PatchOptions {
            selector: Some("#todos > ul".to_owned()),
            mode: ElementPatchMode::Append,
            use_view_transition: false,
        },
    )
    .unwrap();
    assert_eq!(
        text(sse.render(Some("e1:7"))),
        concat!(
            "event: datastar-patch-elements\n",
            "data: selector #todos > ul\n",
            "data: mode append\n",
            "data: elements <li>milk</li>\n",
            "\n",
            "id: e1:7\n",
            "\n",
        )
    );
}

#[test]
fn patch_elements_with_view_transition_and_default_options() {
    let mut sse = EventCollector::new();
    sse.patch_elements_with(
        "<p id=\"a\">x</p>",
        PatchOptions {
            use_view_transition: true,
            ..PatchOptions::default()
        },
    )
    .unwrap()
    .patch_elements_with("<p id=\"b\">y</p>", PatchOptions::default())
    .unwrap();
    assert_eq!(
        text(sse.render(None)),
        concat!(
            "event: datastar-patch-elements\n",
            "data: useViewTransition true\n",
            "data: elements <p id=\"a\">x</p>\n",
            "\n",
            "event: datastar-patch-elements\n",
            "data: elements <p id=\"b\">y</p>\n",
            "\n",
        )
    );
}

#[test]
fn patch_elements_replace_mode_needs_no_selector() {
    let mut sse = EventCollector::new();
    let options = PatchOptions {
        mode: ElementPatchMode::Replace,
        ..PatchOptions::default()
    };
    sse.patch_elements_with("<p id=\"a\"></p>", options)
        .unwrap();
    assert_eq!(
        text(sse.render(None)),
        "event: datastar-patch-elements\ndata: mode replace\ndata: elements <p id=\"a\"></p>\n\n"
    );
}

#[test]
fn patch_elements_modes_that_need_a_selector_are_refused_without_one() {
    for mode in [
        ElementPatchMode::Inner,
        ElementPatchMode::Remove,
        ElementPatchMode::Prepend,
        ElementPatchMode::Append,
        ElementPatchMode::Before,
        ElementPatchMode::After,
    ] {
        let mut sse = EventCollector::new();
        let options = PatchOptions {
            mode,
            ..PatchOptions::default()
        };
        let err = sse.patch_elements_with("<p></p>", options).unwrap_err();
        assert_eq!(err, SseError::SelectorRequired { mode });
        assert!(sse.is_empty());
    }
    let err = SseError::SelectorRequired {
        mode: ElementPatchMode::Inner,
    };
    assert_eq!(err.to_string(), "patch mode Inner needs a selector");
}

#[test]
fn patch_elements_empty_html_writes_no_elements_line() {
    // An inner patch with nothing clears its target; Datastar accepts a missing
    // `elements` line for that.
    let mut sse = EventCollector::new();
    let options = PatchOptions {
        selector: Some("#list".to_owned()),
        mode: ElementPatchMode::Inner,
        use_view_transition: false,
    };
    sse.patch_elements_with("", options).unwrap();
    assert_eq!(
        text(sse.render(None)),
        "event: datastar-patch-elements\ndata: selector #list\ndata: mode inner\n\n"
    );
}

#[test]
fn remove_elements() {
    let mut sse = EventCollector::new();
    sse.remove_elements("#todo-42").unwrap();
    assert_eq!(
        text(sse.render(Some("e1:9"))),
        concat!(
            "event: datastar-patch-elements\n",
            "data: selector #todo-42\n",
            "data: mode remove\n",
            "\n",
            "id: e1:9\n",
            "\n",
        )
    );
}

#[test]
fn empty_selectors_are_refused() {
    let mut sse = EventCollector::new();
    for selector in ["", "  \t"] {
        assert_eq!(
            sse.remove_elements(selector).unwrap_err(),
            SseError::EmptySelector {
                value: selector.to_owned()
            }
        );
        let options = PatchOptions {
            selector: Some(selector.to_owned()),
            ..PatchOptions::default()
        };
        assert!(matches!(
            sse.patch_elements_with("<p></p>", options),
            Err(SseError::EmptySelector { .. })
        ));
    }
    assert!(sse.is_empty());
}

// ---- patch-signals ----

#[test]
fn patch_signals() {
    let mut sse = EventCollector::new();
    sse.patch_signals(&json!({"count": 1, "user": {"name": "ann"}}))
        .unwrap();
    assert_eq!(
        text(sse.render(Some("e1:3"))),
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"count\":1,\"user\":{\"name\":\"ann\"}}\n",
            "\n",
            "id: e1:3\n",
            "\n",
        )
    );
}

#[test]
fn patch_signals_refuses_anything_but_an_object() {
    let mut sse = EventCollector::new();
    for (value, kind) in [
        (json!([1, 2]), "an array"),
        (json!(null), "null"),
        (json!("x"), "a string"),
        (json!(3), "a number"),
        (json!(true), "a boolean"),
    ] {
        let err = sse.patch_signals(&value).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("signals must be a JSON object, not {kind}")
        );
        assert_eq!(err, SseError::SignalsNotObject { value });
    }
    assert!(sse.is_empty());
}

#[test]
fn patch_signals_keeps_line_breaks_in_strings_escaped() {
    let mut sse = EventCollector::new();
    sse.patch_signals(&json!({"note": "a\nevent: evil\r\n\r\nb"}))
        .unwrap();
    let wire = text(sse.render(Some("e1:1")));
    assert_eq!(
        wire,
        "event: datastar-patch-signals\ndata: signals {\"note\":\"a\\nevent: evil\\r\\n\\r\\nb\"}\n\nid: e1:1\n\n"
    );
    assert_framing(&wire, 1, Some("e1:1"));
}

// ---- execute-script ----

#[test]
fn execute_script_is_the_datastar_1_0_form() {
    let mut sse = EventCollector::new();
    sse.execute_script("console.log('hi')");
    assert_eq!(
        text(sse.render(Some("e1:4"))),
        concat!(
            "event: datastar-patch-elements\n",
            "data: selector body\n",
            "data: mode append\n",
            "data: elements <script data-effect=\"el.remove()\">console.log('hi')</script>\n",
            "\n",
            "id: e1:4\n",
            "\n",
        )
    );
}

#[test]
fn execute_script_multi_line_with_every_newline_style() {
    let mut sse = EventCollector::new();
    sse.execute_script("const a = 1;\r\nconst b = 2;\rconsole.log(a + b);\n");
    assert_eq!(
        text(sse.render(None)),
        concat!(
            "event: datastar-patch-elements\n",
            "data: selector body\n",
            "data: mode append\n",
            "data: elements <script data-effect=\"el.remove()\">const a = 1;\n",
            "data: elements const b = 2;\n",
            "data: elements console.log(a + b);</script>\n",
            "\n",
        )
    );
}

// ---- multi-line content ----

#[test]
fn multi_line_html_is_split_into_elements_lines() {
    let expected = concat!(
        "event: datastar-patch-elements\n",
        "data: elements <ul id=\"todos\">\n",
        "data: elements   <li>milk</li>\n",
        "data: elements \n",
        "data: elements </ul>\n",
        "\n",
    );
    for html in [
        "<ul id=\"todos\">\n  <li>milk</li>\n\n</ul>",
        "<ul id=\"todos\">\r\n  <li>milk</li>\r\n\r\n</ul>\r\n",
        "<ul id=\"todos\">\r  <li>milk</li>\r\r</ul>",
    ] {
        let mut sse = EventCollector::new();
        sse.patch_elements(html);
        assert_eq!(text(sse.render(None)), expected, "{html:?}");
    }
}

// ---- ids and rendering ----

#[test]
fn id_closes_the_group_and_render_is_repeatable() {
    let mut sse = EventCollector::new();
    sse.patch_elements("<p id=\"a\">1</p>")
        .patch_signals(&json!({"n": 1}))
        .unwrap()
        .execute_script("go()");
    assert_eq!(sse.len(), 3);
    let first = sse.render(Some("e1:10"));
    assert_eq!(first, sse.render(Some("e1:10")));
    assert_eq!(
        text(first),
        concat!(
            "event: datastar-patch-elements\n",
            "data: elements <p id=\"a\">1</p>\n",
            "\n",
            "event: datastar-patch-signals\n",
            "data: signals {\"n\":1}\n",
            "\n",
            "event: datastar-patch-elements\n",
            "data: selector body\n",
            "data: mode append\n",
            "data: elements <script data-effect=\"el.remove()\">go()</script>\n",
            "\n",
            "id: e1:10\n",
            "\n",
        )
    );
}

/// The `Last-Event-ID` a client would hold after reading `wire` up to `cut` bytes, the
/// way Datastar 1.0.2's parser takes it: as soon as a complete `id:` line is read.
fn id_seen_when_cut(wire: &str, cut: usize) -> Option<String> {
    wire.as_bytes()[..cut]
        .split(|b| *b == b'\n')
        .rev()
        .skip(1) // the part after the last LF is not a complete line yet
        .find_map(|line| line.strip_prefix(b"id: "))
        .map(|id| String::from_utf8(id.to_vec()).expect("UTF-8"))
}

#[test]
fn a_stream_cut_anywhere_in_a_group_never_skips_part_of_it() {
    let mut sse = EventCollector::new();
    sse.patch_elements("<li id=\"todo-1\">a</li>")
        .remove_elements("#todo-2")
        .unwrap()
        .patch_signals(&json!({"n": 1}))
        .unwrap();
    let wire = text(sse.render(Some("e1:40")));
    for cut in 0..=wire.len() {
        let read = &wire[..wire[..cut].rfind("\n\n").map_or(0, |at| at + 2)];
        let complete = parse_sse(read)
            .iter()
            .filter(|e| !e.event.is_empty())
            .count();
        // Resuming after the group is only right once all of it was dispatched;
        // resuming before it replays it whole, so nothing is lost either way.
        if let Some(id) = id_seen_when_cut(&wire, cut) {
            assert_eq!(id, "e1:40");
            assert_eq!(complete, 3, "id seen after {cut} bytes, group incomplete");
        }
    }
}

#[test]
fn empty_collector_renders_nothing() {
    let sse = EventCollector::new();
    assert!(sse.is_empty());
    assert_eq!(sse.render(Some("e1:1")), Bytes::new());
    assert_eq!(sse.try_render(None), Ok(Bytes::new()));
}

// ---- injection attempts ----

#[test]
fn injection_selector_with_line_breaks_is_refused() {
    let mut sse = EventCollector::new();
    for selector in [
        "#a\nevent: datastar-patch-elements",
        "#a\r\n\r\ndata: elements <img src=x onerror=alert(1)>",
        "#a\rid: 999:999",
    ] {
        assert_eq!(
            sse.remove_elements(selector).unwrap_err(),
            SseError::LineBreak {
                field: Field::Selector,
                value: selector.to_owned()
            }
        );
        let options = PatchOptions {
            selector: Some(selector.to_owned()),
            mode: ElementPatchMode::Inner,
            use_view_transition: false,
        };
        assert!(matches!(
            sse.patch_elements_with("<p></p>", options),
            Err(SseError::LineBreak {
                field: Field::Selector,
                ..
            })
        ));
    }
    assert!(sse.is_empty(), "a refused patch adds nothing");
}

#[test]
fn injection_id_line_breaks_are_stripped_by_render() {
    let mut sse = EventCollector::new();
    sse.patch_signals(&json!({"n": 1})).unwrap();
    let wire = text(sse.render(Some("e1:5\n\nevent: evil\r\ndata: x\r")));
    assert_eq!(
        wire,
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"n\":1}\n",
            "\n",
            "id: e1:5event: evildata: x\n",
            "\n",
        )
    );
    assert_framing(&wire, 1, Some("e1:5event: evildata: x"));
}

#[test]
fn injection_id_line_breaks_are_refused_by_try_render() {
    let mut sse = EventCollector::new();
    sse.patch_signals(&json!({"n": 1})).unwrap();
    for id in ["e1:5\n", "e1:5\revent: x", "\r\n"] {
        assert_eq!(
            sse.try_render(Some(id)),
            Err(SseError::LineBreak {
                field: Field::EventId,
                value: id.to_owned()
            })
        );
    }
    assert_eq!(sse.try_render(Some("e1:5")), Ok(sse.render(Some("e1:5"))));
}

#[test]
fn injection_html_cannot_end_the_event_or_add_fields() {
    let mut sse = EventCollector::new();
    sse.patch_elements(
        "<p>a</p>\n\nevent: datastar-patch-signals\ndata: signals {\"admin\":true}\n",
    );
    let wire = text(sse.render(Some("e1:2")));
    assert_eq!(
        wire,
        concat!(
            "event: datastar-patch-elements\n",
            "data: elements <p>a</p>\n",
            "data: elements \n",
            "data: elements event: datastar-patch-signals\n",
            "data: elements data: signals {\"admin\":true}\n",
            "\n",
            "id: e1:2\n",
            "\n",
        )
    );
    assert_framing(&wire, 1, Some("e1:2"));
}

#[test]
fn injection_lone_cr_in_html_stays_inside_data_lines() {
    // `str::lines`, which the datastar crate uses, does not split at a lone CR, but
    // every SSE parser does: unnormalized, this would set the id and end the event.
    let mut sse = EventCollector::new();
    sse.patch_elements("<p>\rid: 999:999\r\revent: datastar-patch-signals</p>");
    let wire = text(sse.render(Some("e1:2")));
    assert_eq!(
        wire,
        concat!(
            "event: datastar-patch-elements\n",
            "data: elements <p>\n",
            "data: elements id: 999:999\n",
            "data: elements \n",
            "data: elements event: datastar-patch-signals</p>\n",
            "\n",
            "id: e1:2\n",
            "\n",
        )
    );
    assert_framing(&wire, 1, Some("e1:2"));
}

#[test]
fn injection_script_with_line_breaks_stays_inside_data_lines() {
    let mut sse = EventCollector::new();
    sse.execute_script("a()\r\rid: 1:1\nevent: x");
    let wire = text(sse.render(Some("e1:3")));
    assert_eq!(
        wire,
        concat!(
            "event: datastar-patch-elements\n",
            "data: selector body\n",
            "data: mode append\n",
            "data: elements <script data-effect=\"el.remove()\">a()\n",
            "data: elements \n",
            "data: elements id: 1:1\n",
            "data: elements event: x</script>\n",
            "\n",
            "id: e1:3\n",
            "\n",
        )
    );
    assert_framing(&wire, 1, Some("e1:3"));
}

#[test]
fn injection_corpus_never_changes_the_framing() {
    let nasty = [
        "",
        "\n",
        "\r",
        "\r\n",
        "\n\n",
        "\r\r",
        "x\n\nevent: datastar-patch-signals\ndata: signals {}\n\n",
        "x\rretry: 1\rid: 0:0\r\r",
        "x\r\n\r\nid: 0:0",
        ": comment\ndata: x",
        "\u{2028}\u{2029}\u{85}",
    ];
    for a in nasty {
        for b in nasty {
            let mut sse = EventCollector::new();
            sse.patch_elements(a)
                .execute_script(b)
                .patch_signals(&json!({ "a": a, "b": b }))
                .unwrap();
            let selector = format!("#s{a}");
            let _ = sse.remove_elements(&selector);
            let expected = if selector.contains(['\r', '\n']) {
                3
            } else {
                4
            };
            assert_eq!(sse.len(), expected);
            let cursor = format!("e1:{b}7");
            let clean: String = cursor
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n'))
                .collect();
            assert_framing(&text(sse.render(Some(&cursor))), expected, Some(&clean));
        }
    }
}

// ---- default mapping ----

#[test]
fn mapping_create_patches_the_record_signal() {
    let create = event(
        Action::Create,
        Some("42"),
        None,
        json!({"id": 42, "title": "milk"}),
    );
    assert_eq!(
        text(encode_event(&create, "e1:7", None)),
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"tidings\":{\"todos\":{\"42\":{\"id\":42,\"title\":\"milk\"}}}}\n",
            "\n",
            "id: e1:7\n",
            "\n",
        )
    );
}

#[test]
fn mapping_update_patches_the_record_signal() {
    let mut update = event(
        Action::Update,
        Some("42"),
        None,
        json!({"done": true, "id": 42}),
    );
    update.changes = Some(vec!["done".to_owned()]);
    assert_eq!(
        text(encode_event(&update, "e1:8", None)),
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"todos\":{\"42\":{\"done\":true,\"id\":42}}}}\n\nid: e1:8\n\n"
    );
}

#[test]
fn mapping_delete_sets_the_record_signal_to_null() {
    let delete = event(Action::Delete, Some("42"), None, json!({"id": 42}));
    assert_eq!(
        text(encode_event(&delete, "e1:9", None)),
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"todos\":{\"42\":null}}}\n\nid: e1:9\n\n"
    );
}

#[test]
fn mapping_enter_is_a_create_and_leave_a_delete() {
    let enter = event(
        Action::Enter,
        Some("42"),
        None,
        json!({"id": 42, "done": false}),
    );
    // The record's keys in the order the event has them.
    assert_eq!(
        text(encode_event(&enter, "e1:9", None)),
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"todos\":{\"42\":{\"id\":42,\"done\":false}}}}\n\nid: e1:9\n\n"
    );
    let leave = event(Action::Leave, Some("42"), None, Value::Null);
    assert_eq!(
        text(encode_event(&leave, "e1:9", None)),
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"todos\":{\"42\":null}}}\n\nid: e1:9\n\n"
    );
}

#[test]
fn mapping_collection_broadcast_patches_tidings_event() {
    let broadcast = event(Action::Broadcast, None, Some("celebrate"), json!({"n": 1}));
    assert_eq!(
        text(encode_event(&broadcast, "e1:10", None)),
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"tidingsEvent\":{\"collection\":\"todos\",\"event\":\"celebrate\",",
            "\"data\":{\"n\":1},\"key\":null,\"cursor\":\"e1:10\"}}\n",
            "\n",
            "id: e1:10\n",
            "\n",
        )
    );
}

#[test]
fn mapping_topic_broadcast_carries_the_key() {
    let broadcast = event(Action::Broadcast, Some("42"), Some("ping"), json!(null));
    assert_eq!(
        text(encode_event(&broadcast, "e1:11", None)),
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"tidingsEvent\":{\"collection\":\"todos\",\"event\":\"ping\",",
            "\"data\":null,\"key\":\"42\",\"cursor\":\"e1:11\"}}\n",
            "\n",
            "id: e1:11\n",
            "\n",
        )
    );
}

#[test]
fn mapping_broadcast_name_and_data_with_line_breaks_stay_escaped() {
    let broadcast = event(
        Action::Broadcast,
        None,
        Some("boom\n\nevent: datastar-patch-elements"),
        json!({"html": "<p>\r\n</p>"}),
    );
    let wire = text(encode_event(&broadcast, "e1:12", None));
    assert_eq!(
        wire,
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"tidingsEvent\":{\"collection\":\"todos\",",
            "\"event\":\"boom\\n\\nevent: datastar-patch-elements\",",
            "\"data\":{\"html\":\"<p>\\r\\n</p>\"},\"key\":null,\"cursor\":\"e1:12\"}}\n",
            "\n",
            "id: e1:12\n",
            "\n",
        )
    );
    assert_framing(&wire, 1, Some("e1:12"));
}

#[test]
fn mapping_cursor_line_breaks_are_stripped() {
    let delete = event(Action::Delete, Some("1"), None, json!({"id": 1}));
    let wire = text(encode_event(&delete, "e1:1\n\nevent: x", None));
    assert_eq!(
        wire,
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"todos\":{\"1\":null}}}\n\nid: e1:1event: x\n\n"
    );
    assert_eq!(
        encode_cursor("e1:1\r\nevent: x"),
        Bytes::from("id: e1:1event: x\n\n")
    );
}

#[test]
fn mapping_record_event_without_key_sends_only_the_cursor() {
    let keyless = event(Action::Update, None, None, json!({"id": 1}));
    assert!(default_mapping(&keyless, "e1:2").is_empty());
    assert_eq!(text(encode_event(&keyless, "e1:2", None)), "id: e1:2\n\n");
}

#[test]
fn mapping_direct_broadcast_has_no_collection_and_no_cursor() {
    let direct = DirectEvent {
        target: Recipients::Users(vec!["ann".to_owned()]),
        event: "ping\nid: 1:1".to_owned(),
        data: json!({"n": 1}),
        except: None,
        ts: DateTime::UNIX_EPOCH,
    };
    let wire = text(direct_mapping(&direct).render(None));
    assert_eq!(
        wire,
        concat!(
            "event: datastar-patch-signals\n",
            "data: signals {\"tidingsEvent\":{\"collection\":null,\"event\":\"ping\\nid: 1:1\",",
            "\"data\":{\"n\":1},\"key\":null,\"cursor\":null}}\n",
            "\n",
        )
    );
    assert_framing(&wire, 1, None);
}

#[test]
fn reset_signals_nulls_each_collection_once() {
    let reset = reset_signals(["todos", "notes", "todos"]);
    assert_eq!(
        text(reset.render(Some("e2:0"))),
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"notes\":null,\"todos\":null}}\n\nid: e2:0\n\n"
    );
    assert!(reset_signals(Vec::<String>::new()).is_empty());
}

#[test]
fn reset_signals_escape_odd_collection_names() {
    let wire = text(reset_signals(["a\"\nb"]).render(Some("e2:0")));
    assert_eq!(
        wire,
        "event: datastar-patch-signals\ndata: signals {\"tidings\":{\"a\\\"\\nb\":null}}\n\nid: e2:0\n\n"
    );
    assert_framing(&wire, 1, Some("e2:0"));
}

#[test]
fn keep_alive_is_a_comment() {
    assert_eq!(keep_alive(), Bytes::from_static(b": keep-alive\n\n"));
    assert!(parse_sse(&text(keep_alive())).is_empty());
}

// ---- renderers ----

fn renderer(f: impl Fn(&LogEntry) -> Option<EventCollector> + Send + Sync + 'static) -> Renderer {
    Arc::new(f)
}

#[test]
fn renderer_output_is_closed_by_the_cursor() {
    let render = renderer(|event| {
        let key = event.key.as_deref()?;
        let mut sse = EventCollector::new();
        match event.action {
            Action::Delete => {
                sse.remove_elements(&format!("#todo-{key}")).ok()?;
            }
            _ => {
                let title = event.payload.get("title")?.as_str()?;
                sse.patch_elements(&format!("<li id=\"todo-{key}\">{title}</li>"));
            }
        }
        sse.patch_signals(&json!({"count": 1})).ok()?;
        Some(sse)
    });
    let create = event(Action::Create, Some("7"), None, json!({"title": "tea"}));
    assert_eq!(
        text(encode_event(&create, "e1:20", Some(&render))),
        concat!(
            "event: datastar-patch-elements\n",
            "data: elements <li id=\"todo-7\">tea</li>\n",
            "\n",
            "event: datastar-patch-signals\n",
            "data: signals {\"count\":1}\n",
            "\n",
            "id: e1:20\n",
            "\n",
        )
    );
    let delete = event(Action::Delete, Some("7"), None, json!({"id": 7}));
    assert_eq!(
        text(encode_event(&delete, "e1:21", Some(&render))),
        concat!(
            "event: datastar-patch-elements\n",
            "data: selector #todo-7\n",
            "data: mode remove\n",
            "\n",
            "event: datastar-patch-signals\n",
            "data: signals {\"count\":1}\n",
            "\n",
            "id: e1:21\n",
            "\n",
        )
    );
}

#[test]
fn renderer_returning_none_falls_back_to_the_default_mapping() {
    let render = renderer(|_| None);
    let delete = event(Action::Delete, Some("42"), None, json!({"id": 42}));
    assert_eq!(
        encode_event(&delete, "e1:9", Some(&render)),
        encode_event(&delete, "e1:9", None)
    );
}

#[test]
fn renderer_returning_an_empty_collector_sends_only_the_cursor() {
    let render = renderer(|_| Some(EventCollector::new()));
    let create = event(Action::Create, Some("1"), None, json!({"id": 1}));
    assert_eq!(
        text(encode_event(&create, "e1:30", Some(&render))),
        "id: e1:30\n\n"
    );
}

#[test]
fn renderer_that_panics_falls_back_to_the_default_mapping() {
    let render = renderer(|_| panic!("renderer bug"));
    let delete = event(Action::Delete, Some("42"), None, json!({"id": 42}));
    assert_eq!(
        encode_event(&delete, "e1:9", Some(&render)),
        encode_event(&delete, "e1:9", None)
    );
}
