//! Filtered subscriptions: a condition on a record's public fields that every record
//! event of a subscription must meet, judged in memory per event (never a database
//! query per subscriber).
//!
//! A filter is a JSON object mapping public field names to a condition: a JSON scalar
//! (equality) or an object with exactly one operator among `eq`, `neq`, `lt`, `lte`,
//! `gt`, `gte` and `in` (a list of scalars). All conditions must hold.
//!
//! Comparison semantics (documented in docs/protocol.md):
//!
//! - A missing field reads as `null`.
//! - `eq`/`neq` with `null` test presence: `{"eq": null}` holds for a null or missing
//!   field, `{"neq": null}` for any other value. A null or missing field meets no
//!   other condition, `neq` included (as in SQL).
//! - Otherwise values compare only with values of the same JSON type: numbers
//!   numerically (`1` equals `1.0`), strings by Unicode code points, booleans by
//!   equality. Any operator, `neq` included, is false across types: `"5"` is neither
//!   equal nor unequal to `5`, so a filter never matches by accident of a type.
//! - `lt`, `lte`, `gt`, `gte` hold only for two numbers or two strings.
//! - `in` holds when `eq` holds for one of the listed values.
//!
//! Which fields a subscription may filter on (never a hidden one) is the access
//! policy's decision, in `access.rs`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Limits on a filter, from `connection.max_filter_conditions`,
/// `connection.max_filter_values` and `connection.max_filter_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Conditions (fields) per filter at most.
    pub max_conditions: usize,
    /// Values in one `in` list at most.
    pub max_values: usize,
    /// The filter's JSON text, in bytes, at most: a filter is held in memory for the
    /// whole life of its subscription.
    pub max_bytes: usize,
}

/// Why a filter was refused; the message names the problem (`bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not a JSON object (or not JSON at all, on the query string).
    #[error("filter must be a JSON object mapping field names to conditions{0}")]
    NotAnObject(String),
    /// More fields than `max_conditions`.
    #[error("filter has {count} conditions; at most {limit} are allowed")]
    TooManyConditions {
        /// Conditions given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An empty field name.
    #[error("filter field names must not be empty")]
    BadField,
    /// The filter's JSON text is larger than `max_bytes`.
    #[error("filter is {bytes} bytes of JSON; at most {limit} are allowed")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// An operator object that is empty, has several keys, or an unknown one.
    #[error(
        "filter on {field:?}: {found}; expected a scalar or one of eq, neq, lt, lte, gt, gte, in"
    )]
    BadOperator {
        /// The field.
        field: String,
        /// What was found instead.
        found: String,
    },
    /// An operand that is an array or object (or an `in` that is not a list of
    /// scalars).
    #[error("filter on {field:?}: {why}")]
    BadOperand {
        /// The field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// A field the collection hides: filtering on it would reveal it.
    #[error("filter on {field:?}: {collection} hides that field, so it cannot be filtered on")]
    HiddenField {
        /// The field.
        field: String,
        /// The collection hiding it.
        collection: String,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

impl Op {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "eq" => Self::Eq,
            "neq" => Self::Neq,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "in" => Self::In,
            _ => return None,
        })
    }
}

/// One field's condition.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    field: String,
    op: Op,
    /// One scalar, or the scalars of an `in` list.
    operands: Vec<Value>,
}

/// A parsed, validated filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    conditions: Vec<Condition>,
}

impl Filter {
    /// Parses a filter from the JSON text of a query parameter.
    pub fn parse_str(text: &str, limits: FilterLimits) -> Result<Self, FilterError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| FilterError::NotAnObject(format!(" (not JSON: {e})")))?;
        Self::parse(&value, limits)
    }

    /// Parses and validates a filter object.
    pub fn parse(value: &Value, limits: FilterLimits) -> Result<Self, FilterError> {
        let Value::Object(fields) = value else {
            return Err(FilterError::NotAnObject(String::new()));
        };
        // Measured as sent; serializing a parsed value cannot fail.
        let bytes = serde_json::to_vec(value).map_or(usize::MAX, |json| json.len());
        if bytes > limits.max_bytes {
            return Err(FilterError::TooLarge {
                bytes,
                limit: limits.max_bytes,
            });
        }
        if fields.len() > limits.max_conditions {
            return Err(FilterError::TooManyConditions {
                count: fields.len(),
                limit: limits.max_conditions,
            });
        }
        let conditions = fields
            .iter()
            .map(|(field, condition)| Condition::parse(field, condition, limits))
            .collect::<Result<_, _>>()?;
        Ok(Self { conditions })
    }

    /// Whether the filter has no condition (matches every record).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The field names the filter reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.conditions.iter().map(|c| c.field.as_str())
    }

    /// Whether `record` (a public projection) meets every condition. A record that is
    /// not an object has only missing fields.
    pub fn matches(&self, record: &Value) -> bool {
        let fields = record.as_object();
        self.conditions.iter().all(|c| c.holds(fields))
    }
}

