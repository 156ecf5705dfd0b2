//! Topics (`collection:key`) and subscription patterns (`collection-glob:key-glob`).
//!
//! Both are validated newtypes: once constructed they are known to satisfy the grammar
//! of protocol.md section 2, so the rest of the crate never re-checks them.

use std::fmt;

use globset::{Candidate, GlobBuilder, GlobMatcher};

/// Longest accepted pattern, in characters (protocol.md section 2).
pub(crate) const MAX_PATTERN_LEN: usize = 256;
/// Longest accepted record key, in characters.
pub(crate) const MAX_KEY_LEN: usize = 256;
/// Longest accepted collection name, in characters.
pub(crate) const MAX_COLLECTION_LEN: usize = 64;

/// Why a topic, collection or pattern was refused. Carries the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The collection name is empty, too long or has a character outside `[A-Za-z0-9_-]`.
    #[error("invalid collection name {0:?}: expected 1-64 characters of [A-Za-z0-9_-]")]
    Collection(String),
    /// The key is empty, too long, or contains `:` or a control character.
    #[error("invalid key {0:?}: expected 1-256 characters without ':' or control characters")]
    Key(String),
    /// The pattern is too long or is not a valid glob.
    #[error("invalid pattern {0:?}: {1}")]
    Pattern(String, String),
}

/// Checks a collection name against `[A-Za-z0-9_-]{1,64}`.
pub(crate) fn validate_collection(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_COLLECTION_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TopicError::Collection(name.to_owned()))
    }
}

/// Checks a record key: 1 to 256 characters, no `:` and no control character.
pub(crate) fn validate_key(key: &str) -> Result<(), TopicError> {
    let chars = key.chars().count();
    let ok = (1..=MAX_KEY_LEN).contains(&chars) && !key.chars().any(|c| c == ':' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(TopicError::Key(key.to_owned()))
    }
}

/// A concrete topic: a collection and, for record events, a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    collection: String,
    key: Option<String>,
}

impl Topic {
    /// A record topic `collection:key`.
    pub fn record(collection: &str, key: &str) -> Result<Self, TopicError> {
        validate_collection(collection)?;
        validate_key(key)?;
        Ok(Self {
            collection: collection.to_owned(),
            key: Some(key.to_owned()),
        })
    }

    /// A collection-wide topic (no key), written `collection`.
    pub fn collection(collection: &str) -> Result<Self, TopicError> {
        validate_collection(collection)?;
        Ok(Self {
            collection: collection.to_owned(),
            key: None,
        })
    }

    /// Parses `collection` or `collection:key`.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        match text.split_once(':') {
            Some((collection, key)) => Self::record(collection, key),
            None => Self::collection(text),
        }
    }

    /// The collection name.
    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    /// The record key, if this is a record topic.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}:{}", self.collection, key),
            None => f.write_str(&self.collection),
        }
    }
}

/// One side of a pattern: either a literal (the common, fast case) or a compiled glob.
#[derive(Debug, Clone)]
pub enum GlobPart {
    /// `*`: matches anything.
    Any,
    /// No glob metacharacters: matches exactly this text.
    Exact(String),
    /// A compiled glob.
    Glob(GlobMatcher),
}

impl GlobPart {
    fn compile(text: &str, whole: &str) -> Result<Self, TopicError> {
        if text == "*" {
            return Ok(Self::Any);
        }
        if !text.contains(['*', '?', '[', ']', '{', '}', '\\']) {
            return Ok(Self::Exact(text.to_owned()));
        }
        let glob = GlobBuilder::new(text)
            // A glob never crosses the ':'; the literal separator rule keeps `*` from
            // matching `/`, which is harmless in keys but surprising, so turn it off.
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| TopicError::Pattern(whole.to_owned(), e.kind().to_string()))?;
        Ok(Self::Glob(glob.compile_matcher()))
    }

    /// Whether this part matches `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.matches_prepared(&MatchText::new(text))
    }

    /// Whether this part matches `text`, prepared once for many patterns.
    pub(crate) fn matches_prepared(&self, text: &MatchText<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact == text.text,
            Self::Glob(glob) => glob.is_match_candidate(&text.candidate),
        }
    }
}

/// A collection name or key prepared for matching against many globs: globset's
/// candidate (which normalizes the text) is built once per event, not once per glob.
pub(crate) struct MatchText<'a> {
    text: &'a str,
    candidate: Candidate<'a>,
}

