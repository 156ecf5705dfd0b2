//! Per-collection read and publish rules, evaluated in memory (never a database query
//! per subscriber).
//!
//! A collection without rules is closed: nobody reads it and nobody publishes to it.

use std::{collections::HashMap, fmt, sync::Arc};

use serde_json::Value;

use crate::{auth::Principal, event::LogEntry};

/// A custom rule: gets the principal and the event (or `None` at subscribe time).
pub type RuleFn = Arc<dyn Fn(&Principal, Option<&LogEntry>) -> bool + Send + Sync>;

/// Who may read or publish.
#[derive(Clone)]
pub enum Rule {
    /// Everybody, anonymous principals included.
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// Principals whose `roles` claim holds this role.
    Role(String),
    /// The event's field (record field, or `data` field for broadcasts) equals `sub`.
    Owner(String),
    /// Nobody.
    Deny,
    /// A Rust closure, for anything else.
    Custom(RuleFn),
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("public"),
            Self::Authenticated => f.write_str("authenticated"),
            Self::Role(r) => write!(f, "role:{r}"),
            Self::Owner(field) => write!(f, "owner:{field}"),
            Self::Deny => f.write_str("deny"),
            Self::Custom(_) => f.write_str("custom"),
        }
    }
}

/// A rule string that is not one of the known forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule {0:?}: expected public, authenticated, deny, role:<name> or owner:<field>")]
pub struct RuleParseError(pub String);

impl std::str::FromStr for Rule {
    type Err = RuleParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "public" => Ok(Self::Public),
            None if s == "authenticated" => Ok(Self::Authenticated),
            None if s == "deny" => Ok(Self::Deny),
            Some(("role", name)) if !name.is_empty() => Ok(Self::Role(name.to_owned())),
            Some(("owner", field)) if !field.is_empty() => Ok(Self::Owner(field.to_owned())),
            _ => Err(RuleParseError(s.to_owned())),
        }
    }
}

/// What can be decided about a subscription before any event arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every event will be allowed.
    Allow,
    /// No event will be allowed.
    Deny,
    /// Depends on each event (owner and custom rules).
    PerEvent,
}

impl Rule {
    /// Decides what can be decided without an event.
    pub fn decide(&self, principal: &Principal) -> Decision {
        let yes = |b: bool| if b { Decision::Allow } else { Decision::Deny };
        if let Some(allowed) = self.decide_by_sign_in(principal.is_authenticated()) {
            return yes(allowed);
        }
        match self {
            Self::Role(role) => yes(principal.has_role(role)),
            _ => Decision::PerEvent,
        }
    }

    /// The decision when all that is known is whether the principal is signed in, if
    /// that is enough. The hub keeps that bit beside each receiver, so the commonest
    /// rules cost no visit to the principal per receiver per event.
    pub(crate) fn decide_by_sign_in(&self, signed_in: bool) -> Option<bool> {
        match self {
            Self::Public => Some(true),
            Self::Authenticated => Some(signed_in),
            Self::Deny => Some(false),
            Self::Owner(_) if !signed_in => Some(false),
            Self::Role(_) | Self::Owner(_) | Self::Custom(_) => None,
        }
    }

    /// Whether `principal` may see (or publish) `event`.
    pub fn allows(&self, principal: &Principal, event: &LogEntry) -> bool {
        match self {
            Self::Owner(field) => match (&principal.user_id, event.rule_field(field)) {
                (Some(user), Some(value)) => field_equals(value, user),
                // A missing field denies: an event without an owner is nobody's.
                _ => false,
            },
            Self::Custom(f) => f(principal, Some(event)),
            other => other.decide(principal) == Decision::Allow,
        }
    }
}

fn field_equals(value: &Value, user: &str) -> bool {
    match value {
        Value::String(s) => s == user,
        Value::Number(n) => n.to_string() == user,
        _ => false,
    }
}

