//! Watch responses: one JSON `WatchEvent` per line, streamed.
//!
//! Semantics follow the Kubernetes API server:
//! * no `resourceVersion` (or `"0"`): the current objects as `ADDED`, then
//!   changes;
//! * `resourceVersion=N`: every change after N, or one `ERROR` event with a
//!   410 `Expired` Status if N was compacted away (clients then relist);
//! * `sendInitialEvents=true` (watch-list, used by kubectl delete and
//!   rollout status): the current objects, then a `BOOKMARK` annotated
//!   `k8s.io/initial-events-end: "true"`, then changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, header};
use orchd_resources::table;
use orchd_store::{EventType, ListOptions, StoreError, WatchOptions};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::ApiServer;
use crate::codec::Body;
use crate::objects::{Target, with_type_meta};
use crate::request::Request;
use crate::status::{ApiError, ApiResult};

/// Longest a watch stays open when the client sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

enum Start {
    /// Replay the current state as ADDED first; `end_marker` adds the
    /// initial-events-end bookmark.
    InitialState { end_marker: bool },
    /// Only changes after this revision.
    After(u64),
}

impl ApiServer {
    /// GET on a collection with `watch=true`.
    pub(crate) async fn watch(&self, req: &Request, target: &Target) -> ApiResult<Response<Body>> {
        let scope = target.scope(req)?;
        let bookmarks = req.flag("allowWatchBookmarks");
        let rv = req.query("resourceVersion").unwrap_or("");
        let start = if req.flag("sendInitialEvents") {
            if !bookmarks || req.query("resourceVersionMatch") != Some("NotOlderThan") {
                return Err(ApiError::unprocessable(
                    "sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
                ));
            }
            Start::InitialState { end_marker: true }
        } else if rv.is_empty() || rv == "0" {
            Start::InitialState { end_marker: false }
        } else {
            Start::After(
                rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?,
            )
        };
        let timeout = match req.query("timeoutSeconds") {
            Some(t) if !t.is_empty() => Duration::from_secs(t.parse().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds must be an integer, not {t:?}"))
            })?),
            _ => DEFAULT_TIMEOUT,
        };
        let resource = target.resource;
        let wants_table = req.wants_table();
        let include = req.include_object();
        let bookmark_interval = bookmarks.then_some(self.config.bookmark_interval);

        let (initial, after) = match start {
            Start::InitialState { end_marker } => {
                let list = self
                    .store
                    .list(&scope, &ListOptions::default())
                    .await
                    .map_err(|e| ApiError::from_store(e, &target.subject("")))?;
                (Some((list.items, end_marker)), list.revision)
            }
            Start::After(rev) => (None, rev),
        };
        let watch = self
            .store
            .watch(
                &scope,
                &WatchOptions {
                    after: Some(after),
                    bookmark_interval,
                },
            )
            .await;

        let (tx, rx) = mpsc::channel::<Bytes>(256);
        tokio::spawn(async move {
            let mut encoder = Encoder {
                resource,
                wants_table,
                include,
                columns_sent: false,
            };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            if let Some((items, end_marker)) = initial {
                for item in items {
                    if tx.send(encoder.event("ADDED", item)).await.is_err() {
                        return;
                    }
                }
                if end_marker {
                    let marker = encoder.bookmark(after, true);
                    if tx.send(marker).await.is_err() {
                        return;
                    }
                }
            }
            let mut stream = match watch {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(error_event(e)).await;
                    return;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    next = stream.next() => next,
                };
                let line = match next {
                    None => return,
                    Some(Err(e)) => {
                        let _ = tx.send(error_event(e)).await;
                        return;
                    }
                    Some(Ok(event)) => match event.event_type {
                        EventType::Bookmark => encoder.bookmark(event.revision, false),
                        t => encoder.stored(t.as_str(), &event.object, event.json.as_deref()),
                    },
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });

        let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
        }));
        let content_type = if wants_table {
            "application/json;as=Table;g=meta.k8s.io;v=v1"
        } else {
            "application/json"
        };
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(BodyExt::boxed(body))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}

struct Encoder {
    resource: &'static orchd_resources::ResourceType,
    wants_table: bool,
    include: table::IncludeObject,
    columns_sent: bool,
}

impl Encoder {
    fn line(event_type: &str, object: Value) -> Bytes {
        Self::line_of(event_type, &object)
    }

    /// `{"type":...,"object":...}` and a newline, the object encoded where
    /// it lies.
    fn line_of(event_type: &str, object: &Value) -> Bytes {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(rename = "type")]
            event_type: &'a str,
            object: &'a Value,
        }
        let mut bytes = serde_json::to_vec(&Line { event_type, object }).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    /// `{"type":...,"object":...}` and a newline around `json`, an
    /// object already encoded.
    fn line_with(event_type: &str, json: &[u8]) -> Bytes {
        let mut bytes = Vec::with_capacity(json.len() + event_type.len() + 23);
        bytes.extend_from_slice(b"{\"type\":\"");
        bytes.extend_from_slice(event_type.as_bytes());
        bytes.extend_from_slice(b"\",\"object\":");
        bytes.extend_from_slice(json);
        bytes.extend_from_slice(b"}\n");
        Bytes::from(bytes)
    }

    /// The line of a stored object's event. Stored objects carry their
    /// `apiVersion` and `kind` (the API writes them), so the shared object
    /// is encoded as it is: copying each one for each watcher was most of
    /// a watch's cost. One that lacks them is completed on a copy. With
    /// `json`, the object as the store encoded it, the line is spliced
    /// from it instead of encoding the object again.
    fn stored(&mut self, event_type: &str, object: &Arc<Value>, json: Option<&[u8]>) -> Bytes {
        let typed = object.get("apiVersion").is_some() && object.get("kind").is_some();
        if typed && !self.wants_table {
            return match json {
                Some(json) => Self::line_with(event_type, json),
                None => Self::line_of(event_type, object),
            };
        }
        self.event(event_type, with_type_meta(self.resource, object))
    }

    fn event(&mut self, event_type: &str, object: Value) -> Bytes {
        if !self.wants_table {
            return Self::line(event_type, object);
        }
        let rv = object["metadata"]["resourceVersion"].clone();
        let mut t = table::table(
            self.resource,
            std::slice::from_ref(&object),
            self.include,
            jiff::Timestamp::now(),
        );
        t["metadata"] = json!({"resourceVersion": rv});
        // Kubernetes sends the column definitions once per watch.
        if self.columns_sent {
            t["columnDefinitions"] = json!([]);
        }
        self.columns_sent = true;
        Self::line(event_type, t)
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        Self::line(
            "BOOKMARK",
            json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata}),
        )
    }
}

fn error_event(e: StoreError) -> Bytes {
    let err = ApiError::from_store(e, &Default::default());
    Encoder::line("ERROR", err.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_spliced_from_stored_json_is_the_line_encoded_from_the_object() {
        let object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a \"quoted\" name", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let json = serde_json::to_vec(&object).unwrap();
        for event_type in ["ADDED", "MODIFIED", "DELETED"] {
            let spliced = Encoder::line_with(event_type, &json);
            assert_eq!(spliced, Encoder::line_of(event_type, &object));
            let line: Value = serde_json::from_slice(&spliced).unwrap();
            assert_eq!(line, json!({"type": event_type, "object": object}));
        }
    }
}
