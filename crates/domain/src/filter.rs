//! Payload filters: which events a webhook receives beyond its subscription.
//!
//! A filter is a JSON document in the syntax Hookdeck and Outpost users know:
//! an object whose keys are paths into the event envelope (`id`,
//! `eventType`, `userId`, `data`, `metadata`) and whose values are a literal
//! (equality; a nested object matches nested fields) or an operator object
//! (`{"$lt": 10}`). `$and`, `$or` and `$not` combine filters. For example
//! `{"data": {"balance": {"$lt": 10}, "plan": {"$in": ["pro", "team"]}}}`.
//!
//! [`PayloadFilter::parse`] compiles the document once, checking every
//! operator and bound, so that evaluating it per event never fails and never
//! looks at an operator name again.

use serde_json::{Map, Value};

use crate::envelope::Event;

/// Largest filter accepted, in bytes of compact JSON.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of objects and arrays accepted in a filter.
pub const MAX_FILTER_DEPTH: usize = 16;
/// Most values an `$in` or `$nin` list may hold.
pub const MAX_LIST_LEN: usize = 256;

/// Why a filter was refused: the path of the offending part and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter{path}: {problem}")]
pub struct InvalidFilter {
    /// Where, such as `.data.balance.$lt` (empty for the whole filter).
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub problem: String,
}

