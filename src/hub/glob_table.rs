//! Interned glob subscriptions: one compiled pattern per distinct pattern text, shared
//! by every subscription that wrote it, found by the literal prefix of the side the
//! table is matched on.
//!
//! Why interned: a glob is matched once per event, whatever the number of
//! subscriptions holding it, and its compiled matcher (several kB) exists once. Why by
//! prefix: a glob such as `c1*` can only match texts starting with `c1`, so an event
//! looks up the prefixes of its own text (at most one lookup per prefix length in
//! use) and tries only the globs filed under them. Globs with no literal prefix
//! (`*a*b`) are tried against every event; the hub caps how many distinct globs a node
//! holds, so that cost stays bounded (`hub::budget`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use super::index::SubKey;
use crate::topic::Pattern;

/// The characters that end a glob's literal prefix: glob syntax, and the escape
/// character (stopping before it gives a shorter prefix, which is still a prefix).
const GLOB_SYNTAX: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

/// The literal text a glob starts with: every text it matches starts with it.
pub(crate) fn literal_prefix(glob: &str) -> &str {
    glob.find(GLOB_SYNTAX).map_or(glob, |end| &glob[..end])
}

/// One distinct pattern and the subscriptions holding it.
#[derive(Debug)]
struct Interned {
    pattern: Arc<Pattern>,
    /// Where it is filed in `by_prefix`.
    prefix: String,
    subscribers: HashSet<SubKey>,
}

/// Distinct glob patterns, each with its subscribers, filed by literal prefix.
#[derive(Debug, Default)]
pub(crate) struct GlobTable {
    by_source: HashMap<Arc<str>, Interned>,
    by_prefix: HashMap<String, Vec<Arc<str>>>,
    /// Prefix length (bytes) -> how many distinct patterns have a prefix that long:
    /// the only lengths an event's text needs looking up.
    prefix_lengths: BTreeMap<usize, usize>,
}

impl GlobTable {
    /// Adds `sub` to `pattern`'s subscribers, filing the pattern under `prefix` if it
    /// is new. True if the pattern was new to the table.
    pub(crate) fn insert(&mut self, sub: SubKey, pattern: &Arc<Pattern>, prefix: &str) -> bool {
        if let Some(interned) = self.by_source.get_mut(pattern.as_str()) {
            interned.subscribers.insert(sub);
            return false;
        }
        let source: Arc<str> = Arc::from(pattern.as_str());
        self.by_prefix
            .entry(prefix.to_owned())
            .or_default()
            .push(source.clone());
        *self.prefix_lengths.entry(prefix.len()).or_default() += 1;
        self.by_source.insert(
            source,
            Interned {
                pattern: pattern.clone(),
                prefix: prefix.to_owned(),
                subscribers: HashSet::from([sub]),
            },
        );
        true
    }

    /// Removes `sub` from `pattern`'s subscribers; the pattern goes with its last
    /// subscriber. False if `sub` did not hold it.
    pub(crate) fn remove(&mut self, sub: &SubKey, pattern: &Pattern) -> bool {
        let Some(interned) = self.by_source.get_mut(pattern.as_str()) else {
            return false;
        };
        if !interned.subscribers.remove(sub) {
            return false;
        }
        if interned.subscribers.is_empty() {
            let prefix = interned.prefix.clone();
            self.by_source.remove(pattern.as_str());
            if let Some(sources) = self.by_prefix.get_mut(&prefix) {
                sources.retain(|s| **s != *pattern.as_str());
                if sources.is_empty() {
                    self.by_prefix.remove(&prefix);
                }
            }
            if let Some(count) = self.prefix_lengths.get_mut(&prefix.len()) {
                *count -= 1;
                if *count == 0 {
                    self.prefix_lengths.remove(&prefix.len());
                }
            }
        }
        true
    }

    /// The compiled pattern held for this text, if any.
    pub(crate) fn get(&self, source: &str) -> Option<&Arc<Pattern>> {
        self.by_source.get(source).map(|interned| &interned.pattern)
    }

    /// Distinct patterns held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_source.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// Adds to `found` the subscribers of every pattern filed under a prefix of `text`
    /// that `matches` accepts. Each distinct pattern is tried once.
    pub(crate) fn matching<'a>(
        &'a self,
        text: &str,
        matches: impl Fn(&Pattern) -> bool,
        found: &mut Vec<&'a SubKey>,
    ) {
        for &length in self.prefix_lengths.keys() {
            if length > text.len() {
                break;
            }
            let Some(prefix) = text.get(..length) else {
                continue;
            };
            for source in self.by_prefix.get(prefix).into_iter().flatten() {
                let interned = &self.by_source[source];
                if matches(&interned.pattern) {
                    found.extend(interned.subscribers.iter());
                }
            }
        }
    }

    /// Every subscriber of every pattern.
    pub(crate) fn subscribers(&self) -> impl Iterator<Item = &SubKey> {
        self.by_source.values().flat_map(|i| i.subscribers.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Arc<Pattern> {
        Arc::new(Pattern::parse(text).expect("test patterns are valid"))
    }

    fn sub(receiver: u64) -> SubKey {
        (receiver, Arc::from("s"))
    }

    #[test]
    fn prefixes_stop_at_the_first_glob_character() {
        for (glob, prefix) in [
            ("c1*", "c1"),
            ("*a*b", ""),
            ("ab?", "ab"),
            ("x[12]", "x"),
            ("{a,b}", ""),
            ("a\\*b*", "a"),
            ("plain", "plain"),
        ] {
            assert_eq!(literal_prefix(glob), prefix, "{glob}");
        }
    }

    #[test]
    fn identical_patterns_share_one_entry_until_the_last_goes() {
        let mut table = GlobTable::default();
        // Each subscriber parses its own copy, as connections do.
        for receiver in 0..1000 {
            let new = table.insert(sub(receiver), &pattern("*:*a*a*b"), "");
            assert_eq!(new, receiver == 0);
        }
        assert_eq!(
            table.len(),
            1,
            "one compiled pattern for 1000 subscriptions"
        );
        let mut found = Vec::new();
        table.matching("xaab", |p| p.matches("x", Some("aab")), &mut found);
        assert_eq!(found.len(), 1000);
        for receiver in 0..999 {
            assert!(table.remove(&sub(receiver), &pattern("*:*a*a*b")));
        }
        assert_eq!(table.len(), 1);
        assert!(!table.remove(&sub(0), &pattern("*:*a*a*b")), "already gone");
        assert!(table.remove(&sub(999), &pattern("*:*a*a*b")));
        assert!(table.is_empty());
        assert!(table.by_prefix.is_empty() && table.prefix_lengths.is_empty());
    }

    #[test]
    fn only_globs_under_a_prefix_of_the_text_are_tried() {
        let mut table = GlobTable::default();
        table.insert(sub(1), &pattern("c1*:*"), "c1");
        table.insert(sub(2), &pattern("to*:*"), "to");
        table.insert(sub(3), &pattern("*s:*"), "");
        let tried = std::cell::RefCell::new(Vec::new());
        let mut found = Vec::new();
        table.matching(
            "todos",
            |p| {
                tried.borrow_mut().push(p.as_str().to_owned());
                p.matches("todos", None)
            },
            &mut found,
        );
        let mut tried = tried.into_inner();
        tried.sort();
        assert_eq!(tried, ["*s:*", "to*:*"], "c1*:* is never tried on todos");
        let mut receivers: Vec<u64> = found.iter().map(|(r, _)| *r).collect();
        receivers.sort_unstable();
        assert_eq!(receivers, [2, 3]);
    }
}
