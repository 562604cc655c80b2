//! The admission chain in the API's write path, with a native chain that
//! records what it is asked: where it runs (after defaults, mutation
//! before schema validation, validation after it), what each operation
//! hands it, and how denials, failures and patches reach the client.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, header};
use orchd_api::admission::{Admission, AdmissionRequest, Admitted, Operation, Phase, Refusal};
use orchd_api::{ApiConfig, ApiServer, Request};
use orchd_store::{RedbStore, RedbStoreConfig};
use serde_json::{Value, json};

/// A chain that records every review and answers by the object's labels:
/// `deny` → denied (`protected`: deletes denied), `fail` → failed,
/// otherwise (mutating) adds the label
/// `mutated: "yes"` with a warning.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(Phase, AdmissionRequest)>>,
}

#[async_trait]
impl Admission for Recorder {
    fn wants(&self, _: Phase, _: Operation, _: &str, resource: &str, sub: Option<&str>) -> bool {
        resource == "configmaps" && sub.is_none()
    }

    async fn review(&self, phase: Phase, request: AdmissionRequest) -> Result<Admitted, Refusal> {
        self.seen.lock().unwrap().push((phase, request.clone()));
        let object = request.object.clone().or(request.old_object.clone());
        let labels = object.as_ref().map(|o| o["metadata"]["labels"].clone());
        let label = |k: &str| labels.as_ref().is_some_and(|l| l[k].is_string());
        if label("deny") || (label("protected") && request.operation == Operation::Delete) {
            return Err(Refusal::Denied {
                plugin: "recorder".into(),
                message: format!("no {}", request.operation.as_str()),
            });
        }
        if label("fail") {
            return Err(Refusal::Failed {
                plugin: "recorder".into(),
                message: "it broke".into(),
            });
        }
        match (phase, request.object) {
            (Phase::Mutating, Some(mut o)) => {
                o["metadata"]["labels"]["mutated"] = json!("yes");
                Ok(Admitted {
                    object: Some(o),
                    warnings: vec!["recorder mutated it".into()],
                })
            }
            _ => Ok(Admitted::default()),
        }
    }
}

struct Fixture {
    server: Arc<ApiServer>,
    chain: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb"))).unwrap();
    let server = ApiServer::new(store, ApiConfig::default());
    server.bootstrap().await.unwrap();
    let chain = Arc::new(Recorder::default());
    assert!(server.set_admission(chain.clone()));
    Fixture {
        server,
        chain,
        _dir: dir,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        ct: &str,
        body: &str,
    ) -> (u16, HeaderMap, Value) {
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let mut headers = HeaderMap::new();
        if !ct.is_empty() {
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        let req = Request::new(method, path, query, headers, Bytes::from(body.to_string()));
        let resp = match self.server.dispatch(&req).await {
            Ok(r) => r,
            Err(e) => return (e.code, HeaderMap::new(), e.to_status()),
        };
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            code,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn seen(&self) -> Vec<(Phase, AdmissionRequest)> {
        std::mem::take(&mut *self.chain.seen.lock().unwrap())
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str, labels: Value) -> String {
    json!({"metadata": {"name": name, "labels": labels}, "data": {"a": "1"}}).to_string()
}

#[tokio::test]
async fn create_runs_mutating_then_validating_on_the_patched_object() {
    let f = fixture().await;
    let (code, headers, created) = f
        .call(Method::POST, CMS, "application/json", &cm("a", json!({})))
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["labels"]["mutated"], "yes");
    let warning = headers.get("warning").unwrap().to_str().unwrap();
    assert!(warning.contains("recorder mutated it"), "{warning}");
    let seen = f.seen();
    assert_eq!(seen.len(), 2);
    let (phase, first) = &seen[0];
    assert_eq!(*phase, Phase::Mutating);
    assert_eq!(first.operation, Operation::Create);
    assert_eq!(first.namespace.as_deref(), Some("default"));
    assert_eq!(first.name, "a");
    assert!(first.old_object.is_none());
    // Defaults and type meta were applied before the plugins saw it.
    assert_eq!(first.object.as_ref().unwrap()["kind"], "ConfigMap");
    let (phase, second) = &seen[1];
    assert_eq!(*phase, Phase::Validating);
    assert_eq!(
        second.object.as_ref().unwrap()["metadata"]["labels"]["mutated"],
        "yes"
    );
}

#[tokio::test]
async fn denials_and_failures_answer_as_kubernetes_and_store_nothing() {
    let f = fixture().await;
    let (code, _, status) = f
        .call(
            Method::POST,
            CMS,
            "application/json",
            &cm("d", json!({"deny": "1"})),
        )
        .await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "admission webhook \"recorder\" denied the request: no CREATE"
    );
    assert!(status.get("reason").is_none(), "{status}");
    let (code, _, status) = f
        .call(
            Method::POST,
            CMS,
            "application/json",
            &cm("e", json!({"fail": "1"})),
        )
        .await;
    assert_eq!(code, 500, "{status}");
    assert_eq!(status["reason"], "InternalError");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("failed calling webhook \"recorder\": it broke")
    );
    for name in ["d", "e"] {
        let (code, _, _) = f.call(Method::GET, &format!("{CMS}/{name}"), "", "").await;
        assert_eq!(code, 404);
    }
}

