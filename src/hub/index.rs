//! The subscription index: which subscriptions an event on `collection:key` reaches.
//!
//! Pure bookkeeping: no receivers, rules, queues or locks. Subscriptions are indexed by
//! exact collection first, then by key (`*`, literal keys, key globs), so matching an
//! event touches only the subscriptions that can match it. Subscriptions whose
//! collection side is a glob cannot be indexed that way and are kept apart, tried
//! against every event.

use std::{collections::HashMap, sync::Arc};

use super::ReceiverKey;
use crate::topic::{GlobPart, MatchText, Pattern};

/// One subscription: its receiver and the id the client gave it.
pub(crate) type SubKey = (ReceiverKey, Arc<str>);

/// The subscriptions of one exact collection, by the shape of their key side.
#[derive(Debug, Default)]
struct CollectionIndex {
    /// `collection:*`
    any_key: HashMap<SubKey, Arc<Pattern>>,
    /// `collection:literal`
    by_key: HashMap<String, HashMap<SubKey, Arc<Pattern>>>,
    /// `collection:glob`
    key_globs: HashMap<SubKey, Arc<Pattern>>,
}

impl CollectionIndex {
    fn is_empty(&self) -> bool {
        self.any_key.is_empty() && self.by_key.is_empty() && self.key_globs.is_empty()
    }
}

/// Every subscription of one node, indexed for matching events.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionIndex {
    collections: HashMap<String, CollectionIndex>,
    /// Subscriptions whose collection side is a glob.
    collection_globs: HashMap<SubKey, Arc<Pattern>>,
}

impl SubscriptionIndex {
    /// Indexes `sub` under `pattern`, replacing an entry with the same key and pattern.
    pub(crate) fn insert(&mut self, sub: SubKey, pattern: Arc<Pattern>) {
        let GlobPart::Exact(collection) = pattern.collection() else {
            self.collection_globs.insert(sub, pattern);
            return;
        };
        let index = self.collections.entry(collection.clone()).or_default();
        match pattern.key() {
            GlobPart::Any => index.any_key.insert(sub, pattern.clone()),
            GlobPart::Exact(k) => index
                .by_key
                .entry(k.clone())
                .or_default()
                .insert(sub, pattern.clone()),
            GlobPart::Glob(_) => index.key_globs.insert(sub, pattern.clone()),
        };
    }

    /// Removes `sub`, which was indexed under `pattern`; false if it was not there.
    /// Emptied key and collection entries are dropped, so the index does not grow with
    /// every key ever subscribed to.
    pub(crate) fn remove(&mut self, sub: &SubKey, pattern: &Pattern) -> bool {
        let GlobPart::Exact(collection) = pattern.collection() else {
            return self.collection_globs.remove(sub).is_some();
        };
        let Some(index) = self.collections.get_mut(collection) else {
            return false;
        };
        let removed = match pattern.key() {
            GlobPart::Any => index.any_key.remove(sub).is_some(),
            GlobPart::Exact(k) => match index.by_key.get_mut(k) {
                Some(subs) => {
                    let removed = subs.remove(sub).is_some();
                    if subs.is_empty() {
                        index.by_key.remove(k);
                    }
                    removed
                }
                None => false,
            },
            GlobPart::Glob(_) => index.key_globs.remove(sub).is_some(),
        };
        if index.is_empty() {
            self.collections.remove(collection);
        }
        removed
    }

