//! Object verbs: create, get, list, update, patch, delete and the
//! status, scale and binding subresources.
//!
//! Every write goes through the same path: decode, fix up type and object
//! metadata from the URL, apply defaults, validate through the typed
//! definition, honour `fieldValidation` and `dryRun`, then one store write
//! with a resourceVersion precondition. Nothing is written unless all of
//! that succeeded, so a bad request never leaves half an object behind.

use std::sync::Arc;

use orchd_resources::{ResourceType, Subresource, defaults, table, validate};
use orchd_store::{DeleteOutcome, ListOptions, ObjectKey, Preconditions, Scope, StoreError, meta};
use serde_json::{Map, Value, json};

use crate::admission::{Admission, AdmissionRequest, Operation, Phase, Refusal};
use crate::codec::{decode_object, json_response};
use crate::request::Request;
use crate::status::{ApiError, ApiResult, Subject};
use crate::{ApiServer, Reply};

/// How unknown fields are treated (`fieldValidation` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    fn from_request(req: &Request) -> ApiResult<Self> {
        match req.query("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Strict, Warn, Ignore, not {other:?}"
            ))),
        }
    }
}

/// A resource operation's target, resolved from the URL.
pub struct Target {
    /// The resource type.
    pub resource: &'static ResourceType,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
}

impl Target {
    pub(crate) fn key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            resource: self.resource.group_resource(),
            namespace: if self.resource.namespaced {
                self.namespace.clone()
            } else {
                None
            },
            name: name.to_string(),
        }
    }

    pub(crate) fn subject(&self, name: &str) -> Subject {
        Subject {
            group: self.resource.group.to_string(),
            resource: self.resource.plural.to_string(),
            kind: self.resource.kind.to_string(),
            name: name.to_string(),
        }
    }

    pub(crate) fn scope(&self, req: &Request) -> ApiResult<Scope> {
        let label_selector =
            orchd_store::LabelSelector::parse(req.query("labelSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let field_selector =
            orchd_store::FieldSelector::parse(req.query("fieldSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
        Ok(Scope {
            resource: self.resource.group_resource(),
            namespace: if self.resource.namespaced {
                self.namespace.clone()
            } else {
                None
            },
            label_selector,
            field_selector,
        })
    }

    fn list_kind(&self) -> String {
        format!("{}List", self.resource.kind)
    }
}

/// Sets `apiVersion` and `kind` when the client left them out (the Python
/// client does) and rejects a body meant for another resource.
pub(crate) fn fix_type_meta(resource: &ResourceType, object: &mut Value) -> ApiResult<()> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let expected = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(expected));
        }
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(resource.kind));
        }
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                resource.kind,
                resource.group_resource()
            )));
        }
    }
    Ok(())
}

/// Checks and fills `metadata.namespace` against the URL's namespace.
fn fix_namespace(target: &Target, object: &mut Value) -> ApiResult<()> {
    let meta = meta::metadata_mut(object).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !target.resource.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let Some(url_ns) = target.namespace.as_deref() else {
        return Err(ApiError::method_not_allowed(
            "a namespaced object must be written under /namespaces/{namespace}/",
        ));
    };
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), json!(url_ns));
            Ok(())
        }
        Some(ns) if ns == url_ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// The subresource a request writes (`status`, `scale`...), from its path.
fn subresource_of(req: &Request) -> Option<&'static str> {
    match crate::route::parse(&req.path) {
        Ok(crate::route::Route::Resource(path)) => path.subresource.map(|s| s.as_str()),
        _ => None,
    }
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + 5 random characters, as Kubernetes' name generator.
fn generate_name(prefix: &str) -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[*b as usize % GENERATE_ALPHABET.len()] as char)
        .collect();
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

fn object_name(object: &Value) -> String {
    meta::meta_str(object, "name")
        .unwrap_or_default()
        .to_string()
}

/// Fills a missing `metadata.name` from the URL, or rejects a different one.
fn ensure_name(object: &mut Value, url_name: &str) -> ApiResult<()> {
    let body_name = object_name(object);
    if body_name.is_empty() {
        meta::metadata_mut(object)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .insert("name".into(), json!(url_name));
    } else if body_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    Ok(())
}

