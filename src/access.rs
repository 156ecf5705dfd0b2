//! The access policy: one answer to "may this principal subscribe to this pattern?"
//! for every transport (WebSocket `subscribe`, Datastar SSE, the re-check after a token
//! refresh), and one per-event filter for every path an event takes to a subscriber
//! (live fan-out, replay on either transport).
//!
//! Two questions, asked at two moments:
//!
//! - [`Rules::admit`], before any event: can anything this pattern matches ever be
//!   readable? A refusal here is an error the client sees at once (`forbidden`, or
//!   `unauthorized` when signing in could change the answer).
//! - [`Interest::deliverable`], per event: does the event match the subscription, may
//!   the principal read it and does it pass the subscription's filter? Admission never
//!   replaces this check; owner and custom rules can only be judged with the event in
//!   hand.
//!
//! An update is judged on the record both before and after it ([`Rules::view`]): it can
//! move a record into what a subscriber sees (`enter`) or out of it (`leave`), because
//! a filtered field or a rule field changed. A subscription's filter may name only
//! fields the collection shows ([`Rules::check_filter`]).

use std::sync::Arc;

use crate::{
    auth::Principal,
    event::{Action, Event, EventContent, LogEntry},
    filter::{Filter, FilterError},
    rules::{Decision, Rules},
    topic::{GlobPart, Pattern},
};

/// How one event reaches one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum View {
    /// Not at all.
    Skip,
    /// As logged (`create`, `update`, `delete`, `broadcast`).
    Logged,
    /// An update brought the record into view: `enter`, with the whole public record.
    Enter,
    /// An update took the record out of view: `leave`, with its id only.
    Leave,
}

/// Whether a principal may subscribe to a pattern, decided before any event arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Every event the pattern matches is readable.
    Allow,
    /// Some events may be readable: each is judged when it arrives.
    PerEvent,
    /// Nothing the pattern matches is readable.
    Deny {
        /// The principal is anonymous: signing in might change the answer, so the
        /// refusal is `unauthorized` (401) rather than `forbidden` (403).
        anonymous: bool,
    },
}

impl Admission {
    /// Whether the subscription is refused.
    pub fn is_denied(self) -> bool {
        matches!(self, Self::Deny { .. })
    }
}

impl Rules {
    /// Decides whether `principal` may subscribe to `pattern`.
    ///
    /// A pattern naming one collection gets that collection's read rule. A collection
    /// glob can only ever reach collections that have rules (the others are closed),
    /// so it is admitted when at least one of those it matches is readable, and then
    /// always judged per event: the glob also matches collections it may not read.
    pub fn admit(&self, principal: &Principal, pattern: &Pattern) -> Admission {
        let decide = |collection: &str| self.read_rule(collection).decide(principal);
        let admitted = match pattern.collection() {
            GlobPart::Exact(collection) => match decide(collection) {
                Decision::Allow => Some(Admission::Allow),
                Decision::PerEvent => Some(Admission::PerEvent),
                Decision::Deny => None,
            },
            glob => self
                .collection_names()
                .any(|name| glob.matches(name) && decide(name) != Decision::Deny)
                .then_some(Admission::PerEvent),
        };
        admitted.unwrap_or(Admission::Deny {
            anonymous: !principal.is_authenticated(),
        })
    }

