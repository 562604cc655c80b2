//! RFC 7386 JSON Merge Patch.

use crate::{PatchError, invalid};
use serde_json::{Map, Value};

/// Applies an RFC 7386 JSON Merge Patch: objects merge recursively, `null`
/// deletes a member, anything else (lists included) replaces.
///
/// The top-level patch must be a JSON object: the API server only patches
/// objects, and RFC 7386's rule that a non-object patch replaces the whole
/// document would turn a Kubernetes object into a bare string or list. As in
/// Kubernetes, such a patch is [`PatchError::Invalid`]. Below the top level
/// the RFC applies unchanged.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(invalid(format!(
            "merge patch must be a JSON object, got {}",
            type_name(patch)
        )));
    }
    let mut target = doc.clone();
    merge_into(&mut target, patch);
    Ok(target)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The RFC's MergePatch(Target, Patch), updating `target` in place.
pub(crate) fn merge_into(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            map.shift_remove(key.as_str());
        } else if let Some(existing) = map.get_mut(key.as_str()) {
            merge_into(existing, value);
        } else {
            let mut fresh = Value::Null;
            merge_into(&mut fresh, value);
            map.insert(key.clone(), fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_section3_example() {
        let doc = json!({
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged"
        });
        let patch = json!({
            "title": "Hello!",
            "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": null},
            "tags": ["example"]
        });
        assert_eq!(
            merge_patch(&doc, &patch).unwrap(),
            json!({
                "title": "Hello!",
                "author": {"givenName": "John"},
                "tags": ["example"],
                "content": "This will be unchanged",
                "phoneNumber": "+01-123-456-7890"
            })
        );
    }

    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            let mut got = doc.clone();
            merge_into(&mut got, &patch);
            assert_eq!(got, want, "{doc} + {patch}");
            // The public function agrees wherever the patch is an object.
            if patch.is_object() {
                assert_eq!(merge_patch(&doc, &patch).unwrap(), want);
            }
        }
    }

    #[test]
    fn non_object_patch_is_rejected() {
        for patch in [json!(null), json!([1]), json!("x"), json!(3)] {
            assert!(matches!(
                merge_patch(&json!({"a": 1}), &patch),
                Err(PatchError::Invalid(_))
            ));
        }
    }

    #[test]
    fn deleting_a_label_keeps_member_order() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}}});
        let got = merge_patch(&doc, &json!({"metadata": {"labels": {"a": null}}})).unwrap();
        let keys: Vec<&String> = got["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["b", "c"]);
    }
}