/// Pod QoS class from its containers' requests and limits.
fn pod_qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c["resources"]["requests"].as_object();
        let limits = c["resources"]["limits"].as_object();
        for res in ["cpu", "memory"] {
            let r = requests.and_then(|m| m.get(res));
            let l = limits.and_then(|m| m.get(res));
            if r.is_some() || l.is_some() {
                any = true;
            }
            // A missing request defaults to the limit, so only the limit is required.
            if l.is_none() || r.is_some_and(|r| Some(r) != l) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Status a freshly created object starts with (Kubernetes'
/// PrepareForCreate): clients do not set status on create, except nodes.
fn reset_status_on_create(resource: &ResourceType, object: &mut Value) {
    if !resource.has_subresource(Subresource::Status) || resource.kind == "Node" {
        return;
    }
    let Some(map) = object.as_object_mut() else {
        return;
    };
    map.remove("status");
    if resource.kind == "Pod" {
        let qos = pod_qos_class(object);
        object["status"] = json!({"phase": "Pending", "qosClass": qos});
    }
}

/// Clears metadata the server owns before a create.
fn strip_server_metadata(object: &mut Value) -> ApiResult<()> {
    let meta = meta::metadata_mut(object).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
        "resourceVersion",
    ] {
        meta.remove(field);
    }
    Ok(())
}

impl ApiServer {
    /// Defaults, runs the mutating admission plugins, validates, applies
    /// `fieldValidation`, then runs the validating admission plugins, for
    /// an object about to be written (`old` is the stored one, for
    /// updates). Returns the canonical object.
    async fn admit(
        &self,
        req: &Request,
        target: &Target,
        mut object: Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let mode = FieldValidation::from_request(req)?;
        defaults::apply(target.resource, &mut object);
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        if operation == Operation::Create
            && target.resource.kind == "Pod"
            && subresource_of(req).is_none()
        {
            self.admit_runtime_class(&mut object).await?;
        }
        if let Some(chain) = self.admission_for(req, target, Phase::Mutating, operation) {
            let request = self.admission_request(req, target, operation, Some(&object), old);
            let admitted = chain
                .review(Phase::Mutating, request)
                .await
                .map_err(Refusal::into_error)?;
            warnings.extend(admitted.warnings);
            if let Some(patched) = admitted.object {
                object = patched;
                // A patch may add fields that have defaults.
                defaults::apply(target.resource, &mut object);
            }
        }
        let validated = self.validate_object(target, object, mode, warnings)?;
        if let Some(chain) = self.admission_for(req, target, Phase::Validating, operation) {
            let request = self.admission_request(req, target, operation, Some(&validated), old);
            let admitted = chain
                .review(Phase::Validating, request)
                .await
                .map_err(Refusal::into_error)?;
            warnings.extend(admitted.warnings);
        }
        Ok(validated)
    }

    /// Kubernetes' RuntimeClass admission: a new pod naming a RuntimeClass
    /// gets the class's `overhead.podFixed` as `spec.overhead` (which the
    /// scheduler counts) and its `scheduling` node selector and
    /// tolerations merged in. A class that does not exist is left to the
    /// node, which fails the pod with the reason.
    async fn admit_runtime_class(&self, pod: &mut Value) -> ApiResult<()> {
        let Some(class) = pod["spec"]["runtimeClassName"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let key = ObjectKey::cluster("runtimeclasses.node.k8s.io", &class);
        let rc = match self.store.get(&key).await {
            Ok(rc) => rc,
            Err(_) => return Ok(()),
        };
        merge_runtime_class(pod, &rc).map_err(ApiError::bad_request)
    }

    /// The admission chain, when one of its plugins of `phase` may match a
    /// write of `operation` on `target` (by this request's subresource).
    fn admission_for(
        &self,
        req: &Request,
        target: &Target,
        phase: Phase,
        operation: Operation,
    ) -> Option<&Arc<dyn Admission>> {
        self.admission.get().filter(|chain| {
            chain.wants(
                phase,
                operation,
                target.resource.group,
                target.resource.plural,
                subresource_of(req),
            )
        })
    }

    /// The review of one write: `object` after it, `old` before it.
    fn admission_request(
        &self,
        req: &Request,
        target: &Target,
        operation: Operation,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> AdmissionRequest {
        let about = object.or(old).unwrap_or(&Value::Null);
        AdmissionRequest {
            uid: uuid::Uuid::new_v4().to_string(),
            group: target.resource.group.to_string(),
            resource: target.resource.plural.to_string(),
            subresource: subresource_of(req).map(str::to_string),
            namespace: if target.resource.namespaced {
                meta::meta_str(about, "namespace")
                    .map(str::to_string)
                    .or_else(|| target.namespace.clone())
            } else {
                None
            },
            name: object_name(about),
            operation,
            object: object.cloned(),
            old_object: old.cloned(),
            dry_run: req.dry_run(),
        }
    }

    /// Runs the admission plugins on the delete of `current`.
    async fn admit_delete(&self, req: &Request, target: &Target, current: &Value) -> ApiResult<()> {
        for phase in [Phase::Mutating, Phase::Validating] {
            if let Some(chain) = self.admission_for(req, target, phase, Operation::Delete) {
                let request =
                    self.admission_request(req, target, Operation::Delete, None, Some(current));
                chain
                    .review(phase, request)
                    .await
                    .map_err(Refusal::into_error)?;
            }
        }
        Ok(())
    }

    /// Whether a delete on `target` is reviewed by any admission plugin.
    fn reviews_deletes(&self, req: &Request, target: &Target) -> bool {
        [Phase::Mutating, Phase::Validating].into_iter().any(|p| {
            self.admission_for(req, target, p, Operation::Delete)
                .is_some()
        })
    }

    /// Validates through the typed definition and applies
    /// `fieldValidation`. Returns the canonical object.
    fn validate_object(
        &self,
        target: &Target,
        object: Value,
        mode: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let subject = target.subject(&object_name(&object));
        let validated = validate(target.resource, &object).map_err(|errs| {
            // A value of the wrong JSON type never decodes: Kubernetes
            // answers that with 400, not with a field-level 422.
            match errs.iter().find(|e| e.reason == "FieldValueTypeInvalid") {
                Some(e) => ApiError::bad_request(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: {field}{sep}{message}",
                    kind = target.resource.kind,
                    version = target.resource.version,
                    field = e.field,
                    sep = if e.field.is_empty() { "" } else { ": " },
                    message = e.message,
                )),
                None => ApiError::invalid(&subject, &errs),
            }
        })?;
        if !validated.unknown_fields.is_empty() {
            let listed: Vec<String> = validated
                .unknown_fields
                .iter()
                .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
                .collect();
            match mode {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        listed.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings.extend(listed),
                FieldValidation::Ignore => {}
            }
        }
        Ok(validated.object)
    }

    async fn check_namespace_exists(&self, target: &Target, name: &str) -> ApiResult<()> {
        let Some(ns) = target
            .namespace
            .as_deref()
            .filter(|_| target.resource.namespaced)
        else {
            return Ok(());
        };
        let key = ObjectKey::cluster("namespaces", ns);
        let subject = Subject {
            resource: "namespaces".into(),
            kind: "Namespace".into(),
            name: ns.into(),
            ..Default::default()
        };
        let namespace = self
            .store
            .get_shared(&key)
            .await
            .map_err(|e| ApiError::from_store(e, &subject))?;
        if meta::meta_str(&namespace, "deletionTimestamp").is_some() {
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                // Kubernetes' NamespaceLifecycle admission, word for word.
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    target.resource.group_resource()
                ),
                details: Some(json!({
                    "name": name,
                    "group": target.resource.group,
                    "kind": target.resource.plural,
                    "causes": [{
                        "reason": "NamespaceTerminating",
                        "message": format!("namespace {ns} is being terminated"),
                        "field": "metadata.namespace",
                    }],
                })),
            });
        }
        Ok(())
    }

    /// POST on a collection.
    pub(crate) async fn create(&self, req: &Request, target: &Target) -> ApiResult<Reply> {
        let object = decode_object(req.content_type(), &req.body)?;
        self.create_object(req, target, object).await
    }

    async fn create_object(
        &self,
        req: &Request,
        target: &Target,
        mut object: Value,
    ) -> ApiResult<Reply> {
        let object = &mut object;
        fix_type_meta(target.resource, object)?;
        fix_namespace(target, object)?;
        strip_server_metadata(object)?;
        let generate = meta::meta_str(object, "generateName")
            .map(str::to_string)
            .filter(|p| !p.is_empty());
        if let (true, Some(prefix)) = (object_name(object).is_empty(), generate) {
            let meta =
                meta::metadata_mut(object).map_err(|e| ApiError::bad_request(e.to_string()))?;
            meta.insert("name".into(), json!(generate_name(&prefix)));
        }
        reset_status_on_create(target.resource, object);
        // Assigned before defaulting: Job defaults derive labels from it.
        meta::metadata_mut(object)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        let mut warnings = Vec::new();
        let mut admitted = self
            .admit(req, target, std::mem::take(object), None, &mut warnings)
            .await?;
        if target.resource.kind == "Pod" && target.resource.group.is_empty() {
            // A mutating admission plugin may have changed the requests
            // the QoS class was derived from.
            admitted["status"]["qosClass"] = json!(pod_qos_class(&admitted));
        }
        let name = object_name(&admitted);
        self.check_namespace_exists(target, &name).await?;
        if req.dry_run() {
            return Ok(Reply::json(201, admitted).with_warnings(warnings));
        }
        let created = self
            .store
            .create_shared(&target.key(&name), admitted)
            .await
            .map_err(|e| ApiError::from_store(e, &target.subject(&name)))?;
        Ok(Reply::shared(201, created).with_warnings(warnings))
    }

    /// POST of a review kind (SelfSubjectAccessReview): answered, not stored.
    pub(crate) fn review(&self, req: &Request, target: &Target) -> ApiResult<Reply> {
        let mut review = decode_object(req.content_type(), &req.body)?;
        fix_type_meta(target.resource, &mut review)?;
        let subject = target.subject(&object_name(&review));
        validate(target.resource, &review).map_err(|errs| ApiError::invalid(&subject, &errs))?;
        // orchd has no authentication or authorization yet: every request
        // is allowed, and the answer says so rather than pretending.
        review["status"] = json!({
            "allowed": true,
            "reason": "orchd has no authorization layer yet: every request is allowed",
        });
        Ok(Reply::json(201, review))
    }

    /// GET on an object.
    pub(crate) async fn get(&self, req: &Request, target: &Target, name: &str) -> ApiResult<Reply> {
        let object = self
            .store
            .get(&target.key(name))
            .await
            .map_err(|e| ApiError::from_store(e, &target.subject(name)))?;
        if req.wants_table() {
            let mut t = table::table(
                target.resource,
                std::slice::from_ref(&object),
                req.include_object(),
                jiff::Timestamp::now(),
            );
            t["metadata"] = json!({"resourceVersion": meta::meta_str(&object, "resourceVersion").unwrap_or_default()});
            return Ok(Reply::json(200, t));
        }
        Ok(Reply::json(200, object))
    }

    /// GET on a collection (without `watch`).
    pub(crate) async fn list(&self, req: &Request, target: &Target) -> ApiResult<Reply> {
        let scope = target.scope(req)?;
        let limit = match req.query("limit") {
            None | Some("") | Some("0") => None,
            Some(l) => Some(l.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("limit must be a non-negative integer, not {l:?}"))
            })?),
        };
        let options = ListOptions {
            limit,
            continue_token: req
                .query("continue")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
        };
        let list = self.store.list(&scope, &options).await.map_err(|e| match e {
            StoreError::Expired { .. } => ApiError {
                code: 410,
                reason: "Expired",
                message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                details: None,
            },
            other => ApiError::from_store(other, &target.subject("")),
        })?;
        let mut list_meta = Map::new();
        list_meta.insert("resourceVersion".into(), json!(list.revision.to_string()));
        if let Some(c) = &list.continue_token {
            list_meta.insert("continue".into(), json!(c));
        }
        if let Some(n) = list.remaining_item_count {
            list_meta.insert("remainingItemCount".into(), json!(n));
        }
        if req.wants_table() {
            let mut t = table::table(
                target.resource,
                &list.items,
                req.include_object(),
                jiff::Timestamp::now(),
            );
            t["metadata"] = Value::Object(list_meta);
            return Ok(Reply::json(200, t));
        }
        Ok(Reply::json(
            200,
            json!({
                "kind": target.list_kind(),
                "apiVersion": target.resource.api_version(),
                "metadata": list_meta,
                "items": list.items,
            }),
        ))
    }

    /// Writes an update computed from the stored object by `build`, with
    /// optimistic concurrency. When the request carried no resourceVersion
    /// of its own (`user_rv` None) conflicts with concurrent writers are
    /// retried; otherwise a stale resourceVersion is the client's 409.
    async fn write_update(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
        build: &(dyn Fn(&Value) -> ApiResult<Value> + Send + Sync),
    ) -> ApiResult<Reply> {
        let key = target.key(name);
        let subject = target.subject(name);
        for _ in 0..32 {
            let current = self
                .store
                .get_shared(&key)
                .await
                .map_err(|e| ApiError::from_store(e, &subject))?;
            let mut next = build(&current)?;
            fix_type_meta(target.resource, &mut next)?;
            fix_namespace(target, &mut next)?;
            ensure_name(&mut next, name)?;
            let user_rv = meta::meta_str(&next, "resourceVersion")
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            if user_rv.is_none() {
                meta::set_resource_version(&mut next, meta::resource_version(&current));
            }
            let mut warnings = Vec::new();
            let admitted = self
                .admit(req, target, next, Some(&current), &mut warnings)
                .await?;
            if req.dry_run() {
                return Ok(Reply::json(200, admitted).with_warnings(warnings));
            }
            match self.store.update_shared(&key, admitted).await {
                Ok(updated) => return Ok(Reply::shared(200, updated).with_warnings(warnings)),
                Err(StoreError::Conflict { .. }) if user_rv.is_none() => continue,
                Err(e) => return Err(ApiError::from_store(e, &subject)),
            }
        }
        Err(ApiError::conflict(
            &subject,
            "too many concurrent writers, try again",
        ))
    }

    /// PUT on an object or its status.
    pub(crate) async fn update(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
        sub: Option<Subresource>,
    ) -> ApiResult<Reply> {
        let incoming = decode_object(req.content_type(), &req.body)?;
        let has_status = target.resource.has_subresource(Subresource::Status);
        self.write_update(req, target, name, &|current| {
            let mut next = incoming.clone();
            match sub {
                // A status write changes only status (and keeps the rest).
                Some(Subresource::Status) => {
                    let mut merged = current.clone();
                    merged["status"] = next.get("status").cloned().unwrap_or(Value::Null);
                    if let Some(rv) = meta::meta_str(&next, "resourceVersion") {
                        merged["metadata"]["resourceVersion"] = json!(rv);
                    } else {
                        meta::set_resource_version(&mut merged, None);
                    }
                    next = merged;
                }
                // The main resource ignores status changes when status has its own endpoint.
                _ if has_status => {
                    let obj = next.as_object_mut().ok_or_else(|| {
                        ApiError::bad_request("the request body must be a JSON object")
                    })?;
                    match current.get("status") {
                        Some(s) => obj.insert("status".into(), s.clone()),
                        None => obj.remove("status"),
                    };
                }
                _ => {}
            }
            keep_namespace_finalizers(target.resource, current, &mut next);
            Ok(next)
        })
        .await
    }

    /// PUT on `namespaces/{name}/finalize`: replaces `spec.finalizers` and
    /// nothing else, as Kubernetes' finalize subresource does. Emptying
    /// them on a namespace being deleted removes it.
    pub(crate) async fn finalize(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
    ) -> ApiResult<Reply> {
        let incoming = decode_object(req.content_type(), &req.body)?;
        let finalizers = match &incoming["spec"]["finalizers"] {
            Value::Null => json!([]),
            list @ Value::Array(_) => list.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "spec.finalizers must be a list of strings",
                ));
            }
        };
        self.write_update(req, target, name, &|current| {
            let mut next = current.clone();
            let root = next
                .as_object_mut()
                .ok_or_else(|| ApiError::internal("the stored namespace is not an object"))?;
            match root.get_mut("spec").and_then(Value::as_object_mut) {
                Some(spec) => {
                    spec.insert("finalizers".into(), finalizers.clone());
                }
                None => {
                    root.insert("spec".into(), json!({"finalizers": finalizers}));
                }
            }
            match meta::meta_str(&incoming, "resourceVersion").filter(|rv| !rv.is_empty()) {
                Some(rv) => next["metadata"]["resourceVersion"] = json!(rv),
                None => meta::set_resource_version(&mut next, None),
            }
            Ok(next)
        })
        .await
    }

    /// PATCH on an object or its status.
    pub(crate) async fn patch(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
        sub: Option<Subresource>,
    ) -> ApiResult<Reply> {
        let media = crate::codec::media_type(req.content_type());
        let kind = target.resource.kind;
        let patch_body: Value = match media.as_str() {
            "application/apply-patch+yaml" | "application/apply-patch+cbor"
                if media.ends_with("yaml") =>
            {
                serde_norway::from_slice(&req.body).map_err(|e| {
                    ApiError::bad_request(format!("the apply patch is not valid YAML or JSON: {e}"))
                })?
            }
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?,
            _ => return Err(ApiError::unsupported_media_type(req.content_type())),
        };
        if media == "application/apply-patch+yaml" {
            return self.apply(req, target, name, sub, patch_body).await;
        }
        let has_status = target.resource.has_subresource(Subresource::Status);
        self.write_update(req, target, name, &|current| {
            let patched = match media.as_str() {
                "application/json-patch+json" => orchd_patch::json_patch(current, &patch_body),
                "application/merge-patch+json" => orchd_patch::merge_patch(current, &patch_body),
                _ => orchd_patch::strategic_merge_patch(current, &patch_body, kind),
            }
            .map_err(patch_error)?;
            let mut next = restrict_to_subresource(current, patched, sub, has_status);
            keep_namespace_finalizers(target.resource, current, &mut next);
            Ok(next)
        })
        .await
    }

    /// Server-side apply (`application/apply-patch+yaml`): creates the
    /// object when missing.
    async fn apply(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
        sub: Option<Subresource>,
        applied: Value,
    ) -> ApiResult<Reply> {
        let Some(manager) = req
            .query("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
        else {
            return Err(ApiError::bad_request(
                "PATCH with application/apply-patch+yaml requires the fieldManager parameter",
            ));
        };
        let mut applied = applied;
        if !applied.is_object() {
            return Err(ApiError::bad_request("the apply patch must be an object"));
        }
        fix_type_meta(target.resource, &mut applied)?;
        let kind = target.resource.kind;
        let now = meta::now_rfc3339();
        match self.store.get(&target.key(name)).await {
            Err(StoreError::NotFound { .. }) if sub.is_none() => {
                let mut created =
                    orchd_patch::server_side_apply(None, &applied, kind, &manager, &now)
                        .map_err(patch_error)?;
                ensure_name(&mut created, name)?;
                self.create_object(req, target, created).await
            }
            Err(e) => Err(ApiError::from_store(e, &target.subject(name))),
            Ok(_) => {
                let has_status = target.resource.has_subresource(Subresource::Status);
                self.write_update(req, target, name, &|current| {
                    let patched = orchd_patch::server_side_apply(
                        Some(current),
                        &applied,
                        kind,
                        &manager,
                        &now,
                    )
                    .map_err(patch_error)?;
                    let mut next = restrict_to_subresource(current, patched, sub, has_status);
                    keep_namespace_finalizers(target.resource, current, &mut next);
                    Ok(next)
                })
                .await
            }
        }
    }

    /// DELETE on an object.
    pub(crate) async fn delete(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
    ) -> ApiResult<Reply> {
        let options = delete_options(req)?;
        let subject = target.subject(name);
        let key = target.key(name);
        let preconditions = Preconditions {
            uid: options["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: match options["preconditions"]["resourceVersion"].as_str() {
                Some(rv) => Some(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion precondition {rv:?}"))
                })?),
                None => None,
            },
        };
        if self.reviews_deletes(req, target) {
            let current = self
                .store
                .get(&key)
                .await
                .map_err(|e| ApiError::from_store(e, &subject))?;
            self.admit_delete(req, target, &current).await?;
        }
        if req.dry_run()
            || options["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All"))
        {
            let object = self
                .store
                .get(&key)
                .await
                .map_err(|e| ApiError::from_store(e, &subject))?;
            return Ok(Reply::json(200, object));
        }
        let preconditions = match dependents_finalizer(&options) {
            Some(finalizer) => {
                self.hold_for_dependents(&key, &subject, finalizer, preconditions)
                    .await?
            }
            None => preconditions,
        };
        let grace = self.grace_period(target, &key, &options).await?;
        match self
            .store
            .delete_with_grace(&key, &preconditions, grace)
            .await
            .map_err(|e| ApiError::from_store(e, &subject))?
        {
            DeleteOutcome::Deleted(object) => {
                if target.resource.group.is_empty() && target.resource.plural == "nodes" {
                    self.release_terminating_pods(name).await;
                }
                Ok(Reply::json(200, object))
            }
            // A pod terminating gracefully answers 200, as in Kubernetes.
            DeleteOutcome::Finalizing(object) if grace > 0 => Ok(Reply::json(200, object)),
            DeleteOutcome::Finalizing(object) => Ok(Reply::json(202, object)),
        }
    }

    /// After a Node is deleted: its pods still terminating have no node
    /// agent left to confirm they stopped, so they are deleted for good now
    /// (what Kubernetes' pod garbage collector does for pods of nodes that
    /// are gone). Best effort: a failure leaves the pod to a later delete,
    /// which goes at once since its node is gone (see `grace_period`).
    async fn release_terminating_pods(&self, node: &str) {
        let scope = Scope {
            resource: "pods".into(),
            namespace: None,
            label_selector: Default::default(),
            field_selector: orchd_store::FieldSelector::equals("spec.nodeName", node),
        };
        let Ok(list) = self.store.list(&scope, &ListOptions::default()).await else {
            return;
        };
        for pod in list.items {
            if meta::meta_str(&pod, "deletionTimestamp").is_none() {
                continue;
            }
            let key = ObjectKey {
                resource: "pods".into(),
                namespace: meta::meta_str(&pod, "namespace").map(str::to_string),
                name: object_name(&pod),
            };
            let held = Preconditions {
                uid: meta::meta_str(&pod, "uid").map(str::to_string),
                resource_version: None,
            };
            let _ = self.store.delete_with_grace(&key, &held, 0).await;
        }
    }

    /// The grace period of a delete: pods only (see [`pod_grace_period`]);
    /// everything else goes at once. A pod bound to a Node that does not
    /// exist has no node agent to confirm it stopped: it goes at once too,
    /// as Kubernetes' pod garbage collector would force-delete it.
    async fn grace_period(
        &self,
        target: &Target,
        key: &ObjectKey,
        options: &Value,
    ) -> ApiResult<u32> {
        if !(target.resource.group.is_empty() && target.resource.plural == "pods") {
            return Ok(0);
        }
        let pod = match self.store.get(key).await {
            Ok(p) => p,
            // The delete itself reports it.
            Err(_) => return Ok(0),
        };
        let grace = pod_grace_period(&pod, options)?;
        if grace > 0
            && let Some(node) = pod["spec"]["nodeName"].as_str()
            && matches!(
                self.store.get(&ObjectKey::cluster("nodes", node)).await,
                Err(StoreError::NotFound { .. })
            )
        {
            return Ok(0);
        }
        Ok(grace)
    }

    /// Before an Orphan or Foreground delete: adds the finalizer that
    /// keeps the object (marked for deletion) until the garbage collector
    /// has orphaned or deleted its dependents, as Kubernetes does. The
    /// caller's preconditions are checked here, against the object before
    /// the finalizer; the delete that follows is held to its uid.
    async fn hold_for_dependents(
        &self,
        key: &ObjectKey,
        subject: &Subject,
        finalizer: &str,
        preconditions: Preconditions,
    ) -> ApiResult<Preconditions> {
        for _ in 0..32 {
            let current = self
                .store
                .get(key)
                .await
                .map_err(|e| ApiError::from_store(e, subject))?;
            let uid = meta::meta_str(&current, "uid")
                .unwrap_or_default()
                .to_string();
            if preconditions.uid.as_ref().is_some_and(|u| *u != uid) {
                return Err(ApiError::conflict(
                    subject,
                    &format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                        preconditions.uid.as_deref().unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = preconditions.resource_version
                && Some(rv) != meta::resource_version(&current)
            {
                return Err(ApiError::conflict(
                    subject,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}"),
                ));
            }
            let held = Preconditions {
                uid: Some(uid),
                resource_version: None,
            };
            let finalizers = meta::finalizers(&current);
            if meta::meta_str(&current, "deletionTimestamp").is_some()
                || finalizers.iter().any(|f| f == finalizer)
            {
                return Ok(held);
            }
            let mut next = current.clone();
            let m = meta::metadata_mut(&mut next).map_err(|e| ApiError::internal(e.to_string()))?;
            let mut list: Vec<Value> = finalizers.into_iter().map(Value::String).collect();
            list.push(json!(finalizer));
            m.insert("finalizers".into(), Value::Array(list));
            match self.store.update(key, next).await {
                Ok(_) => return Ok(held),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, subject)),
            }
        }
        Err(ApiError::conflict(
            subject,
            "too many concurrent writers, try again",
        ))
    }

    /// DELETE on a collection: deletes every matching object.
    pub(crate) async fn delete_collection(
        &self,
        req: &Request,
        target: &Target,
    ) -> ApiResult<Reply> {
        let scope = target.scope(req)?;
        let list = self
            .store
            .list(&scope, &ListOptions::default())
            .await
            .map_err(|e| ApiError::from_store(e, &target.subject("")))?;
        let mut deleted = Vec::new();
        for item in list.items {
            let name = object_name(&item);
            let key = ObjectKey {
                resource: target.resource.group_resource(),
                namespace: meta::meta_str(&item, "namespace").map(str::to_string),
                name: name.clone(),
            };
            if self.reviews_deletes(req, target) {
                self.admit_delete(req, target, &item).await?;
            }
            let options = delete_options(req)?;
            let grace = self.grace_period(target, &key, &options).await?;
            match self
                .store
                .delete_with_grace(&key, &Preconditions::default(), grace)
                .await
            {
                Ok(DeleteOutcome::Deleted(o) | DeleteOutcome::Finalizing(o)) => deleted.push(o),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(ApiError::from_store(e, &target.subject(&name))),
            }
        }
        Ok(Reply::json(
            200,
            json!({"kind": target.list_kind(), "apiVersion": target.resource.api_version(), "metadata": {}, "items": deleted}),
        ))
    }

    /// GET, PUT and PATCH on `/scale`.
    pub(crate) async fn scale(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
    ) -> ApiResult<Reply> {
        let subject = target.subject(name);
        if req.method == hyper::Method::GET {
            let object = self
                .store
                .get(&target.key(name))
                .await
                .map_err(|e| ApiError::from_store(e, &subject))?;
            return Ok(Reply::json(200, scale_view(&object)));
        }
        let media = crate::codec::media_type(req.content_type());
        let body: Value = if req.method == hyper::Method::PUT {
            decode_object(req.content_type(), &req.body)?
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?
        };
        let is_put = req.method == hyper::Method::PUT;
        let reply = self
            .write_update(req, target, name, &|current| {
                let view = scale_view(current);
                let desired = if is_put {
                    body.clone()
                } else {
                    match media.as_str() {
                        "application/json-patch+json" => orchd_patch::json_patch(&view, &body),
                        "application/strategic-merge-patch+json" => {
                            orchd_patch::strategic_merge_patch(&view, &body, "Scale")
                        }
                        _ => orchd_patch::merge_patch(&view, &body),
                    }
                    .map_err(patch_error)?
                };
                let replicas = desired["spec"]["replicas"].as_i64().unwrap_or(0);
                if replicas < 0 || replicas > i64::from(i32::MAX) {
                    return Err(ApiError::invalid(
                        &subject,
                        &[orchd_resources::FieldError {
                            reason: "FieldValueInvalid",
                            field: "spec.replicas".into(),
                            message: format!(
                                "Invalid value: {replicas}: must be greater than or equal to 0"
                            ),
                        }],
                    ));
                }
                let mut next = current.clone();
                next["spec"]["replicas"] = json!(replicas);
                match meta::meta_str(&desired, "resourceVersion") {
                    Some(rv)
                        if !rv.is_empty()
                            && Some(rv) != meta::meta_str(current, "resourceVersion") =>
                    {
                        next["metadata"]["resourceVersion"] = json!(rv);
                    }
                    _ => meta::set_resource_version(&mut next, None),
                }
                Ok(next)
            })
            .await?;
        Ok(Reply::json(reply.code, scale_view(&reply.body)))
    }

    /// POST on `pods/{name}/binding`: assigns the pod to a node.
    pub(crate) async fn bind(
        &self,
        req: &Request,
        target: &Target,
        name: &str,
    ) -> ApiResult<Reply> {
        let binding = decode_object(req.content_type(), &req.body)?;
        let node = binding["target"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::invalid(
                    &target.subject(name),
                    &[orchd_resources::FieldError {
                        reason: "FieldValueRequired",
                        field: "target.name".into(),
                        message: "Required value".into(),
                    }],
                )
            })?;
        let subject = target.subject(name);
        self.write_update(req, target, name, &|current| {
            if let Some(existing) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(&subject, &format!("pod {name} is already assigned to node \"{existing}\"")));
            }
            if meta::meta_str(current, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict(&subject, "pod is being deleted, cannot be assigned to a host"));
            }
            let mut next = current.clone();
            next["spec"]["nodeName"] = json!(node);
            set_condition(&mut next, json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
            meta::set_resource_version(&mut next, None);
            Ok(next)
        })
        .await?;
        Ok(Reply::json(
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }
}

