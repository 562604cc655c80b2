//! RFC 6902 JSON Patch with RFC 6901 JSON Pointers.

use crate::value::json_eq;
use crate::{PatchError, invalid};
use serde_json::{Map, Value};

/// The API server's cap on operations in one JSON Patch; it keeps a single
/// request from monopolising the server.
const MAX_OPERATIONS: usize = 10_000;

/// Cap on the number of JSON nodes all `copy` operations of one patch may
/// produce. Each `copy` of the root into itself doubles the document, so a
/// few dozen operations could otherwise exhaust memory.
const MAX_COPIED_NODES: usize = 1_000_000;

/// Applies an RFC 6902 JSON Patch (`add`, `remove`, `replace`, `move`,
/// `copy`, `test`) to `doc` and returns the patched document.
///
/// JSON Pointers use RFC 6901 escaping (`~0` for `~`, `~1` for `/`); `-` as
/// the last array token appends. The patch is atomic: it is applied to a
/// copy, so any failing operation leaves nothing applied. A failing `test`
/// yields [`PatchError::TestFailed`], an over-long patch
/// [`PatchError::TooLarge`], anything else [`PatchError::Invalid`].
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(invalid(
            "json patch must be a JSON array of operations, e.g. [{\"op\": \"add\", \"path\": \"/a\", \"value\": 1}]",
        ));
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let mut doc = doc.clone();
    let mut copied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut doc, op, &mut copied).map_err(|e| match e {
            PatchError::Invalid(m) => PatchError::Invalid(format!("operation {i}: {m}")),
            other => other,
        })?;
    }
    Ok(doc)
}

fn apply_op(doc: &mut Value, op: &Value, copied: &mut usize) -> Result<(), PatchError> {
    let Value::Object(op) = op else {
        return Err(invalid(format!(
            "each json patch operation must be an object, got {op}"
        )));
    };
    let kind = match op.get("op") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(invalid(format!("Unexpected kind: {other}"))),
        None => return Err(invalid("operation has no \"op\" member")),
    };
    let path = pointer_member(op, "path")?;
    match kind {
        "add" => add(doc, &path, value_member(op)?.clone()),
        "remove" => remove(doc, &path).map(drop),
        "replace" => replace(doc, &path, value_member(op)?.clone()),
        "move" => {
            let from = pointer_member(op, "from")?;
            if from == path {
                return get(doc, &from)
                    .map(drop)
                    .ok_or_else(|| missing("move", &op_str(op, "from")));
            }
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(invalid(format!(
                    "move operation cannot move {:?} into one of its children {:?}",
                    op_str(op, "from"),
                    op_str(op, "path")
                )));
            }
            let value = remove(doc, &from)?;
            add(doc, &path, value)
        }
        "copy" => {
            let from = pointer_member(op, "from")?;
            let value = get(doc, &from)
                .ok_or_else(|| missing("copy", &op_str(op, "from")))?
                .clone();
            *copied = copied.saturating_add(node_count(&value));
            if *copied > MAX_COPIED_NODES {
                return Err(PatchError::TooLarge(format!(
                    "copy operations in this patch would copy more than {MAX_COPIED_NODES} values"
                )));
            }
            add(doc, &path, value)
        }
        "test" => {
            let expected = value_member(op)?;
            match get(doc, &path) {
                Some(actual) if json_eq(actual, expected) => Ok(()),
                _ => Err(PatchError::TestFailed(format!(
                    "testing value {} failed: test failed",
                    op_str(op, "path")
                ))),
            }
        }
        other => Err(invalid(format!("Unexpected kind: {other}"))),
    }
}

