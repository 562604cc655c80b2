//! Decoding Kubernetes protobuf request bodies into Kubernetes JSON.
//!
//! kubectl's typed commands (`create namespace|deployment|configmap|...`,
//! `auth can-i`) send `application/vnd.kubernetes.protobuf` bodies and never
//! retry as JSON. A body is the magic `k8s\0` followed by a
//! `runtime.Unknown` envelope whose `typeMeta` names the kind and whose
//! `raw` holds the encoded object. orchd stores JSON, so this crate turns
//! such a body into exactly the JSON object a JSON client would have sent.
//!
//! The decoder is driven by a generated schema (`src/schema.rs`, from
//! `gen/generate.py`) of every message in the served API groups: field
//! numbers, JSON names and types. A field number the schema does not know
//! is an error naming it, never silently dropped.

#[rustfmt::skip]
mod schema;
mod wire;

use serde_json::Value;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body does not start with `k8s\0`.
    #[error("not a Kubernetes protobuf body (missing the k8s\\0 prefix)")]
    NotProtobuf,
    /// The bytes are not valid protobuf for the message.
    #[error("malformed protobuf: {0}")]
    Malformed(String),
    /// No message is known for the envelope's apiVersion and kind.
    #[error("unsupported kind {0}")]
    UnsupportedKind(String),
    /// The message carries a field this decoder does not know.
    #[error("unknown field number {tag} in {message}")]
    UnknownField {
        /// The message being decoded.
        message: String,
        /// The unknown field number.
        tag: u32,
    },
}

const MAGIC: &[u8] = b"k8s\0";

/// Whether a body starts with the Kubernetes protobuf magic.
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// The `runtime.Unknown` envelope's parts.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

fn envelope(body: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let rest = body.strip_prefix(MAGIC).ok_or(DecodeError::NotProtobuf)?;
    let mut reader = wire::Reader::new(rest);
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    let text = |raw: wire::Raw<'_>| match raw {
        wire::Raw::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError::Malformed("envelope: not UTF-8".into())),
        _ => Err(DecodeError::Malformed("envelope: wrong wire type".into())),
    };
    while let Some((tag, raw)) = reader.next()? {
        match (tag, raw) {
            (1, wire::Raw::Bytes(type_meta)) => {
                let mut tm = wire::Reader::new(type_meta);
                while let Some((t, r)) = tm.next()? {
                    match t {
                        1 => env.api_version = text(r)?,
                        2 => env.kind = text(r)?,
                        _ => {}
                    }
                }
            }
            (2, wire::Raw::Bytes(raw)) => env.raw = raw,
            (3, r) => {
                let encoding = text(r)?;
                if !encoding.is_empty() {
                    return Err(DecodeError::Malformed(format!(
                        "unsupported contentEncoding {encoding:?}"
                    )));
                }
            }
            (4, _) => {}
            _ => return Err(DecodeError::Malformed("envelope: unexpected field".into())),
        }
    }
    Ok(env)
}

/// The schema name of a kind: `apps/v1` + `Deployment` →
/// `api/apps/v1::Deployment`.
fn message_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let short = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("api/{short}/{version}::{kind}")
}

/// Decodes a `k8s\0` body into the object's Kubernetes JSON form, with
/// `apiVersion` and `kind` set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let env = envelope(body)?;
    let index = wire::find(&message_name(&env.api_version, &env.kind))
        .filter(|_| !env.kind.is_empty())
        .ok_or_else(|| {
            DecodeError::UnsupportedKind(format!("{:?}, Kind={:?}", env.api_version, env.kind))
        })?;
    let object = wire::decode_message(index, env.raw, 0)?;
    let Value::Object(fields) = object else {
        return Err(DecodeError::Malformed("object is not a message".into()));
    };
    // apiVersion and kind first, as clients write them.
    let mut map = serde_json::Map::new();
    map.insert("apiVersion".into(), Value::String(env.api_version));
    map.insert("kind".into(), Value::String(env.kind));
    map.extend(fields);
    let object = Value::Object(map);
    Ok(object)
}
