//! The [`Registry`] service: blob reads, uploads (monolithic, chunked, resumable), mounts
//! and deletes. Manifest operations are in [`crate::manifests`].
//!
//! An upload's progress lives in the metadata store (offset, serialised hash state, the
//! blob store's own state), written before each chunk is acknowledged: a restarted process
//! or another replica continues from the last acknowledged byte. The hash is computed as
//! the bytes stream through, so completing an upload never re-reads it.

use crate::error::CoreError;
use berth_blob::{BlobStore, ByteStream, UploadState};
use berth_meta::{BlobClaim, MetaStore, UploadRecord};
use berth_oci::{Algorithm, Digest, Digester, RepoName};
use futures::StreamExt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tunables of registry behaviour.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Advertised as `OCI-Chunk-Min-Length` on upload responses (0: not advertised).
    pub chunk_min_length: u64,
    /// Largest page of `_catalog` and tags lists, whatever `n` asks for.
    pub max_page: u32,
    /// When set, every write is refused with this reason (maintenance, read-only GC).
    pub read_only: Option<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            chunk_min_length: 0,
            max_page: 10_000,
            read_only: None,
        }
    }
}

/// A blob being served.
pub struct BlobBody {
    /// Size of the whole blob.
    pub size: u64,
    /// The byte range served (inclusive end), if a range was asked for.
    pub range: Option<(u64, u64)>,
    pub stream: ByteStream,
}

/// A range asked for with `Range: bytes=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start-` or `start-end` (inclusive).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received and acknowledged.
    pub offset: u64,
}

/// The registry: the two stores and the rules between them.
pub struct Registry {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) cfg: RegistryConfig,
    /// What garbage collection asks of the request paths (see `crate::gc`).
    pub(crate) gc: GcHooks,
}

/// Garbage collection's hold on the request paths, changed while serving.
#[derive(Debug, Default)]
pub(crate) struct GcHooks {
    /// A HEAD that finds a link last claimed longer ago than this (ms) claims it again;
    /// 0: never (no GC configured).
    pub(crate) claim_refresh_ms: AtomicI64,
    /// Why writes are refused while a read-only GC runs (from the shared settings).
    pub(crate) read_only: RwLock<Option<String>>,
}

/// How long an upload waits for GC to finish deleting the bytes of the digest it is
/// committing before giving up with 503.
const TOMBSTONE_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wraps a body so every chunk that passes is fed to `hasher` and counted.
fn hashing(stream: ByteStream, hasher: Arc<Mutex<Digester>>) -> ByteStream {
    stream
        .map(move |r| {
            if let Ok(b) = &r {
                hasher.lock().unwrap_or_else(|e| e.into_inner()).update(b);
            }
            r
        })
        .boxed()
}

fn take_hasher(h: Arc<Mutex<Digester>>) -> Digester {
    match Arc::try_unwrap(h) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(shared) => shared.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}