fn op_str(op: &Map<String, Value>, member: &str) -> String {
    op.get(member)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn value_member(op: &Map<String, Value>) -> Result<&Value, PatchError> {
    // Presence matters, not nullness: `"value": null` sets a null.
    op.get("value")
        .ok_or_else(|| invalid("operation has no \"value\" member"))
}

fn pointer_member(op: &Map<String, Value>, member: &str) -> Result<Vec<String>, PatchError> {
    match op.get(member) {
        Some(Value::String(s)) => parse_pointer(s),
        Some(other) => Err(invalid(format!(
            "\"{member}\" must be a JSON Pointer string, got {other}"
        ))),
        None => Err(invalid(format!("operation has no \"{member}\" member"))),
    }
}

fn missing(kind: &str, path: &str) -> PatchError {
    invalid(format!(
        "{kind} operation does not apply: doc is missing path: {path:?}"
    ))
}

/// Splits an RFC 6901 pointer into unescaped reference tokens.
pub(crate) fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(invalid(format!(
            "invalid JSON Pointer {pointer:?}: must be empty or start with '/'"
        )));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => {
                        return Err(invalid(format!(
                            "invalid JSON Pointer {pointer:?}: '~' must be followed by '0' or '1'"
                        )));
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: decimal digits without leading zeros (RFC 6901).
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, token| match cur {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(parse_index(token)?),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |cur, token| match cur {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(parse_index(token)?),
        _ => None,
    })
}

fn display(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parent_tokens).ok_or_else(|| missing("add", &display(tokens)))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                parse_index(last)
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| {
                        invalid(format!(
                            "add operation does not apply: index out of bounds or invalid at {:?}",
                            display(tokens)
                        ))
                    })?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing("add", &display(tokens))),
    }
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err(invalid("remove operation cannot remove the whole document"));
    };
    let parent = get_mut(doc, parent_tokens).ok_or_else(|| missing("remove", &display(tokens)))?;
    let removed = match parent {
        // shift_remove keeps the other members in place, as clients expect.
        Value::Object(map) => map.shift_remove(last.as_str()),
        Value::Array(items) => parse_index(last)
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| missing("remove", &display(tokens)))
}

fn replace(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), PatchError> {
    let target = get_mut(doc, tokens).ok_or_else(|| missing("replace", &display(tokens)))?;
    *target = value;
    Ok(())
}