impl<'a> MatchText<'a> {
    /// Prepares `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            candidate: Candidate::new(text),
        }
    }
}

/// A validated, compiled subscription pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    collection: GlobPart,
    key: GlobPart,
}

impl Pattern {
    /// Parses and compiles a pattern (`collection-glob[:key-glob]`).
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        let invalid = |why: &str| TopicError::Pattern(text.to_owned(), why.to_owned());
        if text.is_empty() {
            return Err(invalid("empty pattern"));
        }
        if text.chars().count() > MAX_PATTERN_LEN {
            return Err(invalid("longer than 256 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("control character"));
        }
        let (collection, key) = match text.split_once(':') {
            Some((c, k)) => (c, k),
            None => (text, "*"),
        };
        if collection.is_empty() || key.is_empty() {
            return Err(invalid("empty collection or key glob"));
        }
        if key.contains(':') {
            return Err(invalid("more than one ':'"));
        }
        let collection_part = GlobPart::compile(collection, text)?;
        if let GlobPart::Exact(name) = &collection_part {
            validate_collection(name).map_err(|_| invalid("invalid collection name"))?;
        }
        Ok(Self {
            source: text.to_owned(),
            collection: collection_part,
            key: GlobPart::compile(key, text)?,
        })
    }

    /// The pattern as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The collection side.
    pub fn collection(&self) -> &GlobPart {
        &self.collection
    }

    /// The key side.
    pub fn key(&self) -> &GlobPart {
        &self.key
    }

    /// Whether an event on `collection` with `key` (None for collection-wide events)
    /// matches this pattern.
    pub fn matches(&self, collection: &str, key: Option<&str>) -> bool {
        self.matches_prepared(
            &MatchText::new(collection),
            key.map(MatchText::new).as_ref(),
        )
    }

    /// `matches`, with the collection and key prepared once for many patterns.
    pub(crate) fn matches_prepared(
        &self,
        collection: &MatchText<'_>,
        key: Option<&MatchText<'_>>,
    ) -> bool {
        self.collection.matches_prepared(collection)
            && key.is_none_or(|k| self.key.matches_prepared(k))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_table() {
        // (pattern, collection, key, expected)
        let table: &[(&str, &str, Option<&str>, bool)] = &[
            ("todos:*", "todos", Some("42"), true),
            ("todos:*", "todos", None, true),
            ("todos", "todos", Some("1"), true),
            ("todos:42", "todos", Some("42"), true),
            ("todos:42", "todos", Some("421"), false),
            ("todos:42", "todos", None, true),
            ("todos:42", "notes", Some("42"), false),
            ("*", "anything", Some("x"), true),
            ("*", "anything", None, true),
            ("to*:*", "todos", Some("1"), true),
            ("to*:*", "notes", Some("1"), false),
            ("todos:4?", "todos", Some("42"), true),
            ("todos:4?", "todos", Some("4"), false),
            ("todos:[12]", "todos", Some("1"), true),
            ("todos:[12]", "todos", Some("3"), false),
            ("{todos,notes}:*", "notes", Some("9"), true),
            ("{todos,notes}:*", "chat", Some("9"), false),
            ("todos:a/*", "todos", Some("a/b/c"), true),
            ("todo?", "todos", Some("1"), true),
        ];
        for (pattern, collection, key, expected) in table {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(collection, *key),
                *expected,
                "{pattern} vs {collection}:{key:?}"
            );
        }
    }

    #[test]
    fn invalid_patterns_are_refused() {
        let long = "a".repeat(257);
        for bad in [
            "",
            ":",
            "todos:",
            ":42",
            "a:b:c",
            "todos:[",
            "bad name:*",
            "todos:\n",
            long.as_str(),
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn topics_validate() {
        assert!(Topic::parse("todos:42").is_ok());
        assert_eq!(Topic::parse("todos").unwrap().key(), None);
        assert!(Topic::parse("to dos:1").is_err());
        assert!(Topic::parse("todos:").is_err());
        assert!(Topic::record("todos", &"k".repeat(257)).is_err());
        assert!(Topic::record("todos", "a\u{7}").is_err());
        assert!(Topic::collection(&"c".repeat(65)).is_err());
    }
}
