//! The [`Registry`] service: blob reads, uploads (monolithic, chunked, resumable), mounts
//! and deletes. Manifest operations are in [`crate::manifests`].
//!
//! An upload's progress lives in the metadata store (offset, serialised hash state, the
//! blob store's own state), written before each chunk is acknowledged: a restarted process
//! or another replica continues from the last acknowledged byte. The hash is computed as
//! the bytes stream through, so completing an upload never re-reads it.
//!
//! A request that changes a session (`PATCH`, `PUT`) first takes the session's write
//! lease in the metadata store (`MetaStore::upload_lease`, a compare-and-swap on the row
//! that also reads it) and only then writes a byte; it renews the lease while it works and
//! releases it with the offset it advances. So a session has one writer across every
//! replica, the offset it writes at is the one read under the lease, and acknowledged
//! bytes are never rewritten (ARCHITECTURE.md, invariants 1 and 2).

use crate::error::CoreError;
use berth_blob::{BlobStore, ByteStream, Existing, UploadState};
use berth_meta::{BlobClaim, MetaStore, UploadLease, UploadRecord};
use berth_oci::{Algorithm, Digest, Digester, RepoName};
use futures::StreamExt;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

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

/// How long a request's write lease on an upload session lasts unless renewed: how long a
/// session stays busy after the process writing it died. Replicas' clocks must agree to
/// well within this.
const LEASE_TTL_MS: i64 = 15_000;
/// How often a request renews its lease while it writes or commits.
const LEASE_RENEW: Duration = Duration::from_secs(5);

pub(crate) use crate::time::now_ms;

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

/// An upload id as this registry makes them; anything else names no session.
fn check_upload_id(id: &str) -> Result<(), CoreError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(CoreError::UploadUnknown);
    }
    Ok(())
}

fn take_hasher(h: Arc<Mutex<Digester>>) -> Digester {
    match Arc::try_unwrap(h) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(shared) => shared.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}