impl InvalidFilter {
    fn at(path: &str, problem: impl Into<String>) -> InvalidFilter {
        InvalidFilter {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A compiled, valid filter, with the document it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadFilter {
    source: Value,
    root: Condition,
}

/// One compiled test, applied to the value at the current path (`None` when
/// the path does not exist in the envelope).
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Field(String, Box<Condition>),
    Equals(Value),
    NotEquals(Value),
    Compare(Ordering, Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    StartsWith(String),
    EndsWith(String),
    Contains(Value),
    Exists(bool),
}

/// The four ordered comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordering {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

const OPERATORS: &str = "$eq, $neq, $gt, $gte, $lt, $lte, $in, $nin, $startsWith, $endsWith, $contains, $exist, $and, $or, $not";

impl PayloadFilter {
    /// Compiles `document`, refusing unknown operators, operands of the
    /// wrong kind, and documents over [`MAX_FILTER_BYTES`] or
    /// [`MAX_FILTER_DEPTH`].
    pub fn parse(document: Value) -> Result<PayloadFilter, InvalidFilter> {
        let Value::Object(map) = &document else {
            return Err(InvalidFilter::at(
                "",
                format!("a filter must be a JSON object, not {}", kind_of(&document)),
            ));
        };
        if depth(&document) > MAX_FILTER_DEPTH {
            return Err(InvalidFilter::at(
                "",
                format!("a filter may be nested at most {MAX_FILTER_DEPTH} levels deep"),
            ));
        }
        let size = serde_json::to_vec(&document).map(|v| v.len()).unwrap_or(0);
        if size > MAX_FILTER_BYTES {
            return Err(InvalidFilter::at(
                "",
                format!("a filter may be at most {MAX_FILTER_BYTES} bytes of JSON, not {size}"),
            ));
        }
        let root = compile_object(map, "")?;
        Ok(PayloadFilter {
            source: document,
            root,
        })
    }

    /// The document as written (for reads and storage).
    pub fn document(&self) -> &Value {
        &self.source
    }

    /// Whether `envelope` (see [`filter_envelope`]) matches.
    pub fn matches(&self, envelope: &Value) -> bool {
        self.root.eval(Some(envelope))
    }
}

/// The envelope a filter is matched against, built once per event: `id`,
/// `eventType`, `userId`, `data` and `metadata`, as receivers see them.
pub fn filter_envelope(event: &Event) -> Value {
    let mut map = Map::with_capacity(5);
    map.insert("id".into(), Value::String(event.id.to_string()));
    map.insert(
        "eventType".into(),
        Value::String(event.event_type.as_str().to_owned()),
    );
    map.insert("userId".into(), Value::String(event.user_id.to_string()));
    // `data` was checked to be a JSON object at most 128 levels deep when
    // the event was accepted, which serde_json reads back within its limit.
    let data = serde_json::from_str(event.data.as_str()).unwrap_or(Value::Object(Map::new()));
    map.insert("data".into(), data);
    map.insert("metadata".into(), Value::Object(event.metadata.clone()));
    Value::Object(map)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn depth(value: &Value) -> usize {
    // Iterative, so that a hostile document cannot exhaust the stack before
    // the bound is checked.
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(d);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(d);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// An object of field keys and operators, all of which must hold.
fn compile_object(map: &Map<String, Value>, path: &str) -> Result<Condition, InvalidFilter> {
    let mut all = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = format!("{path}.{key}");
        if key.starts_with('$') {
            all.push(compile_operator(key, value, &here)?);
        } else if key.is_empty() {
            return Err(InvalidFilter::at(&here, "a field name may not be empty"));
        } else {
            all.push(Condition::Field(
                key.clone(),
                Box::new(compile_value(value, &here)?),
            ));
        }
    }
    Ok(match all.len() {
        1 => all.pop().unwrap_or(Condition::All(Vec::new())),
        _ => Condition::All(all),
    })
}

/// The test a field's value in the filter stands for.
fn compile_value(value: &Value, path: &str) -> Result<Condition, InvalidFilter> {
    match value {
        Value::Object(map) => compile_object(map, path),
        literal => Ok(Condition::Equals(literal.clone())),
    }
}

fn compile_operator(op: &str, operand: &Value, path: &str) -> Result<Condition, InvalidFilter> {
    let scalar = |operand: &Value| -> Result<Value, InvalidFilter> {
        match operand {
            Value::Object(_) | Value::Array(_) => Err(InvalidFilter::at(
                path,
                format!(
                    "{op} expects a string, number, boolean or null, not {}",
                    kind_of(operand)
                ),
            )),
            v => Ok(v.clone()),
        }
    };
    let ordered = |ordering: Ordering| -> Result<Condition, InvalidFilter> {
        match operand {
            Value::Number(_) | Value::String(_) => {
                Ok(Condition::Compare(ordering, operand.clone()))
            }
            other => Err(InvalidFilter::at(
                path,
                format!("{op} expects a number or a string, not {}", kind_of(other)),
            )),
        }
    };
    let text = || -> Result<String, InvalidFilter> {
        operand.as_str().map(str::to_owned).ok_or_else(|| {
            InvalidFilter::at(
                path,
                format!("{op} expects a string, not {}", kind_of(operand)),
            )
        })
    };
    let list = || -> Result<Vec<Value>, InvalidFilter> {
        let Value::Array(items) = operand else {
            return Err(InvalidFilter::at(
                path,
                format!("{op} expects an array of values, not {}", kind_of(operand)),
            ));
        };
        if items.len() > MAX_LIST_LEN {
            return Err(InvalidFilter::at(
                path,
                format!("{op} may list at most {MAX_LIST_LEN} values"),
            ));
        }
        items.iter().map(scalar).collect()
    };
    let filters = || -> Result<Vec<Condition>, InvalidFilter> {
        let Value::Array(items) = operand else {
            return Err(InvalidFilter::at(
                path,
                format!("{op} expects an array of filters, not {}", kind_of(operand)),
            ));
        };
        if items.is_empty() {
            return Err(InvalidFilter::at(
                path,
                format!("{op} expects at least one filter"),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => compile_object(map, &format!("{path}[{i}]")),
                other => Err(InvalidFilter::at(
                    &format!("{path}[{i}]"),
                    format!("{op} expects filter objects, not {}", kind_of(other)),
                )),
            })
            .collect()
    };
    Ok(match op {
        "$eq" => Condition::Equals(operand.clone()),
        "$neq" => Condition::NotEquals(operand.clone()),
        "$gt" => ordered(Ordering::Greater)?,
        "$gte" => ordered(Ordering::GreaterOrEqual)?,
        "$lt" => ordered(Ordering::Less)?,
        "$lte" => ordered(Ordering::LessOrEqual)?,
        "$in" => Condition::In(list()?),
        "$nin" => Condition::NotIn(list()?),
        "$startsWith" => Condition::StartsWith(text()?),
        "$endsWith" => Condition::EndsWith(text()?),
        "$contains" => Condition::Contains(scalar(operand)?),
        "$exist" => match operand {
            Value::Bool(b) => Condition::Exists(*b),
            other => {
                return Err(InvalidFilter::at(
                    path,
                    format!("$exist expects true or false, not {}", kind_of(other)),
                ));
            }
        },
        "$and" => Condition::All(filters()?),
        "$or" => Condition::Any(filters()?),
        "$not" => match operand {
            Value::Object(map) => Condition::Not(Box::new(compile_object(map, path)?)),
            other => {
                return Err(InvalidFilter::at(
                    path,
                    format!("$not expects a filter object, not {}", kind_of(other)),
                ));
            }
        },
        unknown => {
            return Err(InvalidFilter::at(
                path,
                format!("{unknown} is not an operator; use one of {OPERATORS}"),
            ));
        }
    })
}

/// JSON equality, with numbers equal by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// Literal equality: the value itself, or, for an array field and a
/// non-array literal, any of its elements (`{"tags": "vip"}` matches
/// `"tags": ["new", "vip"]`).
fn equals(value: &Value, literal: &Value) -> bool {
    match (value, literal) {
        (Value::Array(items), lit) if !lit.is_array() => items.iter().any(|i| same(i, lit)),
        _ => same(value, literal),
    }
}

fn compare(ordering: Ordering, value: &Value, bound: &Value) -> bool {
    use std::cmp::Ordering as O;
    let order = match (value, bound) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    };
    match (ordering, order) {
        (_, None) => false,
        (Ordering::Greater, Some(o)) => o == O::Greater,
        (Ordering::GreaterOrEqual, Some(o)) => o != O::Less,
        (Ordering::Less, Some(o)) => o == O::Less,
        (Ordering::LessOrEqual, Some(o)) => o != O::Greater,
    }
}

impl Condition {
    fn eval(&self, value: Option<&Value>) -> bool {
        match self {
            Condition::All(all) => all.iter().all(|c| c.eval(value)),
            Condition::Any(any) => any.iter().any(|c| c.eval(value)),
            Condition::Not(c) => !c.eval(value),
            Condition::Field(key, c) => {
                c.eval(value.and_then(Value::as_object).and_then(|m| m.get(key)))
            }
            Condition::Exists(wanted) => value.is_some() == *wanted,
            // A missing field is different from every literal.
            Condition::NotEquals(lit) => !value.is_some_and(|v| equals(v, lit)),
            Condition::NotIn(list) => !value.is_some_and(|v| list.iter().any(|l| equals(v, l))),
            _ => value.is_some_and(|v| self.eval_present(v)),
        }
    }

    fn eval_present(&self, value: &Value) -> bool {
        match self {
            Condition::Equals(lit) => equals(value, lit),
            Condition::Compare(ordering, bound) => compare(*ordering, value, bound),
            Condition::In(list) => list.iter().any(|l| equals(value, l)),
            Condition::StartsWith(prefix) => value.as_str().is_some_and(|s| s.starts_with(prefix)),
            Condition::EndsWith(suffix) => value.as_str().is_some_and(|s| s.ends_with(suffix)),
            Condition::Contains(needle) => match (value, needle) {
                (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
                (Value::Array(items), n) => items.iter().any(|i| same(i, n)),
                _ => false,
            },
            // Handled in `eval`, which knows whether the field exists.
            Condition::All(_)
            | Condition::Any(_)
            | Condition::Not(_)
            | Condition::Field(..)
            | Condition::Exists(_)
            | Condition::NotEquals(_)
            | Condition::NotIn(_) => self.eval(Some(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({
            "id": "evt_1",
            "eventType": "credit.low_balance",
            "userId": "user_1",
            "data": {"balance": 5, "plan": "pro", "tags": ["new", "vip"], "account": {"country": "DE"}},
            "metadata": {"service": "core-service"}
        })
    }

    fn matches(filter: Value) -> bool {
        PayloadFilter::parse(filter).unwrap().matches(&envelope())
    }

    #[test]
    fn literals_and_nested_objects_match_by_equality() {
        assert!(matches(json!({"eventType": "credit.low_balance"})));
        assert!(matches(json!({"data": {"account": {"country": "DE"}}})));
        assert!(!matches(json!({"data": {"account": {"country": "FR"}}})));
        assert!(matches(json!({"data": {"tags": "vip"}})));
        assert!(matches(json!({"data": {"balance": 5.0}})));
        assert!(!matches(json!({"data": {"missing": 1}})));
    }

    #[test]
    fn the_issue_example_matches() {
        let f = json!({"data": {"balance": {"$lt": 10}, "plan": {"$in": ["pro", "team"]}}});
        assert!(matches(f));
        assert!(!matches(
            json!({"data": {"balance": {"$lt": 5}, "plan": {"$in": ["pro"]}}})
        ));
    }

    #[test]
    fn every_operator_decides() {
        assert!(matches(json!({"data": {"plan": {"$eq": "pro"}}})));
        assert!(matches(json!({"data": {"plan": {"$neq": "team"}}})));
        assert!(matches(json!({"data": {"nothing": {"$neq": "team"}}})));
        assert!(matches(json!({"data": {"balance": {"$gt": 4, "$lte": 5}}})));
        assert!(!matches(json!({"data": {"balance": {"$gte": 6}}})));
        assert!(!matches(json!({"data": {"plan": {"$gt": 1}}})));
        assert!(matches(json!({"data": {"plan": {"$nin": ["team"]}}})));
        assert!(matches(json!({"eventType": {"$startsWith": "credit."}})));
        assert!(matches(json!({"eventType": {"$endsWith": "_balance"}})));
        assert!(matches(json!({"eventType": {"$contains": "low"}})));
        assert!(matches(json!({"data": {"tags": {"$contains": "vip"}}})));
        assert!(!matches(json!({"data": {"tags": {"$contains": "old"}}})));
        assert!(matches(json!({"data": {"plan": {"$exist": true}}})));
        assert!(matches(json!({"data": {"nothing": {"$exist": false}}})));
        assert!(matches(
            json!({"$or": [{"userId": "user_2"}, {"data": {"plan": "pro"}}]})
        ));
        assert!(!matches(
            json!({"$and": [{"userId": "user_2"}, {"data": {"plan": "pro"}}]})
        ));
        assert!(matches(json!({"$not": {"userId": "user_2"}})));
        assert!(matches(
            json!({"data": {"plan": {"$not": {"$eq": "team"}}}})
        ));
        assert!(matches(json!({})));
    }

    #[test]
    fn errors_name_the_path_and_the_operator() {
        let err = PayloadFilter::parse(json!({"data": {"balance": {"$lt": true}}})).unwrap_err();
        assert_eq!(err.path, ".data.balance.$lt");
        assert!(
            err.problem.contains("$lt expects a number or a string"),
            "{err}"
        );
        let err = PayloadFilter::parse(json!({"data": {"x": {"$regex": "a"}}})).unwrap_err();
        assert_eq!(err.path, ".data.x.$regex");
        assert!(err.problem.contains("$regex is not an operator"), "{err}");
        let err = PayloadFilter::parse(json!({"$or": [{"a": 1}, 2]})).unwrap_err();
        assert_eq!(err.path, ".$or[1]");
        let err = PayloadFilter::parse(json!({"a": {"$in": "x"}})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("filter.a.$in: $in expects an array"),
            "{err}"
        );
        assert!(PayloadFilter::parse(json!([1])).is_err());
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let mut deep = json!(1);
        for _ in 0..MAX_FILTER_DEPTH + 1 {
            deep = json!({ "a": deep });
        }
        let err = PayloadFilter::parse(deep).unwrap_err();
        assert!(err.problem.contains("levels deep"), "{err}");
        let big = json!({"data": {"x": {"$in": vec!["y".repeat(100); 50]}}});
        let err = PayloadFilter::parse(big).unwrap_err();
        assert!(err.problem.contains("bytes"), "{err}");
        let long = json!({"x": {"$in": vec![1; MAX_LIST_LEN + 1]}});
        assert!(PayloadFilter::parse(long).is_err());
    }
}
