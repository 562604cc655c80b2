//! Server-side printing: the `meta.k8s.io/v1` `Table` answered to
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`.
//!
//! Columns and cell formats follow Kubernetes' built-in printers, so
//! `kubectl get` shows what it shows against a real cluster. As in
//! Kubernetes, the server always fills the wide (priority 1) columns;
//! kubectl hides them unless asked for `-o wide`.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::ResourceType;

/// What each row carries in `object` (query parameter `includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// One column: name, type, format, priority (0 always shown, 1 for
/// `-o wide`) and description.
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority,
        description,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Column = col("Age", "string", 0, "Time since the object was created.");
const CONTAINERS: Column = col(
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
const IMAGES: Column = col(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = col(
    "Selector",
    "string",
    1,
    "Label selector of the pods this object manages.",
);

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            NAME,
            col(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                0,
                "Container restarts in this pod, and how long ago the last one was.",
            ),
            AGE,
            col("IP", "string", 1, "The pod's IP address."),
            col("Node", "string", 1, "The node the pod is bound to."),
            col(
                "Nominated Node",
                "string",
                1,
                "The node the scheduler has nominated for this pod.",
            ),
            col(
                "Readiness Gates",
                "string",
                1,
                "Readiness gates that are satisfied, out of those the pod declares.",
            ),
        ],
        "Deployment" => vec![
            NAME,
            col(
                "Ready",
                "string",
                0,
                "Ready pods out of the desired number.",
            ),
            col(
                "Up-to-date",
                "string",
                0,
                "Pods that run the current template.",
            ),
            col(
                "Available",
                "string",
                0,
                "Pods that have been available for at least minReadySeconds.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" => vec![
            NAME,
            col("Desired", "integer", 0, "Number of pods wanted."),
            col("Current", "integer", 0, "Number of pods that exist."),
            col("Ready", "integer", 0, "Number of ready pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "DaemonSet" => vec![
            NAME,
            col(
                "Desired",
                "integer",
                0,
                "Nodes that should run the daemon pod.",
            ),
            col(
                "Current",
                "integer",
                0,
                "Nodes that run at least one daemon pod.",
            ),
            col("Ready", "integer", 0, "Nodes whose daemon pod is ready."),
            col(
                "Up-to-date",
                "integer",
                0,
                "Nodes that run the current template.",
            ),
            col(
                "Available",
                "integer",
                0,
                "Nodes whose daemon pod is available.",
            ),
            col(
                "Node Selector",
                "string",
                0,
                "Labels a node must have to run the daemon pod.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "StatefulSet" => vec![
            NAME,
            col(
                "Ready",
                "string",
                0,
                "Ready pods out of the desired number.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        "Job" => vec![
            NAME,
            col("Status", "string", 0, "Status of the job."),
            col(
                "Completions",
                "string",
                0,
                "Succeeded pods out of those needed.",
            ),
            col(
                "Duration",
                "string",
                0,
                "Time the job took, or has been running.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "CronJob" => vec![
            NAME,
            col("Schedule", "string", 0, "The schedule in Cron format."),
            col(
                "Timezone",
                "string",
                0,
                "The time zone the schedule is read in.",
            ),
            col("Suspend", "boolean", 0, "Whether new runs are suspended."),
            col("Active", "integer", 0, "Number of running jobs."),
            col(
                "Last Schedule",
                "string",
                0,
                "Time since a job was last scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Service" => vec![
            NAME,
            col("Type", "string", 0, "How the service is exposed."),
            col(
                "Cluster-IP",
                "string",
                0,
                "The service's cluster IP address.",
            ),
            col(
                "External-IP",
                "string",
                0,
                "Addresses the service is reachable at from outside the cluster.",
            ),
            col("Port(s)", "string", 0, "The ports the service exposes."),
            AGE,
            col(
                "Selector",
                "string",
                1,
                "Labels of the pods traffic is routed to.",
            ),
        ],
        "Endpoints" => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                0,
                "Addresses and ports of the endpoints.",
            ),
            AGE,
        ],
        "Node" => vec![
            NAME,
            col("Status", "string", 0, "The status of the node."),
            col("Roles", "string", 0, "The roles of the node."),
            AGE,
            col("Version", "string", 0, "Kubelet version of the node."),
            col("Internal-IP", "string", 1, "The node's internal address."),
            col("External-IP", "string", 1, "The node's external address."),
            col(
                "OS-Image",
                "string",
                1,
                "The operating system image of the node.",
            ),
            col("Kernel-Version", "string", 1, "The node's kernel version."),
            col(
                "Container-Runtime",
                "string",
                1,
                "The node's container runtime and version.",
            ),
        ],
        "Namespace" => vec![
            NAME,
            col("Status", "string", 0, "The status of the namespace."),
            AGE,
        ],
        "Event" => vec![
            col(
                "Last Seen",
                "string",
                0,
                "Time since the event was last seen.",
            ),
            col("Type", "string", 0, "Type of the event: Normal or Warning."),
            col("Reason", "string", 0, "Why the event happened."),
            col("Object", "string", 0, "The object the event is about."),
            col(
                "Subobject",
                "string",
                1,
                "Part of the object the event is about.",
            ),
            col(
                "Source",
                "string",
                1,
                "The component that reported the event.",
            ),
            col(
                "Message",
                "string",
                0,
                "Human-readable description of the event.",
            ),
            col(
                "First Seen",
                "string",
                1,
                "Time since the event was first seen.",
            ),
            col("Count", "string", 1, "How many times the event happened."),
            Column {
                priority: 1,
                ..NAME
            },
        ],
        "ConfigMap" => vec![
            NAME,
            col("Data", "string", 0, "Number of data entries."),
            AGE,
        ],
        "Secret" => vec![
            NAME,
            col("Type", "string", 0, "Type of the secret."),
            col("Data", "string", 0, "Number of data entries."),
            AGE,
        ],
        "ServiceAccount" => vec![
            NAME,
            col("Secrets", "string", 0, "Number of secrets listed."),
            AGE,
        ],
        "Lease" => vec![
            NAME,
            col("Holder", "string", 0, "Identity of the lease's holder."),
            AGE,
        ],
        "Plugin" => vec![
            NAME,
            col("World", "string", 0, "The world the plugin implements."),
            col("Revision", "string", 0, "The revision running now."),
            col(
                "Phase",
                "string",
                0,
                "Pending, Active, RolledBack or Failed.",
            ),
            col(
                "Restarts",
                "integer",
                0,
                "Instances restarted after a failure.",
            ),
            AGE,
            col("Digest", "string", 1, "Digest of the running component."),
            col("Last Error", "string", 1, "The last failure, in one line."),
        ],
        "PluginComponent" => vec![
            NAME,
            col("Size", "integer", 0, "Size of the component in bytes."),
            AGE,
        ],
        "RuntimeClass" => vec![
            NAME,
            col(
                "Handler",
                "string",
                0,
                "The runtime handler this class selects.",
            ),
            AGE,
        ],
        _ => vec![
            NAME,
            col("Created At", "date", 0, "Time the object was created."),
        ],
    }
}

/// Renders `objects` (all of kind `resource`) as a `meta.k8s.io/v1` Table.
/// Ages are measured against `now`. `metadata` is left empty for the
/// caller to fill (`resourceVersion`, `continue`).
pub fn table(
    resource: &ResourceType,
    objects: &[Value],
    include: IncludeObject,
    now: Timestamp,
) -> Value {
    let column_definitions: Vec<Value> = columns(resource.kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(resource.kind, o, include, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn row(kind: &str, object: &Value, include: IncludeObject, now: Timestamp) -> Value {
    let p = Printer { o: object, now };
    let cells = match kind {
        "Pod" => p.pod(),
        "Deployment" => p.deployment(),
        "ReplicaSet" => p.replica_set(),
        "DaemonSet" => p.daemon_set(),
        "StatefulSet" => p.stateful_set(),
        "Job" => p.job(),
        "CronJob" => p.cron_job(),
        "Service" => p.service(),
        "Endpoints" => p.endpoints(),
        "Node" => p.node(),
        "Namespace" => vec![p.name(), json!(p.str(&["status", "phase"])), p.age()],
        "Event" => p.event(),
        "ConfigMap" => {
            let n = p.map_len(&["data"]) + p.map_len(&["binaryData"]);
            vec![p.name(), json!(n), p.age()]
        }
        "Secret" => p.secret(),
        "ServiceAccount" => vec![p.name(), json!(p.list(&["secrets"]).len()), p.age()],
        "Lease" => {
            let holder = p
                .opt_str(&["spec", "holderIdentity"])
                .unwrap_or("<unknown>");
            vec![p.name(), json!(holder), p.age()]
        }
        "RuntimeClass" => vec![p.name(), json!(p.str(&["handler"])), p.age()],
        "Plugin" => p.plugin(),
        "PluginComponent" => {
            // A component in chunks says its size; others hold their bytes.
            let size = p
                .get(&["size"])
                .and_then(Value::as_u64)
                .map_or_else(|| base64_len(p.str(&["data"])), |s| s as usize);
            vec![p.name(), json!(size), p.age()]
        }
        _ => vec![p.name(), json!(p.str(&["metadata", "creationTimestamp"]))],
    };
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if kind == "Pod" {
        let condition = match p.str(&["status", "phase"]) {
            "Succeeded" => Some(("Succeeded", "The pod has completed successfully.")),
            "Failed" => Some(("Failed", "The pod failed.")),
            _ => None,
        };
        if let Some((reason, message)) = condition {
            row.insert(
                "conditions".into(),
                json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]),
            );
        }
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
            row.insert(
                "object".into(),
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}),
            );
        }
        IncludeObject::Object => {
            row.insert("object".into(), object.clone());
        }
    }
    Value::Object(row)
}

/// Kubernetes' `duration.HumanDuration`: a short, rounded-down rendering
/// whose precision drops as the duration grows (`45s`, `3m20s`, `15m`,
/// `5h4m`, `30h`, `2d3h`, `40d`, `3y20d`). Up to a second in the future
/// counts as `0s` (clock skew); further is `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{days}d")
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Reads fields of one object, tolerating anything missing or mistyped.
struct Printer<'a> {
    o: &'a Value,
    now: Timestamp,
}

/// Decoded length of a base64 text, without decoding it.
fn base64_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn timestamp(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

/// `a,b,c` of container names and of images, as the template lists them.
fn container_cells(containers: &[Value]) -> (String, String) {
    let field = |key: &str| {
        containers
            .iter()
            .map(|c| c.get(key).and_then(Value::as_str).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    };
    (field("name"), field("image"))
}

/// `k=v,k2=v2` sorted by key, `<none>` when empty (labels.FormatLabels).
fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<(&String, &str)> = map
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A LabelSelector in selector syntax, requirements sorted by key:
/// `app=web,tier in (a,b),!legacy`. Empty for an empty or missing
/// selector; `<error>` for an unknown operator.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return String::new();
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            requirements.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let text = match e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        requirements.push((key.to_string(), text));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    requirements
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// metav1.FormatLabelSelector: like [`selector_string`] but `<none>` when empty.
fn format_label_selector(selector: Option<&Value>) -> String {
    let s = selector_string(selector);
    if s.is_empty() { "<none>".into() } else { s }
}

/// `True`, `False`, or `<unset>` for a missing optional boolean.
fn bool_ptr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bool) {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}

fn has_condition(conditions: &[Value], kind: &str) -> bool {
    conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

impl Printer<'_> {
    fn get(&self, path: &[&str]) -> Option<&Value> {
        at(self.o, path)
    }
    fn opt_str(&self, path: &[&str]) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }
    fn str(&self, path: &[&str]) -> &str {
        self.opt_str(path).unwrap_or_default()
    }
    fn int(&self, path: &[&str]) -> i64 {
        self.get(path).and_then(Value::as_i64).unwrap_or_default()
    }
    fn list(&self, path: &[&str]) -> &[Value] {
        self.get(path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    fn map_len(&self, path: &[&str]) -> usize {
        self.get(path)
            .and_then(Value::as_object)
            .map_or(0, Map::len)
    }
    fn name(&self) -> Value {
        json!(self.str(&["metadata", "name"]))
    }
    /// translateTimestampSince: `<unknown>` when the time is missing.
    fn since(&self, t: Option<Timestamp>) -> String {
        match t {
            Some(t) => human_duration(self.now.duration_since(t)),
            None => "<unknown>".into(),
        }
    }
    fn age(&self) -> Value {
        json!(self.since(timestamp(self.get(&["metadata", "creationTimestamp"]))))
    }
    fn template_containers(&self, template: &[&str]) -> (String, String) {
        let mut path = template.to_vec();
        path.extend(["spec", "containers"]);
        container_cells(self.list(&path))
    }

    fn pod(&self) -> Vec<Value> {
        let spec_containers = self.list(&["spec", "containers"]);
        let init_specs = self.list(&["spec", "initContainers"]);
        let conditions = self.list(&["status", "conditions"]);
        let is_sidecar = |name: &str| {
            init_specs.iter().any(|c| {
                c.get("name").and_then(Value::as_str) == Some(name)
                    && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
            })
        };
        let mut total = spec_containers.len();
        total += init_specs
            .iter()
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .count();
        let mut ready = 0;
        let mut restarts = 0;
        let mut sidecar_restarts = 0;
        let mut last_restart: Option<Timestamp> = None;
        let mut last_sidecar_restart: Option<Timestamp> = None;
        let phase = self.str(&["status", "phase"]);
        let mut reason = match self.str(&["status", "reason"]) {
            "" => phase.to_string(),
            r => r.to_string(),
        };
        if conditions.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("PodScheduled")
                && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
        }) {
            reason = "SchedulingGated".into();
        }
        let finished_at = |s: &Value| timestamp(at(s, &["lastState", "terminated", "finishedAt"]));
        let later = |a: Option<Timestamp>, b: Option<Timestamp>| a.max(b);

        let init_statuses = self.list(&["status", "initContainerStatuses"]);
        let mut initializing = false;
        for (i, status) in init_statuses.iter().enumerate() {
            let name = status
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            restarts += status
                .get("restartCount")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            last_restart = later(last_restart, finished_at(status));
            let sidecar = is_sidecar(name);
            if sidecar {
                sidecar_restarts += status
                    .get("restartCount")
                    .and_then(Value::as_i64)
                    .unwrap_or_default();
                last_sidecar_restart = later(last_sidecar_restart, finished_at(status));
            }
            let terminated = at(status, &["state", "terminated"]);
            let waiting_reason = at(status, &["state", "waiting", "reason"])
                .and_then(Value::as_str)
                .unwrap_or_default();
            let exit_code = terminated
                .and_then(|t| t.get("exitCode"))
                .and_then(Value::as_i64)
                .unwrap_or_default();
            if terminated.is_some() && exit_code == 0 {
                continue;
            }
            if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
                if status.get("ready").and_then(Value::as_bool) == Some(true) {
                    ready += 1;
                }
                continue;
            }
            if let Some(t) = terminated {
                reason = match t.get("reason").and_then(Value::as_str).unwrap_or_default() {
                    "" => match t.get("signal").and_then(Value::as_i64).unwrap_or_default() {
                        0 => format!("Init:ExitCode:{exit_code}"),
                        signal => format!("Init:Signal:{signal}"),
                    },
                    r => format!("Init:{r}"),
                };
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                reason = format!("Init:{waiting_reason}");
            } else {
                reason = format!("Init:{i}/{}", init_specs.len());
            }
            initializing = true;
            break;
        }

        if !initializing || has_condition(conditions, "Initialized") {
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for status in self.list(&["status", "containerStatuses"]).iter().rev() {
                restarts += status
                    .get("restartCount")
                    .and_then(Value::as_i64)
                    .unwrap_or_default();
                last_restart = later(last_restart, finished_at(status));
                let waiting_reason = at(status, &["state", "waiting", "reason"])
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let terminated = at(status, &["state", "terminated"]);
                if !waiting_reason.is_empty() {
                    reason = waiting_reason.to_string();
                } else if let Some(t) = terminated {
                    reason = match t.get("reason").and_then(Value::as_str).unwrap_or_default() {
                        "" => match t.get("signal").and_then(Value::as_i64).unwrap_or_default() {
                            0 => format!(
                                "ExitCode:{}",
                                t.get("exitCode")
                                    .and_then(Value::as_i64)
                                    .unwrap_or_default()
                            ),
                            signal => format!("Signal:{signal}"),
                        },
                        r => r.to_string(),
                    };
                } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                    && at(status, &["state", "running"]).is_some()
                {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                reason = if has_condition(conditions, "Ready") {
                    "Running".into()
                } else {
                    "NotReady".into()
                };
            }
        }

        if self
            .get(&["metadata", "deletionTimestamp"])
            .is_some_and(|v| !v.is_null())
        {
            if self.str(&["status", "reason"]) == "NodeLost" {
                reason = "Unknown".into();
            } else if phase != "Succeeded" && phase != "Failed" {
                reason = "Terminating".into();
            }
        }

        let restarts_cell = match last_restart {
            Some(t) if restarts != 0 => format!("{restarts} ({} ago)", self.since(Some(t))),
            _ => restarts.to_string(),
        };
        let none_if_empty = |s: &str| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s.to_string()
            }
        };
        let ip = self
            .list(&["status", "podIPs"])
            .first()
            .and_then(|p| p.get("ip"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let gates = self.list(&["spec", "readinessGates"]);
        let readiness_gates = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let satisfied = gates
                .iter()
                .filter(|g| {
                    let kind = g.get("conditionType").and_then(Value::as_str);
                    conditions
                        .iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == kind)
                        .and_then(|c| c.get("status"))
                        .and_then(Value::as_str)
                        == Some("True")
                })
                .count();
            format!("{satisfied}/{}", gates.len())
        };
        vec![
            self.name(),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            self.age(),
            json!(none_if_empty(ip)),
            json!(none_if_empty(self.str(&["spec", "nodeName"]))),
            json!(none_if_empty(self.str(&["status", "nominatedNodeName"]))),
            json!(readiness_gates),
        ]
    }

    /// `spec.replicas`, which the server defaults to 1.
    fn desired_replicas(&self) -> i64 {
        self.get(&["spec", "replicas"])
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    fn deployment(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template"]);
        vec![
            self.name(),
            json!(format!(
                "{}/{}",
                self.int(&["status", "readyReplicas"]),
                self.desired_replicas()
            )),
            json!(self.int(&["status", "updatedReplicas"])),
            json!(self.int(&["status", "availableReplicas"])),
            self.age(),
            json!(names),
            json!(images),
            json!(selector_string(self.get(&["spec", "selector"]))),
        ]
    }

    fn replica_set(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template"]);
        vec![
            self.name(),
            json!(self.desired_replicas()),
            json!(self.int(&["status", "replicas"])),
            json!(self.int(&["status", "readyReplicas"])),
            self.age(),
            json!(names),
            json!(images),
            json!(format_label_selector(self.get(&["spec", "selector"]))),
        ]
    }

    fn daemon_set(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template"]);
        vec![
            self.name(),
            json!(self.int(&["status", "desiredNumberScheduled"])),
            json!(self.int(&["status", "currentNumberScheduled"])),
            json!(self.int(&["status", "numberReady"])),
            json!(self.int(&["status", "updatedNumberScheduled"])),
            json!(self.int(&["status", "numberAvailable"])),
            json!(format_labels(self.get(&[
                "spec",
                "template",
                "spec",
                "nodeSelector"
            ]))),
            self.age(),
            json!(names),
            json!(images),
            json!(format_label_selector(self.get(&["spec", "selector"]))),
        ]
    }

    fn stateful_set(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template"]);
        vec![
            self.name(),
            json!(format!(
                "{}/{}",
                self.int(&["status", "readyReplicas"]),
                self.desired_replicas()
            )),
            self.age(),
            json!(names),
            json!(images),
        ]
    }

    fn job(&self) -> Vec<Value> {
        let conditions = self.list(&["status", "conditions"]);
        let deleting = self
            .get(&["metadata", "deletionTimestamp"])
            .is_some_and(|v| !v.is_null());
        let status = if has_condition(conditions, "Complete") {
            "Complete"
        } else if has_condition(conditions, "Failed") {
            "Failed"
        } else if deleting {
            "Terminating"
        } else if has_condition(conditions, "Suspended") {
            "Suspended"
        } else if has_condition(conditions, "FailureTarget") {
            "FailureTarget"
        } else if has_condition(conditions, "SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let succeeded = self.int(&["status", "succeeded"]);
        let completions = match (
            self.get(&["spec", "completions"]).and_then(Value::as_i64),
            self.get(&["spec", "parallelism"]).and_then(Value::as_i64),
        ) {
            (Some(c), _) => format!("{succeeded}/{c}"),
            (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        };
        let start = timestamp(self.get(&["status", "startTime"]));
        let end = timestamp(self.get(&["status", "completionTime"]));
        let duration = match (start, end) {
            (None, _) => String::new(),
            (Some(s), None) => human_duration(self.now.duration_since(s)),
            (Some(s), Some(e)) => human_duration(e.duration_since(s)),
        };
        let (names, images) = self.template_containers(&["spec", "template"]);
        vec![
            self.name(),
            json!(status),
            json!(completions),
            json!(duration),
            self.age(),
            json!(names),
            json!(images),
            json!(format_label_selector(self.get(&["spec", "selector"]))),
        ]
    }

    fn cron_job(&self) -> Vec<Value> {
        let last = match timestamp(self.get(&["status", "lastScheduleTime"])) {
            Some(t) => self.since(Some(t)),
            None => "<none>".into(),
        };
        let (names, images) =
            self.template_containers(&["spec", "jobTemplate", "spec", "template"]);
        vec![
            self.name(),
            json!(self.str(&["spec", "schedule"])),
            json!(self.opt_str(&["spec", "timeZone"]).unwrap_or("<none>")),
            json!(bool_ptr(self.get(&["spec", "suspend"]))),
            json!(self.list(&["status", "active"]).len()),
            json!(last),
            self.age(),
            json!(names),
            json!(images),
            json!(format_label_selector(self.get(&[
                "spec",
                "jobTemplate",
                "spec",
                "selector"
            ]))),
        ]
    }

    fn service(&self) -> Vec<Value> {
        let kind = self.str(&["spec", "type"]);
        let cluster_ip = self
            .list(&["spec", "clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .or_else(|| self.opt_str(&["spec", "clusterIP"]))
            .filter(|ip| !ip.is_empty())
            .unwrap_or("<none>");
        let external: Vec<&str> = self
            .list(&["spec", "externalIPs"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let external_ip = match kind {
            "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
            "ClusterIP" | "NodePort" => external.join(","),
            "LoadBalancer" => {
                let ingress: BTreeSet<&str> = self
                    .list(&["status", "loadBalancer", "ingress"])
                    .iter()
                    .filter_map(|i| {
                        let ip = i
                            .get("ip")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty());
                        ip.or_else(|| {
                            i.get("hostname")
                                .and_then(Value::as_str)
                                .filter(|s| !s.is_empty())
                        })
                    })
                    .collect();
                let mut all: Vec<&str> = ingress.into_iter().collect();
                all.extend(external);
                if all.is_empty() {
                    "<pending>".to_string()
                } else {
                    all.join(",")
                }
            }
            "ExternalName" => self.str(&["spec", "externalName"]).to_string(),
            _ => "<unknown>".to_string(),
        };
        let ports: Vec<String> = self
            .list(&["spec", "ports"])
            .iter()
            .map(|p| {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or_default();
                let protocol = p
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                    Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                    None => format!("{port}/{protocol}"),
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        };
        vec![
            self.name(),
            json!(kind),
            json!(cluster_ip),
            json!(external_ip),
            json!(ports),
            self.age(),
            json!(format_labels(self.get(&["spec", "selector"]))),
        ]
    }

    fn endpoints(&self) -> Vec<Value> {
        const MAX: usize = 3;
        let subsets = self.list(&["subsets"]);
        let mut shown: Vec<String> = Vec::new();
        let mut count = 0;
        for subset in subsets {
            let addresses: Vec<&str> = subset
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("ip").and_then(Value::as_str))
                .collect();
            let ports = subset
                .get("ports")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut push = |s: String| {
                if shown.len() < MAX {
                    shown.push(s);
                }
                count += 1;
            };
            if ports.is_empty() {
                // Headless services may have no ports.
                addresses.iter().for_each(|ip| push((*ip).to_string()));
            } else {
                for port in ports {
                    let port = port.get("port").and_then(Value::as_i64).unwrap_or_default();
                    for ip in &addresses {
                        push(if ip.contains(':') {
                            format!("[{ip}]:{port}")
                        } else {
                            format!("{ip}:{port}")
                        });
                    }
                }
            }
        }
        let cell = if subsets.is_empty() {
            "<none>".to_string()
        } else if count > MAX {
            format!("{} + {} more...", shown.join(","), count - MAX)
        } else {
            shown.join(",")
        };
        vec![self.name(), json!(cell), self.age()]
    }

    fn node(&self) -> Vec<Value> {
        let mut status: Vec<String> = Vec::new();
        if let Some(c) = self
            .list(&["status", "conditions"])
            .iter()
            .rev()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        {
            status.push(if c.get("status").and_then(Value::as_str) == Some("True") {
                "Ready".into()
            } else {
                "NotReady".into()
            });
        }
        if status.is_empty() {
            status.push("Unknown".into());
        }
        if self
            .get(&["spec", "unschedulable"])
            .and_then(Value::as_bool)
            == Some(true)
        {
            status.push("SchedulingDisabled".into());
        }
        let mut roles = BTreeSet::new();
        for (key, value) in self
            .get(&["metadata", "labels"])
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if key == "kubernetes.io/role"
                && let Some(v) = value.as_str().filter(|v| !v.is_empty())
            {
                roles.insert(v.to_string());
            }
        }
        let roles = if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.into_iter().collect::<Vec<_>>().join(",")
        };
        let address = |kind: &str| {
            self.list(&["status", "addresses"])
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|a| a.get("address"))
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_string()
        };
        let info = |key: &str| match self.str(&["status", "nodeInfo", key]) {
            "" => "<unknown>".to_string(),
            v => v.to_string(),
        };
        vec![
            self.name(),
            json!(status.join(",")),
            json!(roles),
            self.age(),
            json!(self.str(&["status", "nodeInfo", "kubeletVersion"])),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    }

    fn event(&self) -> Vec<Value> {
        let first = match timestamp(self.get(&["firstTimestamp"])) {
            Some(t) => self.since(Some(t)),
            None => self.since(timestamp(self.get(&["eventTime"]))),
        };
        let mut last = match timestamp(self.get(&["lastTimestamp"])) {
            Some(t) => self.since(Some(t)),
            None => first.clone(),
        };
        let mut count = self.int(&["count"]);
        if self.get(&["series"]).is_some_and(Value::is_object) {
            last = self.since(timestamp(self.get(&["series", "lastObservedTime"])));
            count = self.int(&["series", "count"]);
        } else if count == 0 {
            // Events written through events.k8s.io carry no count when seen once.
            count = 1;
        }
        let kind = self.str(&["involvedObject", "kind"]).to_lowercase();
        let target = match self.str(&["involvedObject", "name"]) {
            "" => kind,
            name => format!("{kind}/{name}"),
        };
        let first_non_empty = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                a.to_string()
            }
        };
        let component = first_non_empty(
            self.str(&["source", "component"]),
            self.str(&["reportingComponent"]),
        );
        let instance = first_non_empty(
            self.str(&["source", "host"]),
            self.str(&["reportingInstance"]),
        );
        let source = if instance.is_empty() {
            component
        } else {
            format!("{component}, {instance}")
        };
        vec![
            json!(last),
            json!(self.str(&["type"])),
            json!(self.str(&["reason"])),
            json!(target),
            json!(self.str(&["involvedObject", "fieldPath"])),
            json!(source),
            json!(self.str(&["message"]).trim()),
            json!(first),
            json!(count),
            self.name(),
        ]
    }

    fn plugin(&self) -> Vec<Value> {
        let revision = match self.get(&["status", "activeRevision"]) {
            Some(r) => r.to_string(),
            None => "<none>".into(),
        };
        let digest = self
            .opt_str(&["status", "activeDigest"])
            .map(|d| d.trim_start_matches("sha256:").chars().take(12).collect())
            .unwrap_or_else(|| "<none>".to_string());
        vec![
            self.name(),
            json!(self.str(&["spec", "world"])),
            json!(revision),
            json!(self.opt_str(&["status", "phase"]).unwrap_or("Pending")),
            json!(self.int(&["status", "restarts"])),
            self.age(),
            json!(digest),
            json!(self.opt_str(&["status", "lastError"]).unwrap_or("<none>")),
        ]
    }

    fn secret(&self) -> Vec<Value> {
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        for field in ["data", "stringData"] {
            keys.extend(
                self.get(&[field])
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.as_str()),
            );
        }
        vec![
            self.name(),
            json!(self.str(&["type"])),
            json!(keys.len()),
            self.age(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::find_by_kind;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn cells(api_version: &str, kind: &str, object: Value) -> Value {
        let rt = find_by_kind(api_version, kind).unwrap();
        let t = table(rt, &[object], IncludeObject::Metadata, now());
        let defs = t["columnDefinitions"].as_array().unwrap().len();
        let cells = t["rows"][0]["cells"].clone();
        assert_eq!(
            cells.as_array().unwrap().len(),
            defs,
            "{kind}: one cell per column"
        );
        cells
    }

    /// Cells `from..to` of a row.
    fn some(cells: &Value, from: usize, to: usize) -> Value {
        Value::Array(cells.as_array().unwrap()[from..to].to_vec())
    }

    #[test]
    fn human_durations_match_kubernetes() {
        let d = |s: i64| human_duration(SignedDuration::from_secs(s));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(200), "3m20s");
        assert_eq!(d(300), "5m");
        assert_eq!(d(15 * 60 + 7), "15m");
        assert_eq!(d(179 * 60), "179m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(5 * 3600 + 4 * 60), "5h4m");
        assert_eq!(d(30 * 3600), "30h");
        assert_eq!(d(51 * 3600), "2d3h");
        assert_eq!(d(72 * 3600), "3d");
        assert_eq!(d(40 * 86400), "40d");
        assert_eq!(d(3 * 365 * 86400 + 20 * 86400), "3y20d");
        assert_eq!(d(10 * 365 * 86400), "10y");
    }

    #[test]
    fn table_shape_and_included_object() {
        let rt = find_by_kind("v1", "ConfigMap").unwrap();
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2025-06-01T11:59:00Z"}, "data": {"a": "1", "b": "2"}});
        let t = table(
            rt,
            std::slice::from_ref(&cm),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0})
        );
        assert_eq!(t["rows"][0]["cells"], json!(["c", 2, "60s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "c");
        let t = table(rt, std::slice::from_ref(&cm), IncludeObject::Object, now());
        assert_eq!(t["rows"][0]["object"], cm);
        let t = table(rt, &[cm], IncludeObject::None, now());
        assert!(t["rows"][0].get("object").is_none());
        let t = table(rt, &[], IncludeObject::None, now());
        assert_eq!(t["rows"], json!([]));
    }

    #[test]
    fn pod_rows() {
        let running = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running", "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 5,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:55:00Z"}}}
                ]
            }
        });
        assert_eq!(
            cells("v1", "Pod", running),
            json!([
                "web-1",
                "1/2",
                "CrashLoopBackOff",
                "5 (5m ago)",
                "60m",
                "10.0.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );

        let completed = json!({
            "metadata": {"name": "job-x"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        });
        let rt = find_by_kind("v1", "Pod").unwrap();
        let t = table(rt, &[completed], IncludeObject::None, now());
        assert_eq!(
            some(&t["rows"][0]["cells"], 1, 5),
            json!(["0/1", "Completed", "0", "<unknown>"])
        );
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");

        let terminating = json!({
            "metadata": {"name": "p", "deletionTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "x", "status": "True"}]}
        });
        let c = cells("v1", "Pod", terminating);
        assert_eq!(c[2], "Terminating");
        assert_eq!(c[8], "1/1");

        let init = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "restartCount": 0, "state": {"running": {}}}]}
        });
        assert_eq!(cells("v1", "Pod", init)[2], "Init:1/2");
    }

    #[test]
    fn workload_rows() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-05-30T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
                     "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells("apps/v1", "Deployment", deployment),
            json!([
                "web",
                "2/3",
                3,
                2,
                "2d3h",
                "app,log",
                "nginx:1,busybox",
                "app=web,tier in (a,b)"
            ])
        );
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2025-06-01T11:58:00Z"},
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2025-06-01T11:58:00Z", "completionTime": "2025-06-01T11:58:45Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            cells("batch/v1", "Job", job),
            json!(["pi", "Complete", "1/1", "45s", "2m", "pi", "perl", "<none>"])
        );
        let sts = json!({"metadata": {"name": "db"}, "spec": {"template": {"spec": {"containers": []}}}, "status": {"readyReplicas": 1}});
        assert_eq!(cells("apps/v1", "StatefulSet", sts)[1], "1/1");
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false}});
        assert_eq!(
            some(&cells("batch/v1", "CronJob", cj), 1, 6),
            json!(["*/5 * * * *", "<none>", "False", 0, "<none>"])
        );
    }

    #[test]
    fn service_node_event_rows() {
        let svc = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(
            cells("v1", "Service", svc),
            json!([
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "<unknown>",
                "app=web"
            ])
        );
        let node = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian 12"}}
        });
        assert_eq!(
            cells("v1", "Node", node),
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,edge",
                "<unknown>",
                "v1.37.0",
                "192.168.1.2",
                "<none>",
                "Debian 12",
                "<unknown>",
                "<unknown>"
            ])
        );
        let event = json!({
            "metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scheduled", "message": " assigned \n",
            "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "scheduler"},
            "firstTimestamp": "2025-06-01T11:59:50Z"
        });
        assert_eq!(
            cells("v1", "Event", event),
            json!([
                "10s",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "scheduler",
                "assigned",
                "10s",
                1,
                "web.1"
            ])
        );
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cells("v1", "Endpoints", ep)[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(cells("v1", "Namespace", ns)[1], "Active");
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA=="}});
        assert_eq!(
            some(&cells("v1", "Secret", secret), 1, 3),
            json!(["Opaque", 1])
        );
        let lease = json!({"metadata": {"name": "l"}, "spec": {}});
        assert_eq!(
            cells("coordination.k8s.io/v1", "Lease", lease)[1],
            "<unknown>"
        );
    }
}
