//! The endpoints controller's policy as pure functions: which pods a
//! Service selects, which of their addresses are ready, and the ports each
//! serves the Service's ports on.

use std::collections::BTreeMap;

use orchd_sdk::serde_json::{Map, Value, json};

/// Whether the Service has a selector the controller manages Endpoints
/// for: services without one have theirs written by hand.
pub fn has_selector(service: &Value) -> bool {
    service["spec"]["selector"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
}

/// Whether `pod`'s labels hold every `key: value` of the Service's
/// selector (a plain map, all must be equal).
pub fn selects(service: &Value, pod: &Value) -> bool {
    let Some(selector) = service["spec"]["selector"].as_object() else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| pod["metadata"]["labels"][k.as_str()] == *v)
}

/// Whether `pod` has a place in the Endpoints at all, as Kubernetes
/// decides: it has an IP, has not finished, and is not being deleted
/// (unless the Service publishes not-ready addresses).
fn is_candidate(pod: &Value, publish_not_ready: bool) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty())
        && phase != "Succeeded"
        && phase != "Failed"
        && (publish_not_ready || !pod["metadata"]["deletionTimestamp"].is_string())
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The port `pod` serves a Service port on: its `targetPort` as a number,
/// a named container port of the same protocol, or the Service port
/// itself when no target is given. `None` when a name does not resolve.
pub fn target_port(service_port: &Value, pod: &Value) -> Option<i64> {
    let protocol = service_port["protocol"].as_str().unwrap_or("TCP");
    match &service_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => {
            if let Ok(n) = name.parse::<i64>() {
                return Some(n);
            }
            pod["spec"]["containers"]
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| {
                    p["name"].as_str() == Some(name.as_str())
                        && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })
                .and_then(|p| p["containerPort"].as_i64())
        }
        _ => service_port["port"].as_i64(),
    }
}

/// The endpoint ports `pod` serves, one per Service port it resolves.
fn pod_ports(service: &Value, pod: &Value) -> Vec<Value> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = target_port(sp, pod)?;
            let mut p = Map::new();
            if let Some(name) = sp["name"].as_str().filter(|n| !n.is_empty()) {
                p.insert("name".into(), json!(name));
            }
            p.insert("port".into(), json!(port));
            p.insert(
                "protocol".into(),
                json!(sp["protocol"].as_str().unwrap_or("TCP")),
            );
            if let Some(app) = sp["appProtocol"].as_str() {
                p.insert("appProtocol".into(), json!(app));
            }
            Some(Value::Object(p))
        })
        .collect()
}

/// The address of `pod`, naming it by `targetRef` and its node.
fn address(pod: &Value) -> Value {
    let mut a = json!({
        "ip": pod["status"]["podIP"],
        "targetRef": {
            "kind": "Pod",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    });
    if let Some(node) = pod["spec"]["nodeName"].as_str() {
        a["nodeName"] = json!(node);
    }
    a
}

/// The pods serving one set of ports: (ports, ready, not ready addresses).
type Group = (Vec<Value>, Vec<Value>, Vec<Value>);

/// The `subsets` of the Service's Endpoints: its pods grouped by the ports
/// they serve (pods of one Deployment serve the same ones), each subset's
/// addresses split into ready and not ready, sorted by IP so a reconcile
/// that changes nothing writes nothing.
pub fn subsets(service: &Value, pods: &[Value]) -> Vec<Value> {
    let publish_not_ready = service["spec"]["publishNotReadyAddresses"] == true;
    let has_ports = service["spec"]["ports"]
        .as_array()
        .is_some_and(|p| !p.is_empty());
    // Keyed by the ports' JSON text: a stable order of subsets.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !selects(service, pod) || !is_candidate(pod, publish_not_ready) {
            continue;
        }
        let ports = pod_ports(service, pod);
        if has_ports && ports.is_empty() {
            continue;
        }
        let group = groups
            .entry(Value::Array(ports.clone()).to_string())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish_not_ready || is_ready(pod) {
            group.1.push(address(pod));
        } else {
            group.2.push(address(pod));
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            let by_ip = |a: &Value, b: &Value| {
                a["ip"].as_str().cmp(&b["ip"].as_str()).then_with(|| {
                    a["targetRef"]["name"]
                        .as_str()
                        .cmp(&b["targetRef"]["name"].as_str())
                })
            };
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            let mut subset = Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), Value::Array(ports));
            }
            Value::Object(subset)
        })
        .collect()
}