impl Condition {
    fn parse(field: &str, condition: &Value, limits: FilterLimits) -> Result<Self, FilterError> {
        if field.is_empty() {
            return Err(FilterError::BadField);
        }
        let bad_operand = |why: String| FilterError::BadOperand {
            field: field.to_owned(),
            why,
        };
        let (op, operand) = match condition {
            Value::Object(ops) => {
                let mut entries = ops.iter();
                let (Some((name, operand)), None) = (entries.next(), entries.next()) else {
                    return Err(FilterError::BadOperator {
                        field: field.to_owned(),
                        found: format!("{} operators", ops.len()),
                    });
                };
                let op = Op::parse(name).ok_or_else(|| FilterError::BadOperator {
                    field: field.to_owned(),
                    found: format!("unknown operator {:?}", truncate(name)),
                })?;
                (op, operand)
            }
            scalar => (Op::Eq, scalar),
        };
        let operands = match (op, operand) {
            (Op::In, Value::Array(values)) => {
                if values.len() > limits.max_values {
                    return Err(bad_operand(format!(
                        "`in` lists {} values; at most {} are allowed",
                        values.len(),
                        limits.max_values
                    )));
                }
                values.clone()
            }
            (Op::In, _) => return Err(bad_operand("`in` takes a list of scalars".into())),
            (_, value) => vec![value.clone()],
        };
        for operand in &operands {
            check_scalar(operand).map_err(bad_operand)?;
        }
        Ok(Self {
            field: field.to_owned(),
            op,
            operands,
        })
    }

