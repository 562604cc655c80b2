//! Request bodies in and JSON responses out.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Response, StatusCode, header};
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

/// Response body type of the server: whole or streamed bytes.
pub type Body = BoxBody<Bytes, std::convert::Infallible>;

/// A whole-body response.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with `code`, plus `Warning` headers.
pub fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    encoded_json_response(code, Bytes::from(body), warnings)
}

/// [`json_response`] with the JSON already encoded (a written object, as
/// the store encoded it).
pub fn encoded_json_response(code: u16, body: Bytes, warnings: &[String]) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private");
    for w in warnings {
        // RFC 7234 warn-code 299 is what Kubernetes uses for API warnings;
        // kubectl prints the quoted text as "Warning: ...".
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        builder = builder.header(header::WARNING, format!("299 - \"{text}\""));
    }
    builder
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("{}")))
}

/// The `Status` response of an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status(), &[])
}

/// A `text/plain` response.
pub fn text_response(code: u16, text: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(text.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// The media type of a Content-Type header, lowercased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body: JSON (also when no Content-Type is sent, as the
/// Python client does), YAML, or Kubernetes protobuf.
pub fn decode_object(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty: an object is required",
        ));
    }
    let media = media_type(content_type);
    if media == "application/vnd.kubernetes.protobuf" || orchd_protobuf::is_protobuf(body) {
        return orchd_protobuf::decode(body).map_err(|e| match e {
            orchd_protobuf::DecodeError::UnsupportedKind(_) => {
                ApiError::unsupported_media_type(&format!("{content_type}: {e}"))
            }
            other => {
                ApiError::bad_request(format!("the protobuf body could not be decoded: {other}"))
            }
        });
    }
    let value: Value = match media.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_norway::from_slice(body)
            .map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
        })?,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Reads a request body up to `limit` bytes (413 beyond it).
pub async fn read_body(body: hyper::body::Incoming, limit: usize) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}
