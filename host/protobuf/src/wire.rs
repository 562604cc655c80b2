//! The protobuf wire format, read against the generated schema.
//!
//! Kubernetes' protobuf messages are proto2 with no enums and no oneofs, so
//! a message is fully described by its fields' numbers, JSON names and
//! types ([`crate::schema`]). Decoding walks the bytes once and builds the
//! JSON the Kubernetes JSON API would carry.

use base64::Engine;
use serde_json::{Map, Value};

use crate::DecodeError;
use crate::schema::MESSAGES;

/// One field of a message.
pub(crate) struct Field {
    /// Field number.
    pub tag: u32,
    /// JSON name.
    pub json: &'static str,
    /// Whether the field is a list.
    pub repeated: bool,
    /// Field type.
    pub ty: Type,
}

/// A message: its module-qualified name and fields sorted by number.
pub(crate) struct Message {
    /// `api/core/v1::Pod`, `apimachinery/pkg/apis/meta/v1::ObjectMeta`...
    pub name: &'static str,
    /// Fields sorted by number.
    pub fields: &'static [Field],
}

/// Field types.
#[derive(Clone, Copy)]
pub(crate) enum Type {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    /// A message, by index into `MESSAGES`.
    Msg(usize),
    /// `map<string, scalar>`.
    MapScalar(&'static Type),
    /// `map<string, message>`.
    MapMsg(usize),
}

/// Fields that are pointers in the Go types and default to something other
/// than their zero value, so an explicit `false` or `0` means something and
/// is kept. Every other zero scalar is dropped, as Go's `omitempty` would.
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "parallelism",
    "completions",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "startingDeadlineSeconds",
    "suspend",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "gracePeriodSeconds",
    "enableServiceLinks",
    "automountServiceAccountToken",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "privileged",
    "optional",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "hostUsers",
    "allocateLoadBalancerNodePorts",
    "immutable",
    "partition",
    "leaseDurationSeconds",
    "leaseTransitions",
    "defaultMode",
    "mode",
    "fsGroup",
    "priority",
    "allowed",
    "denied",
    "ready",
    "started",
];

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// Deepest message nesting accepted: real objects stay far below, and a
/// hostile body must not exhaust the stack.
const MAX_DEPTH: usize = 64;

/// A cursor over protobuf bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// One raw field value.
pub(crate) enum Raw<'a> {
    Varint(u64),
    Fixed64,
    Fixed32,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| malformed("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| malformed("truncated field"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field number and value, or None at the end.
    pub(crate) fn next(&mut self) -> Result<Option<(u32, Raw<'a>)>, DecodeError> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| malformed("field number out of range"))?;
        if tag == 0 {
            return Err(malformed("field number 0"));
        }
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint()?),
            // No field in the schema is fixed-width; skip the value so the
            // caller reports a wire-type mismatch for the field.
            1 => {
                self.take(8)?;
                Raw::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("length out of range"))?;
                Raw::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Raw::Fixed32
            }
            w => return Err(malformed(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((tag, raw)))
    }
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(what.to_string())
}

/// Index of the message called `name`.
pub(crate) fn find(name: &str) -> Option<usize> {
    MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok()
}

fn expect_bytes<'a>(raw: Raw<'a>, field: &str) -> Result<&'a [u8], DecodeError> {
    match raw {
        Raw::Bytes(b) => Ok(b),
        _ => Err(malformed(&format!(
            "{field}: expected a length-delimited value"
        ))),
    }
}

fn scalar(ty: Type, raw: Raw<'_>, field: &str) -> Result<Value, DecodeError> {
    let wrong = || malformed(&format!("{field}: wrong wire type"));
    Ok(match (ty, raw) {
        (Type::Str, Raw::Bytes(b)) => Value::String(
            String::from_utf8(b.to_vec()).map_err(|_| malformed(&format!("{field}: not UTF-8")))?,
        ),
        (Type::Bytes, Raw::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Type::Bool, Raw::Varint(v)) => Value::Bool(v != 0),
        // int32 is sign-extended to 64 bits on the wire.
        (Type::I32, Raw::Varint(v)) => Value::from(v as i64 as i32),
        (Type::I64, Raw::Varint(v)) => Value::from(v as i64),
        _ => return Err(wrong()),
    })
}

/// Unpacks a packed repeated scalar field.
fn packed(ty: Type, bytes: &[u8], field: &str) -> Result<Vec<Value>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while r.pos < bytes.len() {
        // The schema has no packed fixed-width fields: every packed list is varints.
        let raw = Raw::Varint(r.varint()?);
        out.push(scalar(ty, raw, field)?);
    }
    Ok(out)
}