/// Replaces (or adds) the condition of the same type in `status.conditions`.
fn set_condition(object: &mut Value, condition: Value) {
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    if !object["status"]["conditions"].is_array() {
        object["status"]["conditions"] = json!([]);
    }
    if let Some(list) = object["status"]["conditions"].as_array_mut() {
        list.retain(|c| c["type"] != condition["type"]);
        list.push(condition);
    }
}

/// A status write keeps everything but status; a main-resource write keeps
/// status when status has its own endpoint.
fn restrict_to_subresource(
    current: &Value,
    mut patched: Value,
    sub: Option<Subresource>,
    has_status: bool,
) -> Value {
    let rv = meta::meta_str(&patched, "resourceVersion").map(str::to_string);
    let result = match sub {
        Some(Subresource::Status) => {
            let status = patched
                .as_object_mut()
                .and_then(|o| o.shift_remove("status"))
                .unwrap_or(Value::Null);
            let mut next = current.clone();
            next["status"] = status;
            next
        }
        _ if has_status => {
            if let Some(obj) = patched.as_object_mut() {
                match current.get("status") {
                    Some(s) => obj.insert("status".into(), s.clone()),
                    None => obj.remove("status"),
                };
            }
            patched
        }
        _ => patched,
    };
    let mut result = result;
    // A patch that carries a resourceVersion makes it a precondition; one
    // that does not is applied to whatever is current.
    match rv.filter(|rv| Some(rv.as_str()) != meta::meta_str(current, "resourceVersion")) {
        Some(rv) => result["metadata"]["resourceVersion"] = json!(rv),
        None => meta::set_resource_version(&mut result, None),
    }
    result
}

