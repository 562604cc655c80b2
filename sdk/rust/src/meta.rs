//! Object metadata as controllers read and write it: owner references,
//! label selectors, timestamps. Pure functions over `serde_json::Value`,
//! usable (and tested) outside a component too.

use serde_json::{Value, json};

/// The controlling owner reference of `object` (`controller: true`), if any.
pub fn controller_ref(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

/// Whether `object`'s controlling owner is the object with `uid`.
pub fn is_controlled_by(object: &Value, uid: &str) -> bool {
    controller_ref(object).is_some_and(|r| r["uid"] == uid)
}

/// An owner reference making `owner` (of `api_version`/`kind`) the
/// controller of another object, blocking the owner's foreground deletion
/// until the dependent is gone, as Kubernetes' controllers set it.
pub fn controller_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether the object is being deleted (it has a `deletionTimestamp`).
pub fn is_deleting(object: &Value) -> bool {
    object["metadata"]["deletionTimestamp"].is_string()
}

/// Why a label selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl std::fmt::Display for SelectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid label selector: {}", self.0)
    }
}

impl std::error::Error for SelectorError {}

/// Whether `labels` (a `metadata.labels` map, or null) satisfy a
/// `LabelSelector` (`matchLabels` and `matchExpressions`, all must hold).
/// An empty selector matches everything, a null one nothing, as in
/// Kubernetes' `LabelSelectorAsSelector`.
pub fn selector_matches(selector: &Value, labels: &Value) -> Result<bool, SelectorError> {
    if selector.is_null() {
        return Ok(false);
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            let v = v
                .as_str()
                .ok_or_else(|| SelectorError(format!("matchLabels[{k}] is not a string")))?;
            if label(k) != Some(v) {
                return Ok(false);
            }
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"]
            .as_str()
            .ok_or_else(|| SelectorError("a matchExpression has no key".into()))?;
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let have = label(key);
        let ok = match e["operator"].as_str().unwrap_or_default() {
            "In" => have.is_some_and(|h| values.contains(&h)),
            "NotIn" => have.is_none_or(|h| !values.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => return Err(SelectorError(format!("unknown operator {other:?}"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A `LabelSelector` in the string form list calls take
/// (`app=web,tier in (a,b),!canary`).
pub fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = selector["matchLabels"].as_object() {
        parts.extend(
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())),
        );
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// Seconds since the Unix epoch, from the WASI wall clock (inside a
/// component) or the system clock (natively).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// A Unix time as Kubernetes writes timestamps: `2026-12-02T04:35:32Z`.
pub fn format_time(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses an RFC 3339 timestamp (`2026-12-02T04:35:32Z`, fractions and
/// offsets allowed) to Unix seconds; `None` if it is not one.
pub fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let s = text.get(from..to)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]});
        assert_eq!(selector_matches(&sel, &labels), Ok(true));
        assert_eq!(selector_matches(&sel, &json!({"app": "web"})), Ok(false));
        assert_eq!(
            selector_matches(&sel, &json!({"app": "api", "tier": "front"})),
            Ok(false)
        );
        assert_eq!(selector_matches(&json!({}), &labels), Ok(true));
        assert_eq!(selector_matches(&Value::Null, &labels), Ok(false));
        let not_in = json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]});
        assert_eq!(selector_matches(&not_in, &labels), Ok(false));
        assert_eq!(selector_matches(&not_in, &Value::Null), Ok(true));
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert!(selector_matches(&bad, &labels).is_err());
        assert_eq!(
            selector_string(&sel),
            "app=web,tier in (front,back),!canary"
        );
    }

    #[test]
    fn owner_references() {
        let rs = json!({"metadata": {"name": "web-1", "uid": "u1"}});
        let r = controller_reference(&rs, "apps/v1", "ReplicaSet");
        let pod = json!({"metadata": {"ownerReferences": [{"uid": "x", "controller": false}, r]}});
        assert!(is_controlled_by(&pod, "u1"));
        assert!(!is_controlled_by(&pod, "x"));
        assert_eq!(controller_ref(&pod).unwrap()["blockOwnerDeletion"], true);
        assert!(controller_ref(&json!({"metadata": {}})).is_none());
    }

    #[test]
    fn timestamps_round_trip() {
        for t in [0, 951_782_400, 1_796_186_132, 4_107_542_399] {
            assert_eq!(parse_time(&format_time(t)), Some(t), "{}", format_time(t));
        }
        assert_eq!(format_time(1_796_186_132), "2026-12-02T04:35:32Z");
        assert_eq!(
            parse_time("2026-12-02T04:35:32.123456Z"),
            Some(1_796_186_132)
        );
        assert_eq!(parse_time("2026-12-02T06:35:32+02:00"), Some(1_796_186_132));
        for bad in [
            "",
            "2026-12-02",
            "2026-13-02T04:35:32Z",
            "2026-12-02T04:35:32",
            "x026-12-02T04:35:32Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
