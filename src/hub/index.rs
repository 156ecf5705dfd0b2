//! The subscription index: which subscriptions an event on `collection:key` reaches.
//!
//! Pure bookkeeping: no receivers, rules, queues or locks. Subscriptions are indexed by
//! exact collection first (or "any collection" for `*:...`), then by key (`*`, literal
//! keys, key globs), so matching an event touches only the subscriptions that can
//! match it. Globs, on either side, are interned in [`GlobTable`]s: one compiled
//! pattern per distinct text, tried once per event whatever the number of
//! subscriptions holding it, and filed by literal prefix so an event tries only the
//! globs that could match its text.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{
    ReceiverKey,
    glob_table::{GlobTable, literal_prefix},
};
use crate::topic::{GlobPart, MatchText, Pattern};

/// One subscription: its receiver and the id the client gave it.
pub(crate) type SubKey = (ReceiverKey, Arc<str>);

/// The ids of one receiver's subscriptions that an event matched: mostly one, kept
/// inline so the fan-out allocates nothing per receiver for them.
pub(crate) type SubIds = smallvec::SmallVec<[Arc<str>; 1]>;

/// The subscriptions of one exact collection (or of every collection, for patterns
/// whose collection side is `*`), by the shape of their key side.
#[derive(Debug, Default)]
struct CollectionIndex {
    /// `collection:*`
    any_key: HashSet<SubKey>,
    /// `collection:literal`
    by_key: HashMap<String, HashSet<SubKey>>,
    /// `collection:glob`, filed by the key glob's literal prefix.
    key_globs: GlobTable,
}

impl CollectionIndex {
    fn is_empty(&self) -> bool {
        self.any_key.is_empty() && self.by_key.is_empty() && self.key_globs.is_empty()
    }

    /// The key glob's text of `pattern`.
    fn key_glob_text(pattern: &Pattern) -> &str {
        pattern.as_str().split_once(':').map_or("*", |(_, key)| key)
    }

    /// Files `sub`; true if it brought a new distinct glob.
    fn insert(&mut self, sub: SubKey, pattern: &Arc<Pattern>) -> bool {
        match pattern.key() {
            GlobPart::Any => {
                self.any_key.insert(sub);
                false
            }
            GlobPart::Exact(k) => {
                self.by_key.entry(k.clone()).or_default().insert(sub);
                false
            }
            GlobPart::Glob(_) => {
                let prefix = literal_prefix(Self::key_glob_text(pattern));
                self.key_globs.insert(sub, pattern, prefix)
            }
        }
    }

    fn remove(&mut self, sub: &SubKey, pattern: &Pattern) -> bool {
        match pattern.key() {
            GlobPart::Any => self.any_key.remove(sub),
            GlobPart::Exact(k) => match self.by_key.get_mut(k) {
                Some(subs) => {
                    let removed = subs.remove(sub);
                    if subs.is_empty() {
                        self.by_key.remove(k);
                    }
                    removed
                }
                None => false,
            },
            GlobPart::Glob(_) => self.key_globs.remove(sub, pattern),
        }
    }

    /// Adds the subscriptions matching an event with `key` (None: collection-wide).
    fn collect<'a>(&'a self, key: Option<&str>, found: &mut Vec<&'a SubKey>) {
        found.extend(self.any_key.iter());
        match key {
            Some(key) => {
                if let Some(subs) = self.by_key.get(key) {
                    found.extend(subs.iter());
                }
                if !self.key_globs.is_empty() {
                    // Prepared once for every key glob, not once per glob.
                    let prepared = MatchText::new(key);
                    self.key_globs.matching(
                        key,
                        |pattern| pattern.key().matches_prepared(&prepared),
                        found,
                    );
                }
            }
            // A collection-wide event reaches every subscription of the collection.
            None => {
                found.extend(self.by_key.values().flatten());
                found.extend(self.key_globs.subscribers());
            }
        }
    }
}

/// Every subscription of one node, indexed for matching events.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionIndex {
    collections: HashMap<String, CollectionIndex>,
    /// Subscriptions whose collection side is `*`.
    any_collection: CollectionIndex,
    /// Subscriptions whose collection side is a glob, filed by its literal prefix.
    collection_globs: GlobTable,
}

