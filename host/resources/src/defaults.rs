//! The defaults the Kubernetes API server fills in on create and update.
//!
//! Mirrors the `SetDefaults_*` functions of Kubernetes' versioned API
//! packages (core, apps, batch), plus the few values its registry
//! strategies fill on create that clients rely on seeing: a namespace's
//! `kubernetes` finalizer, a service's IP family fields, a Job's generated
//! selector, a Secret's `stringData` folded into `data`.
//!
//! Objects arrive here before validation, so every step tolerates missing
//! or mistyped fields and leaves them to the validator. A field the user
//! set is never replaced; as in Kubernetes, an empty string or a zero
//! counts as unset where the Go field is a plain (non-pointer) value.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::ResourceType;

/// Fills in Kubernetes' defaults for an object of `resource`.
///
/// Call it after the server assigned `metadata.uid` if Jobs should get
/// their generated selector and pod labels (skipped without a uid).
pub fn apply(resource: &ResourceType, object: &mut Value) {
    let Some(root) = object.as_object_mut() else {
        return;
    };
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            if let Some(spec) = child(root, "spec") {
                pod_only(spec);
                pod_spec(spec);
            }
        }
        ("", "Service") => service(root),
        ("", "Namespace") => namespace(root),
        ("", "Secret") => secret(root),
        ("", "Node") => {
            if let Some(status) = child(root, "status") {
                node_status(status);
            }
        }
        ("", "Endpoints") => {
            for subset in items(root, "subsets") {
                for port in items(subset, "ports") {
                    default_str(port, "protocol", "TCP");
                }
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = ensure(root, "spec") {
                deployment(spec);
                template(spec);
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = ensure(root, "spec") {
                default(spec, "replicas", json!(1));
                template(spec);
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = ensure(root, "spec") {
                daemon_set(spec);
                template(spec);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = ensure(root, "spec") {
                stateful_set(spec);
                template(spec);
            }
        }
        ("batch", "Job") => job(root),
        ("batch", "CronJob") => {
            if let Some(spec) = ensure(root, "spec") {
                cron_job(spec);
                if let Some(job_spec) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
                    template(job_spec);
                }
            }
        }
        _ => {}
    }
}

/// The existing object at `key`, if it is one.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key`, created empty when missing or null; `None` when
/// the field holds something else (the validator will report it).
fn ensure<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    if is_unset(map, key) {
        map.insert(key.to_string(), json!({}));
    }
    child(map, key)
}

/// The object elements of the list at `key`.
fn items<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// Sets a pointer-like field that is missing or null.
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_string(), value);
    }
}

/// Sets a string field that is missing, null or empty.
fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if is_unset(map, key) || map.get(key).is_some_and(|v| v.as_str() == Some("")) {
        map.insert(key.to_string(), json!(value));
    }
}

