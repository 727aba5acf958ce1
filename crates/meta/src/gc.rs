//! Types of the garbage-collection methods of [`MetaStore`](crate::MetaStore).
//!
//! The store keeps what GC needs to be both safe while pushes continue and proportional to
//! the garbage: claims on blobs, links and manifests (timestamps that a run's grace
//! period compares with), tombstones on blobs whose bytes are being deleted, a queue of
//! candidates filled by triggers whenever a reference disappears, the shared read-only flag, the schedule and the run records.
//! The deciding statements live in the stores, each re-checking inside its transaction;
//! `berth_core::gc` drives them.

use berth_oci::{Digest, RepoName};
use serde::{Deserialize, Serialize};

/// The arguments of [`upload_complete`](crate::GcStore::upload_complete), as both
/// backends' statements take them.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) repo: RepoName,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) generation: i64,
    /// The upload session to remove.
    pub(crate) upload: Option<String>,
}

/// The arguments of [`gc_collect`](crate::GcStore::gc_collect), as both backends take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Collect {
    pub(crate) pass: GcPass,
    pub(crate) after: i64,
    pub(crate) limit: u32,
    pub(crate) dry_run: bool,
}

impl Completion {
    pub(crate) fn new(
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        generation: i64,
        upload: Option<&str>,
    ) -> Completion {
        Completion {
            repo: repo.clone(),
            digest: digest.clone(),
            size,
            generation,
            upload: upload.map(str::to_string),
        }
    }
}

impl Collect {
    pub(crate) fn new(pass: GcPass, after: i64, limit: u32, dry_run: bool) -> Collect {
        Collect {
            pass,
            after,
            limit,
            dry_run,
        }
    }

    /// The batch before any candidate is examined.
    pub(crate) fn start(&self) -> GcBatch {
        GcBatch {
            cursor: self.after,
            ..GcBatch::default()
        }
    }
}

/// What an upload learns when it claims a digest before committing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobClaim {
    /// The row exists (created now if it did not) and will not be collected before the
    /// grace period has passed; `generation` must be presented to
    /// [`upload_complete`](crate::MetaStore::upload_complete). `verified`: the row is live
    /// and its bytes were committed by an upload that hashed them, so a commit may keep the
    /// stored bytes instead of its own; otherwise whatever is stored under the digest (crash
    /// or lost-claim leftovers, bytes from before issue 10) is replaced.
    Claimed { generation: i64, verified: bool },
    /// GC is deleting the bytes of this digest: wait until the tombstone is gone.
    Deleting,
}

/// The rules of one collection pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPass {
    /// Unix ms: only what was created or claimed before this is collected (now - grace).
    pub cutoff: i64,
    /// Unix ms written into tombstones.
    pub now: i64,
    /// Delete manifests that no tag, index or kept referrer needs.
    pub delete_untagged: bool,
    /// Delete a referrer (a manifest with a subject) once its subject is gone.
    pub referrers_follow_subject: bool,
}

/// What one call of [`gc_collect`](crate::MetaStore::gc_collect) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcBatch {
    /// Highest candidate id examined; the next call continues after it.
    pub cursor: i64,
    /// Candidates examined.
    pub examined: u64,
    pub manifests_deleted: u64,
    pub links_deleted: u64,
    /// Blobs tombstoned by this call: their bytes are to be deleted, then
    /// [`gc_forget`](crate::MetaStore::gc_forget) removes their rows.
    pub blobs: Vec<(Digest, u64)>,
}

/// Settings shared by every replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSettings {
    /// Cron expression set through the API; `None`: the configuration file's.
    pub schedule: Option<String>,
    /// Unix ms since when a read-only GC holds the registry read-only.
    pub read_only_since: Option<i64>,
    /// Who set the read-only flag.
    pub read_only_by: Option<String>,
}

/// One GC run as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRun {
    /// 0 before the first save.
    pub id: i64,
    pub holder: String,
    /// `cli`, `schedule` or `api`.
    pub started_by: String,
    /// `online` or `read-only`.
    pub mode: String,
    pub dry_run: bool,
    /// `running`, `finished`, `stopped` (maximum duration reached; the next run
    /// continues), `failed`, `interrupted` (the process died; marked so by the next run).
    pub status: String,
    /// Unix ms.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub manifests_deleted: u64,
    pub links_deleted: u64,
    pub blobs_deleted: u64,
    pub blob_bytes: u64,
    pub uploads_purged: u64,
    pub orphans_deleted: u64,
    pub orphan_bytes: u64,
    pub errors: Vec<String>,
}

impl GcRun {
    /// The seven counts as the databases store them, in their columns' order:
    /// manifests, links, blobs, blob bytes, uploads, orphans, orphan bytes.
    pub(crate) fn counts(&self) -> [i64; 7] {
        [
            self.manifests_deleted,
            self.links_deleted,
            self.blobs_deleted,
            self.blob_bytes,
            self.uploads_purged,
            self.orphans_deleted,
            self.orphan_bytes,
        ]
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
    }

    /// The errors as the databases store them (JSON).
    pub(crate) fn errors_json(&self) -> Result<String, crate::MetaError> {
        serde_json::to_string(&self.errors)
            .map_err(|e| crate::MetaError::Backend(format!("encoding run errors: {e}")))
    }
}