/// Whether `pattern` is matched by trying a glob (as opposed to a lookup).
pub(crate) fn is_glob(pattern: &Pattern) -> bool {
    matches!(pattern.collection(), GlobPart::Glob(_)) || matches!(pattern.key(), GlobPart::Glob(_))
}

impl SubscriptionIndex {
    /// Indexes `sub` under `pattern`, replacing an entry with the same key and pattern;
    /// true if it brought a glob the index did not hold.
    pub(crate) fn insert(&mut self, sub: SubKey, pattern: Arc<Pattern>) -> bool {
        match pattern.collection() {
            GlobPart::Glob(_) => {
                let collection = pattern.as_str().split(':').next().unwrap_or_default();
                self.collection_globs
                    .insert(sub, &pattern, literal_prefix(collection))
            }
            GlobPart::Any => self.any_collection.insert(sub, &pattern),
            GlobPart::Exact(collection) => self
                .collections
                .entry(collection.clone())
                .or_default()
                .insert(sub, &pattern),
        }
    }

    /// Removes `sub`, which was indexed under `pattern`; false if it was not there.
    /// Emptied key and collection entries, and globs no one holds any more, are
    /// dropped, so the index does not grow with every key or glob ever subscribed to.
    pub(crate) fn remove(&mut self, sub: &SubKey, pattern: &Pattern) -> bool {
        match pattern.collection() {
            GlobPart::Glob(_) => self.collection_globs.remove(sub, pattern),
            GlobPart::Any => self.any_collection.remove(sub, pattern),
            GlobPart::Exact(collection) => {
                let Some(index) = self.collections.get_mut(collection) else {
                    return false;
                };
                let removed = index.remove(sub, pattern);
                if index.is_empty() {
                    self.collections.remove(collection);
                }
                removed
            }
        }
    }

    /// Whether some subscription holds exactly this glob pattern (so one more costs
    /// matching nothing). False for patterns that are not globs.
    pub(crate) fn holds_glob(&self, pattern: &Pattern) -> bool {
        self.interned(pattern).is_some()
    }

    /// The compiled glob the index holds for `pattern`'s text, for a new subscriber
    /// to share instead of keeping a compiled copy of its own. `None` for patterns
    /// that are not globs, or that no one holds.
    pub(crate) fn interned(&self, pattern: &Pattern) -> Option<&Arc<Pattern>> {
        if !is_glob(pattern) {
            return None;
        }
        let source = pattern.as_str();
        match pattern.collection() {
            GlobPart::Glob(_) => self.collection_globs.get(source),
            GlobPart::Any => self.any_collection.key_globs.get(source),
            GlobPart::Exact(collection) => self
                .collections
                .get(collection)
                .and_then(|index| index.key_globs.get(source)),
        }
    }

    /// Distinct glob patterns indexed: how many globs an event may have to try.
    #[cfg(test)]
    pub(crate) fn distinct_globs(&self) -> usize {
        let key_globs = |index: &CollectionIndex| index.key_globs.len();
        self.collection_globs.len()
            + key_globs(&self.any_collection)
            + self.collections.values().map(key_globs).sum::<usize>()
    }