fn node_count(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(doc: Value, patch: Value) -> Value {
        json_patch(&doc, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"))
    }

    // RFC 6902 Appendix A, one test per example.

    #[test]
    fn a1_add_object_member() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}])
            ),
            json!({"baz": "qux", "foo": "bar"})
        );
    }

    #[test]
    fn a2_add_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}])
            ),
            json!({"foo": ["bar", "qux", "baz"]})
        );
    }

    #[test]
    fn a3_remove_object_member() {
        assert_eq!(
            ok(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}])
            ),
            json!({"foo": "bar"})
        );
    }

    #[test]
    fn a4_remove_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}])
            ),
            json!({"foo": ["bar", "baz"]})
        );
    }

    #[test]
    fn a5_replace_value() {
        assert_eq!(
            ok(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}])
            ),
            json!({"baz": "boo", "foo": "bar"})
        );
    }

    #[test]
    fn a6_move_value() {
        assert_eq!(
            ok(
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
            ),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        );
    }

    #[test]
    fn a7_move_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}])
            ),
            json!({"foo": ["all", "cows", "eat", "grass"]})
        );
    }

    #[test]
    fn a8_test_success() {
        let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
        assert_eq!(
            ok(
                doc.clone(),
                json!([
                    {"op": "test", "path": "/baz", "value": "qux"},
                    {"op": "test", "path": "/foo/1", "value": 2}
                ])
            ),
            doc
        );
    }

    #[test]
    fn a9_test_error() {
        let err = json_patch(
            &json!({"baz": "qux"}),
            &json!([{"op": "test", "path": "/baz", "value": "bar"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::TestFailed(_)), "{err:?}");
    }

    #[test]
    fn a10_add_nested_member() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}])
            ),
            json!({"foo": "bar", "child": {"grandchild": {}}})
        );
    }

    #[test]
    fn a11_ignore_unrecognised_members() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}])
            ),
            json!({"foo": "bar", "baz": "qux"})
        );
    }

    #[test]
    fn a12_add_to_nonexistent_target() {
        let err = json_patch(
            &json!({"foo": "bar"}),
            &json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn a14_escape_ordering() {
        let doc = json!({"/": 9, "~1": 10});
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "test", "path": "/~01", "value": 10}])
            ),
            doc
        );
    }

    #[test]
    fn a15_comparing_strings_and_numbers() {
        let err = json_patch(
            &json!({"/": 9, "~1": 10}),
            &json!([{"op": "test", "path": "/~01", "value": "10"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::TestFailed(_)));
    }

    #[test]
    fn a16_add_array_value() {
        assert_eq!(
            ok(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}])
            ),
            json!({"foo": ["bar", ["abc", "def"]]})
        );
    }

    #[test]
    fn copy_and_root_operations() {
        assert_eq!(
            ok(
                json!({"a": {"b": 1}}),
                json!([{"op": "copy", "from": "/a", "path": "/c"}])
            ),
            json!({"a": {"b": 1}, "c": {"b": 1}})
        );
        assert_eq!(
            ok(
                json!({"a": 1}),
                json!([{"op": "replace", "path": "", "value": [1]}])
            ),
            json!([1])
        );
        assert_eq!(
            ok(
                json!({"a": 1}),
                json!([{"op": "add", "path": "", "value": {"b": 2}}])
            ),
            json!({"b": 2})
        );
        assert!(json_patch(&json!({}), &json!([{"op": "remove", "path": ""}])).is_err());
    }

    #[test]
    fn test_compares_numbers_by_value() {
        ok(
            json!({"n": 1}),
            json!([{"op": "test", "path": "/n", "value": 1.0}]),
        );
    }

    #[test]
    fn failure_is_atomic() {
        let doc = json!({"a": 1});
        let err = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/b", "value": 2},
                {"op": "remove", "path": "/missing"}
            ]),
        );
        assert!(err.is_err());
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn malformed_patches_are_rejected() {
        let doc = json!({"a": [1, 2]});
        for patch in [
            json!({"op": "add"}),
            json!(["add"]),
            json!([{"path": "/a"}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/b"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "add", "path": "/a/01", "value": 1}]),
            json!([{"op": "add", "path": "/a/3", "value": 1}]),
            json!([{"op": "add", "path": "/a~2", "value": 1}]),
            json!([{"op": "remove", "path": "/a/-"}]),
            json!([{"op": "replace", "path": "/x", "value": 1}]),
            json!([{"op": "move", "from": "/a", "path": "/a/0"}]),
            json!([{"op": "copy", "from": "/nope", "path": "/b"}]),
            json!([{"op": "add", "path": 5, "value": 1}]),
        ] {
            assert!(
                matches!(json_patch(&doc, &patch), Err(PatchError::Invalid(_))),
                "{patch} should be invalid"
            );
        }
    }

    #[test]
    fn null_value_is_a_value() {
        assert_eq!(
            ok(
                json!({}),
                json!([{"op": "add", "path": "/a", "value": null}])
            ),
            json!({"a": null})
        );
    }

    #[test]
    fn runaway_copies_are_capped() {
        // Each copy of the root into a new member doubles the document.
        let ops: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
            .collect();
        let err = json_patch(&json!({"a": [1, 2, 3]}), &Value::Array(ops)).unwrap_err();
        assert!(matches!(err, PatchError::TooLarge(_)));
    }

    #[test]
    fn pointer_parsing() {
        assert_eq!(parse_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_pointer("/").unwrap(), vec![String::new()]);
        assert_eq!(
            parse_pointer("/a~1b/m~0n").unwrap(),
            vec!["a/b".to_string(), "m~n".to_string()]
        );
        assert!(parse_pointer("/a~").is_err());
    }
}
