//! The bucket: an `object_store` S3 client plus the object layout under the prefix.

use crate::error::{BackupError, Result};
use crate::format::{self, GenId};
use crate::settings::BackupSettings;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::{Path, PathPart};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use secrecy::ExposeSecret;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Parallel requests for uploads, downloads and deletes.
pub(crate) const PARALLEL: usize = 8;

#[derive(Clone)]
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: Vec<String>,
    location: String,
}

/// An object as listed.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub path: Path,
    pub size: u64,
    pub modified_ms: i64,
}

/// The objects of one generation.
#[derive(Debug, Default, Clone)]
pub(crate) struct GenObjects {
    pub manifests: BTreeMap<u64, Listed>,
    pub chunks: HashMap<String, Listed>,
    pub bytes: u64,
    pub newest_modified_ms: i64,
}

impl GenObjects {
    pub fn all_paths(&self) -> impl Iterator<Item = &Path> {
        self.manifests.values().chain(self.chunks.values()).map(|l| &l.path)
    }
}

/// Everything under the prefix, grouped by generation. Objects that do not follow the layout
/// are counted and never touched.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub generations: BTreeMap<GenId, GenObjects>,
    pub foreign: usize,
}

impl Remote {
    pub fn new(settings: &BackupSettings) -> Result<Self> {
        let settings = settings.clone().validated()?;
        let client = ClientOptions::new()
            .with_allow_http(settings.allow_http)
            .with_timeout(settings.request_timeout)
            .with_connect_timeout(Duration::from_secs(3));
        // Few, quick retries inside object_store: the replicator has its own backoff loop and
        // must notice an outage in seconds, not after object_store's default three minutes.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(5),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(settings.secret_access_key.expose_secret())
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_allow_http(settings.allow_http)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|source| BackupError::S3Config { source })?;
        let prefix = settings.prefix.split('/').filter(|p| !p.is_empty()).map(str::to_owned).collect();
        Ok(Self { store: Arc::new(store), prefix, location: settings.location() })
    }

    /// `bucket/prefix`, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, tail: [&str; 3]) -> Path {
        Path::from_iter(self.prefix.iter().map(String::as_str).chain(tail).map(PathPart::from))
    }

    pub fn manifest_path(&self, generation: GenId, seq: u64) -> Path {
        self.path([&generation.to_string(), "m", &format::manifest_name(seq)])
    }

    pub fn chunk_path(&self, generation: GenId, object: &str) -> Path {
        self.path([&generation.to_string(), "c", object])
    }

    pub async fn put(&self, path: &Path, data: Vec<u8>) -> Result<()> {
        self.store
            .put(path, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| BackupError::s3("PUT", path, e))
    }

    /// The object's bytes, or `None` when it does not exist.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        let res = match self.store.get(path).await {
            Ok(res) => res,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(BackupError::s3("GET", path, e)),
        };
        match res.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(BackupError::s3("GET", path, e)),
        }
    }

    pub async fn list(&self) -> Result<Layout> {
        let root = Path::from_iter(self.prefix.iter().map(String::as_str).map(PathPart::from));
        let prefix = if self.prefix.is_empty() { None } else { Some(&root) };
        let metas: Vec<_> =
            self.store.list(prefix).try_collect().await.map_err(|e| BackupError::s3("LIST", &root, e))?;
        let mut layout = Layout::default();
        for meta in metas {
            let parts: Vec<PathPart<'_>> = meta.location.parts().skip(self.prefix.len()).collect();
            let parsed = match parts.as_slice() {
                [g, kind, name] => GenId::parse(g.as_ref()).map(|g| (g, kind.as_ref(), name.as_ref())),
                _ => None,
            };
            let Some((generation, kind, name)) = parsed else {
                layout.foreign += 1;
                continue;
            };
            let listed = Listed {
                size: meta.size,
                modified_ms: meta.last_modified.timestamp_millis(),
                path: meta.location.clone(),
            };
            let entry = layout.generations.entry(generation).or_default();
            entry.bytes += listed.size;
            entry.newest_modified_ms = entry.newest_modified_ms.max(listed.modified_ms);
            match (kind, format::parse_manifest_name(name)) {
                ("m", Some(seq)) => {
                    entry.manifests.insert(seq, listed);
                }
                ("c", _) if format::is_chunk_name(name) => {
                    entry.chunks.insert(name.to_owned(), listed);
                }
                _ => layout.foreign += 1,
            }
        }
        layout.generations.retain(|_, g| !g.manifests.is_empty() || !g.chunks.is_empty());
        Ok(layout)
    }

    /// Deletes `paths` (a missing object is not an error).
    pub async fn delete_all(&self, paths: Vec<Path>) -> Result<usize> {
        let count = paths.len();
        futures::stream::iter(paths)
            .map(|p| async move {
                match self.store.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(BackupError::s3("DELETE", &p, e)),
                }
            })
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(count)
    }
}