/// A namespace's `spec.finalizers` change only through its `finalize`
/// subresource (Kubernetes' namespace strategy): other writes keep them.
fn keep_namespace_finalizers(resource: &ResourceType, current: &Value, next: &mut Value) {
    if !resource.group.is_empty() || resource.kind != "Namespace" {
        return;
    }
    let kept = current["spec"]["finalizers"].clone();
    let Some(root) = next.as_object_mut() else {
        return;
    };
    match root.get_mut("spec").and_then(Value::as_object_mut) {
        Some(spec) if kept.is_null() => {
            spec.remove("finalizers");
        }
        Some(spec) => {
            spec.insert("finalizers".into(), kept);
        }
        None if kept.is_null() => {}
        None => {
            root.insert("spec".into(), json!({"finalizers": kept}));
        }
    }
}

fn patch_error(e: orchd_patch::PatchError) -> ApiError {
    // Kubernetes answers 422 when a well-formed patch cannot be applied.
    match e.http_status() {
        413 => ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: e.to_string(),
            details: None,
        },
        _ => ApiError::unprocessable(format!("the patch could not be applied: {e}")),
    }
}

/// DeleteOptions from the body (kubectl sends one) merged with query
/// parameters.
fn delete_options(req: &Request) -> ApiResult<Value> {
    let mut options = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode_object(req.content_type(), &req.body)?
    };
    if let Some(p) = req.query("propagationPolicy") {
        options["propagationPolicy"] = json!(p);
    }
    if let Some(g) = req.query("gracePeriodSeconds").filter(|g| !g.is_empty()) {
        let g: i64 = g.parse().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds must be an integer, not {g:?}"))
        })?;
        options["gracePeriodSeconds"] = json!(g);
    }
    match options["propagationPolicy"].as_str() {
        None | Some("Background" | "Foreground" | "Orphan") => Ok(options),
        Some(p) => Err(ApiError::bad_request(format!(
            "propagationPolicy must be Background, Foreground or Orphan, not {p:?}"
        ))),
    }
}

