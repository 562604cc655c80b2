//! Kubernetes protobuf bodies into JSON (being written; this interim
//! version only recognises the envelope).

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The kind is not supported.
    #[error("unsupported kind {0}")]
    UnsupportedKind(String),
}

/// Whether a body starts with the Kubernetes protobuf magic.
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(b"k8s\0")
}

/// Decodes a `k8s\0` envelope.
pub fn decode(_body: &[u8]) -> Result<serde_json::Value, DecodeError> {
    Err(DecodeError::UnsupportedKind("protobuf decoding is not built yet".into()))
}