#[tokio::test]
async fn updates_and_deletes_carry_the_old_object() {
    let f = fixture().await;
    f.call(Method::POST, CMS, "application/json", &cm("u", json!({})))
        .await;
    f.seen();
    let (code, _, patched) = f
        .call(
            Method::PATCH,
            &format!("{CMS}/u"),
            "application/merge-patch+json",
            r#"{"data":{"a":"2"}}"#,
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    let seen = f.seen();
    let (_, update) = &seen[0];
    assert_eq!(update.operation, Operation::Update);
    assert_eq!(update.old_object.as_ref().unwrap()["data"]["a"], "1");
    assert_eq!(update.object.as_ref().unwrap()["data"]["a"], "2");

    // A denied update leaves the object as it was.
    let (code, _, _) = f
        .call(
            Method::PATCH,
            &format!("{CMS}/u"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"deny":"x"}}}"#,
        )
        .await;
    assert_eq!(code, 403);
    f.seen();

    let (code, _, _) = f.call(Method::DELETE, &format!("{CMS}/u"), "", "").await;
    assert_eq!(code, 200);
    let seen = f.seen();
    assert_eq!(seen.len(), 2, "both phases review a delete");
    let (_, delete) = &seen[1];
    assert_eq!(delete.operation, Operation::Delete);
    assert!(delete.object.is_none());
    assert_eq!(delete.old_object.as_ref().unwrap()["metadata"]["name"], "u");

    // A delete the chain denies keeps the object.
    f.call(
        Method::POST,
        CMS,
        "application/json",
        &cm("kept", json!({"protected": "1"})),
    )
    .await;
    let (code, _, status) = f.call(Method::DELETE, &format!("{CMS}/kept"), "", "").await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "admission webhook \"recorder\" denied the request: no DELETE"
    );
    let (code, _, _) = f.call(Method::GET, &format!("{CMS}/kept"), "", "").await;
    assert_eq!(code, 200);
    // So does a collection delete.
    let (code, _, _) = f.call(Method::DELETE, CMS, "", "").await;
    assert_eq!(code, 403);
    let (code, _, _) = f.call(Method::GET, &format!("{CMS}/kept"), "", "").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn dry_runs_are_reviewed_and_flagged_and_unmatched_writes_skip_the_chain() {
    let f = fixture().await;
    let (code, _, _) = f
        .call(
            Method::POST,
            &format!("{CMS}?dryRun=All"),
            "application/json",
            &cm("dry", json!({})),
        )
        .await;
    assert_eq!(code, 201);
    let seen = f.seen();
    assert!(seen.iter().all(|(_, r)| r.dry_run), "dry run flagged");
    // Namespaces are not matched by this chain: nothing is asked.
    let (code, _, _) = f
        .call(
            Method::POST,
            "/api/v1/namespaces",
            "application/json",
            r#"{"metadata":{"name":"n1"}}"#,
        )
        .await;
    assert_eq!(code, 201);
    assert!(f.seen().is_empty());
}
