//! Keeping every piece of text inside the SSE line it was written for.
//!
//! SSE is line-based: CR, LF and CRLF each end a line (the spec says so and Datastar's
//! own parser accepts all three), a line's text up to the first `:` names its field, and
//! a blank line dispatches the event. Text that reaches the wire with a line break in it
//! can therefore start a new field (`id: ...`) or a whole new event.
//!
//! The `datastar` crate splits multi-line content with `str::lines`, which knows LF and
//! CRLF but leaves a lone CR in place, and it writes ids and selectors as they are. So
//! this module:
//!
//! - refuses line breaks in single-line values (ids, selectors) with
//!   [`SseError::LineBreak`], or strips them where the caller has no way to report an
//!   error ([`strip_line_breaks`]);
//! - turns CRLF and lone CR into LF in multi-line content before the crate splits it
//!   ([`normalize_newlines`]), so every line gets its own `data: elements ` prefix;
//! - offers [`lines`], the SSE notion of a line, which the renderer applies once more
//!   to every data line as a last guard.
//!
//! Event names need no guard: they come from `datastar::consts::EventType`, a closed enum.

use std::borrow::Cow;

use super::error::{Field, SseError};

/// Whether `text` contains a character that ends an SSE line.
pub(super) fn has_line_break(text: &str) -> bool {
    text.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Refuses a single-line value that contains CR or LF.
pub(super) fn check_single_line(field: Field, value: &str) -> Result<(), SseError> {
    if has_line_break(value) {
        return Err(SseError::LineBreak {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Removes every CR and LF from a single-line value; borrows when there is none.
pub(super) fn strip_line_breaks(value: &str) -> Cow<'_, str> {
    if has_line_break(value) {
        Cow::Owned(value.replace(['\r', '\n'], ""))
    } else {
        Cow::Borrowed(value)
    }
}

/// Rewrites CRLF and lone CR as LF; borrows when the text has no CR.
pub(super) fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(lines(text).collect::<Vec<_>>().join("\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Splits `text` where an SSE parser would: at CRLF, at a lone CR and at a lone LF.
///
/// Unlike `str::lines`, a trailing terminator yields a final empty line, because that is
/// what a parser would see if the text were written out with a line break after it.
pub(super) fn lines(text: &str) -> Lines<'_> {
    Lines { rest: Some(text) }
}

/// The iterator returned by [`lines`].
#[derive(Debug, Clone)]
pub(super) struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        match text.find(['\r', '\n']) {
            None => {
                self.rest = None;
                Some(text)
            }
            Some(at) => {
                let width = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                self.rest = Some(&text[at + width..]);
                Some(&text[..at])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_every_sse_terminator() {
        let got: Vec<_> = lines("a\r\nb\rc\nd").collect();
        assert_eq!(got, ["a", "b", "c", "d"]);
    }

    #[test]
    fn lines_keep_empty_lines_and_a_trailing_one() {
        assert_eq!(lines("a\n\nb\n").collect::<Vec<_>>(), ["a", "", "b", ""]);
        assert_eq!(lines("\r\r\n").collect::<Vec<_>>(), ["", "", ""]);
        assert_eq!(lines("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn lines_do_not_merge_cr_followed_by_cr() {
        // "\r\r" is two line ends, not one: a parser would see an empty line between.
        assert_eq!(lines("a\r\rb").collect::<Vec<_>>(), ["a", "", "b"]);
    }

    #[test]
    fn normalize_newlines_rewrites_cr_and_crlf_only() {
        assert_eq!(normalize_newlines("a\r\nb\rc\nd"), "a\nb\nc\nd");
        assert_eq!(normalize_newlines("a\r"), "a\n");
        assert!(matches!(normalize_newlines("a\nb"), Cow::Borrowed("a\nb")));
    }

    #[test]
    fn normalized_text_splits_like_an_sse_parser_with_str_lines() {
        // The datastar crate splits with `str::lines`; after normalizing, it must agree
        // with the SSE notion of a line (up to the final empty line `str::lines` drops).
        for text in ["a\rb", "a\r\nb", "a\n\rb", "x\r\r\ny", "<p>\r</p>\r\n"] {
            let normalized = normalize_newlines(text);
            let by_str: Vec<_> = normalized.lines().collect();
            let mut by_sse: Vec<_> = lines(text).collect();
            if text.ends_with(['\r', '\n']) {
                assert_eq!(by_sse.pop(), Some(""));
            }
            assert_eq!(by_str, by_sse, "{text:?}");
        }
    }

    #[test]
    fn check_single_line_refuses_cr_and_lf_with_the_input() {
        assert_eq!(check_single_line(Field::Selector, "#todo-1 > li"), Ok(()));
        for bad in ["#a\n", "#a\rid: x", "\r\n"] {
            assert_eq!(
                check_single_line(Field::Selector, bad),
                Err(SseError::LineBreak {
                    field: Field::Selector,
                    value: bad.to_owned(),
                })
            );
        }
    }

    #[test]
    fn strip_line_breaks_removes_cr_and_lf_only() {
        assert_eq!(strip_line_breaks("e1:5\r\nid: 9\n"), "e1:5id: 9");
        assert!(matches!(strip_line_breaks("e1:5"), Cow::Borrowed("e1:5")));
    }

    #[test]
    fn error_messages_escape_the_input() {
        let err = check_single_line(Field::EventId, "1\nevent: x").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"SSE event id must be a single line, but "1\nevent: x" contains CR or LF"#
        );
    }
}
