//! The API server called in-process: how plugins' object calls reach it.
//! Each call is a request of its own through the same routing, validation
//! and defaults as an HTTP request, without a socket.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, header};
use orchd_api::{ApiServer, Request};
use orchd_plugin_host::access::ObjectApi;
use serde_json::{Value, json};

/// [`ObjectApi`] over a running [`ApiServer`].
pub struct InProcessApi(pub Arc<ApiServer>);

#[async_trait::async_trait]
impl ObjectApi for InProcessApi {
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return (
                400,
                json!({"message": format!("unknown method {method:?}")}),
            );
        };
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            header::HeaderValue::from_static("application/json"),
        );
        if let Some(ct) = content_type.and_then(|c| header::HeaderValue::from_str(c).ok()) {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        let request = Request::new(method, path, query, headers, Bytes::from(body));
        let response = match self.0.dispatch(&request).await {
            Ok(r) => r,
            Err(e) => return (e.code, json!({"message": e.message})),
        };
        let code = response.status().as_u16();
        let bytes = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(never) => match never {},
        };
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}