/// A pod's grace period on delete, as Kubernetes computes it: the
/// request's `gracePeriodSeconds` (DeleteOptions or query), else the pod's
/// `terminationGracePeriodSeconds` (defaulted to 30); 0 for a pod not
/// bound to a node or already finished (nothing runs to stop); a negative
/// value means 1.
pub(crate) fn pod_grace_period(pod: &Value, options: &Value) -> ApiResult<u32> {
    let asked = match &options["gracePeriodSeconds"] {
        Value::Null => None,
        v => Some(v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!("gracePeriodSeconds must be an integer, not {v}"))
        })?),
    };
    let mut grace = asked
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        || matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
    {
        grace = 0;
    }
    if grace < 0 {
        grace = 1;
    }
    Ok(u32::try_from(grace).unwrap_or(u32::MAX))
}

/// The finalizer an Orphan or Foreground delete puts on the object for the
/// garbage collector (`orphanDependents: true` is the old way of saying
/// Orphan); Background deletes need none.
fn dependents_finalizer(options: &Value) -> Option<&'static str> {
    match options["propagationPolicy"].as_str() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        Some(_) => None,
        None if options["orphanDependents"] == true => Some("orphan"),
        None => None,
    }
}

/// The `autoscaling/v1` Scale view of a workload.
fn scale_view(object: &Value) -> Value {
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&object["spec"]["selector"]),
        },
    })
}