/// Sets an integer field that is missing, null or zero.
fn default_nonzero(map: &mut Map<String, Value>, key: &str, value: i64) {
    if is_unset(map, key) || map.get(key).is_some_and(|v| v.as_i64() == Some(0)) {
        map.insert(key.to_string(), json!(value));
    }
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// How long a pod stays bound to a node that went not-ready or
/// unreachable before it is evicted, unless it says otherwise.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Kubernetes' DefaultTolerationSeconds admission, for pods (not
/// templates): a pod that does not already tolerate the
/// `node.kubernetes.io/not-ready` and `.../unreachable` NoExecute taints
/// gets a toleration of each for [`DEFAULT_TOLERATION_SECONDS`], so a node
/// going away evicts its pods after five minutes rather than at once. A
/// toleration with that key (or no key) and the NoExecute effect (or no
/// effect) counts as tolerating, as there.
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    if is_unset(spec, "tolerations") {
        spec.insert("tolerations".into(), json!([]));
    }
    let Some(tolerations) = spec.get_mut("tolerations").and_then(Value::as_array_mut) else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = tolerations.iter().any(|t| {
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (t_key == key || t_key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            tolerations.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
}

/// Defaults of a pod template's spec (`spec.template.spec`).
fn template(spec: &mut Map<String, Value>) {
    if let Some(pod) = child(spec, "template").and_then(|t| child(t, "spec")) {
        pod_spec(pod);
    }
}

/// Defaults of every PodSpec, in pods and in templates.
fn pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items(spec, list) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        volume(v);
    }
}

/// Defaults Kubernetes applies to Pods only, not to templates, so that
/// adding one does not change every workload's template.
fn pod_only(spec: &mut Map<String, Value>) {
    default_toleration_seconds(spec);
    for list in ["initContainers", "containers"] {
        for c in items(spec, list) {
            let Some(resources) = child(c, "resources") else {
                continue;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            if let Some(requests) = ensure(resources, "requests") {
                for (name, quantity) in limits {
                    requests.entry(name).or_insert(quantity);
                }
            }
        }
    }
    // In-place resize: regular containers that request CPU or memory get
    // an explicit NotRequired policy for it.
    for c in items(spec, "containers") {
        let requested: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|r| {
                c.get("resources")
                    .and_then(|x| x.get("requests"))
                    .and_then(|x| x.get(*r))
                    .is_some()
            })
            .collect();
        if requested.is_empty()
            || c.get("resizePolicy")
                .is_some_and(|p| !p.is_null() && !p.is_array())
        {
            continue;
        }
        let policies = c.entry("resizePolicy").or_insert_with(|| json!([]));
        if policies.is_null() {
            *policies = json!([]);
        }
        if let Some(policies) = policies.as_array_mut() {
            for r in requested {
                if !policies
                    .iter()
                    .any(|p| p.get("resourceName").and_then(Value::as_str) == Some(r))
                {
                    policies.push(json!({"resourceName": r, "restartPolicy": "NotRequired"}));
                }
            }
        }
    }
    default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["initContainers", "containers"] {
            for c in items(spec, list) {
                for port in items(c, "ports") {
                    if let Some(container_port) = port.get("containerPort").cloned()
                        && (is_unset(port, "hostPort")
                            || port.get("hostPort").and_then(Value::as_i64) == Some(0))
                    {
                        port.insert("hostPort".into(), container_port);
                    }
                }
            }
        }
    }
}

/// The tag of an image reference as Kubernetes reads it: the part after
/// the last `:` of the final path component, `latest` when there is
/// neither a tag nor a digest, empty for a digest without a tag.
fn image_tag(image: &str) -> &str {
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = &name[name.rfind('/').map_or(0, |i| i + 1)..];
    match last.rfind(':') {
        Some(i) => &last[i + 1..],
        None if has_digest || image.is_empty() => "",
        None => "latest",
    }
}