    /// Refuses a filter that names a field hidden by a collection `pattern` can reach:
    /// whether such a filter matches would reveal the hidden value.
    pub fn check_filter(&self, pattern: &Pattern, filter: &Filter) -> Result<(), FilterError> {
        for (collection, hidden) in self.hidden_fields() {
            if !pattern.collection().matches(collection) {
                continue;
            }
            if let Some(field) = filter.fields().find(|f| hidden.iter().any(|h| h == f)) {
                return Err(FilterError::HiddenField {
                    field: field.to_owned(),
                    collection: collection.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether `principal` sees `entry` through `filter`: the read rule allows it, and
    /// a record event meets the filter (custom broadcasts are not records; filters do
    /// not apply to them).
    pub(crate) fn visible(
        &self,
        principal: &Principal,
        filter: Option<&Filter>,
        entry: &LogEntry,
    ) -> bool {
        self.can_read(principal, entry)
            && filter.is_none_or(|f| entry.action == Action::Broadcast || f.matches(&entry.payload))
    }

    /// How `after` reaches a subscription of `principal` with `filter`. An update whose
    /// record as it was (`before`, see [`LogEntry::before`]) is known is judged on both:
    /// seen before and after is `update`, only after `enter`, only before `leave`,
    /// neither nothing. Every other event is seen as logged or not at all.
    pub(crate) fn view(
        &self,
        principal: &Principal,
        filter: Option<&Filter>,
        after: &LogEntry,
        before: Option<&LogEntry>,
    ) -> View {
        let now = self.visible(principal, filter, after);
        let was = match before {
            Some(before) if after.action == Action::Update => {
                self.visible(principal, filter, before)
            }
            _ => now,
        };
        match (was, now) {
            (true, true) => View::Logged,
            (false, true) => View::Enter,
            (true, false) => View::Leave,
            (false, false) => View::Skip,
        }
    }

    /// The collections with rules that `pattern` can reach and `principal` may read
    /// some of: what a reset of a stream's view has to clear.
    pub fn readable_collections(&self, principal: &Principal, pattern: &Pattern) -> Vec<String> {
        match pattern.collection() {
            GlobPart::Exact(name) => vec![name.clone()],
            glob => self
                .collection_names()
                .filter(|name| glob.matches(name))
                .filter(|name| self.read_rule(name).decide(principal) != Decision::Deny)
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// What one subscriber asks for: its patterns and filter, read as its principal. The
/// per-event judgement shared by replay on every transport; live fan-out reaches the
/// same answer through the hub's index (the pattern half) and [`Rules::view`] (the
/// rest).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interest<'a> {
    rules: &'a Rules,
    principal: &'a Principal,
    patterns: &'a [Arc<Pattern>],
    filter: Option<&'a Filter>,
}

impl<'a> Interest<'a> {
    /// The interest of `principal` in `patterns`, through `filter` if any.
    pub(crate) fn new(
        rules: &'a Rules,
        principal: &'a Principal,
        patterns: &'a [Arc<Pattern>],
        filter: Option<&'a Filter>,
    ) -> Self {
        Self {
            rules,
            principal,
            patterns,
            filter,
        }
    }

    /// How `event` goes to this subscriber: `None` unless a pattern matches it and
    /// the principal sees it (before or after the write); otherwise the event as
    /// logged, or its `enter` or `leave` form.
    pub(crate) fn deliverable(&self, event: &Arc<Event>) -> Option<Arc<Event>> {
        let EventContent::Logged(entry) = &event.data else {
            return None;
        };
        if !self.matches(entry) {
            return None;
        }
        let view = self
            .rules
            .view(self.principal, self.filter, entry, event.before());
        event.seen_as(view)
    }

    /// Whether `entry` reaches this subscriber in any form (as logged, `enter` or
    /// `leave`): [`deliverable`](Self::deliverable) for an entry not yet sequenced.
    #[cfg(feature = "testing")]
    pub(crate) fn receives(&self, entry: &LogEntry) -> bool {
        let before = entry.before();
        self.matches(entry)
            && self
                .rules
                .view(self.principal, self.filter, entry, before.as_ref())
                != View::Skip
    }

    fn matches(&self, entry: &LogEntry) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches(&entry.collection, entry.key.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rule;
    use serde_json::{Value, json};

    fn user(sub: &str, roles: &[&str]) -> Principal {
        Principal::user(sub, roles)
    }

    fn rules() -> Rules {
        Rules::new()
            .collection("news", Rule::Public, Rule::Deny)
            .collection("todos", Rule::Authenticated, Rule::Deny)
            .collection("notes", Rule::Owner("owner_id".into()), Rule::Deny)
            .collection("audit", Rule::Role("admin".into()), Rule::Deny)
            .collection("vault", Rule::Deny, Rule::Deny)
    }

    /// pattern x principal -> admission, for every kind of rule and pattern.
    #[test]
    fn admission_table() {
        let anon = Principal::anonymous();
        let ann = user("ann", &[]);
        let admin = user("root", &["admin"]);
        let denied_anon = Admission::Deny { anonymous: true };
        let denied = Admission::Deny { anonymous: false };
        let rows: &[(&str, &Principal, Admission)] = &[
            ("news:*", &anon, Admission::Allow),
            ("news:1", &ann, Admission::Allow),
            ("todos:*", &anon, denied_anon),
            ("todos:4?", &ann, Admission::Allow),
            ("notes:*", &anon, denied_anon),
            ("notes:*", &ann, Admission::PerEvent),
            ("audit:*", &ann, denied),
            ("audit:*", &admin, Admission::Allow),
            ("vault:*", &admin, denied),
            ("unknown:*", &ann, denied),
            ("*:*", &anon, Admission::PerEvent),
            ("*:*", &ann, Admission::PerEvent),
            ("{vault,audit}:*", &ann, denied),
            ("[va]*:*", &ann, denied),
            ("{vault,audit}:*", &admin, Admission::PerEvent),
            ("no*:*", &ann, Admission::PerEvent),
            ("no*:*", &anon, denied_anon),
            ("x*:*", &admin, denied),
            ("t?dos", &ann, Admission::PerEvent),
        ];
        let rules = rules();
        for (pattern, principal, expected) in rows {
            let parsed = Pattern::parse(pattern).unwrap();
            assert_eq!(
                rules.admit(principal, &parsed),
                *expected,
                "{pattern} for {:?}",
                principal.user_id
            );
        }
    }

    fn logged(entry: LogEntry) -> Arc<Event> {
        let cursor = crate::event::Cursor {
            epoch: "e".into(),
            seq: 1,
        };
        Event::logged(&cursor, entry)
    }

    #[test]
    fn interest_needs_a_matching_pattern_and_a_readable_event() {
        let rules = rules();
        let ann = user("ann", &[]);
        let patterns = [Arc::new(Pattern::parse("notes:*").unwrap())];
        let interest = Interest::new(&rules, &ann, &patterns, None);
        let note = |owner: &str, collection: &str| {
            logged(LogEntry::record(
                collection,
                "1",
                Action::Create,
                json!({ "owner_id": owner }),
            ))
        };
        assert!(interest.deliverable(&note("ann", "notes")).is_some());
        assert!(interest.deliverable(&note("bob", "notes")).is_none());
        assert!(interest.deliverable(&note("ann", "todos")).is_none());
    }

    /// before x after -> view, through a rule field and through a filter.
    #[test]
    fn updates_are_judged_before_and_after() {
        let rules = rules();
        let ann = user("ann", &[]);
        let open = Filter::parse(
            &json!({"done": false}),
            crate::filter::FilterLimits {
                max_conditions: 4,
                max_values: 4,
                max_bytes: 1024,
            },
        )
        .unwrap();
        let update = |collection: &str, after: Value, previous: Value| {
            let acl = after
                .get("owner_id")
                .map(|o| serde_json::Map::from_iter([("owner_id".to_owned(), o.clone())]))
                .unwrap_or_default();
            LogEntry::record(collection, "1", Action::Update, after)
                .with_acl(acl)
                .with_previous(previous.as_object().cloned())
        };
        let rows: &[(&str, Option<&Filter>, Value, Value, View)] = &[
            (
                "notes",
                None,
                json!({"owner_id": "ann"}),
                json!({}),
                View::Logged,
            ),
            (
                "notes",
                None,
                json!({"owner_id": "ann"}),
                json!({"owner_id": "bob"}),
                View::Enter,
            ),
            (
                "notes",
                None,
                json!({"owner_id": "bob"}),
                json!({"owner_id": "ann"}),
                View::Leave,
            ),
            (
                "notes",
                None,
                json!({"owner_id": "bob"}),
                json!({"owner_id": "cy"}),
                View::Skip,
            ),
            (
                "todos",
                Some(&open),
                json!({"done": false}),
                json!({"done": true}),
                View::Enter,
            ),
            (
                "todos",
                Some(&open),
                json!({"done": true}),
                json!({"done": false}),
                View::Leave,
            ),
            (
                "todos",
                Some(&open),
                json!({"done": false}),
                json!({"title": "x"}),
                View::Logged,
            ),
            (
                "todos",
                Some(&open),
                json!({"done": true}),
                json!({"title": "x"}),
                View::Skip,
            ),
            (
                "todos",
                Some(&open),
                json!({"done": true}),
                json!({"done": "maybe"}),
                View::Skip,
            ),
        ];
        for (collection, filter, after, previous, expected) in rows {
            let entry = update(collection, after.clone(), previous.clone());
            let before = entry.before();
            assert_eq!(
                rules.view(&ann, *filter, &entry, before.as_ref()),
                *expected,
                "{collection} {after} was {previous}"
            );
        }
    }

    #[test]
    fn filters_may_not_name_hidden_fields() {
        let rules = rules().hidden("notes", &["internal"]);
        let limits = crate::filter::FilterLimits {
            max_conditions: 4,
            max_values: 4,
            max_bytes: 1024,
        };
        let on_internal = Filter::parse(&json!({"internal": "x"}), limits).unwrap();
        let on_body = Filter::parse(&json!({"body": "x"}), limits).unwrap();
        for pattern in ["notes:*", "no*:*", "*"] {
            let pattern = Pattern::parse(pattern).unwrap();
            let refused = rules.check_filter(&pattern, &on_internal).unwrap_err();
            assert!(refused.to_string().contains("hides"), "{refused}");
            assert!(rules.check_filter(&pattern, &on_body).is_ok());
        }
        let todos = Pattern::parse("todos:*").unwrap();
        assert!(rules.check_filter(&todos, &on_internal).is_ok());
    }
}
