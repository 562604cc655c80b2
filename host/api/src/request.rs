//! An incoming request, read whole, with helpers for the headers and query
//! parameters the handlers care about.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::{HeaderMap, Method, header};
use orchd_resources::table::IncludeObject;

/// A request with its body read.
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Decoded query parameters (the first value of each).
    pub params: HashMap<String, String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body (empty for GET).
    pub body: Bytes,
}

impl Request {
    /// Builds a request from its parts.
    pub fn new(
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Request {
            method,
            path: path.to_string(),
            params: parse_query(query.unwrap_or("")),
            headers,
            body,
        }
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// A boolean query parameter (`true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.query(name), Some("true" | "1"))
    }

    /// The Content-Type header, or "" when absent.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The Accept header, or "" when absent.
    pub fn accept(&self) -> &str {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Whether the client asks for a `meta.k8s.io` Table (kubectl get).
    pub fn wants_table(&self) -> bool {
        self.accept()
            .split(',')
            .next()
            .is_some_and(|first| first.replace(' ', "").contains("as=Table"))
    }

    /// The `includeObject` parameter of Table requests.
    pub fn include_object(&self) -> IncludeObject {
        match self.query("includeObject") {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }

    /// Whether `dryRun=All` was asked for.
    pub fn dry_run(&self) -> bool {
        self.query("dryRun") == Some("All")
    }
}

/// Parses `a=1&b=x%20y` into a map (first value wins).
pub fn parse_query(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&limit=&x=%zz&y=%4");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["limit"], "");
        assert_eq!(q["x"], "%zz");
        assert_eq!(q["y"], "%4");
    }
}