    /// The subscriptions matching `collection`/`key`, grouped by receiver (in
    /// receiver order; ids within a group in no particular order). Matches are
    /// collected as borrowed pairs and grouped by one sort: cheaper than a map entry
    /// and an id clone per match when an event reaches thousands of subscriptions.
    pub(crate) fn matching(
        &self,
        collection: &str,
        key: Option<&str>,
    ) -> Vec<(ReceiverKey, Vec<Arc<str>>)> {
        let mut found: Vec<&SubKey> = Vec::new();
        if let Some(index) = self.collections.get(collection) {
            found.extend(index.any_key.keys());
            match key {
                Some(key) => {
                    if let Some(subs) = index.by_key.get(key) {
                        found.extend(subs.keys());
                    }
                    if !index.key_globs.is_empty() {
                        // Prepared once for every key glob, not once per glob.
                        let key = MatchText::new(key);
                        found.extend(
                            index
                                .key_globs
                                .iter()
                                .filter(|(_, pattern)| pattern.key().matches_prepared(&key))
                                .map(|(sub, _)| sub),
                        );
                    }
                }
                // A collection-wide event reaches every subscription of the collection.
                None => {
                    found.extend(index.by_key.values().flat_map(HashMap::keys));
                    found.extend(index.key_globs.keys());
                }
            }
        }
        if !self.collection_globs.is_empty() {
            let prepared_collection = MatchText::new(collection);
            let prepared_key = key.map(MatchText::new);
            found.extend(
                self.collection_globs
                    .iter()
                    .filter(|(_, pattern)| {
                        pattern.matches_prepared(&prepared_collection, prepared_key.as_ref())
                    })
                    .map(|(sub, _)| sub),
            );
        }
        found.sort_unstable_by_key(|(receiver, _)| *receiver);
        let mut grouped: Vec<(ReceiverKey, Vec<Arc<str>>)> = Vec::new();
        for (receiver, id) in found {
            match grouped.last_mut() {
                Some((last, ids)) if last == receiver => ids.push(id.clone()),
                _ => grouped.push((*receiver, vec![id.clone()])),
            }
        }
        grouped
    }

    /// Whether `collection` has an entry of its own (tests check that the last
    /// subscription of a collection takes the entry with it).
    #[cfg(test)]
    pub(crate) fn has_collection(&self, collection: &str) -> bool {
        self.collections.contains_key(collection)
    }

