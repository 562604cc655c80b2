//! Component bytes in the store, as `PluginComponent` objects: one object
//! for a component of at most [`COMPONENT_CHUNK_BYTES`], chunks and a head
//! for a larger one (the layout is [`orchd_resources::orchd_v1`]'s). The
//! same path serves every store: etcd refuses a request over 1.5 MiB, and
//! Python and JavaScript components are 12-24 MB.

use base64::Engine as _;
use orchd_resources::orchd_v1::{
    self, COMPONENT_CHUNK_BYTES, chunk_name, component_name, component_objects, sha256_hex,
};
use orchd_store::{ObjectKey, Store, StoreError, meta};
use serde_json::Value;

use crate::manager::COMPONENTS;

/// Why a component could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No `PluginComponent` (or one of its chunks) is stored.
    #[error("{0}")]
    Missing(String),
    /// What is stored does not hash to the digest, or is malformed.
    #[error("{0}")]
    Corrupt(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::cluster(COMPONENTS, name)
}

/// Stores `bytes` (once per digest): the chunks first, then the head, so
/// a head that exists always has its chunks. Returns the digest.
pub async fn write(store: &dyn Store, bytes: &[u8]) -> Result<String, StoreError> {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let (chunks, head) = component_objects(bytes);
    let head_key = key(&component_name(&digest));
    match store.get(&head_key).await {
        Ok(_) => return Ok(digest),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    for chunk in chunks {
        let name = meta::meta_str(&chunk, "name")
            .unwrap_or_default()
            .to_string();
        // Left by an upload that stopped halfway: its bytes are checked
        // when the component is read.
        match store.create(&key(&name), chunk).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    match store.create(&head_key, head).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(digest),
        Err(e) => Err(e),
    }
}

fn decode(object: &Value, what: &str) -> Result<Vec<u8>, ReadError> {
    base64::engine::general_purpose::STANDARD
        .decode(object["data"].as_str().unwrap_or_default())
        .map_err(|_| ReadError::Corrupt(format!("{what} is not base64")))
}

/// Reads the bytes of the component `digest` (`sha256:<hex>`), checking
/// each chunk and the whole against their digests.
pub async fn read(store: &dyn Store, digest: &str) -> Result<Vec<u8>, ReadError> {
    let name = component_name(digest);
    let missing = |what: String| {
        move |e: StoreError| match e {
            StoreError::NotFound { .. } => {
                ReadError::Missing(format!("no PluginComponent holds {what}"))
            }
            e => ReadError::Store(format!("reading {what}: {e}")),
        }
    };
    let head = store
        .get(&key(&name))
        .await
        .map_err(missing(digest.to_string()))?;
    let chunks: Vec<String> = head["chunks"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|d| d.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let bytes = if chunks.is_empty() {
        decode(&head, "the component")?
    } else {
        let size = head["size"].as_u64().unwrap_or(0) as usize;
        if size > chunks.len() * COMPONENT_CHUNK_BYTES {
            return Err(ReadError::Corrupt(format!(
                "the component says {size} bytes in {} chunks",
                chunks.len()
            )));
        }
        let mut bytes = Vec::with_capacity(size);
        for (i, want) in chunks.iter().enumerate() {
            let chunk_name = chunk_name(&name, i);
            let chunk = store
                .get(&key(&chunk_name))
                .await
                .map_err(missing(format!("chunk {i} of {digest}")))?;
            let part = decode(&chunk, &format!("chunk {i}"))?;
            if format!("sha256:{}", sha256_hex(&part)) != *want {
                return Err(ReadError::Corrupt(format!(
                    "chunk {i} ({chunk_name}) does not match its digest {want}"
                )));
            }
            bytes.extend_from_slice(&part);
        }
        bytes
    };
    if format!("sha256:{}", orchd_v1::sha256_hex(&bytes)) != digest {
        return Err(ReadError::Corrupt(format!(
            "the component's bytes do not match {digest}"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchd_store::{RedbStore, RedbStoreConfig};

    #[tokio::test]
    async fn large_components_round_trip_in_chunks_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb"))).unwrap();
        let store: &dyn Store = store.as_ref();

        let small = b"\0asm small".to_vec();
        let digest = write(store, &small).await.unwrap();
        assert_eq!(read(store, &digest).await.unwrap(), small);

        let big: Vec<u8> = (0..2 * COMPONENT_CHUNK_BYTES + 3)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let digest = write(store, &big).await.unwrap();
        // Written again (a second install): nothing changes.
        assert_eq!(write(store, &big).await.unwrap(), digest);
        assert_eq!(read(store, &digest).await.unwrap(), big);
        let name = component_name(&digest);
        let head = store.get(&key(&name)).await.unwrap();
        assert_eq!(head["chunks"].as_array().unwrap().len(), 3);
        assert!(head["data"].as_str().unwrap_or_default().is_empty());

        // A chunk that is not what the head says is refused, by index.
        let mut chunk = store.get(&key(&chunk_name(&name, 1))).await.unwrap();
        chunk["data"] = base64::engine::general_purpose::STANDARD
            .encode(b"tampered")
            .into();
        store
            .update(&key(&chunk_name(&name, 1)), chunk)
            .await
            .unwrap();
        let e = read(store, &digest).await.unwrap_err();
        assert!(
            matches!(&e, ReadError::Corrupt(m) if m.contains("chunk 1")),
            "{e}"
        );

        // A missing chunk says which.
        store
            .delete(&key(&chunk_name(&name, 1)), &Default::default())
            .await
            .unwrap();
        let e = read(store, &digest).await.unwrap_err();
        assert!(
            matches!(&e, ReadError::Missing(m) if m.contains("chunk 1 of")),
            "{e}"
        );
        let unknown = format!("sha256:{}", sha256_hex(b"nothing"));
        assert!(matches!(
            read(store, &unknown).await,
            Err(ReadError::Missing(_))
        ));
    }
}