/// A LabelSelector in its string form: `app=web,tier in (a,b)`.
pub(crate) fn selector_string(selector: &Value) -> String {
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

/// Arc'd objects in events become plain values in responses.
pub(crate) fn with_type_meta(resource: &ResourceType, object: &Arc<Value>) -> Value {
    let mut v = (**object).clone();
    if let Some(map) = v.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| json!(resource.api_version()));
        map.entry("kind").or_insert_with(|| json!(resource.kind));
    }
    v
}

/// The reply for a request, before it is encoded.
pub(crate) fn reply_response(reply: Reply) -> hyper::Response<crate::codec::Body> {
    match reply.body.json {
        Some(json) => crate::codec::encoded_json_response(
            reply.code,
            bytes::Bytes::from_owner(json),
            &reply.warnings,
        ),
        None => json_response(reply.code, &reply.body, &reply.warnings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pod_qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(pod_qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(pod_qos_class(&b), "Burstable");
    }

    #[test]
    fn pod_grace_periods() {
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 12},
            "status": {"phase": "Running"}});
        assert_eq!(pod_grace_period(&bound, &json!({})).unwrap(), 12);
        assert_eq!(
            pod_grace_period(&bound, &json!({"gracePeriodSeconds": 3})).unwrap(),
            3
        );
        assert_eq!(
            pod_grace_period(&bound, &json!({"gracePeriodSeconds": 0})).unwrap(),
            0
        );
        assert_eq!(
            pod_grace_period(&bound, &json!({"gracePeriodSeconds": -5})).unwrap(),
            1
        );
        assert!(pod_grace_period(&bound, &json!({"gracePeriodSeconds": "x"})).is_err());
        let no_default = json!({"spec": {"nodeName": "n"}});
        assert_eq!(pod_grace_period(&no_default, &json!({})).unwrap(), 30);
        let unbound = json!({"spec": {"terminationGracePeriodSeconds": 12}});
        assert_eq!(
            pod_grace_period(&unbound, &json!({"gracePeriodSeconds": 9})).unwrap(),
            0
        );
        let mut done = bound.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(pod_grace_period(&done, &json!({})).unwrap(), 0);
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
    }

    #[test]
    fn selector_strings() {
        let s = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(selector_string(&s), "app=web,tier in (a,b)");
    }
}