fn container(c: &mut Map<String, Value>) {
    if is_unset(c, "imagePullPolicy") || str_of(c, "imagePullPolicy").is_empty() {
        let policy = if image_tag(str_of(c, "image")) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for port in items(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, probe) {
            default_nonzero(p, "timeoutSeconds", 1);
            default_nonzero(p, "periodSeconds", 10);
            default_nonzero(p, "successThreshold", 1);
            default_nonzero(p, "failureThreshold", 3);
            handler(p);
            if let Some(grpc) = child(p, "grpc") {
                default(grpc, "service", json!(""));
            }
        }
    }
    if let Some(lifecycle) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child(lifecycle, hook) {
                handler(h);
            }
        }
    }
    for env in items(c, "env") {
        if let Some(field_ref) = child(env, "valueFrom").and_then(|v| child(v, "fieldRef")) {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

/// Probe and lifecycle handler defaults (HTTPGetAction).
fn handler(h: &mut Map<String, Value>) {
    if let Some(get) = child(h, "httpGet") {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
}

/// Mode 0644, the default file mode of projected, secret, config map and
/// downward API volumes.
const DEFAULT_MODE: i64 = 0o644;

fn volume(v: &mut Map<String, Value>) {
    if !v.iter().any(|(k, val)| k != "name" && !val.is_null()) {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = child(v, source) {
            default(s, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(s) = child(v, "downwardAPI") {
        downward_items(s);
    }
    if let Some(projected) = child(v, "projected") {
        for source in items(projected, "sources") {
            if let Some(token) = child(source, "serviceAccountToken") {
                default(token, "expirationSeconds", json!(3600));
            }
            if let Some(s) = child(source, "downwardAPI") {
                downward_items(s);
            }
        }
    }
    if let Some(host_path) = child(v, "hostPath") {
        default(host_path, "type", json!(""));
    }
    if let Some(spec) = child(v, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        default(spec, "volumeMode", json!("Filesystem"));
    }
}

fn downward_items(source: &mut Map<String, Value>) {
    for item in items(source, "items") {
        if let Some(field_ref) = child(item, "fieldRef") {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

fn deployment(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    if let Some(strategy) = ensure(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = ensure(strategy, "rollingUpdate")
        {
            default(rolling, "maxUnavailable", json!("25%"));
            default(rolling, "maxSurge", json!("25%"));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
}

fn daemon_set(spec: &mut Map<String, Value>) {
    if let Some(strategy) = ensure(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = ensure(strategy, "rollingUpdate")
        {
            default(rolling, "maxUnavailable", json!(1));
            default(rolling, "maxSurge", json!(0));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
}

fn stateful_set(spec: &mut Map<String, Value>) {
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = ensure(spec, "updateStrategy") {
        if str_of(strategy, "type").is_empty() {
            strategy.insert("type".into(), json!("RollingUpdate"));
            default(strategy, "rollingUpdate", json!({}));
        }
        // An explicit RollingUpdate without parameters keeps them absent,
        // as in Kubernetes.
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            default(rolling, "partition", json!(0));
            default(rolling, "maxUnavailable", json!(1));
        }
    }
    if let Some(policy) = ensure(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    for claim in items(spec, "volumeClaimTemplates") {
        if let Some(claim_spec) = ensure(claim, "spec") {
            default(claim_spec, "volumeMode", json!("Filesystem"));
        }
        if let Some(status) = ensure(claim, "status") {
            default_str(status, "phase", "Pending");
        }
    }
}

fn job(root: &mut Map<String, Value>) {
    let uid = root
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let template_labels = |root: &Map<String, Value>| {
        root.get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .filter(|l| l.as_object().is_some_and(|l| !l.is_empty()))
            .cloned()
    };
    let copy_labels = |root: &mut Map<String, Value>| {
        if let Some(labels) = template_labels(root)
            && let Some(meta) = ensure(root, "metadata")
            && meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), labels);
        }
    };
    // Decoding defaults the Job's labels from the template as written...
    copy_labels(root);
    let Some(spec) = ensure(root, "spec") else {
        return;
    };
    if is_unset(spec, "completions") && is_unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    let per_index = !is_unset(spec, "backoffLimitPerIndex");
    default(
        spec,
        "backoffLimit",
        json!(if per_index { i64::from(i32::MAX) } else { 6 }),
    );
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(Value::is_object);
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in items(policy, "rules") {
            for pattern in items(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
    default(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_empty() {
        generate_job_selector(spec, &name, &uid);
    }
    template(spec);
    // ...and a stored Job read back gets them from the generated labels
    // when it had none.
    copy_labels(root);
}

/// The selector and pod labels the Job registry adds on create: the
/// controller uid makes the Job's pods match only this Job.
fn generate_job_selector(spec: &mut Map<String, Value>, name: &str, uid: &str) {
    if let Some(labels) = ensure(spec, "template")
        .and_then(|t| ensure(t, "metadata"))
        .and_then(|m| ensure(m, "labels"))
    {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    if let Some(match_labels) = ensure(spec, "selector").and_then(|s| ensure(s, "matchLabels")) {
        match_labels
            .entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}

fn cron_job(spec: &mut Map<String, Value>) {
    default_str(spec, "concurrencyPolicy", "Allow");
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
}

fn service(root: &mut Map<String, Value>) {
    let Some(spec) = ensure(root, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in items(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target = port.get("targetPort");
        if target.is_none_or(|t| t.is_null() || t.as_i64() == Some(0) || t.as_str() == Some(""))
            && let Some(p) = port.get("port").cloned()
        {
            port.insert("targetPort".into(), p);
        }
    }
    let kind = str_of(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        kind == "LoadBalancer" || kind == "NodePort" || (kind == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        // The IP family fields are the allocator's, filled for every
        // service that gets (or explicitly declines) a cluster IP.
        let cluster_ip = str_of(spec, "clusterIP").to_string();
        if !cluster_ip.is_empty() {
            default(spec, "clusterIPs", json!([cluster_ip]));
        }
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        let family = if cluster_ip.contains(':') {
            "IPv6"
        } else {
            "IPv4"
        };
        default(spec, "ipFamilies", json!([family]));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(lb) = child(root, "status").and_then(|s| child(s, "loadBalancer")) {
            for ingress in items(lb, "ingress") {
                if !str_of(ingress, "ip").is_empty() {
                    default(ingress, "ipMode", json!("VIP"));
                }
            }
        }
    }
}

fn namespace(root: &mut Map<String, Value>) {
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The label always mirrors the name, even over a user's value, so that
    // selectors can pick namespaces by name.
    if !name.is_empty()
        && let Some(labels) = ensure(root, "metadata").and_then(|m| ensure(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = ensure(root, "spec") {
        default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure(root, "status") {
        default_str(status, "phase", "Active");
    }
}

fn secret(root: &mut Map<String, Value>) {
    default_str(root, "type", "Opaque");
    // Kubernetes never stores stringData: it is written into data (over
    // any value of the same key) on the way in.
    let Some(Value::Object(string_data)) = root.get("stringData").cloned() else {
        return;
    };
    if !string_data.values().all(Value::is_string)
        || root
            .get("data")
            .is_some_and(|d| !d.is_null() && !d.is_object())
    {
        return;
    }
    if let Some(data) = ensure(root, "data") {
        for (key, value) in string_data {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(value.as_str().unwrap_or_default());
            data.insert(key, json!(encoded));
        }
    }
    root.remove("stringData");
}

fn node_status(status: &mut Map<String, Value>) {
    if is_unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{find_by_kind, validate};

    /// Applies defaults, then checks the result still decodes as the real
    /// type without unknown fields: every defaulted field must exist in
    /// k8s-openapi's definition.
    fn defaulted(api_version: &str, kind: &str, mut object: Value) -> Value {
        let rt = find_by_kind(api_version, kind).unwrap();
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        apply(rt, &mut object);
        let v = validate(rt, &object).unwrap_or_else(|e| panic!("{kind}: {e:?}\n{object:#}"));
        assert!(
            v.unknown_fields.is_empty(),
            "{kind}: {:?}",
            v.unknown_fields
        );
        object
    }

    fn pod_spec_fixture() -> Value {
        json!({
            "containers": [{
                "name": "app", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 3},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}
            }, {
                "name": "side", "image": "registry.local:5000/tools/busybox:1.36", "imagePullPolicy": "Never"
            }],
            "volumes": [
                {"name": "scratch"},
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
                {"name": "host", "hostPath": {"path": "/var/log"}}
            ]
        })
    }

    #[test]
    fn image_tags_follow_docker_reference_rules() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:latest"), "latest");
        assert_eq!(image_tag("nginx:1.27"), "1.27");
        assert_eq!(image_tag("registry.local:5000/nginx"), "latest");
        assert_eq!(image_tag("registry.local:5000/nginx:1"), "1");
        assert_eq!(image_tag("nginx@sha256:abcd"), "");
        assert_eq!(image_tag("nginx:1@sha256:abcd"), "1");
    }

    #[test]
    fn pod_defaults() {
        let pod = defaulted(
            "v1",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": pod_spec_fixture()}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        let app = &spec["containers"][0];
        assert_eq!(app["imagePullPolicy"], "Always");
        assert_eq!(app["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(app["terminationMessagePolicy"], "File");
        assert_eq!(app["ports"][0]["protocol"], "TCP");
        assert_eq!(
            app["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(app["readinessProbe"]["periodSeconds"], 3);
        assert_eq!(app["readinessProbe"]["grpc"]["service"], "");
        assert_eq!(app["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        // Limits fill missing requests; given requests stay.
        assert_eq!(
            app["resources"]["requests"],
            json!({"cpu": "100m", "memory": "64Mi"})
        );
        assert_eq!(
            app["resizePolicy"][0],
            json!({"resourceName": "cpu", "restartPolicy": "NotRequired"})
        );
        let side = &spec["containers"][1];
        assert_eq!(side["imagePullPolicy"], "Never");
        assert!(side.get("resizePolicy").is_none());
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["projected"]["defaultMode"], 420);
        assert_eq!(
            spec["volumes"][2]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
        assert_eq!(spec["volumes"][3]["hostPath"]["type"], "");

        let mut tagged = json!({"metadata": {"name": "q"}, "spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}});
        tagged = defaulted("v1", "Pod", tagged);
        assert_eq!(
            tagged["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(
            tagged["spec"]["containers"][0]["ports"][0]["hostPort"],
            8080
        );
    }

    #[test]
    fn pods_tolerate_lost_nodes_for_five_minutes_unless_they_say_otherwise() {
        let pod = |tolerations: Value| {
            let mut spec = pod_spec_fixture();
            if !tolerations.is_null() {
                spec["tolerations"] = tolerations;
            }
            defaulted(
                "v1",
                "Pod",
                json!({"metadata": {"name": "p"}, "spec": spec}),
            )
        };
        let added = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let plain = pod(Value::Null);
        assert_eq!(
            plain["spec"]["tolerations"],
            json!([
                added("node.kubernetes.io/not-ready"),
                added("node.kubernetes.io/unreachable")
            ])
        );
        // Its own toleration of one taint is kept and not doubled.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3});
        let custom = pod(json!([own.clone()]));
        assert_eq!(
            custom["spec"]["tolerations"],
            json!([own, added("node.kubernetes.io/not-ready")])
        );
        // Tolerating everything needs nothing more; a NoSchedule toleration
        // of the key does not count.
        let all = pod(json!([{"operator": "Exists"}]));
        assert_eq!(all["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        let no_schedule = pod(
            json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            no_schedule["spec"]["tolerations"].as_array().unwrap().len(),
            3
        );
        // Templates are left alone: the pods made from them get theirs.
        let d = defaulted(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": pod_spec_fixture()}}}),
        );
        assert!(d["spec"]["template"]["spec"]["tolerations"].is_null());
    }

    #[test]
    fn user_values_are_kept() {
        let pod = defaulted(
            "v1",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "enableServiceLinks": false,
                "containers": [{"name": "a", "image": "x", "terminationMessagePolicy": "FallbackToLogsOnError"}]}}),
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(pod["spec"]["enableServiceLinks"], false);
        assert_eq!(
            pod["spec"]["containers"][0]["terminationMessagePolicy"],
            "FallbackToLogsOnError"
        );

        let d = defaulted(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 0, "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    fn workload_spec() -> Value {
        json!({
            "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "a", "image": "x:1"}]}}
        })
    }

    #[test]
    fn workload_defaults() {
        let d = defaulted(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": workload_spec()}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(
            d["spec"]["template"]["spec"]
                .get("enableServiceLinks")
                .is_none()
        );

        let rs = defaulted(
            "apps/v1",
            "ReplicaSet",
            json!({"metadata": {"name": "r"}, "spec": workload_spec()}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);

        let ds = defaulted(
            "apps/v1",
            "DaemonSet",
            json!({"metadata": {"name": "ds"}, "spec": workload_spec()}),
        );
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

        let mut sts_spec = workload_spec();
        sts_spec["serviceName"] = json!("db");
        sts_spec["volumeClaimTemplates"] =
            json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]);
        let sts = defaulted(
            "apps/v1",
            "StatefulSet",
            json!({"metadata": {"name": "s"}, "spec": sts_spec}),
        );
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}})
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(sts["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["status"]["phase"],
            "Pending"
        );
    }

    #[test]
    fn job_and_cron_job_defaults() {
        let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}});
        let job = defaulted(
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "j"}, "spec": {"template": template}}),
        );
        let spec = &job["spec"];
        assert_eq!(
            (spec["completions"].clone(), spec["parallelism"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(spec.get("manualSelector").is_none());
        assert!(
            spec.get("selector").is_none(),
            "no uid, no generated selector"
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");

        let job = defaulted(
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"parallelism": 3, "template": template}}),
        );
        let spec = &job["spec"];
        assert!(spec.get("completions").is_none());
        assert_eq!(
            spec["selector"]["matchLabels"],
            json!({"batch.kubernetes.io/controller-uid": "u-1"})
        );
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/job-name"], "j");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(job["metadata"]["labels"], *labels);

        let cj = defaulted(
            "batch/v1",
            "CronJob",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
        );
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["suspend"], false);
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(
            cj["spec"]["jobTemplate"]["spec"]
                .get("backoffLimit")
                .is_none()
        );
    }

    #[test]
    fn a_manual_job_selector_is_left_alone() {
        let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}});
        let job = defaulted(
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {
                "manualSelector": true,
                "selector": {"matchLabels": {"app": "x"}},
                "template": template,
            }}),
        );
        let spec = &job["spec"];
        assert_eq!(spec["selector"], json!({"matchLabels": {"app": "x"}}));
        assert_eq!(spec["template"]["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(spec["manualSelector"], true);
        // `false` is the same as unset: the API picks the selector.
        let job = defaulted(
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"manualSelector": false, "template": template}}),
        );
        assert_eq!(
            job["spec"]["selector"]["matchLabels"],
            json!({"batch.kubernetes.io/controller-uid": "u-1"})
        );
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["app"], "x");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "j"
        );
    }

    #[test]
    fn service_defaults() {
        let svc = defaulted(
            "v1",
            "Service",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("externalTrafficPolicy").is_none());

        let lb = defaulted(
            "v1",
            "Service",
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(lb["spec"]["clusterIPs"], json!(["10.0.0.9"]));
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );

        let ext = defaulted(
            "v1",
            "Service",
            json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(ext["spec"].get("ipFamilyPolicy").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn namespace_secret_node_defaults() {
        let ns = defaulted("v1", "Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");

        let s = defaulted(
            "v1",
            "Secret",
            json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello"}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
        assert!(s.get("stringData").is_none());
        let tls = defaulted(
            "v1",
            "Secret",
            json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls"}),
        );
        assert_eq!(tls["type"], "kubernetes.io/tls");

        let node = defaulted(
            "v1",
            "Node",
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2", "pods": "110"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "2", "pods": "110"})
        );
        assert!(
            node.get("spec")
                .is_none_or(|s| s.get("unschedulable").is_none())
        );

        let ep = defaulted(
            "v1",
            "Endpoints",
            json!({"metadata": {"name": "e"}, "subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn mistyped_input_is_left_alone() {
        for kind in ["Pod", "Service", "Namespace", "Secret", "Node"] {
            let rt = find_by_kind("v1", kind).unwrap();
            for mut odd in [
                json!(null),
                json!([1, 2]),
                json!({"spec": "x", "metadata": 3, "status": [], "stringData": 5}),
            ] {
                apply(rt, &mut odd);
            }
        }
        let rt = find_by_kind("apps/v1", "Deployment").unwrap();
        let mut odd = json!({"spec": {"strategy": 7, "template": {"spec": {"containers": "nope", "volumes": [1]}}}});
        apply(rt, &mut odd);
        assert_eq!(odd["spec"]["strategy"], 7);
    }
}