/// Whether what went through `hasher` has the digest the client named.
fn check_digest(hasher: Arc<Mutex<Digester>>, digest: &Digest) -> Result<(), CoreError> {
    let actual = take_hasher(hasher).finish();
    if &actual != digest {
        return Err(CoreError::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(())
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

    /// Claims `digest` before its bytes are committed; waits while GC deletes it. Returns
    /// the claim's generation and what the commit is to do with bytes already stored under
    /// the digest: keep them only if an upload that hashed them committed them.
    async fn claim(&self, digest: &Digest) -> Result<(i64, Existing), CoreError> {
        let deadline = tokio::time::Instant::now() + TOMBSTONE_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.meta.blob_claim(digest).await? {
                BlobClaim::Claimed {
                    generation,
                    verified,
                } => {
                    let existing = if verified {
                        Existing::Keep
                    } else {
                        Existing::Replace
                    };
                    return Ok((generation, existing));
                }
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
    ///
    /// Should GC have collected the claim meanwhile (possible with a short grace period),
    /// its deletion of the bytes came either before this upload's commit wrote them (they
    /// are there now, recorded by no row) or after (they are gone). So the digest is
    /// claimed again (waiting out a tombstone) and, if the bytes are there, linked under
    /// the new claim: the upload succeeds and leaves no unrecorded bytes for `fsck` to
    /// report. If they are gone, or the claim keeps being lost, the client is told to
    /// upload again; the new claim row then holds whatever is left for GC to delete like
    /// any other unreferenced blob.
    async fn complete(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        mut generation: i64,
        upload: Option<&str>,
    ) -> Result<(), CoreError> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            match self
                .meta
                .upload_complete(repo, digest, size, generation, upload)
                .await
            {
                Ok(()) => return Ok(()),
                Err(berth_meta::MetaError::ClaimLost(_)) => {
                    let (again, _) = self.claim(digest).await?;
                    if self.blobs.stat(digest).await? != Some(size) {
                        break;
                    }
                    generation = again;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(id) = upload {
            // Its data was consumed by the commit: the session cannot continue.
            let _ = self.meta.upload_delete(id).await;
        }
        Err(CoreError::Collecting(format!(
            "blob {digest} was garbage-collected while this upload committed it; upload it again"
        )))
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

    /// Opens an upload session, hashed with SHA-256.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus, CoreError> {
        self.upload_start_with(repo, Algorithm::Sha256).await
    }

    /// Opens an upload session whose bytes are hashed with `algorithm` as they arrive
    /// (`POST ?digest-algorithm=`), so that completing it with a digest of that algorithm
    /// needs no second pass.
    pub async fn upload_start_with(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
    ) -> Result<UploadStatus, CoreError> {
        self.check_writable()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.blobs.upload_start(&id).await?;
        let now = now_ms();
        let rec = UploadRecord {
            id: id.clone(),
            repo: repo.clone(),
            offset: 0,
            hash_state: Digester::new(algorithm).to_bytes(),
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
        let (n, generation) = self.store_whole(digest, body, content_length).await?;
        self.complete(repo, digest, n, generation, None).await?;
        Ok(n)
    }

    /// Stores `body` as the blob `digest` through a new upload of the blob store: claims
    /// the digest, hashes the bytes as they are written, and commits them only if they
    /// hash to `digest` (and, with `content_length`, are that many); otherwise the upload
    /// is aborted. The size and the claim's generation, for [`complete`](Self::complete).
    async fn store_whole(
        &self,
        digest: &Digest,
        body: ByteStream,
        content_length: Option<u64>,
    ) -> Result<(u64, i64), CoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.blobs.upload_start(&id).await?;
        let result = async {
            let (generation, existing) = self.claim(digest).await?;
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
            check_digest(hasher, digest)?;
            self.blobs
                .upload_commit(&id, &state, n, digest, existing)
                .await?;
            Ok((n, generation))
        }
        .await;
        if result.is_err() {
            let _ = self.blobs.upload_abort(&id, &state).await;
        }
        result
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
        check_upload_id(id)?;
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

    /// Takes the write lease of session `id` of `repo`: the session as it stands, read
    /// under the lease, and the lease's token. While another request holds it, waits (its
    /// body unread) until it is released or has expired, so a client resuming after a
    /// crash of the process that held it gets through once the lease runs out; a racing
    /// request then finds the offset the other one advanced to, and its range is refused
    /// by the caller's check.
    async fn lease(&self, repo: &RepoName, id: &str) -> Result<(UploadRecord, String), CoreError> {
        check_upload_id(id)?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(LEASE_TTL_MS as u64) + LEASE_RENEW;
        let mut pause = Duration::from_millis(10);
        loop {
            let now = now_ms();
            match self
                .meta
                .upload_lease(repo, id, &token, now, now + LEASE_TTL_MS)
                .await?
            {
                UploadLease::Held(rec) => return Ok((rec, token)),
                UploadLease::Busy { offset } => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(CoreError::RangeInvalid { offset });
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                UploadLease::Missing => return Err(CoreError::UploadUnknown),
            }
        }
    }

    /// Runs `work` under the lease `token` of session `id`, renewing it every
    /// [`LEASE_RENEW`]; should the lease be lost (the session was deleted, or this process
    /// stalled past the lease), `work` is dropped, which stops its writes. The lease is
    /// released if `work` fails (on success `work` itself released it, by advancing or by
    /// completing the session).
    async fn leased<T>(
        &self,
        id: &str,
        token: &str,
        work: impl Future<Output = Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        let result = async {
            tokio::pin!(work);
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + LEASE_RENEW, LEASE_RENEW);
            loop {
                tokio::select! {
                    r = &mut work => return r,
                    _ = tick.tick() => {
                        let until = now_ms() + LEASE_TTL_MS;
                        if !self.meta.upload_renew(id, token, until).await? {
                            return Err(CoreError::UploadUnknown);
                        }
                    }
                }
            }
        }
        .await;
        if result.is_err() {
            let _ = self.meta.upload_release(id, token).await;
        }
        result
    }

    /// Appends a chunk under the session's lease `token`. `range` is the `Content-Range`
    /// (inclusive); it must start at the current offset. With `persist`, the new offset is
    /// acknowledged (and the lease released) by a compare-and-swap on lease and offset.
    #[allow(clippy::too_many_arguments)]
    async fn append(
        &self,
        mut rec: UploadRecord,
        token: &str,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: ByteStream,
        hasher: Digester,
        persist: bool,
    ) -> Result<(UploadRecord, Digester), CoreError> {
        let expected = match range {
            Some((start, end)) => {
                if start != rec.offset || end < start {
                    return Err(CoreError::RangeInvalid { offset: rec.offset });
                }
                // `end` is at least `start`, so this cannot wrap; but `end - start + 1`
                // can (`0-18446744073709551615`).
                let len = (end - start).checked_add(1).ok_or_else(|| {
                    CoreError::SizeInvalid(format!("Content-Range {start}-{end} is too large"))
                })?;
                if let Some(cl) = content_length {
                    if cl != len {
                        return Err(CoreError::SizeInvalid(format!(
                            "Content-Range covers {len} bytes but Content-Length is {cl}"
                        )));
                    }
                }
                Some(len)
            }
            None => content_length,
        };
        if let Some(len) = expected {
            if rec
                .offset
                .checked_add(len)
                .is_none_or(|e| e > i64::MAX as u64)
            {
                return Err(CoreError::SizeInvalid(format!(
                    "an upload of {len} more bytes after {} is too large",
                    rec.offset
                )));
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
        if let Some(want) = expected {
            if want != n {
                return Err(CoreError::SizeInvalid(format!(
                    "received {n} bytes, the request announced {want}"
                )));
            }
        }
        let hasher = take_hasher(hasher);
        let prev = rec.offset;
        rec.offset = prev.checked_add(n).ok_or_else(|| {
            CoreError::SizeInvalid(format!(
                "an upload of {n} more bytes after {prev} is too large"
            ))
        })?;
        rec.hash_state = hasher.to_bytes();
        rec.store_state = state.0;
        rec.updated_at = now_ms();
        if !persist {
            // The caller commits the blob next; should that fail, the session still stands
            // at `prev` with the hash state of `prev`, and the store discards the extra bytes
            // on the next append.
            return Ok((rec, hasher));
        }
        match self.meta.upload_advance(&rec, prev, token).await {
            Ok(()) => Ok((rec, hasher)),
            // The lease was lost meanwhile: the session was deleted (`DELETE`, expiry), or
            // this request stalled past the lease and another took it over.
            Err(berth_meta::MetaError::UploadConflict(_)) => {
                match self.meta.upload_get(&rec.repo, &rec.id).await? {
                    None => Err(CoreError::UploadUnknown),
                    Some(now) => Err(CoreError::RangeInvalid { offset: now.offset }),
                }
            }
            Err(e) => Err(e.into()),
        }
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
        let (rec, token) = self.lease(repo, id).await?;
        let work = async {
            let hasher = Self::restore_hasher(&rec)?;
            self.append(
                rec.clone(),
                &token,
                range,
                content_length,
                body,
                hasher,
                true,
            )
            .await
        };
        let (rec, _) = self.leased(id, &token, work).await?;
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
        let (mut rec, token) = self.lease(repo, id).await?;
        let work = async {
            let mut hasher = Self::restore_hasher(&rec)?;
            // Bytes already staged were hashed with the session's algorithm; a digest of
            // another one is verified by a second pass over them (`commit_rehashed`).
            let rehash = hasher.algorithm() != digest.algorithm() && rec.offset > 0;
            if hasher.algorithm() != digest.algorithm() && !rehash {
                hasher = Digester::new(digest.algorithm());
            }
            if let Some(body) = body {
                let (r, h) = self
                    .append(rec, &token, range, content_length, body, hasher, false)
                    .await?;
                rec = r;
                hasher = h;
            }
            let actual = hasher.finish();
            if rehash {
                return self.commit_rehashed(repo, &rec, &actual, digest).await;
            }
            if &actual != digest {
                return Err(CoreError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            // Claimed before the commit: the store's commit keeps bytes that already exist, and
            // those must not be GC's to delete meanwhile (ARCHITECTURE.md, invariant 9).
            self.commit_claimed(repo, &rec, digest, Some(&rec.id))
                .await?;
            Ok(rec.offset)
        };
        self.leased(id, &token, work).await
    }

    /// Claims `digest`, commits the session's bytes under it, and links it into `repo`
    /// (`upload`: the session the link completes, if it does).
    async fn commit_claimed(
        &self,
        repo: &RepoName,
        rec: &UploadRecord,
        digest: &Digest,
        upload: Option<&str>,
    ) -> Result<(), CoreError> {
        let (generation, existing) = self.claim(digest).await?;
        self.blobs
            .upload_commit(
                &rec.id,
                &UploadState(rec.store_state.clone()),
                rec.offset,
                digest,
                existing,
            )
            .await?;
        self.complete(repo, digest, rec.offset, generation, upload)
            .await
    }

    /// Completes a session with a digest of another algorithm than the one its bytes were
    /// hashed with as they arrived (`staged`, their digest in that algorithm). The bytes
    /// are committed and linked under `staged` first (verified, so content-addressed
    /// correctly; an unreferenced link GC collects like any other), then read back through
    /// the requested algorithm into a new upload, which is committed under `digest` only if
    /// it hashes to it. Costs a second pass over the bytes, only for such uploads; clients
    /// that say `?digest-algorithm=` on POST avoid it. On a mismatch the session is gone
    /// (its data was consumed).
    async fn commit_rehashed(
        &self,
        repo: &RepoName,
        rec: &UploadRecord,
        staged: &Digest,
        digest: &Digest,
    ) -> Result<u64, CoreError> {
        self.commit_claimed(repo, rec, staged, None).await?;
        let copied = async {
            let read = self.blobs.get(staged, None).await?;
            self.store_whole(digest, read.stream, None).await
        }
        .await;
        match copied {
            Ok((n, generation)) => {
                self.complete(repo, digest, n, generation, Some(&rec.id))
                    .await?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.meta.upload_delete(&rec.id).await;
                Err(e)
            }
        }
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
