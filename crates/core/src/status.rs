//! What the operations endpoints (`/health`, `/metrics`, `/api/v0/meta/cluster_status`,
//! `/api/v0/gc/...`) report about this registry's stores and its garbage collection, as
//! views defined here: `http` shows these and never reaches a store itself, and no store
//! record goes to the wire as it is stored.

use crate::gc::{self, GcError, GcOptions};
use crate::Registry;
use berth_meta::{GcRun, MetaError};
use serde::Serialize;

/// One store's health, from a ping.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    /// The implementation (`sqlite`, `postgres`, `filesystem`, `s3`, ...).
    pub kind: &'static str,
    /// Why the ping failed; `None` when it answered.
    pub error: Option<String>,
    /// How long the ping took.
    pub latency: std::time::Duration,
}

/// What `f` answered, and how long it took.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, std::time::Duration) {
    let t = std::time::Instant::now();
    let r = f.await;
    (r, t.elapsed())
}

impl StoreHealth {
    pub fn healthy(&self) -> bool {
        self.error.is_none()
    }
}

/// Whether a garbage collection runs now (a live lease), and the read-only flag.
#[derive(Debug, Clone, Serialize)]
pub struct GcState {
    pub running: bool,
    /// The replica holding the lease, while one runs.
    pub holder: Option<String>,
    /// RFC 3339: since when it runs.
    pub since: Option<String>,
    /// RFC 3339: since when a read-only run holds the registry read-only.
    pub read_only_since: Option<String>,
}

/// A background job's lease (one row of the lease table), as cluster status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// The job: `gc` (a run), `gc-schedule`, `directory-sync`, `audit-retention`, ...
    pub job: String,
    /// The replica id (or `berth-gc@host` for the command line) that holds or held it.
    pub holder: String,
    /// RFC 3339: since when this holder holds it.
    pub since: String,
    /// RFC 3339: when it lapses unless its holder renews it.
    pub expires: String,
    /// Whether it is held now (not lapsed).
    pub live: bool,
}

/// One garbage collection run, as the API shows it (the fields of the stored record,
/// times in unix milliseconds, named and typed here so the store may change).
#[derive(Debug, Clone, Serialize)]
pub struct GcRunView {
    pub id: i64,
    pub holder: String,
    /// `cli`, `schedule` or `api`.
    pub started_by: String,
    /// `online` or `read-only`.
    pub mode: String,
    pub dry_run: bool,
    /// `running`, `finished`, `stopped`, `failed` or `interrupted`.
    pub status: String,
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

impl From<&GcRun> for GcRunView {
    fn from(r: &GcRun) -> GcRunView {
        GcRunView {
            id: r.id,
            holder: r.holder.clone(),
            started_by: r.started_by.clone(),
            mode: r.mode.clone(),
            dry_run: r.dry_run,
            status: r.status.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            manifests_deleted: r.manifests_deleted,
            links_deleted: r.links_deleted,
            blobs_deleted: r.blobs_deleted,
            blob_bytes: r.blob_bytes,
            uploads_purged: r.uploads_purged,
            orphans_deleted: r.orphans_deleted,
            orphan_bytes: r.orphan_bytes,
            errors: r.errors.clone(),
        }
    }
}

impl Registry {
    /// Pings the metadata and the blob store at once.
    pub async fn stores_health(&self) -> (StoreHealth, StoreHealth) {
        let meta = timed(async { self.meta().ping().await.map_err(|e| e.to_string()) });
        let blobs = timed(async { self.blobs().ping().await.map_err(|e| e.to_string()) });
        let ((meta, meta_t), (blobs, blobs_t)) = tokio::join!(meta, blobs);
        (
            StoreHealth {
                kind: self.meta().kind(),
                error: meta.err(),
                latency: meta_t,
            },
            StoreHealth {
                kind: self.blobs().kind(),
                error: blobs.err(),
                latency: blobs_t,
            },
        )
    }

    /// Upload sessions open now.
    pub async fn open_uploads(&self) -> Result<u64, MetaError> {
        self.meta().upload_count().await
    }

    /// The replica holding a live GC lease, if a run is going on.
    pub async fn gc_holder(&self) -> Result<Option<String>, MetaError> {
        let now = gc::now_ms();
        Ok(self
            .meta()
            .lease(gc::LEASE)
            .await?
            .filter(|l| l.expires_at > now)
            .map(|l| l.holder))
    }

    /// Every job's lease, live or lapsed, by job name.
    pub async fn job_leases(&self) -> Result<Vec<LeaseView>, MetaError> {
        let now = gc::now_ms();
        Ok(self
            .meta()
            .leases()
            .await?
            .into_iter()
            .map(|l| LeaseView {
                live: l.expires_at > now,
                since: gc::rfc3339(l.acquired_at),
                expires: gc::rfc3339(l.expires_at),
                job: l.name,
                holder: l.holder,
            })
            .collect())
    }

    /// Whether GC runs and who holds it, and the read-only flag.
    pub async fn gc_state(&self) -> Result<GcState, MetaError> {
        let (lease, settings) =
            tokio::join!(self.meta().lease(gc::LEASE), self.meta().gc_settings());
        let now = gc::now_ms();
        let running = lease?.filter(|l| l.expires_at > now);
        Ok(GcState {
            running: running.is_some(),
            holder: running.as_ref().map(|l| l.holder.clone()),
            since: running.as_ref().map(|l| gc::rfc3339(l.acquired_at)),
            read_only_since: settings?.read_only_since.map(gc::rfc3339),
        })
    }

    /// The last `n` GC runs, newest first.
    pub async fn gc_last_runs(&self, n: u32) -> Result<Vec<GcRunView>, MetaError> {
        let runs = self.meta().gc_runs(n).await?;
        Ok(runs.iter().map(GcRunView::from).collect())
    }

    /// The schedule set through the API (`None`: the configuration file's).
    pub async fn gc_schedule(&self) -> Result<Option<String>, MetaError> {
        Ok(self.meta().gc_settings().await?.schedule)
    }

    /// Sets (or with `None` clears) the schedule every replica follows; the caller has
    /// checked the expression ([`gc::parse_schedule`]).
    pub async fn gc_set_schedule(&self, schedule: Option<&str>) -> Result<(), MetaError> {
        self.meta().gc_set_schedule(schedule).await
    }

    /// Runs garbage collection once on this registry's stores; the run's record.
    pub async fn gc_run(&self, opts: &GcOptions) -> Result<GcRun, GcError> {
        Ok(gc::run(self.meta().clone(), self.blobs().clone(), opts)
            .await?
            .run)
    }
}
