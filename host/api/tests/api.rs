//! The API server in-process, request by request (no sockets): what each
//! verb answers and what it leaves in the store.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, header};
use orchd_api::{ApiConfig, ApiServer, Request};
use orchd_store::{RedbStore, RedbStoreConfig};
use serde_json::{Value, json};

struct Fixture {
    server: Arc<ApiServer>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb"))).unwrap();
    let server = ApiServer::new(store, ApiConfig::default());
    server.bootstrap().await.unwrap();
    Fixture { server, _dir: dir }
}

impl Fixture {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, HeaderMap, Value) {
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
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

    async fn json(&self, method: Method, uri: &str, body: Value) -> (u16, Value) {
        let (code, _, v) = self
            .call(method, uri, "application/json", &body.to_string())
            .await;
        (code, v)
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

#[tokio::test]
async fn create_get_update_with_optimistic_concurrency() {
    let f = fixture().await;
    let (code, created) = f.json(Method::POST, CMS, cm("c1")).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let mut next = created.clone();
    next["data"]["a"] = json!("2");
    let (code, updated) = f
        .json(Method::PUT, &format!("{CMS}/c1"), next.clone())
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_ne!(updated["metadata"]["resourceVersion"], json!(rv));

    // The same stale resourceVersion again: 409, and the stored value stays.
    next["data"]["a"] = json!("3");
    let (code, status) = f.json(Method::PUT, &format!("{CMS}/c1"), next).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    let (_, got) = f.json(Method::GET, &format!("{CMS}/c1"), Value::Null).await;
    assert_eq!(got["data"]["a"], "2");

    let (code, status) = f.json(Method::POST, CMS, cm("c1")).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
}

#[tokio::test]
async fn bad_input_gets_a_status_and_writes_nothing() {
    let f = fixture().await;
    let (code, _, s) = f
        .call(Method::POST, CMS, "application/json", "{not json")
        .await;
    assert_eq!(
        (code, s["kind"].as_str(), s["reason"].as_str()),
        (400, Some("Status"), Some("BadRequest"))
    );
    let (code, _, s) = f.call(Method::POST, CMS, "text/csv", "a,b").await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let mut wrong_kind = cm("c2");
    wrong_kind["kind"] = json!("Secret");
    assert_eq!(f.json(Method::POST, CMS, wrong_kind).await.0, 400);
    let (code, s) = f.json(Method::POST, CMS, cm("Not_A_Name")).await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    let mut unknown = cm("c3");
    unknown["bogus"] = json!(1);
    let (code, s) = f
        .json(
            Method::POST,
            &format!("{CMS}?fieldValidation=Strict"),
            unknown.clone(),
        )
        .await;
    assert_eq!(code, 400, "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"bogus\"")
    );
    let (code, headers, _) = f
        .call(Method::POST, CMS, "application/json", &unknown.to_string())
        .await;
    assert_eq!(code, 201);
    assert!(
        headers
            .get(header::WARNING)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("bogus")
    );
    let (code, _) = f
        .json(
            Method::POST,
            "/api/v1/namespaces/nowhere/configmaps",
            cm("c4"),
        )
        .await;
    assert_eq!(code, 404);

    let (_, list) = f.json(Method::GET, CMS, Value::Null).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c3"], "only the accepted create was written");
}

#[tokio::test]
async fn patches_of_every_type() {
    let f = fixture().await;
    f.json(Method::POST, CMS, cm("p")).await;
    let url = format!("{CMS}/p");
    let (c1, _, v) = f
        .call(
            Method::PATCH,
            &url,
            "application/merge-patch+json",
            r#"{"data":{"b":"2"}}"#,
        )
        .await;
    let (c2, _, v2) = f
        .call(
            Method::PATCH,
            &url,
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/data/a"}]"#,
        )
        .await;
    let (c3, _, v3) = f
        .call(
            Method::PATCH,
            &url,
            "application/strategic-merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!((c1, c2, c3), (200, 200, 200));
    assert_eq!(v["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(v2["data"], json!({"b": "2"}));
    assert_eq!(v3["metadata"]["labels"]["x"], "y");
    let (code, _, s) = f
        .call(
            Method::PATCH,
            &url,
            "application/json-patch+json",
            r#"[{"op":"test","path":"/data/b","value":"9"}]"#,
        )
        .await;
    assert_eq!(code, 422, "{s}");

    // Server-side apply creates a missing object, then updates it.
    let applied =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"k":"v"}}"#;
    let ssa = format!("{CMS}/ssa?fieldManager=test");
    let (code, _, _) = f
        .call(Method::PATCH, &ssa, "application/apply-patch+yaml", applied)
        .await;
    assert_eq!(code, 201);
    let (code, _, v) = f
        .call(
            Method::PATCH,
            &ssa,
            "application/apply-patch+yaml",
            &applied.replace("\"v\"", "\"w\""),
        )
        .await;
    assert_eq!((code, v["data"]["k"].as_str()), (200, Some("w")));
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}})
}