    fn holds(&self, fields: Option<&Map<String, Value>>) -> bool {
        let value = fields
            .and_then(|f| f.get(&self.field))
            .unwrap_or(&Value::Null);
        let operand = || &self.operands[0];
        match self.op {
            Op::Eq => equal(value, operand()).unwrap_or(false),
            Op::Neq => equal(value, operand()).is_some_and(|eq| !eq),
            Op::Lt => order(value, operand()).is_some_and(Ordering::is_lt),
            Op::Lte => order(value, operand()).is_some_and(Ordering::is_le),
            Op::Gt => order(value, operand()).is_some_and(Ordering::is_gt),
            Op::Gte => order(value, operand()).is_some_and(Ordering::is_ge),
            Op::In => self
                .operands
                .iter()
                .any(|o| equal(value, o).unwrap_or(false)),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

fn check_scalar(value: &Value) -> Result<(), String> {
    match value {
        Value::Array(_) | Value::Object(_) => {
            Err("operands must be scalars (string, number, boolean or null)".into())
        }
        _ => Ok(()),
    }
}

/// Equality, or `None` when the two values are of types that do not compare. A `null`
/// operand tests presence, so it compares with everything; a null or missing field
/// compares with nothing else.
fn equal(value: &Value, operand: &Value) -> Option<bool> {
    match (value, operand) {
        (_, Value::Null) => Some(value.is_null()),
        (Value::Null, _) => None,
        (Value::Number(_), Value::Number(_)) => order(value, operand).map(Ordering::is_eq),
        (Value::String(a), Value::String(b)) => Some(a == b),
        (Value::Bool(a), Value::Bool(b)) => Some(a == b),
        _ => None,
    }
}

/// The order of two numbers or two strings; `None` for anything else.
fn order(value: &Value, operand: &Value) -> Option<Ordering> {
    match (value, operand) {
        (Value::Number(a), Value::Number(b)) => {
            // Integers compare exactly; floats only when either side is one.
            match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
                (Some(a), Some(b), _, _) => Some(a.cmp(&b)),
                (_, _, Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
            }
        }
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: FilterLimits = FilterLimits {
        max_conditions: 4,
        max_values: 3,
        max_bytes: 1024,
    };

    fn filter(value: Value) -> Filter {
        Filter::parse(&value, LIMITS).expect("valid filter")
    }

    /// operator x record value -> match, including every type mismatch.
    #[test]
    fn operator_table() {
        let rows: &[(Value, Value, bool)] = &[
            (json!({"n": 3}), json!({"n": 3}), true),
            (json!({"n": 3}), json!({"n": 3.0}), true),
            (json!({"n": 3}), json!({"n": "3"}), false),
            (json!({"n": {"eq": 3}}), json!({"n": 4}), false),
            (json!({"n": {"neq": 3}}), json!({"n": 4}), true),
            (json!({"n": {"neq": 3}}), json!({"n": 3}), false),
            (json!({"n": {"neq": 3}}), json!({"n": "x"}), false),
            (json!({"n": {"neq": 3}}), json!({}), false),
            (json!({"n": {"lt": 3}}), json!({"n": 2}), true),
            (json!({"n": {"lt": 3}}), json!({"n": 3}), false),
            (json!({"n": {"lte": 3}}), json!({"n": 3}), true),
            (json!({"n": {"gt": 3}}), json!({"n": 3.5}), true),
            (json!({"n": {"gt": 3}}), json!({"n": 3}), false),
            (json!({"n": {"gte": 3}}), json!({"n": 3}), true),
            (json!({"n": {"gte": -1}}), json!({"n": u64::MAX}), true),
            (json!({"n": {"lt": 3}}), json!({"n": "2"}), false),
            (json!({"n": {"lt": 3}}), json!({"n": null}), false),
            (json!({"n": {"lt": true}}), json!({"n": false}), false),
            (json!({"s": {"lt": "b"}}), json!({"s": "a"}), true),
            (json!({"s": {"gte": "b"}}), json!({"s": "a"}), false),
            (json!({"s": "a"}), json!({"s": "a"}), true),
            (json!({"b": false}), json!({"b": false}), true),
            (json!({"b": false}), json!({"b": 0}), false),
            (json!({"b": false}), json!({}), false),
            (json!({"x": null}), json!({}), true),
            (json!({"x": null}), json!({"x": null}), true),
            (json!({"x": null}), json!({"x": 0}), false),
            (json!({"x": {"neq": null}}), json!({"x": 0}), true),
            (json!({"x": {"neq": null}}), json!({}), false),
            (json!({"s": {"in": ["a", "b"]}}), json!({"s": "b"}), true),
            (json!({"s": {"in": ["a", 2]}}), json!({"s": 2}), true),
            (json!({"s": {"in": ["a", "b"]}}), json!({"s": "c"}), false),
            (json!({"s": {"in": []}}), json!({"s": "c"}), false),
            (json!({"a": 1, "b": 2}), json!({"a": 1, "b": 2}), true),
            (json!({"a": 1, "b": 2}), json!({"a": 1, "b": 3}), false),
            (json!({}), json!({"a": 1}), true),
        ];
        for (condition, record, expected) in rows {
            assert_eq!(
                filter(condition.clone()).matches(record),
                *expected,
                "{condition} on {record}"
            );
        }
        assert!(!filter(json!({"a": 1})).matches(&json!(null)));
    }

    #[test]
    fn bad_filters_name_the_problem() {
        let rows: &[(Value, &str)] = &[
            (json!([1]), "must be a JSON object"),
            (json!("done"), "must be a JSON object"),
            (json!({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}), "at most 4"),
            (json!({"a": {"like": "x"}}), "unknown operator \"like\""),
            (json!({"a": {}}), "0 operators"),
            (json!({"a": {"eq": 1, "neq": 2}}), "2 operators"),
            (json!({"a": {"eq": [1]}}), "scalars"),
            (json!({"a": [1, 2]}), "scalars"),
            (json!({"a": {"eq": {"b": 1}}}), "scalars"),
            (json!({"a": {"in": 1}}), "list of scalars"),
            (json!({"a": {"in": [[1]]}}), "scalars"),
            (json!({"a": {"in": [1, 2, 3, 4]}}), "at most 3"),
            (json!({"": 1}), "field names"),
            (json!({"a": "x".repeat(2000)}), "at most 1024 are allowed"),
            (json!({"x".repeat(2000): 1}), "at most 1024 are allowed"),
        ];
        for (value, expected) in rows {
            let message = Filter::parse(value, LIMITS).unwrap_err().to_string();
            assert!(message.contains(expected), "{value}: {message}");
        }
        let message = Filter::parse_str("{nope", LIMITS).unwrap_err().to_string();
        assert!(message.contains("not JSON"), "{message}");
    }
}
