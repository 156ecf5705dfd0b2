//! Client mutation ids: an opaque tag a client gives a write (`X-Tidings-Mutation`, the
//! model API's [`Tx::set_mutation`](crate::model::Tx::set_mutation), a `publish`
//! frame's `mutation`), carried by the write's event as `"mutation"`, so the client
//! that made a change can recognise its echo (to settle an optimistic update, say).

use std::fmt;

/// Longest mutation id, in characters.
pub const MAX_MUTATION_LEN: usize = 128;

/// A validated mutation id: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MutationId(String);

/// A mutation id that is empty, too long or holds a control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mutation id {0:?}: 1-{MAX_MUTATION_LEN} characters without control characters")]
pub struct MutationError(pub String);

impl MutationId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, MutationError> {
        let id = id.into();
        let len = id.chars().count();
        if (1..=MAX_MUTATION_LEN).contains(&len) && !id.chars().any(char::is_control) {
            Ok(Self(id))
        } else {
            Err(MutationError(
                id.chars().take(MAX_MUTATION_LEN + 8).collect(),
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MutationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert_eq!(MutationId::new("m-1").unwrap().as_str(), "m-1");
        assert!(MutationId::new("é".repeat(128)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(129),
            "a\nb".into(),
            "\u{7f}".into(),
        ] {
            assert!(MutationId::new(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
