//! Which required labels an object lacks, and how to say so: pure
//! functions, tested natively.

use orchd_sdk::serde_json::Value;

/// The labels every reviewed object must have (a non-empty value).
pub const REQUIRED: &[&str] = &["owner"];

/// The resources reviewed, as the host names them.
pub const REVIEWED: &[&str] = &["pods", "deployments.apps"];

/// The labels of `required` that `object` lacks or leaves empty.
pub fn missing<'a>(object: &Value, required: &[&'a str]) -> Vec<&'a str> {
    required
        .iter()
        .copied()
        .filter(|l| {
            object["metadata"]["labels"][l]
                .as_str()
                .is_none_or(str::is_empty)
        })
        .collect()
}

/// The denial, naming the missing labels.
pub fn message(resource: &str, name: &str, missing: &[&str]) -> String {
    let kind = resource.split('.').next().unwrap_or(resource);
    let labels: Vec<String> = missing.iter().map(|l| format!("{l:?}")).collect();
    let fields: Vec<String> = missing
        .iter()
        .map(|l| format!("metadata.labels.{l}"))
        .collect();
    let noun = if missing.len() == 1 {
        "label"
    } else {
        "labels"
    };
    format!(
        "{kind} {name:?} is missing the required {noun} {} (set {})",
        labels.join(", "),
        fields.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchd_sdk::serde_json::json;

    #[test]
    fn finds_missing_and_empty_labels() {
        let none = json!({"metadata": {"name": "a"}});
        assert_eq!(missing(&none, REQUIRED), vec!["owner"]);
        let empty = json!({"metadata": {"labels": {"owner": ""}}});
        assert_eq!(missing(&empty, REQUIRED), vec!["owner"]);
        let ok = json!({"metadata": {"labels": {"owner": "team-a"}}});
        assert!(missing(&ok, REQUIRED).is_empty());
        assert_eq!(missing(&none, &["owner", "tier"]), vec!["owner", "tier"]);
    }

    #[test]
    fn the_message_names_the_label() {
        let m = message("pods", "web", &["owner"]);
        assert_eq!(
            m,
            "pods \"web\" is missing the required label \"owner\" (set metadata.labels.owner)"
        );
        let m = message("deployments.apps", "api", &["owner", "tier"]);
        assert!(m.contains("labels \"owner\", \"tier\""), "{m}");
        assert!(m.starts_with("deployments \"api\""), "{m}");
    }
}