impl Registry {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        cfg: RegistryConfig,
    ) -> Registry {
        Registry {
            meta,
            blobs,
            cfg,
            gc: GcHooks::default(),
        }
    }

    /// A HEAD that finds a blob link older than `every` claims it again, so that GC (whose
    /// grace period should be at least twice this) keeps it for the manifest the client
    /// is about to push. Zero turns it off.
    pub fn set_link_claim_refresh(&self, every: Duration) {
        self.gc
            .claim_refresh_ms
            .store(every.as_millis() as i64, Ordering::Relaxed);
    }

    /// Refuses writes with `why` (a read-only GC run), or stops refusing with `None`.
    pub fn set_gc_read_only(&self, why: Option<String>) {
        *self.gc.read_only.write().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Why writes are refused, if they are.
    pub fn read_only_reason(&self) -> Option<String> {
        self.cfg.read_only.clone().or_else(|| {
            self.gc
                .read_only
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// Claims manifest `digest` found by a client if its claim is stale (GC configured and
    /// writes allowed); whether it is still there.
    pub(crate) async fn claim_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, CoreError> {
        let refresh = self.gc.claim_refresh_ms.load(Ordering::Relaxed);
        if refresh == 0 || self.read_only_reason().is_some() {
            return Ok(true);
        }
        Ok(self
            .meta
            .manifest_claim(repo, digest, now_ms() - refresh)
            .await?)
    }

    /// Claims `digest` before its bytes are committed; waits while GC deletes it.
    async fn claim(&self, digest: &Digest) -> Result<i64, CoreError> {
        let deadline = tokio::time::Instant::now() + TOMBSTONE_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.meta.blob_claim(digest).await? {
                BlobClaim::Claimed { generation } => return Ok(generation),
                BlobClaim::Deleting if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                BlobClaim::Deleting => {
                    return Err(CoreError::Collecting(format!(
                        "garbage collection is deleting blob {digest}; retry the upload later"
                    )))
                }
            }
        }
    }

    /// Links a committed blob under the claim taken before its commit.
    async fn complete(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        generation: i64,
        upload: Option<&str>,
    ) -> Result<(), CoreError> {
        match self
            .meta
            .upload_complete(repo, digest, size, generation, upload)
            .await
        {
            Ok(()) => Ok(()),
            Err(berth_meta::MetaError::ClaimLost(d)) => {
                if let Some(id) = upload {
                    // Its data was consumed by the commit: the session cannot continue.
                    let _ = self.meta.upload_delete(id).await;
                }
                Err(CoreError::Collecting(format!(
                    "blob {d} was garbage-collected while this upload committed it; upload it again"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }
    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }

    pub(crate) fn check_writable(&self) -> Result<(), CoreError> {
        match self.read_only_reason() {
            Some(why) => Err(CoreError::ReadOnly(why)),
            None => Ok(()),
        }
    }

    /// Size of a blob linked in `repo`. A stale link is claimed again (a client that
    /// finds a blob will reference it next), unless writes are refused anyway.
    pub async fn blob_head(&self, repo: &RepoName, digest: &Digest) -> Result<u64, CoreError> {
        let refresh = self.gc.claim_refresh_ms.load(Ordering::Relaxed);
        let size = if refresh > 0 && self.read_only_reason().is_none() {
            self.meta
                .link_claim(repo, digest, now_ms() - refresh)
                .await?
        } else {
            self.meta.blob_in_repo(repo, digest).await?
        };
        size.ok_or(CoreError::BlobUnknown)
    }

    /// Reads a blob linked in `repo`, whole or a range of it.
    pub async fn blob_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, CoreError> {
        let size = self.blob_head(repo, digest).await?;
        let range = match range {
            None => None,
            Some(r) => {
                let (s, e) = match r {
                    ByteRange::From(s, e) => (s, e.unwrap_or(u64::MAX).min(size.saturating_sub(1))),
                    ByteRange::Suffix(n) => (size.saturating_sub(n), size.saturating_sub(1)),
                };
                if size == 0 || s >= size || s > e || matches!(r, ByteRange::Suffix(0)) {
                    return Err(CoreError::RangeNotSatisfiable { size });
                }
                Some((s, e))
            }
        };
        let read = self
            .blobs
            .get(digest, range.map(|(s, e)| (s, e + 1)))
            .await?;
        Ok(BlobBody {
            size: read.size,
            range,
            stream: read.stream,
        })
    }

    /// Unlinks a blob from `repo` (the bytes stay until garbage collection).
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<(), CoreError> {
        self.check_writable()?;
        if self.meta.blob_unlink(repo, digest).await? {
            Ok(())
        } else {
            Err(CoreError::BlobUnknown)
        }
    }

    /// Opens an upload session.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus, CoreError> {
        self.check_writable()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.blobs.upload_start(&id).await?;
        let now = now_ms();
        let rec = UploadRecord {
            id: id.clone(),
            repo: repo.clone(),
            offset: 0,
            hash_state: Digester::new(Algorithm::Sha256).to_bytes(),
            store_state: state.0,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.meta.upload_create(&rec).await {
            let _ = self
                .blobs
                .upload_abort(&id, &UploadState(rec.store_state))
                .await;
            return Err(e.into());
        }
        Ok(UploadStatus { id, offset: 0 })
    }

    /// A whole blob in one request (`POST ?digest=`): stored, verified, committed and
    /// linked, with no upload session left behind.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
        content_length: Option<u64>,
    ) -> Result<u64, CoreError> {
        self.check_writable()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.blobs.upload_start(&id).await?;
        let result = async {
            let generation = self.claim(digest).await?;
            let hasher = Arc::new(Mutex::new(Digester::new(digest.algorithm())));
            let (state, n) = self
                .blobs
                .upload_append(&id, &state, 0, hashing(body, hasher.clone()))
                .await?;
            if let Some(cl) = content_length {
                if cl != n {
                    return Err(CoreError::SizeInvalid(format!(
                        "received {n} bytes, Content-Length said {cl}"
                    )));
                }
            }
            let actual = take_hasher(hasher).finish();
            if &actual != digest {
                return Err(CoreError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            self.blobs.upload_commit(&id, &state, n, digest).await?;
            Ok((n, generation))
        }
        .await;
        match result {
            Ok((n, generation)) => {
                self.complete(repo, digest, n, generation, None).await?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.blobs.upload_abort(&id, &state).await;
                Err(e)
            }
        }
    }

    /// Cross-repository mount: links `digest` into `repo` if `from` (or, without `from`, any
    /// repository) has it. `None` when it cannot be mounted; the caller then opens an
    /// ordinary upload.
    pub async fn mount(
        &self,
        repo: &RepoName,
        from: Option<&RepoName>,
        digest: &Digest,
    ) -> Result<Option<u64>, CoreError> {
        self.check_writable()?;
        match from {
            Some(from) => Ok(self.meta.blob_mount(repo, from, digest).await?),
            None => Ok(self.meta.blob_mount_any(repo, digest).await?),
        }
    }

    async fn upload_record(&self, repo: &RepoName, id: &str) -> Result<UploadRecord, CoreError> {
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(CoreError::UploadUnknown);
        }
        self.meta
            .upload_get(repo, id)
            .await?
            .ok_or(CoreError::UploadUnknown)
    }

    /// Where the upload stands.
    pub async fn upload_status(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<UploadStatus, CoreError> {
        let rec = self.upload_record(repo, id).await?;
        Ok(UploadStatus {
            id: rec.id,
            offset: rec.offset,
        })
    }

    /// Appends a chunk. `range` is the `Content-Range` (inclusive); it must start at the
    /// current offset.
    async fn append(
        &self,
        mut rec: UploadRecord,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: ByteStream,
        hasher: Digester,
        persist: bool,
    ) -> Result<(UploadRecord, Digester), CoreError> {
        if let Some((start, end)) = range {
            if start != rec.offset || end < start {
                return Err(CoreError::RangeInvalid { offset: rec.offset });
            }
            if let Some(cl) = content_length {
                if cl != end - start + 1 {
                    return Err(CoreError::SizeInvalid(format!(
                        "Content-Range covers {} bytes but Content-Length is {cl}",
                        end - start + 1
                    )));
                }
            }
        }
        let hasher = Arc::new(Mutex::new(hasher));
        let (state, n) = self
            .blobs
            .upload_append(
                &rec.id,
                &UploadState(rec.store_state.clone()),
                rec.offset,
                hashing(body, hasher.clone()),
            )
            .await?;
        let expected = range.map(|(s, e)| e - s + 1).or(content_length);
        if let Some(want) = expected {
            if want != n {
                return Err(CoreError::SizeInvalid(format!(
                    "received {n} bytes, the request announced {want}"
                )));
            }
        }
        let hasher = take_hasher(hasher);
        let prev = rec.offset;
        rec.offset += n;
        rec.hash_state = hasher.to_bytes();
        rec.store_state = state.0;
        rec.updated_at = now_ms();
        if !persist {
            // The caller commits the blob next; should that fail, the session still stands
            // at `prev` with the hash state of `prev`, and the store discards the extra bytes
            // on the next append.
            return Ok((rec, hasher));
        }
        self.meta
            .upload_advance(&rec, prev)
            .await
            .map_err(|e| match e {
                berth_meta::MetaError::UploadConflict(_) => {
                    CoreError::RangeInvalid { offset: prev }
                }
                other => other.into(),
            })?;
        Ok((rec, hasher))
    }

    fn restore_hasher(rec: &UploadRecord) -> Result<Digester, CoreError> {
        Digester::from_bytes(&rec.hash_state).ok_or_else(|| {
            CoreError::Meta(berth_meta::MetaError::Backend(format!(
                "upload {} has a corrupt hash state",
                rec.id
            )))
        })
    }

    /// `PATCH`: appends a chunk and acknowledges it durably.
    pub async fn upload_patch(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, CoreError> {
        self.check_writable()?;
        let rec = self.upload_record(repo, id).await?;
        let hasher = Self::restore_hasher(&rec)?;
        let (rec, _) = self
            .append(rec, range, content_length, body, hasher, true)
            .await?;
        Ok(UploadStatus {
            id: rec.id,
            offset: rec.offset,
        })
    }

    /// `PUT ?digest=`: appends the final chunk (if any), verifies the digest, commits the
    /// blob and links it. Returns the blob's size.
    pub async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<u64, CoreError> {
        self.check_writable()?;
        let mut rec = self.upload_record(repo, id).await?;
        let mut hasher = Self::restore_hasher(&rec)?;
        if hasher.algorithm() != digest.algorithm() {
            if rec.offset == 0 {
                hasher = Digester::new(digest.algorithm());
            } else {
                return Err(CoreError::Unsupported(format!(
                    "a chunked upload is verified with {}; send {} content in one request",
                    hasher.algorithm().as_str(),
                    digest.algorithm().as_str()
                )));
            }
        }
        if let Some(body) = body {
            let (r, h) = self
                .append(rec, range, content_length, body, hasher, false)
                .await?;
            rec = r;
            hasher = h;
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(CoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Claimed before the commit: the store's commit keeps bytes that already exist, and
        // those must not be GC's to delete meanwhile (ARCHITECTURE.md, invariant 9).
        let generation = self.claim(digest).await?;
        self.blobs
            .upload_commit(
                &rec.id,
                &UploadState(rec.store_state.clone()),
                rec.offset,
                digest,
            )
            .await?;
        self.complete(repo, digest, rec.offset, generation, Some(&rec.id))
            .await?;
        Ok(rec.offset)
    }

    /// `DELETE` of an upload: forgets it and its data.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<(), CoreError> {
        let rec = self.upload_record(repo, id).await?;
        self.meta.upload_delete(&rec.id).await?;
        self.blobs
            .upload_abort(&rec.id, &UploadState(rec.store_state))
            .await?;
        Ok(())
    }
}