/// Decodes the message at `index` from `bytes` into its JSON form.
pub(crate) fn decode_message(
    index: usize,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(malformed("messages nested too deeply"));
    }
    let message = &MESSAGES[index];
    if let Some(special) = special(message.name, bytes)? {
        return Ok(special);
    }
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, raw)) = reader.next()? {
        let field = message
            .fields
            .binary_search_by_key(&tag, |f| f.tag)
            .map(|i| &message.fields[i])
            .map_err(|_| DecodeError::UnknownField {
                message: message.name.to_string(),
                tag,
            })?;
        let value = match field.ty {
            Type::Msg(i) => decode_message(i, expect_bytes(raw, field.json)?, depth + 1)?,
            Type::MapScalar(_) | Type::MapMsg(_) => {
                let (k, v) =
                    map_entry(field.ty, expect_bytes(raw, field.json)?, field.json, depth)?;
                let map = out
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = map {
                    m.insert(k, v);
                }
                continue;
            }
            ty if field.repeated
                && matches!(raw, Raw::Bytes(_))
                && !matches!(ty, Type::Str | Type::Bytes) =>
            {
                let values = packed(ty, expect_bytes(raw, field.json)?, field.json)?;
                let list = out
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(l) = list {
                    l.extend(values);
                }
                continue;
            }
            ty => scalar(ty, raw, field.json)?,
        };
        if field.repeated {
            let list = out
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(l) = list {
                l.push(value);
            }
        } else if value.is_null() || (is_zero(&value) && !KEEP_ZERO.contains(&field.json)) {
            // Go writes every non-pointer field, set or not; its JSON would
            // omit the zero ones, and server-side defaulting relies on that.
            out.remove(field.json);
        } else {
            out.insert(field.json.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

fn map_entry(
    ty: Type,
    bytes: &[u8],
    field: &str,
    depth: usize,
) -> Result<(String, Value), DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut key = String::new();
    let mut value = Value::Null;
    while let Some((tag, raw)) = reader.next()? {
        match (tag, ty) {
            (1, _) => {
                key = scalar(Type::Str, raw, field)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
            (2, Type::MapScalar(t)) => value = scalar(*t, raw, field)?,
            (2, Type::MapMsg(i)) => {
                value = decode_message(i, expect_bytes(raw, field)?, depth + 1)?
            }
            _ => return Err(malformed(&format!("{field}: bad map entry"))),
        }
    }
    if value.is_null() {
        value = match ty {
            Type::MapScalar(Type::Str | Type::Bytes) => Value::String(String::new()),
            Type::MapMsg(_) => Value::Object(Map::new()),
            _ => Value::Null,
        };
    }
    Ok((key, value))
}

/// Messages whose JSON form is not a plain object of their fields.
fn special(name: &str, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    let short = name.rsplit("::").next().unwrap_or(name);
    let module = name.split("::").next().unwrap_or("");
    let meta = module == "apimachinery/pkg/apis/meta/v1";
    let fields = || -> Result<Vec<(u32, Raw<'_>)>, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut v = Vec::new();
        while let Some(f) = r.next()? {
            v.push(f);
        }
        Ok(v)
    };
    let string_field = |tag: u32| -> Result<Option<String>, DecodeError> {
        let mut out = None;
        for (t, raw) in fields()? {
            if t == tag {
                out = scalar(Type::Str, raw, short)?.as_str().map(str::to_string);
            }
        }
        Ok(out)
    };
    Ok(match (module, short) {
        (_, "Time" | "MicroTime") if meta => {
            let (mut seconds, mut nanos) = (0i64, 0i32);
            for (t, raw) in fields()? {
                match (t, raw) {
                    (1, Raw::Varint(v)) => seconds = v as i64,
                    (2, Raw::Varint(v)) => nanos = v as i64 as i32,
                    _ => return Err(malformed("bad Time")),
                }
            }
            if seconds == 0 && nanos == 0 {
                // Go's zero time, which its JSON writes as null.
                return Ok(Some(Value::Null));
            }
            let ts = jiff::Timestamp::new(
                seconds,
                if short == "Time" {
                    0
                } else {
                    nanos / 1000 * 1000
                },
            )
            .map_err(|_| malformed("time out of range"))?;
            let text = if short == "Time" {
                ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
            };
            Some(Value::String(text))
        }
        (_, "Duration") if meta => Some(string_field(1)?.map_or(Value::Null, Value::String)),
        ("apimachinery/pkg/api/resource", "Quantity" | "QuantityValue") => {
            Some(string_field(1)?.map_or(Value::Null, Value::String))
        }
        ("apimachinery/pkg/util/intstr", "IntOrString") => {
            let (mut kind, mut int, mut text) = (0i64, 0i64, String::new());
            for (t, raw) in fields()? {
                match (t, raw) {
                    (1, Raw::Varint(v)) => kind = v as i64,
                    (2, Raw::Varint(v)) => int = i64::from(v as i64 as i32),
                    (3, raw) => {
                        text = scalar(Type::Str, raw, "IntOrString")?
                            .as_str()
                            .unwrap_or_default()
                            .to_string()
                    }
                    _ => return Err(malformed("bad IntOrString")),
                }
            }
            Some(if kind == 1 {
                Value::String(text)
            } else {
                Value::from(int)
            })
        }
        ("apimachinery/pkg/runtime", "RawExtension") | (_, "FieldsV1") => {
            let mut raw_json = None;
            for (t, raw) in fields()? {
                if t == 1 {
                    let b = expect_bytes(raw, short)?;
                    raw_json = Some(
                        serde_json::from_slice(b)
                            .map_err(|_| malformed("embedded object is not JSON"))?,
                    );
                }
            }
            Some(raw_json.unwrap_or(Value::Null))
        }
        (_, "ExtraValue") => {
            let mut items = Vec::new();
            for (t, raw) in fields()? {
                if t == 1 {
                    items.push(scalar(Type::Str, raw, short)?);
                }
            }
            Some(Value::Array(items))
        }
        _ => None,
    })
}