/// The read and publish rule of one collection.
#[derive(Debug, Clone)]
pub(crate) struct CollectionRules {
    /// Who may receive the collection's events.
    pub read: Rule,
    /// Who may publish custom events to it (client `publish` frames).
    pub publish: Rule,
}

/// Rules of every collection.
///
/// ```
/// use tidings::{Rule, Rules};
///
/// let rules = Rules::new()
///     // Anyone reads the news; publishers post to it.
///     .collection("news", Rule::Public, Rule::Role("publisher".into()))
///     // A note reaches its owner only (its `owner_id` field equals the token's `sub`).
///     .collection("notes", "owner:owner_id".parse().unwrap(), Rule::Deny)
///     // Anything else: a closure of the principal and the event.
///     .collection(
///         "chat",
///         Rule::Authenticated,
///         Rule::Custom(std::sync::Arc::new(|who, _event| !who.has_role("muted"))),
///     );
/// # let _ = rules;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Rules {
    collections: HashMap<String, CollectionRules>,
    /// Fields each collection hides, which filters may never name.
    hidden: HashMap<String, Vec<String>>,
    /// Collections whose events from clients show the publisher's user id.
    show_publisher: std::collections::HashSet<String>,
}

impl Rules {
    /// No collection is readable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rules of `collection`.
    pub fn collection(mut self, collection: &str, read: Rule, publish: Rule) -> Self {
        self.collections
            .insert(collection.to_owned(), CollectionRules { read, publish });
        self
    }

    /// Declares the fields `collection` hides (a model's `hidden_fields()`): a
    /// subscription filter naming one of them is refused, since whether it matches
    /// would reveal the hidden value. Declaring again replaces the list.
    ///
    /// ```
    /// use tidings::{Rule, Rules};
    ///
    /// let rules = Rules::new()
    ///     .collection("notes", "owner:owner_id".parse().unwrap(), Rule::Deny)
    ///     .hidden("notes", &["internal"]);
    /// # let _ = rules;
    /// ```
    pub fn hidden(mut self, collection: &str, fields: &[&str]) -> Self {
        self.hidden.insert(
            collection.to_owned(),
            fields.iter().map(|&f| f.to_owned()).collect(),
        );
        self
    }

    /// Shows the publisher's user id in the `source` of `collection`'s events that a
    /// client caused (a `publish`, or a handler's write for one): `{"kind":"client",
    /// "user_id":"ann"}`. By default a client event says only `{"kind":"client"}`, so
    /// a collection where who said what is private (votes, say) reveals nothing.
    ///
    /// ```
    /// use tidings::{Rule, Rules};
    ///
    /// let rules = Rules::new()
    ///     .collection("chat", Rule::Authenticated, Rule::Authenticated)
    ///     .show_publisher("chat");
    /// # let _ = rules;
    /// ```
    pub fn show_publisher(mut self, collection: &str) -> Self {
        self.show_publisher.insert(collection.to_owned());
        self
    }

    /// Whether client events of `collection` show the publisher's user id.
    pub fn shows_publisher(&self, collection: &str) -> bool {
        self.show_publisher.contains(collection)
    }

    /// The collections with hidden fields, and those fields.
    pub(crate) fn hidden_fields(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.hidden
            .iter()
            .map(|(collection, fields)| (collection.as_str(), fields.as_slice()))
    }

    /// The read rule of `collection` (Deny if unknown).
    pub fn read_rule(&self, collection: &str) -> &Rule {
        self.collections
            .get(collection)
            .map_or(&Rule::Deny, |r| &r.read)
    }

    /// The publish rule of `collection` (Deny if unknown).
    pub fn publish_rule(&self, collection: &str) -> &Rule {
        self.collections
            .get(collection)
            .map_or(&Rule::Deny, |r| &r.publish)
    }

    /// Whether `principal` may read `event`.
    pub fn can_read(&self, principal: &Principal, event: &LogEntry) -> bool {
        self.read_rule(&event.collection).allows(principal, event)
    }