    /// Whether nothing at all is indexed.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.collections.is_empty() && self.collection_globs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(receiver: ReceiverKey, id: &str) -> SubKey {
        (receiver, Arc::from(id))
    }

    fn pattern(text: &str) -> Arc<Pattern> {
        Arc::new(Pattern::parse(text).expect("test patterns are valid"))
    }

    /// One subscription per pattern kind, each on a receiver of its own; the sub id
    /// names the kind.
    const PATTERNS: &[(&str, &str)] = &[
        ("any_key", "todos:*"),
        ("exact_key", "todos:1"),
        ("key_glob", "todos:1*"),
        ("collection_glob", "to*:*"),
        ("both_globs", "to*:1?"),
        ("other_collection", "notes:*"),
    ];

    fn loaded() -> SubscriptionIndex {
        let mut index = SubscriptionIndex::default();
        for (receiver, (id, text)) in (1..).zip(PATTERNS) {
            index.insert(sub(receiver, id), pattern(text));
        }
        index
    }

    /// The sub ids an event reaches, sorted.
    fn matched(index: &SubscriptionIndex, collection: &str, key: Option<&str>) -> Vec<String> {
        let mut ids: Vec<String> = index
            .matching(collection, key)
            .into_iter()
            .flat_map(|(_, ids)| ids)
            .map(|id| id.to_string())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn pattern_kinds_against_events() {
        let index = loaded();
        let table: &[(&str, Option<&str>, &[&str])] = &[
            // A record event: the key side decides among the collection's patterns.
            (
                "todos",
                Some("1"),
                &["any_key", "collection_glob", "exact_key", "key_glob"],
            ),
            (
                "todos",
                Some("12"),
                &["any_key", "both_globs", "collection_glob", "key_glob"],
            ),
            ("todos", Some("2"), &["any_key", "collection_glob"]),
            // A collection-wide event reaches every subscription of the collection,
            // whatever its key side.
            (
                "todos",
                None,
                &[
                    "any_key",
                    "both_globs",
                    "collection_glob",
                    "exact_key",
                    "key_glob",
                ],
            ),
            // Another collection the collection globs match.
            ("tokens", Some("12"), &["both_globs", "collection_glob"]),
            ("tokens", Some("2"), &["collection_glob"]),
            ("tokens", None, &["both_globs", "collection_glob"]),
            // Another collection nothing but its own pattern matches.
            ("notes", Some("1"), &["other_collection"]),
            ("notes", None, &["other_collection"]),
            ("users", Some("1"), &[]),
            ("users", None, &[]),
        ];
        for (collection, key, expected) in table {
            assert_eq!(
                matched(&index, collection, *key),
                *expected,
                "{collection} {key:?}"
            );
            // The index answers exactly what testing every pattern would.
            let mut oracle: Vec<&str> = PATTERNS
                .iter()
                .filter(|(_, text)| pattern(text).matches(collection, *key))
                .map(|(id, _)| *id)
                .collect();
            oracle.sort_unstable();
            assert_eq!(oracle, *expected, "oracle {collection} {key:?}");
        }
    }

    #[test]
    fn matches_are_grouped_by_receiver_in_receiver_order() {
        let mut index = SubscriptionIndex::default();
        index.insert(sub(7, "b"), pattern("todos:*"));
        index.insert(sub(3, "x"), pattern("todos:1"));
        index.insert(sub(7, "a"), pattern("to*:1"));
        index.insert(sub(5, "y"), pattern("notes:*"));
        let mut grouped = index.matching("todos", Some("1"));
        for (_, ids) in &mut grouped {
            ids.sort_unstable();
        }
        let expected: Vec<(ReceiverKey, Vec<Arc<str>>)> = vec![
            (3, vec![Arc::from("x")]),
            (7, vec![Arc::from("a"), Arc::from("b")]),
        ];
        assert_eq!(grouped, expected);
    }

    #[test]
    fn removing_the_last_subscription_of_a_collection_drops_its_entry() {
        let mut index = SubscriptionIndex::default();
        let exact = pattern("todos:1");
        let any = pattern("todos:*");
        index.insert(sub(1, "s1"), exact.clone());
        index.insert(sub(2, "s1"), any.clone());
        assert!(index.has_collection("todos"));

        assert!(index.remove(&sub(1, "s1"), &exact));
        assert!(index.has_collection("todos"), "todos:* is still there");
        assert_eq!(matched(&index, "todos", Some("1")), ["s1"]);

        assert!(index.remove(&sub(2, "s1"), &any));
        assert!(!index.has_collection("todos"));
        assert!(index.is_empty());
        assert!(matched(&index, "todos", None).is_empty());
    }

    #[test]
    fn removal_is_by_receiver_and_id_and_happens_once() {
        let mut index = SubscriptionIndex::default();
        let glob = pattern("todos:1*");
        index.insert(sub(1, "s1"), glob.clone());
        index.insert(sub(2, "s1"), glob.clone());

        assert!(!index.remove(&sub(3, "s1"), &glob), "no such receiver");
        assert!(!index.remove(&sub(1, "s2"), &glob), "no such id");
        assert!(index.remove(&sub(1, "s1"), &glob));
        assert!(!index.remove(&sub(1, "s1"), &glob), "already removed");
        assert_eq!(
            index.matching("todos", Some("10")),
            vec![(2, vec![Arc::from("s1")])]
        );
        assert!(
            !index.remove(&sub(2, "s1"), &pattern("notes:1")),
            "wrong pattern"
        );
        assert!(!index.has_collection("notes"));
    }

    #[test]
    fn a_removed_subscription_can_be_added_again() {
        for text in ["todos:*", "todos:1", "todos:1*", "to*:*"] {
            let mut index = SubscriptionIndex::default();
            let pattern = pattern(text);
            index.insert(sub(1, "s1"), pattern.clone());
            assert!(index.remove(&sub(1, "s1"), &pattern), "{text}");
            assert!(index.is_empty(), "{text}");
            assert!(matched(&index, "todos", Some("1")).is_empty(), "{text}");

            index.insert(sub(1, "s1"), pattern.clone());
            assert_eq!(matched(&index, "todos", Some("1")), ["s1"], "{text}");
            assert_eq!(matched(&index, "todos", None), ["s1"], "{text}");
        }
    }
}
