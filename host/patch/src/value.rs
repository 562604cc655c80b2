//! Value helpers shared by the patch formats.

use serde_json::{Number, Value};
use std::fmt::Write as _;

/// JSON equality where numbers compare by value: `80` and `80.0` are the
/// same port. serde_json's `PartialEq` keeps integer and float apart, but
/// RFC 6902 `test` and Kubernetes' merge-key matching (Go decodes every
/// number to float64) do not.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(l, r)| json_eq(l, r))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn num_eq(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A string that is equal for two values exactly when [`json_eq`] holds
/// (object keys sorted, integral floats written as integers), so lists can
/// be matched through a hash map instead of quadratic scans: a patch body
/// may hold many thousands of list items.
pub(crate) fn canon(v: &Value) -> String {
    let mut out = String::new();
    canon_into(v, &mut out);
    out
}

fn canon_into(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push('n'),
        Value::Bool(true) => out.push('t'),
        Value::Bool(false) => out.push('f'),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "i{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "i{u}");
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // 2^63 bounds the range where an integral float maps onto an i64.
                if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 {
                    let _ = write!(out, "i{}", f as i64);
                } else {
                    let _ = write!(out, "d{f}");
                }
            }
        }
        Value::String(s) => {
            out.push('s');
            out.push_str(&Value::String(s.clone()).to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon_into(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canon_into(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// Removes `null` members from objects at every depth. In Kubernetes objects
/// a null field means "not set", and storing it would make the object differ
/// from what a later GET of the same fields returns.
pub(crate) fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(80), &json!(80.0)));
        assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert_eq!(canon(&json!(80)), canon(&json!(80.0)));
        assert_eq!(
            canon(&json!({"b": 1, "a": 2})),
            canon(&json!({"a": 2, "b": 1}))
        );
        assert_ne!(canon(&json!("1")), canon(&json!(1)));
    }

    #[test]
    fn strips_nested_nulls() {
        assert_eq!(
            strip_nulls(&json!({"a": null, "b": {"c": null, "d": 1}, "e": [null, {"f": null}]})),
            json!({"b": {"d": 1}, "e": [null, {}]})
        );
    }
}