/// Whether the stored Endpoints already say what `subsets` and `labels`
/// say (an absent list reads as empty).
pub fn up_to_date(endpoints: &Value, subsets: &[Value], labels: &Value) -> bool {
    let stored: &[Value] = endpoints["subsets"].as_array().map_or(&[], Vec::as_slice);
    let stored_labels = if endpoints["metadata"]["labels"].is_null() {
        json!({})
    } else {
        endpoints["metadata"]["labels"].clone()
    };
    let wanted_labels = if labels.is_null() {
        json!({})
    } else {
        labels.clone()
    };
    stored == subsets && stored_labels == wanted_labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ports: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "ports": ports},
        })
    }

    fn pod(name: &str, ip: &str, ready: bool, labels: Value) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            ]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]},
        })
    }

    #[test]
    fn ready_and_not_ready_pods_are_split_and_named() {
        let svc =
            service(json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]));
        let web = json!({"app": "web"});
        let pods = vec![
            pod("b", "10.0.0.3", true, web.clone()),
            pod("a", "10.0.0.2", true, web.clone()),
            pod("c", "10.0.0.4", false, web.clone()),
            pod("other", "10.0.0.5", true, json!({"app": "api"})),
            {
                let mut p = pod("gone", "10.0.0.6", true, web.clone());
                p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                p
            },
            {
                let mut p = pod("done", "10.0.0.7", true, web.clone());
                p["status"]["phase"] = json!("Succeeded");
                p
            },
            {
                let mut p = pod("pending", "", false, web.clone());
                p["status"]["podIP"] = Value::Null;
                p
            },
        ];
        let subsets = subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        let ips = |list: &Value| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|a| a["ip"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ips(&s["addresses"]), ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(ips(&s["notReadyAddresses"]), ["10.0.0.4"]);
        assert_eq!(
            s["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(
            s["addresses"][0]["targetRef"],
            json!({"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"})
        );
        assert_eq!(s["addresses"][0]["nodeName"], "n1");
    }

    #[test]
    fn target_ports_resolve_by_number_name_and_protocol() {
        let p = pod("a", "10.0.0.2", true, json!({"app": "web"}));
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": 9000}), &p),
            Some(9000)
        );
        assert_eq!(target_port(&json!({"port": 80}), &p), Some(80));
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "http"}), &p),
            Some(8080)
        );
        assert_eq!(
            target_port(
                &json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}),
                &p
            ),
            Some(53)
        );
        // The name exists, but for another protocol.
        assert_eq!(
            target_port(&json!({"port": 53, "targetPort": "dns"}), &p),
            None
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "missing"}), &p),
            None
        );
    }

    #[test]
    fn pods_serving_different_ports_get_their_own_subsets() {
        let svc = service(json!([{"name": "http", "port": 80, "targetPort": "http"}]));
        let a = pod("a", "10.0.0.2", true, json!({"app": "web"}));
        let mut b = pod("b", "10.0.0.3", true, json!({"app": "web"}));
        b["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9090);
        let mut none = pod("c", "10.0.0.4", true, json!({"app": "web"}));
        none["spec"]["containers"][0]["ports"] = json!([]);
        let subsets = subsets(&svc, &[a, b, none]);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ports: Vec<i64> = subsets
            .iter()
            .map(|s| s["ports"][0]["port"].as_i64().unwrap())
            .collect();
        assert_eq!(ports, [8080, 9090]);
    }

    #[test]
    fn publishing_not_ready_addresses_lists_them_as_ready() {
        let mut svc = service(json!([{"port": 80}]));
        svc["spec"]["publishNotReadyAddresses"] = json!(true);
        let subsets = subsets(&svc, &[pod("c", "10.0.0.4", false, json!({"app": "web"}))]);
        assert_eq!(subsets[0]["addresses"][0]["ip"], "10.0.0.4");
        assert!(subsets[0]["notReadyAddresses"].is_null());
        assert_eq!(
            subsets[0]["ports"],
            json!([{"port": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn selectors_and_staleness() {
        let svc = service(json!([]));
        assert!(has_selector(&svc));
        let mut bare = svc.clone();
        bare["spec"]["selector"] = Value::Null;
        assert!(!has_selector(&bare));
        assert!(!selects(
            &bare,
            &pod("a", "1.2.3.4", true, json!({"app": "web"}))
        ));
        let empty = json!({"metadata": {"name": "web"}});
        assert!(up_to_date(&empty, &[], &Value::Null));
        assert!(!up_to_date(&empty, &[json!({})], &Value::Null));
        assert!(!up_to_date(&empty, &[], &json!({"team": "a"})));
    }
}