#[tokio::test]
async fn status_and_scale_subresources_touch_only_their_part() {
    let f = fixture().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let (code, created) = f.json(Method::POST, deploys, deployment()).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults applied"
    );
    assert_eq!(created["metadata"]["generation"], 1);

    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 2});
    with_status["spec"]["replicas"] = json!(9);
    let (_, after) = f
        .json(Method::PUT, &format!("{deploys}/web/status"), with_status)
        .await;
    assert_eq!(
        (
            after["status"]["replicas"].as_i64(),
            after["spec"]["replicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(
        after["metadata"]["generation"], 1,
        "a status write is no spec change"
    );

    let (code, _, scale) = f
        .call(
            Method::PATCH,
            &format!("{deploys}/web/scale"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(
        (
            code,
            scale["kind"].as_str(),
            scale["spec"]["replicas"].as_i64()
        ),
        (200, Some("Scale"), Some(5))
    );
    assert_eq!(scale["status"]["selector"], "app=web");
    let (_, got) = f
        .json(Method::GET, &format!("{deploys}/web"), Value::Null)
        .await;
    assert_eq!(
        (
            got["spec"]["replicas"].as_i64(),
            got["metadata"]["generation"].as_i64()
        ),
        (Some(5), Some(2))
    );
}

#[tokio::test]
async fn tables_list_paging_and_watch() {
    let f = fixture().await;
    for i in 0..5 {
        f.json(Method::POST, CMS, cm(&format!("t{i}"))).await;
    }
    let (_, page) = f
        .json(Method::GET, &format!("{CMS}?limit=2"), Value::Null)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, rest) = f
        .json(
            Method::GET,
            &format!("{CMS}?limit=10&continue={token}"),
            Value::Null,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);

    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        "application/json;as=Table;g=meta.k8s.io;v=v1"
            .parse()
            .unwrap(),
    );
    let req = Request::new(Method::GET, CMS, None, headers, Bytes::new());
    let resp = f.server.dispatch(&req).await.unwrap();
    let table: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    assert_eq!(table["rows"].as_array().unwrap().len(), 5);

    // A watch from the first page's revision sees later writes only, in order.
    let rv = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let req = Request::new(
        Method::GET,
        CMS,
        Some(&format!("watch=1&resourceVersion={rv}&timeoutSeconds=2")),
        HeaderMap::new(),
        Bytes::new(),
    );
    let resp = f.server.dispatch(&req).await.unwrap();
    let (code, _, _) = f.call(Method::DELETE, &format!("{CMS}/t0"), "", "").await;
    assert_eq!(code, 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let events: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (
            events[0]["type"].as_str(),
            events[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("DELETED"), Some("t0"))
    );
}

#[tokio::test]
async fn orphan_and_foreground_deletes_wait_for_the_garbage_collector() {
    let f = fixture().await;
    for name in ["bg", "orphan", "fg", "legacy", "stale"] {
        let (code, _) = f.json(Method::POST, CMS, cm(name)).await;
        assert_eq!(code, 201);
    }
    // Background (kubectl's default): gone at once.
    let (code, _) = f
        .json(
            Method::DELETE,
            &format!("{CMS}/bg"),
            json!({"propagationPolicy": "Background"}),
        )
        .await;
    assert_eq!(code, 200);
    // Orphan and Foreground: kept, marked for deletion, with the
    // finalizer the garbage collector lifts when done.
    for (name, options, finalizer) in [
        ("orphan", json!({"propagationPolicy": "Orphan"}), "orphan"),
        (
            "fg",
            json!({"propagationPolicy": "Foreground"}),
            "foregroundDeletion",
        ),
        ("legacy", json!({"orphanDependents": true}), "orphan"),
    ] {
        let (code, body) = f
            .json(Method::DELETE, &format!("{CMS}/{name}"), options)
            .await;
        assert_eq!(code, 202, "{name}: {body}");
        let (_, got) = f
            .json(Method::GET, &format!("{CMS}/{name}"), Value::Null)
            .await;
        assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
        assert_eq!(got["metadata"]["finalizers"], json!([finalizer]), "{got}");
        // Lifting the finalizer completes the delete.
        let patch = json!({"metadata": {"finalizers": null}});
        let (code, _, _) = f
            .call(
                Method::PATCH,
                &format!("{CMS}/{name}"),
                "application/merge-patch+json",
                &patch.to_string(),
            )
            .await;
        assert_eq!(code, 200);
        let (code, _) = f
            .json(Method::GET, &format!("{CMS}/{name}"), Value::Null)
            .await;
        assert_eq!(code, 404, "{name}");
    }
    // The caller's preconditions still hold: a stale one adds nothing.
    let (code, _) = f
        .json(
            Method::DELETE,
            &format!("{CMS}/stale"),
            json!({"propagationPolicy": "Orphan", "preconditions": {"resourceVersion": "1"}}),
        )
        .await;
    assert_eq!(code, 409);
    let (_, got) = f
        .json(Method::GET, &format!("{CMS}/stale"), Value::Null)
        .await;
    assert!(
        got["metadata"]["finalizers"].is_null() && got["metadata"]["deletionTimestamp"].is_null(),
        "{got}"
    );
}

#[tokio::test]
async fn a_deleted_namespace_terminates_until_finalized() {
    let f = fixture().await;
    let ns = "/api/v1/namespaces";
    let (code, created) = f
        .json(Method::POST, ns, json!({"metadata": {"name": "doomed"}}))
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
    let (code, body) = f
        .json(Method::DELETE, &format!("{ns}/doomed"), json!({}))
        .await;
    assert!(code == 200 || code == 202, "{code}: {body}");
    let (_, got) = f
        .json(Method::GET, &format!("{ns}/doomed"), Value::Null)
        .await;
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
    assert_eq!(got["status"]["phase"], "Terminating");

    // Nothing new may be created in it, in Kubernetes' words.
    let (code, refused) = f
        .json(
            Method::POST,
            &format!("{ns}/doomed/configmaps"),
            json!({"metadata": {"name": "late"}}),
        )
        .await;
    assert_eq!(code, 403, "{refused}");
    assert_eq!(
        refused["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    assert_eq!(refused["reason"], "Forbidden");

    // A plain write cannot drop spec.finalizers: only `finalize` can.
    let (code, _, kept) = f
        .call(
            Method::PATCH,
            &format!("{ns}/doomed"),
            "application/merge-patch+json",
            r#"{"spec": {"finalizers": []}}"#,
        )
        .await;
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["spec"]["finalizers"], json!(["kubernetes"]));
    let (code, bad) = f
        .json(
            Method::PUT,
            &format!("{ns}/doomed/finalize"),
            json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": "x"}}),
        )
        .await;
    assert_eq!(code, 400, "{bad}");
    let (code, done) = f
        .json(
            Method::PUT,
            &format!("{ns}/doomed/finalize"),
            json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": []}}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    let (code, _) = f
        .json(Method::GET, &format!("{ns}/doomed"), Value::Null)
        .await;
    assert_eq!(code, 404);
}

/// Logs kept in memory: the request it was asked, answered with its fields.
struct FakeLogs;

impl orchd_api::PodLogs for FakeLogs {
    fn logs(
        &self,
        r: &orchd_api::LogRequest,
    ) -> Result<futures::stream::BoxStream<'static, Bytes>, String> {
        if r.container == "broken" {
            return Err("container \"broken\" is waiting to start".into());
        }
        let text = format!(
            "{} {} tail={:?} ts={} follow={} previous={}\n",
            r.uid, r.container, r.tail_lines, r.timestamps, r.follow, r.previous
        );
        Ok(Box::pin(futures::stream::iter([
            Bytes::from(text),
            Bytes::from("second chunk\n"),
        ])))
    }
}

#[tokio::test]
async fn pod_logs_come_from_the_registered_node_and_name_the_container() {
    let f = fixture().await;
    let pods = "/api/v1/namespaces/default/pods";
    let (code, pod) = f
        .json(
            Method::POST,
            pods,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "broken", "image": "x"}]}}),
        )
        .await;
    assert_eq!(code, 201, "{pod}");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    // No node agent in this process yet.
    let (code, _, status) = f
        .call(Method::GET, &format!("{pods}/p/log?container=a"), "", "")
        .await;
    assert_eq!(code, 400, "{status}");
    f.server.set_pod_logs(Arc::new(FakeLogs));
    let (code, _, status) = f.call(Method::GET, &format!("{pods}/p/log"), "", "").await;
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("a container name must be specified for pod p, choose one of: [a broken]"),
        "{status}"
    );
    let (code, _, _) = f
        .call(Method::GET, &format!("{pods}/nope/log"), "", "")
        .await;
    assert_eq!(code, 404);
    let (code, _, status) = f
        .call(Method::GET, &format!("{pods}/p/log?container=zz"), "", "")
        .await;
    assert_eq!(code, 400, "{status}");
    let (code, _, status) = f
        .call(
            Method::GET,
            &format!("{pods}/p/log?container=broken"),
            "",
            "",
        )
        .await;
    assert_eq!(
        (code, status["message"].as_str()),
        (400, Some("container \"broken\" is waiting to start"))
    );

    let req = Request::new(
        Method::GET,
        &format!("{pods}/p/log"),
        Some("container=a&tailLines=2&timestamps=true&follow=true"),
        HeaderMap::new(),
        Bytes::new(),
    );
    let resp = f.server.dispatch(&req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("{uid} a tail=Some(2) ts=true follow=true previous=false\nsecond chunk\n")
    );
}
