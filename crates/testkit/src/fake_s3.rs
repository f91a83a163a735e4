//! An in-process S3-compatible server for tests: `s3s` (the S3 protocol, SigV4 really checked)
//! over `s3s-fs` (objects are plain files under a temp dir), served over real HTTP on an ephemeral
//! `127.0.0.1` port.
//!
//! Beyond a plain server it lets a test
//! - simulate an outage: [`FakeS3::set_down`]`(true)` answers every request with
//!   `503 Service Unavailable` (existing keep-alive connections included) until set back;
//! - tamper with stored objects: [`FakeS3::object_path`] is the file holding an object's bytes, so a
//!   test can flip a byte, delete it, or copy an older object over a newer one.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let s3 = crewgate_testkit::fake_s3::FakeS3::start().await?;
//! // S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_REGION, S3_PATH_STYLE:
//! let env = s3.env_vars();
//! s3.set_down(true); // every request now gets a 503
//! # drop(env); Ok(()) }
//! ```

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Access key id the fake server accepts.
pub const ACCESS_KEY_ID: &str = "AKCREWGATETEST";
/// Secret access key the fake server accepts (requests signed with anything else are rejected).
pub const SECRET_ACCESS_KEY: &str = "SKCREWGATETEST";
/// Bucket created by [`FakeS3::start`].
pub const DEFAULT_BUCKET: &str = "backups";
/// Region to sign with.
pub const REGION: &str = "us-east-1";

/// A running fake S3 server. Dropping it stops the server and deletes the stored objects.
pub struct FakeS3 {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    bucket: String,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeS3")
            .field("endpoint", &self.endpoint())
            .field("bucket", &self.bucket)
            .field("root", &self.dir.path())
            .field("down", &self.is_down())
            .finish()
    }
}

impl FakeS3 {
    /// Starts a server with one empty bucket, [`DEFAULT_BUCKET`].
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_bucket(DEFAULT_BUCKET).await
    }

    /// Starts a server with one empty bucket named `bucket`.
    pub async fn start_with_bucket(bucket: &str) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        // With s3s-fs a bucket is a directory under the root.
        std::fs::create_dir_all(dir.path().join(bucket))?;
        let fs =
            s3s_fs::FileSystem::new(dir.path()).map_err(|e| std::io::Error::other(s3s::S3Error::from(e)))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        let service = builder.build();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let down = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));

        let (down_c, requests_c, refused_c) = (down.clone(), requests.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                let sock = match listener.accept().await {
                    Ok((sock, _peer)) => sock,
                    Err(e) => {
                        tracing::warn!(error = %e, "fake S3: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Without this, small responses stall on Nagle + delayed ACK (~40 ms each).
                if let Err(e) = sock.set_nodelay(true) {
                    tracing::debug!(error = %e, "fake S3: could not set TCP_NODELAY");
                }
                let service = service.clone();
                let (down, requests, refused) = (down_c.clone(), requests_c.clone(), refused_c.clone());
                tokio::spawn(async move {
                    let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        let down = down.clone();
                        requests.fetch_add(1, Ordering::Relaxed);
                        let refused = refused.clone();
                        async move {
                            if down.load(Ordering::SeqCst) {
                                refused.fetch_add(1, Ordering::Relaxed);
                                return Ok(unavailable());
                            }
                            service.call(req.map(s3s::Body::from)).await
                        }
                    });
                    let served = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), handler)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "fake S3: connection ended with an error");
                    }
                });
            }
        });
        Ok(Self { addr, dir, bucket: bucket.to_owned(), down, requests, refused, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn access_key_id(&self) -> &'static str {
        ACCESS_KEY_ID
    }

    pub fn secret_access_key(&self) -> &'static str {
        SECRET_ACCESS_KEY
    }

    pub fn region(&self) -> &'static str {
        REGION
    }

    /// The `S3_*` environment a gateway process needs to use this server (path-style addressing).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        [
            ("S3_ENDPOINT", self.endpoint()),
            ("S3_BUCKET", self.bucket.clone()),
            ("S3_REGION", REGION.to_owned()),
            ("S3_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("S3_PATH_STYLE", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Root directory of the s3s-fs store (holds one directory per bucket plus s3s-fs's own
    /// metadata files).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join(&self.bucket)
    }

    /// The file holding the bytes of object `key` (which need not exist). Writing to it changes
    /// what the next GET returns.
    pub fn object_path(&self, key: &str) -> PathBuf {
        let mut path = self.bucket_dir();
        for part in key.split('/').filter(|p| !p.is_empty()) {
            path.push(part);
        }
        path
    }

    /// Every object key in the bucket, sorted (read from disk, so it works while the server is down).
    pub fn object_keys(&self) -> std::io::Result<Vec<String>> {
        let mut keys = Vec::new();
        collect_keys(&self.bucket_dir(), "", &mut keys)?;
        keys.sort();
        Ok(keys)
    }

    /// Simulates an outage: while `true` every request is answered with `503 Service Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Requests received so far (including refused ones).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with 503 because the server was down.
    pub fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unavailable() -> s3s::HttpResponse {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>\
                <Message>fake S3 is down (FakeS3::set_down)</Message></Error>";
    let mut resp = s3s::HttpResponse::new(s3s::Body::from(body.to_owned()));
    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/xml"));
    resp
}

fn collect_keys(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if entry.file_type()?.is_dir() {
            collect_keys(&entry.path(), &key, out)?;
        } else if !name.starts_with(".tmp.") {
            out.push(key);
        }
    }
    Ok(())
}
