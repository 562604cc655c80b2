//! Bodies encoded with the prost types of `k8s-pb`, shaped as kubectl's
//! typed commands send them, decoded and checked against the JSON form
//! (and the `k8s-openapi` types).

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use orchd_protobuf::{DecodeError, decode, is_protobuf};
use prost::Message;
use serde_json::json;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What `kubectl create deployment web --image=nginx --replicas=2 --port=80` builds.
fn kubectl_deployment() -> apps::Deployment {
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            labels: labels(&[("app", "web")]),
            creation_timestamp: Some(meta::Time {
                seconds: Some(0),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("nginx".into()),
                        image: Some("nginx".into()),
                        ports: vec![core::ContainerPort {
                            container_port: Some(80),
                            host_port: Some(0),
                            ..Default::default()
                        }],
                        resources: Some(core::ResourceRequirements {
                            limits: [(
                                "memory".to_string(),
                                Quantity {
                                    string: Some("64Mi".into()),
                                },
                            )]
                            .into(),
                            ..Default::default()
                        }),
                        stdin: Some(false),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    }
}

#[test]
fn a_kubectl_deployment_decodes_to_its_json_form() {
    let body = envelope(
        "apps/v1",
        "Deployment",
        kubectl_deployment().encode_to_vec(),
    );
    assert!(is_protobuf(&body));
    let v = decode(&body).unwrap();
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(
        v["metadata"],
        json!({"name": "web", "labels": {"app": "web"}}),
        "zero time and empty fields dropped"
    );
    assert_eq!(v["spec"]["replicas"], 2);
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx");
    assert_eq!(c["ports"], json!([{"containerPort": 80}]));
    assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
    assert!(c.get("stdin").is_none());
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(v).unwrap();
    assert_eq!(typed.spec.replicas, Some(2));
}

#[test]
fn acronym_names_int_or_string_and_bytes_follow_the_json_api() {
    let svc = core::Service {
        metadata: Some(meta::ObjectMeta {
            name: Some("svc".into()),
            ..Default::default()
        }),
        spec: Some(core::ServiceSpec {
            cluster_ip: Some("10.0.0.1".into()),
            ports: vec![core::ServicePort {
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: Some("http".into()),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
    assert_eq!(v["spec"]["clusterIP"], "10.0.0.1");
    assert_eq!(v["spec"]["ports"][0]["targetPort"], "http");

    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        }),
        data: [("k".to_string(), b"hi".to_vec())].into(),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(v["data"]["k"], "aGk=");
    let _: k8s_openapi::api::core::v1::Secret = serde_json::from_value(v).unwrap();
}

#[test]
fn time_becomes_rfc3339() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: Some("shop".into()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
    assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
}

#[test]
fn bad_bodies_are_errors() {
    assert_eq!(decode(b"{}"), Err(DecodeError::NotProtobuf));
    let unsupported = envelope("example.com/v1", "Widget", Vec::new());
    assert!(matches!(
        decode(&unsupported),
        Err(DecodeError::UnsupportedKind(_))
    ));
    let mut truncated = envelope(
        "apps/v1",
        "Deployment",
        kubectl_deployment().encode_to_vec(),
    );
    truncated.truncate(truncated.len() - 3);
    assert!(decode(&truncated).is_err());
    // Field 99 does not exist in Namespace.
    let unknown_field = envelope("v1", "Namespace", vec![0x98, 0x06, 0x01]);
    assert!(matches!(
        decode(&unknown_field),
        Err(DecodeError::UnknownField { tag: 99, .. })
    ));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = decode(&envelope("apps/v1", "Deployment", raw.clone()));
        let mut body = b"k8s\0".to_vec();
        body.extend(raw);
        let _ = decode(&body);
    }
}