/// Merges RuntimeClass `rc`'s overhead and scheduling constraints into
/// `pod`; refuses a pod whose own overhead or node selector contradicts
/// the class's (as Kubernetes does).
fn merge_runtime_class(pod: &mut Value, rc: &Value) -> Result<(), String> {
    let class = rc["metadata"]["name"].as_str().unwrap_or("");
    let overhead = &rc["overhead"]["podFixed"];
    if overhead.is_object() {
        let own = &pod["spec"]["overhead"];
        if own.is_null() {
            pod["spec"]["overhead"] = overhead.clone();
        } else if own != overhead {
            return Err(format!(
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead ({class})"
            ));
        }
    }
    let scheduling = &rc["scheduling"];
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        if !pod["spec"]["nodeSelector"].is_object() {
            pod["spec"]["nodeSelector"] = json!({});
        }
        for (k, v) in selector {
            let own = &pod["spec"]["nodeSelector"][k];
            if !own.is_null() && own != v {
                return Err(format!(
                    "pod rejected: conflict in nodeSelector key {k} between the pod and RuntimeClass {class}"
                ));
            }
            pod["spec"]["nodeSelector"][k] = v.clone();
        }
    }
    if let Some(tolerations) = scheduling["tolerations"].as_array() {
        if !pod["spec"]["tolerations"].is_array() {
            pod["spec"]["tolerations"] = json!([]);
        }
        if let Some(list) = pod["spec"]["tolerations"].as_array_mut() {
            for t in tolerations {
                if !list.contains(t) {
                    list.push(t.clone());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod runtime_class_tests {
    use super::*;

    #[test]
    fn overhead_and_scheduling_are_merged_and_conflicts_refused() {
        let rc = json!({"metadata": {"name": "runc"}, "handler": "runc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {"nodeSelector": {"runtime": "containers"},
                           "tolerations": [{"key": "t", "operator": "Exists"}]}});
        let mut pod = json!({"spec": {"runtimeClassName": "runc", "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "t", "operator": "Exists"}]}});
        merge_runtime_class(&mut pod, &rc).unwrap();
        assert_eq!(pod["spec"]["overhead"]["memory"], "64Mi");
        assert_eq!(
            pod["spec"]["nodeSelector"],
            json!({"zone": "a", "runtime": "containers"})
        );
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);

        let mut other = json!({"spec": {"overhead": {"cpu": "1"}}});
        assert!(
            merge_runtime_class(&mut other, &rc)
                .unwrap_err()
                .contains("Overhead")
        );
        let mut conflict = json!({"spec": {"nodeSelector": {"runtime": "wasm"}}});
        assert!(
            merge_runtime_class(&mut conflict, &rc)
                .unwrap_err()
                .contains("nodeSelector")
        );
    }
}
