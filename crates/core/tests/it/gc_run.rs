//! A GC run's phases on the real SQLite store and the memory blob store: a dry run
//! reports and changes nothing; storage verification removes bytes no row records once
//! they were first seen longer ago than the grace period, and leaves known blobs alone;
//! the lease keeps a second run out.

use berth_blob::memory::MemoryBlobStore;
use berth_blob::{BlobStore, ByteStream, Existing, UploadState};
use berth_core::gc::{self, GcError, GcOptions};
use berth_core::{Registry, RegistryConfig};
use berth_meta::prelude::*;
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

fn body(b: &'static [u8]) -> ByteStream {
    futures::stream::once(async move { Ok(Bytes::from_static(b)) }).boxed()
}

fn opts() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        holder: "test".into(),
        read_only_settle: Duration::ZERO,
        ..GcOptions::default()
    }
}

async fn setup() -> (
    tempfile::TempDir,
    Registry,
    Arc<dyn MetaStore>,
    Arc<dyn BlobStore>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = crate::sqlite_meta(dir.path()).await;
    let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let reg = Registry::new(meta.clone(), blobs.clone(), RegistryConfig::default());
    (dir, reg, meta, blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_and_changes_nothing() {
    let (_dir, reg, meta, blobs) = setup().await;
    let repo = RepoName::parse("gc/dry").expect("name");
    let (cfg, layer) = (b"{}" as &'static [u8], b"layer bytes" as &'static [u8]);
    let (dc, dl) = (Digest::sha256_of(cfg), Digest::sha256_of(layer));
    reg.upload_monolithic(&repo, &dc, body(cfg), None)
        .await
        .expect("config");
    reg.upload_monolithic(&repo, &dl, body(layer), None)
        .await
        .expect("layer");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{dl}","size":11}}]}}"#
    );
    let tag = Reference::Tag(Tag::parse("v1").expect("tag"));
    reg.manifest_put(&repo, &tag, None, Bytes::from(manifest))
        .await
        .expect("put");
    reg.manifest_delete(&repo, &tag).await.expect("untag");
    tokio::time::sleep(Duration::from_millis(3)).await;
    let dry = gc::run(
        meta.clone(),
        blobs.clone(),
        &GcOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await
    .expect("dry run");
    assert_eq!(dry.run.status, "finished");
    assert_eq!(dry.run.manifests_deleted, 1);
    assert_eq!(dry.run.blobs_deleted, 2);
    assert_eq!(dry.run.blob_bytes, 13);
    assert_eq!(dry.blobs.len(), 2);
    assert!(
        blobs.stat(&dl).await.expect("stat").is_some(),
        "dry run deleted bytes"
    );
    assert_eq!(reg.blob_head(&repo, &dl).await.expect("head"), 11);
    let real = gc::run(meta, blobs.clone(), &opts()).await.expect("run");
    assert_eq!((real.run.manifests_deleted, real.run.blobs_deleted), (1, 2));
    assert!(blobs.stat(&dl).await.expect("stat").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_storage_removes_old_orphans_only() {
    let (_dir, reg, meta, blobs) = setup().await;
    let repo = RepoName::parse("gc/verify").expect("name");
    let known = b"known blob" as &'static [u8];
    let dk = Digest::sha256_of(known);
    reg.upload_monolithic(&repo, &dk, body(known), None)
        .await
        .expect("upload");
    // Bytes committed with no metadata: what a crash between commit and link leaves.
    let orphan = b"orphan bytes" as &'static [u8];
    let d_orphan = Digest::sha256_of(orphan);
    let st = blobs.upload_start("crashed").await.expect("start");
    let (st, n) = blobs
        .upload_append("crashed", &st, 0, body(orphan))
        .await
        .expect("append");
    blobs
        .upload_commit("crashed", &st, n, &d_orphan, berth_blob::Existing::Keep)
        .await
        .expect("commit");

    let grace = GcOptions {
        verify_storage: true,
        grace: Duration::from_secs(3600),
        ..opts()
    };
    let first = gc::run(meta.clone(), blobs.clone(), &grace)
        .await
        .expect("run");
    assert_eq!(
        first.run.orphans_deleted, 0,
        "first seen now: kept for the grace period"
    );
    assert!(blobs.stat(&d_orphan).await.expect("stat").is_some());
    assert!(
        blobs.stat(&dk).await.expect("stat").is_some(),
        "a known blob"
    );
    tokio::time::sleep(Duration::from_millis(3)).await;
    let verify = GcOptions {
        verify_storage: true,
        ..opts()
    };
    let second = gc::run(meta.clone(), blobs.clone(), &verify)
        .await
        .expect("run");
    assert_eq!(second.run.orphans_deleted, 1);
    assert_eq!(second.run.orphan_bytes, orphan.len() as u64);
    assert!(blobs.stat(&d_orphan).await.expect("stat").is_none());
    assert!(second.run.errors.is_empty(), "{:?}", second.run.errors);
    // A second process cannot run while the lease is held.
    assert!(meta
        .lease_acquire(gc::LEASE, "someone-else", 60_000)
        .await
        .expect("lease"));
    match gc::run(meta.clone(), blobs.clone(), &opts()).await {
        Err(GcError::Busy(h)) => assert_eq!(h, "someone-else"),
        other => panic!("expected Busy, got {other:?}"),
    }
    meta.lease_release(gc::LEASE, "someone-else")
        .await
        .expect("release");
    let runs = meta.gc_runs(10).await.expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].orphans_deleted, 1);
}

/// Fault injection: a blob store that runs a GC pass (grace 0) right before the first
/// commit it is asked for, so that the committing upload's claim is collected between its
/// claim and its commit: the interleaving of a GC run racing a push.
struct GcBeforeCommit {
    inner: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    fired: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl BlobStore for GcBeforeCommit {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> Result<(), berth_blob::BlobError> {
        self.inner.ping().await
    }
    async fn stat(&self, d: &Digest) -> Result<Option<u64>, berth_blob::BlobError> {
        self.inner.stat(d).await
    }
    async fn get(
        &self,
        d: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<berth_blob::BlobRead, berth_blob::BlobError> {
        self.inner.get(d, range).await
    }
    async fn delete(&self, d: &Digest) -> Result<bool, berth_blob::BlobError> {
        self.inner.delete(d).await
    }
    fn list(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<(Digest, u64), berth_blob::BlobError>> {
        self.inner.list()
    }
    fn list_foreign(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<String, berth_blob::BlobError>> {
        self.inner.list_foreign()
    }
    async fn delete_foreign(&self, key: &str) -> Result<(), berth_blob::BlobError> {
        self.inner.delete_foreign(key).await
    }
    fn list_uploads(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<(String, u64), berth_blob::BlobError>> {
        self.inner.list_uploads()
    }
    async fn upload_start(&self, id: &str) -> Result<UploadState, berth_blob::BlobError> {
        self.inner.upload_start(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
        data: ByteStream,
    ) -> Result<(UploadState, u64), berth_blob::BlobError> {
        self.inner.upload_append(id, state, offset, data).await
    }
    async fn upload_commit(
        &self,
        id: &str,
        state: &UploadState,
        len: u64,
        digest: &Digest,
        existing: Existing,
    ) -> Result<(), berth_blob::BlobError> {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let run = gc::run(self.meta.clone(), self.inner.clone(), &opts())
                .await
                .expect("gc run");
            assert_eq!(run.run.blobs_deleted, 1, "GC collected the fresh claim");
        }
        self.inner
            .upload_commit(id, state, len, digest, existing)
            .await
    }
    async fn upload_abort(
        &self,
        id: &str,
        state: &UploadState,
    ) -> Result<(), berth_blob::BlobError> {
        self.inner.upload_abort(id, state).await
    }
}

/// Issue 10, item 12: a GC run (grace 0) collecting an upload's claim between its claim
/// and its commit used to leave the committed bytes in storage with no row (the upload
/// answered 503), an orphan `berth fsck` reported until storage verification ran twice.
/// Now the upload claims again and links the bytes it committed: it succeeds, and every
/// stored blob has its live row. Chunked (session) and monolithic pushes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_racing_a_push_leaves_no_orphan() {
    for chunked in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = crate::sqlite_meta(dir.path()).await;
        let inner: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
        let blobs: Arc<dyn BlobStore> = Arc::new(GcBeforeCommit {
            inner: inner.clone(),
            meta: meta.clone(),
            fired: Default::default(),
        });
        let reg = Registry::new(meta.clone(), blobs, RegistryConfig::default());
        let repo = RepoName::parse("gc/race").expect("name");
        let data = b"pushed while GC runs" as &'static [u8];
        let d = Digest::sha256_of(data);
        let size = if chunked {
            let up = reg.upload_start(&repo).await.expect("start");
            reg.upload_patch(&repo, &up.id, None, None, body(data))
                .await
                .expect("patch");
            reg.upload_finish(&repo, &up.id, &d, None, None, None).await
        } else {
            reg.upload_monolithic(&repo, &d, body(data), None).await
        };
        assert_eq!(size.expect("the push succeeds"), data.len() as u64);
        assert_eq!(
            reg.blob_head(&repo, &d).await.expect("head"),
            data.len() as u64
        );
        // What `berth fsck` compares: every stored blob has its live row, and back.
        let stored: Vec<(Digest, u64)> = inner.list().map(|r| r.expect("list")).collect().await;
        assert_eq!(
            stored,
            meta.all_blobs().await.expect("all_blobs"),
            "chunked: {chunked}"
        );
    }
}
