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
//! - [`Interest::wants`], per event: does the event match the subscription and may the
//!   principal read it? Admission never replaces this check; owner and custom rules
//!   can only be judged with the event in hand.

use std::sync::Arc;

use crate::{
    auth::Principal,
    event::LogEntry,
    rules::{Decision, Rules},
    topic::{GlobPart, Pattern},
};

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

/// What one subscriber asks for: its patterns, read as its principal. The per-event
/// filter shared by replay on every transport; live fan-out reaches the same answer
/// through the hub's index (the pattern half) and [`Rules::can_read`] (the rule half).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interest<'a> {
    rules: &'a Rules,
    principal: &'a Principal,
    patterns: &'a [Arc<Pattern>],
}

impl<'a> Interest<'a> {
    /// The interest of `principal` in `patterns`.
    pub(crate) fn new(
        rules: &'a Rules,
        principal: &'a Principal,
        patterns: &'a [Arc<Pattern>],
    ) -> Self {
        Self {
            rules,
            principal,
            patterns,
        }
    }

    /// Whether `event` goes to this subscriber: a pattern matches it and the principal
    /// may read it.
    pub(crate) fn wants(&self, event: &LogEntry) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches(&event.collection, event.key.as_deref()))
            && self.rules.can_read(self.principal, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Action, rules::Rule};
    use serde_json::json;

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

    #[test]
    fn interest_needs_a_matching_pattern_and_a_readable_event() {
        let rules = rules();
        let ann = user("ann", &[]);
        let patterns = [Arc::new(Pattern::parse("notes:*").unwrap())];
        let interest = Interest::new(&rules, &ann, &patterns);
        let note = |owner: &str, collection: &str| {
            LogEntry::record(
                collection,
                "1",
                Action::Create,
                json!({ "owner_id": owner }),
            )
        };
        assert!(interest.wants(&note("ann", "notes")));
        assert!(!interest.wants(&note("bob", "notes")));
        assert!(!interest.wants(&note("ann", "todos")));
    }
}