    /// Whether `principal` may publish `event`.
    pub fn can_publish(&self, principal: &Principal, event: &LogEntry) -> bool {
        self.publish_rule(&event.collection)
            .allows(principal, event)
    }

    /// The names of collections with rules, for `*` subscriptions and docs.
    pub fn collection_names(&self) -> impl Iterator<Item = &str> {
        self.collections.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;
    use serde_json::json;

    fn user(sub: &str, roles: &[&str]) -> Principal {
        Principal::user(sub, roles)
    }

    fn event(payload: Value, acl: Value) -> LogEntry {
        LogEntry::record("notes", "1", Action::Create, payload)
            .with_acl(acl.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn rule_table() {
        let ann = user("ann", &["publisher"]);
        let bob = user("bob", &[]);
        let anon = Principal::anonymous();
        let owned = event(json!({"owner_id":"ann"}), json!({}));
        let hidden_owner = event(json!({}), json!({"owner_id":"ann"}));
        let numeric = event(json!({"owner_id": 7}), json!({}));
        let ownerless = event(json!({}), json!({}));
        let owner: Rule = "owner:owner_id".parse().unwrap();
        assert!(owner.allows(&ann, &owned));
        assert!(owner.allows(&ann, &hidden_owner));
        assert!(!owner.allows(&bob, &owned));
        assert!(!owner.allows(&anon, &owned));
        assert!(!owner.allows(&ann, &ownerless));
        assert!(owner.allows(&user("7", &[]), &numeric));
        let role: Rule = "role:publisher".parse().unwrap();
        assert!(role.allows(&ann, &owned) && !role.allows(&bob, &owned));
        assert!(Rule::Authenticated.allows(&bob, &owned));
        assert!(!Rule::Authenticated.allows(&anon, &owned));
        assert!(Rule::Public.allows(&anon, &owned));
        assert!(!Rule::Deny.allows(&ann, &owned));
        let custom = Rule::Custom(Arc::new(|p, _| p.user_id.as_deref() == Some("bob")));
        assert!(custom.allows(&bob, &owned) && !custom.allows(&ann, &owned));
    }

    /// The hub judges by sign-in alone where that is enough: it must agree with the
    /// full judgement for every rule, principal and event, and give up otherwise.
    #[test]
    fn judging_by_sign_in_alone_agrees_with_the_full_rule() {
        let rules: Vec<Rule> = vec![
            Rule::Public,
            Rule::Authenticated,
            Rule::Deny,
            "role:publisher".parse().unwrap(),
            "owner:owner_id".parse().unwrap(),
            Rule::Custom(Arc::new(|_, _| true)),
        ];
        let principals = [
            user("ann", &["publisher"]),
            user("bob", &[]),
            Principal::anonymous(),
        ];
        let events = [
            event(json!({"owner_id":"ann"}), json!({})),
            event(json!({}), json!({})),
        ];
        let mut answered = 0;
        for rule in &rules {
            for principal in &principals {
                let Some(allowed) = rule.decide_by_sign_in(principal.is_authenticated()) else {
                    continue;
                };
                answered += 1;
                for event in &events {
                    assert_eq!(
                        allowed,
                        rule.allows(principal, event),
                        "{rule:?} for {principal:?}"
                    );
                }
            }
        }
        // Public, authenticated and deny for all three, owner for the anonymous one.
        assert_eq!(answered, 10);
    }

    #[test]
    fn decisions_at_subscribe_time() {
        let anon = Principal::anonymous();
        assert_eq!(Rule::Owner("o".into()).decide(&anon), Decision::Deny);
        assert_eq!(
            Rule::Owner("o".into()).decide(&user("a", &[])),
            Decision::PerEvent
        );
        assert_eq!(Rule::Authenticated.decide(&anon), Decision::Deny);
        assert!("bogus".parse::<Rule>().is_err());
        assert!("role:".parse::<Rule>().is_err());
        assert!(matches!(Rules::new().read_rule("x"), Rule::Deny));
    }
}
