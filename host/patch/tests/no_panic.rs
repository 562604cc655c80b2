//! Whatever a client sends, the patch functions answer Ok or Err; they never
//! panic. Inputs are biased towards the field names, directives and pointer
//! shapes the functions look at, so the interesting paths are reached.

use orchd_patch::{json_patch, merge_patch, server_side_apply, strategic_merge_patch};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KEYS: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "jobTemplate",
    "containers",
    "initContainers",
    "volumes",
    "env",
    "ports",
    "finalizers",
    "ownerReferences",
    "conditions",
    "labels",
    "name",
    "uid",
    "type",
    "containerPort",
    "protocol",
    "image",
    "managedFields",
    "fieldsV1",
    "manager",
    "operation",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$setElementOrder/env",
    "$setElementOrder",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList",
    "f:spec",
    "k:{\"name\":\"a\"}",
    "v:\"a\"",
    "i:0",
    ".",
    "",
];

const STRINGS: &[&str] = &[
    "a",
    "b",
    "replace",
    "delete",
    "merge",
    "Apply",
    "m",
    "TCP",
    "/",
    "/a",
    "/spec/containers/0",
    "/spec/containers/-",
    "~",
    "~1",
    "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..90).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        "[a-z~/]{0,4}".prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z$/.]{0,3}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_patch_op() -> impl Strategy<Value = Value> {
    let op =
        prop::sample::select(&["add", "remove", "replace", "move", "copy", "test", "bogus"][..]);
    let pointer = prop_oneof![
        prop::sample::select(STRINGS).prop_map(str::to_string),
        prop::collection::vec(prop_oneof![key(), "[0-9-]{1,2}"], 0..4)
            .prop_map(|tokens| tokens.iter().map(|t| format!("/{t}")).collect::<String>()),
    ];
    (op, pointer.clone(), pointer, json_value(), any::<u8>()).prop_map(
        |(op, path, from, value, mask)| {
            let mut m = Map::new();
            if mask & 1 == 0 {
                m.insert("op".into(), json!(op));
            }
            if mask & 2 == 0 {
                m.insert("path".into(), json!(path));
            }
            if mask & 4 == 0 {
                m.insert("from".into(), json!(from));
            }
            if mask & 8 == 0 {
                m.insert("value".into(), value);
            }
            if mask & 16 != 0 {
                m.insert("path".into(), json!(mask));
            }
            Value::Object(m)
        },
    )
}

fn kind() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "Pod",
            "Deployment",
            "CronJob",
            "Node",
            "Service",
            "ConfigMap",
            "Other",
        ][..],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn json_patch_never_panics(
        doc in json_value(),
        ops in prop::collection::vec(json_patch_op(), 0..6),
        raw in json_value(),
    ) {
        let _ = json_patch(&doc, &Value::Array(ops));
        let _ = json_patch(&doc, &raw);
    }

    #[test]
    fn merge_patch_never_panics(doc in json_value(), patch in json_value()) {
        let _ = merge_patch(&doc, &patch);
    }

    #[test]
    fn strategic_merge_patch_never_panics(doc in json_value(), patch in json_value(), kind in kind()) {
        let _ = strategic_merge_patch(&doc, &patch, kind);
    }

    #[test]
    fn server_side_apply_never_panics(
        live in prop::option::of(json_value()),
        applied in json_value(),
        kind in kind(),
        manager in prop::sample::select(&["m", "", "other"][..]),
    ) {
        if let Ok(once) = server_side_apply(live.as_ref(), &applied, kind, manager, "t0") {
            // Re-applying onto its own output must work too: that reads the
            // managedFields entry the first call wrote.
            let again = server_side_apply(Some(&once), &applied, kind, manager, "t1");
            prop_assert!(again.is_ok(), "{:?}", again);
        }
    }

    #[test]
    fn strategic_merge_patch_with_empty_patch_is_identity_on_objects(doc in json_value(), kind in kind()) {
        if let Value::Object(_) = doc
            && let Ok(got) = strategic_merge_patch(&doc, &json!({}), kind)
        {
            prop_assert_eq!(got, doc);
        }
    }
}