    /// The subscriptions matching `collection`/`key`, grouped by receiver (in
    /// receiver order; ids within a group in no particular order). Matches are
    /// collected as borrowed pairs and grouped by one sort: cheaper than a map entry
    /// and an id clone per match when an event reaches thousands of subscriptions.
    pub(crate) fn matching(
        &self,
        collection: &str,
        key: Option<&str>,
    ) -> Vec<(ReceiverKey, SubIds)> {
        let mut found: Vec<&SubKey> = Vec::new();
        if let Some(index) = self.collections.get(collection) {
            index.collect(key, &mut found);
        }
        self.any_collection.collect(key, &mut found);
        if !self.collection_globs.is_empty() {
            let prepared_collection = MatchText::new(collection);
            let prepared_key = key.map(MatchText::new);
            self.collection_globs.matching(
                collection,
                |pattern| pattern.matches_prepared(&prepared_collection, prepared_key.as_ref()),
                &mut found,
            );
        }
        found.sort_unstable_by_key(|(receiver, _)| *receiver);
        let mut grouped: Vec<(ReceiverKey, SubIds)> = Vec::with_capacity(found.len());
        for (receiver, id) in found {
            match grouped.last_mut() {
                Some((last, ids)) if last == receiver => ids.push(id.clone()),
                _ => grouped.push((*receiver, SubIds::from_elem(id.clone(), 1))),
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
        self.collections.is_empty()
            && self.any_collection.is_empty()
            && self.collection_globs.is_empty()
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
        ("any_collection_exact_key", "*:1"),
        ("any_collection_key_glob", "*:1?"),
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
                &[
                    "any_collection_exact_key",
                    "any_key",
                    "collection_glob",
                    "exact_key",
                    "key_glob",
                ],
            ),
            (
                "todos",
                Some("12"),
                &[
                    "any_collection_key_glob",
                    "any_key",
                    "both_globs",
                    "collection_glob",
                    "key_glob",
                ],
            ),
            ("todos", Some("2"), &["any_key", "collection_glob"]),
            // A collection-wide event reaches every subscription of the collection,
            // whatever its key side.
            (
                "todos",
                None,
                &[
                    "any_collection_exact_key",
                    "any_collection_key_glob",
                    "any_key",
                    "both_globs",
                    "collection_glob",
                    "exact_key",
                    "key_glob",
                ],
            ),
            // Another collection the collection globs match.
            (
                "tokens",
                Some("12"),
                &["any_collection_key_glob", "both_globs", "collection_glob"],
            ),
            ("tokens", Some("2"), &["collection_glob"]),
            (
                "tokens",
                None,
                &[
                    "any_collection_exact_key",
                    "any_collection_key_glob",
                    "both_globs",
                    "collection_glob",
                ],
            ),
            // Another collection: its own pattern and the `*:` ones.
            (
                "notes",
                Some("1"),
                &["any_collection_exact_key", "other_collection"],
            ),
            (
                "notes",
                None,
                &[
                    "any_collection_exact_key",
                    "any_collection_key_glob",
                    "other_collection",
                ],
            ),
            ("users", Some("2"), &[]),
            (
                "users",
                None,
                &["any_collection_exact_key", "any_collection_key_glob"],
            ),
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
        let expected: Vec<(ReceiverKey, SubIds)> = vec![
            (3, SubIds::from_vec(vec![Arc::from("x")])),
            (7, SubIds::from_vec(vec![Arc::from("a"), Arc::from("b")])),
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
            vec![(2, SubIds::from_vec(vec![Arc::from("s1")]))]
        );
        assert!(
            !index.remove(&sub(2, "s1"), &pattern("notes:1")),
            "wrong pattern"
        );
        assert!(!index.has_collection("notes"));
    }

    #[test]
    fn identical_globs_share_one_compiled_pattern() {
        let mut index = SubscriptionIndex::default();
        let texts = ["*:*a*a*a*a*a*a*a*b", "todos:1?*", "to*:*"];
        // 100 receivers x the same 3 globs, each parsed anew as connections do.
        for receiver in 0..100 {
            for (n, text) in texts.iter().enumerate() {
                index.insert(sub(receiver, &format!("s{n}")), pattern(text));
            }
        }
        assert_eq!(index.distinct_globs(), 3, "one entry per distinct glob");
        assert!(texts.iter().all(|t| index.holds_glob(&pattern(t))));
        assert!(!index.holds_glob(&pattern("todos:*")), "not a glob");
        assert_eq!(matched(&index, "todos", Some("12")).len(), 200);
        // Every subscriber but the last leaves: the pattern stays, once.
        for receiver in 0..99 {
            for (n, text) in texts.iter().enumerate() {
                assert!(index.remove(&sub(receiver, &format!("s{n}")), &pattern(text)));
            }
        }
        assert_eq!(index.distinct_globs(), 3);
        for (n, text) in texts.iter().enumerate() {
            assert!(index.remove(&sub(99, &format!("s{n}")), &pattern(text)));
        }
        assert_eq!(index.distinct_globs(), 0);
        assert!(index.is_empty());
    }

    #[test]
    fn a_removed_subscription_can_be_added_again() {
        for text in [
            "todos:*", "todos:1", "todos:1*", "to*:*", "*:1", "*:1*", "*",
        ] {
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
