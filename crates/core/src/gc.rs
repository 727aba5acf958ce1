//! Garbage collection: a run ([`run`]), its schedule ([`scheduled_job`]) and the shared
//! read-only flag every replica follows ([`read_only_job`]); both are background
//! [`jobs`](crate::jobs).
//!
//! A run works from the metadata store's candidate queue (what lost a reference, or was
//! created and is not referenced yet), never from a listing of blob storage: its cost
//! follows the churn since the last run, not the registry's size. The store decides each
//! candidate in a transaction that re-checks everything that could still need it
//! (ARCHITECTURE.md, invariant 9); this module drives it in batches, deletes the bytes of
//! the blobs it tombstoned, then forgets their rows. In order:
//!
//! 1. take the lease [`LEASE`] (one GC at a time across replicas and `berth gc` processes;
//!    a job lease, so the scheduled job's lease `gc-schedule` is another one), record
//!    the run, and in read-only mode set the shared flag and give replicas time to see it;
//! 2. finish tombstones an interrupted run left (bytes, then rows);
//! 3. collect batches until the queue holds nothing old enough, or the maximum duration
//!    is reached (then the run ends as `stopped`, and the next one continues: the queue is
//!    in the store);
//! 4. purge upload sessions not advanced for `upload_max_age`, with their data (an S3
//!    multipart upload is aborted by the blob store);
//! 5. with `verify_storage`, list blob storage for bytes no row records (crash orphans)
//!    and delete those first seen more than the grace period ago, and abandoned upload
//!    data;
//! 6. clear the flag, record the outcome, give the lease back.
//!
//! A dry run does the whole collection inside a transaction that is rolled back, so its
//! counts include cascades (a manifest's blobs freed by deleting it), and changes nothing.

use crate::jobs::{CancellationToken, Job as BackgroundJob};
use crate::registry::Registry;
use berth_blob::{BlobError, BlobStore, UploadState};
use berth_meta::{GcPass, GcRun, MetaError, MetaStore};
use berth_oci::Digest;
use futures::StreamExt;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether writes continue during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcMode {
    /// No pause; safety comes from claims and tombstones.
    Online,
    /// Writes are refused with 503 on every replica for the duration (DTR's behaviour).
    ReadOnly,
}

impl GcMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GcMode::Online => "online",
            GcMode::ReadOnly => "read-only",
        }
    }
}

impl FromStr for GcMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "online" => Ok(GcMode::Online),
            "read-only" | "readonly" => Ok(GcMode::ReadOnly),
            other => Err(format!(
                "GC mode must be online or read-only, not {other:?}"
            )),
        }
    }
}

/// A pace as the options take it: a share of wall time in (0, 1].
pub fn check_pace(p: f64) -> Result<f64, String> {
    if p > 0.0 && p <= 1.0 {
        Ok(p)
    } else {
        Err(format!("the pace must be above 0 and at most 1, not {p}"))
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only what was created or last claimed longer ago than this is collected.
    pub grace: Duration,
    pub mode: GcMode,
    pub dry_run: bool,
    /// Also list blob storage for orphans (slow: a full listing).
    pub verify_storage: bool,
    /// Stop cleanly after this long; the next run continues.
    pub max_duration: Option<Duration>,
    pub delete_untagged: bool,
    pub referrers_follow_subject: bool,
    /// Upload sessions not advanced for this long are purged.
    pub upload_max_age: Duration,
    /// Who runs it (lease holder, run record): a replica id or `berth-gc@host`.
    pub holder: String,
    /// `cli`, `schedule` or `api`.
    pub started_by: String,
    /// Candidates per batch.
    pub batch: u32,
    /// Online mode: the share of wall time the sweep may work (after each batch it rests
    /// in proportion), so pushes keep their throughput; 1.0: no rest. Read-only runs never
    /// rest (writes wait for them anyway).
    pub pace: f64,
    /// In read-only mode, how long to wait after setting the flag before collecting, so
    /// that every replica's [`read_only_job`] has seen it.
    pub read_only_settle: Duration,
    /// Once cancelled, the run stops as at its maximum duration (`stopped`; the next run
    /// continues): process shutdown.
    pub cancel: CancellationToken,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            mode: GcMode::Online,
            dry_run: false,
            verify_storage: false,
            max_duration: None,
            delete_untagged: true,
            referrers_follow_subject: true,
            upload_max_age: Duration::from_secs(24 * 3600),
            holder: "berth".into(),
            started_by: "cli".into(),
            batch: 500,
            pace: 0.05,
            read_only_settle: Duration::from_secs(3),
            cancel: CancellationToken::new(),
        }
    }
}

/// Why a run did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Another process holds the lease.
    #[error("garbage collection is already running ({0} holds it)")]
    Busy(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("invalid GC schedule {0:?}: {1}")]
    Schedule(String, String),
}

/// A finished run: its record, and the blobs it deleted (or, dry, would delete), at most
/// [`LISTED`] of them.
#[derive(Debug, Clone)]
pub struct GcOutcome {
    pub run: GcRun,
    pub blobs: Vec<(Digest, u64)>,
}

/// Most blobs an outcome lists.
pub const LISTED: usize = 10_000;
/// The name of the job lease a run holds.
pub const LEASE: &str = "gc";
/// The name of the scheduled GC job (and of its lease).
pub const SCHEDULE_JOB: &str = "gc-schedule";
/// The lease lives this long unless renewed (every third of it).
const LEASE_TTL: Duration = Duration::from_secs(30);
/// Blob deletions in flight at once.
const DELETE_CONCURRENCY: usize = 8;
/// Most candidates per collecting transaction in a paced online run (see `Job::batch`).
const PACED_BATCH: u32 = 100;

pub use crate::time::{now_ms, rfc3339_ms as rfc3339};

/// Runs garbage collection once; see the module documentation.
pub async fn run(
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    opts: &GcOptions,
) -> Result<GcOutcome, GcError> {
    if !meta
        .lease_acquire(LEASE, &opts.holder, LEASE_TTL.as_millis() as i64)
        .await?
    {
        let holder = meta
            .lease(LEASE)
            .await?
            .map(|l| l.holder)
            .unwrap_or_else(|| "another process".into());
        return Err(GcError::Busy(holder));
    }
    let lost = Arc::new(AtomicBool::new(false));
    let renew = {
        let (meta, holder, lost) = (meta.clone(), opts.holder.clone(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 3).await;
                match meta
                    .lease_renew(LEASE, &holder, LEASE_TTL.as_millis() as i64)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) | Err(_) => {
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    };
    let mut run = GcRun {
        id: 0,
        holder: opts.holder.clone(),
        started_by: opts.started_by.clone(),
        mode: opts.mode.as_str().into(),
        dry_run: opts.dry_run,
        status: "running".into(),
        started_at: now_ms(),
        ..GcRun::default()
    };
    let result = async {
        // Holding the lease, any run still recorded as running was interrupted (killed).
        for mut dead in meta.gc_runs(20).await? {
            if dead.status == "running" {
                dead.status = "interrupted".into();
                meta.gc_run_save(&dead).await?;
            }
        }
        run.id = meta.gc_run_save(&run).await?;
        let mut job = Job {
            meta: meta.as_ref(),
            blobs: blobs.as_ref(),
            opts,
            started: Instant::now(),
            lost: &lost,
            run: &mut run,
            listed: Vec::new(),
        };
        let read_only = opts.mode == GcMode::ReadOnly && !opts.dry_run;
        if !read_only && meta.gc_settings().await?.read_only_since.is_some() {
            // Left by a read-only run that was killed: this process holds the lease now.
            meta.gc_set_read_only(None).await?;
        }
        if read_only {
            job.meta
                .gc_set_read_only(Some((job.run.started_at, &opts.holder)))
                .await?;
            tokio::time::sleep(opts.read_only_settle).await;
        }
        let worked = job.work().await;
        if read_only {
            if let Err(e) = job.meta.gc_set_read_only(None).await {
                job.run
                    .errors
                    .push(format!("clearing the read-only flag: {e}"));
            }
        }
        let listed = std::mem::take(&mut job.listed);
        match worked {
            Ok(done) => {
                run.status = if done { "finished" } else { "stopped" }.into();
            }
            Err(e) => {
                run.status = "failed".into();
                run.errors.push(e.to_string());
            }
        }
        Ok::<_, GcError>(listed)
    }
    .await;
    renew.abort();
    run.finished_at = Some(now_ms());
    let listed = match result {
        Ok(l) => l,
        Err(e) => {
            run.status = "failed".into();
            run.errors.push(e.to_string());
            Vec::new()
        }
    };
    if run.id != 0 {
        if let Err(e) = meta.gc_run_save(&run).await {
            tracing::error!(error = %e, "recording the GC run");
        }
    }
    if let Err(e) = meta.lease_release(LEASE, &opts.holder).await {
        tracing::warn!(error = %e, "releasing the GC lease (it expires by itself)");
    }
    tracing::info!(
        run = run.id,
        status = %run.status,
        mode = %run.mode,
        dry_run = run.dry_run,
        manifests = run.manifests_deleted,
        links = run.links_deleted,
        blobs = run.blobs_deleted,
        bytes = run.blob_bytes,
        uploads = run.uploads_purged,
        orphans = run.orphans_deleted,
        errors = run.errors.len(),
        "garbage collection run ended"
    );
    Ok(GcOutcome { run, blobs: listed })
}

struct Job<'a> {
    meta: &'a dyn MetaStore,
    blobs: &'a dyn BlobStore,
    opts: &'a GcOptions,
    started: Instant,
    lost: &'a AtomicBool,
    run: &'a mut GcRun,
    listed: Vec<(Digest, u64)>,
}

impl Job<'_> {
    /// Whether the run must stop now (maximum duration, shutdown, or the lease was lost).
    fn must_stop(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
            || self.opts.cancel.is_cancelled()
            || self
                .opts
                .max_duration
                .is_some_and(|max| self.started.elapsed() >= max)
    }

    /// Candidates per collecting transaction. A paced online run shares the metadata
    /// store's writer with pushes, which wait for a batch's commit: it takes at most
    /// [`PACED_BATCH`] at a time, so no push waits long behind it.
    fn batch(&self) -> u32 {
        if self.paced() {
            self.opts.batch.min(PACED_BATCH)
        } else {
            self.opts.batch
        }
    }

    /// Whether the run rests between batches (online, pace below 1).
    fn paced(&self) -> bool {
        self.opts.mode == GcMode::Online && self.opts.pace > 0.0 && self.opts.pace < 1.0
    }

    fn list(&mut self, blobs: &[(Digest, u64)]) {
        let room = LISTED.saturating_sub(self.listed.len());
        self.listed.extend(blobs.iter().take(room).cloned());
    }

    /// The phases; `Ok(false)` when stopped early.
    async fn work(&mut self) -> Result<bool, GcError> {
        if self.opts.dry_run {
            return self.dry().await;
        }
        // 2. Tombstones of an interrupted run first.
        loop {
            if self.must_stop() {
                return Ok(false);
            }
            let left = self.meta.gc_tombstones(self.opts.batch).await?;
            if left.is_empty() {
                break;
            }
            let n = left.len();
            let forgotten = self.delete_bytes(left).await?;
            if forgotten < n {
                // Some deletions failed (recorded): do not spin on them.
                break;
            }
        }
        // 3. The queue.
        let pass = self.pass();
        let mut after = 0;
        loop {
            if self.must_stop() {
                return Ok(false);
            }
            let started = std::time::Instant::now();
            let batch = self
                .meta
                .gc_collect(&pass, after, self.batch(), false)
                .await?;
            if batch.examined == 0 {
                break;
            }
            after = batch.cursor;
            self.run.manifests_deleted += batch.manifests_deleted;
            self.run.links_deleted += batch.links_deleted;
            self.delete_bytes(batch.blobs).await?;
            // Progress, for `--status` and the API while the run goes on.
            self.meta.gc_run_save(self.run).await?;
            if self.paced() {
                let pace = self.opts.pace;
                let work = started.elapsed();
                // A rest ends early when the run is cancelled (shutdown, SIGTERM).
                tokio::select! {
                    _ = tokio::time::sleep(work.mul_f64((1.0 - pace) / pace)) => {}
                    _ = self.opts.cancel.cancelled() => {}
                }
            }
        }
        // 4. Abandoned uploads.
        let before = now_ms() - self.opts.upload_max_age.as_millis() as i64;
        loop {
            if self.must_stop() {
                return Ok(false);
            }
            let stale = self.meta.uploads_stale(before, self.opts.batch).await?;
            if stale.is_empty() {
                break;
            }
            for u in stale {
                // The row first: nobody continues the session after this.
                if self.meta.upload_delete(&u.id).await? {
                    match self
                        .blobs
                        .upload_abort(&u.id, &UploadState(u.store_state))
                        .await
                    {
                        Ok(()) => self.run.uploads_purged += 1,
                        Err(e) => self
                            .run
                            .errors
                            .push(format!("aborting upload {}: {e}", u.id)),
                    }
                }
            }
        }
        // 5. Storage verification.
        if self.opts.verify_storage {
            return self.verify().await;
        }
        Ok(true)
    }

    /// Deletes the bytes of tombstoned blobs, then their rows; how many rows went.
    async fn delete_bytes(&mut self, tombstoned: Vec<(Digest, u64)>) -> Result<usize, GcError> {
        if tombstoned.is_empty() {
            return Ok(0);
        }
        let blobs = self.blobs;
        let results: Vec<((Digest, u64), Result<bool, BlobError>)> =
            futures::stream::iter(tombstoned)
                .map(|(d, size)| async move {
                    let r = blobs.delete(&d).await;
                    ((d, size), r)
                })
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect()
                .await;
        let mut gone = Vec::with_capacity(results.len());
        let mut sizes = Vec::with_capacity(results.len());
        for ((d, size), r) in results {
            match r {
                // Already absent is fine: a crash after the bytes, before the row.
                Ok(_) => {
                    gone.push(d.clone());
                    sizes.push((d, size));
                }
                Err(e) => self.run.errors.push(format!("deleting blob {d}: {e}")),
            }
        }
        let n = self.meta.gc_forget(&gone).await? as usize;
        self.run.blobs_deleted += gone.len() as u64;
        self.run.blob_bytes += sizes.iter().map(|(_, s)| s).sum::<u64>();
        self.list(&sizes);
        Ok(n)
    }

    async fn dry(&mut self) -> Result<bool, GcError> {
        let pass = self.pass();
        let b = self.meta.gc_collect(&pass, 0, u32::MAX, true).await?;
        self.run.manifests_deleted = b.manifests_deleted;
        self.run.links_deleted = b.links_deleted;
        self.run.blobs_deleted = b.blobs.len() as u64;
        self.run.blob_bytes = b.blobs.iter().map(|(_, s)| s).sum();
        self.list(&b.blobs);
        let before = now_ms() - self.opts.upload_max_age.as_millis() as i64;
        self.run.uploads_purged = self.meta.uploads_stale(before, u32::MAX).await?.len() as u64;
        if self.opts.verify_storage {
            let known = self.known_blobs().await?;
            let mut list = self.blobs.list();
            while let Some(item) = list.next().await {
                match item {
                    Ok((d, size)) if !known.contains(&d) => {
                        self.run.orphans_deleted += 1;
                        self.run.orphan_bytes += size;
                    }
                    Ok(_) => {}
                    Err(e) => self.run.errors.push(format!("listing blob storage: {e}")),
                }
            }
        }
        Ok(true)
    }

    /// The sweep's parameters, with its grace period ending now.
    fn pass(&self) -> GcPass {
        let now = now_ms();
        GcPass {
            cutoff: now - self.opts.grace.as_millis() as i64,
            now,
            delete_untagged: self.opts.delete_untagged,
            referrers_follow_subject: self.opts.referrers_follow_subject,
        }
    }

    /// The digests of every blob the metadata knows.
    async fn known_blobs(&self) -> Result<HashSet<Digest>, GcError> {
        Ok(self
            .meta
            .all_blobs()
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    }

    /// Orphans in blob storage and abandoned upload data.
    async fn verify(&mut self) -> Result<bool, GcError> {
        let known = self.known_blobs().await?;
        let seen_before = now_ms() - self.opts.grace.as_millis() as i64;
        let mut list = self.blobs.list();
        let mut orphans = Vec::new();
        while let Some(item) = list.next().await {
            match item {
                Ok((d, size)) if !known.contains(&d) => orphans.push((d, size)),
                Ok(_) => {}
                Err(e) => {
                    self.run.errors.push(format!("listing blob storage: {e}"));
                    break;
                }
            }
        }
        drop(list);
        for (d, size) in orphans {
            if self.must_stop() {
                return Ok(false);
            }
            // Tombstoned in the store first, so that a concurrent upload of the same
            // digest waits instead of deduplicating onto bytes about to go.
            if self.meta.gc_orphan(&d, seen_before).await? {
                match self.blobs.delete(&d).await {
                    Ok(_) => {
                        self.meta.gc_forget(std::slice::from_ref(&d)).await?;
                        self.run.orphans_deleted += 1;
                        self.run.orphan_bytes += size;
                    }
                    Err(e) => self.run.errors.push(format!("deleting orphan {d}: {e}")),
                }
            }
        }
        let max_age = self.opts.upload_max_age.as_secs();
        let mut uploads = self.blobs.list_uploads();
        let mut abandoned = Vec::new();
        while let Some(item) = uploads.next().await {
            match item {
                Ok((id, age)) if age > max_age => abandoned.push(id),
                Ok(_) => {}
                Err(e) => {
                    self.run.errors.push(format!("listing upload data: {e}"));
                    break;
                }
            }
        }
        drop(uploads);
        for id in abandoned {
            // Untouched for longer than sessions live: its session (if any) is stale too.
            match self.blobs.upload_abort(&id, &UploadState::default()).await {
                Ok(()) => self.run.uploads_purged += 1,
                Err(e) => self
                    .run
                    .errors
                    .push(format!("aborting upload data {id}: {e}")),
            }
        }
        Ok(true)
    }
}

/// A cron expression (five fields, or six with seconds; `@daily` and friends).
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, GcError> {
    croner::Cron::from_str(expr.trim())
        .map_err(|e| GcError::Schedule(expr.to_string(), e.to_string()))
}

/// The first time `expr` fires strictly after `after_ms` (unix ms).
pub fn next_fire(expr: &str, after_ms: i64) -> Result<Option<i64>, GcError> {
    let cron = parse_schedule(expr)?;
    let Some(t) = chrono::DateTime::from_timestamp_millis(after_ms) else {
        return Ok(None);
    };
    Ok(cron
        .find_next_occurrence(&t, false)
        .ok()
        .map(|n| n.timestamp_millis()))
}

/// The scheduled GC of `berth serve`, an exclusive job (lease [`SCHEDULE_JOB`]: one
/// replica looks at the schedule): every `tick`, reads the schedule (the shared settings'
/// if set through the API, else `default_schedule`) and, when it has fired since the last
/// look and no run started since it fired, runs GC (the run's own lease, [`LEASE`], keeps
/// it from overlapping a `berth gc` or an on-demand run). `on_run` sees each outcome
/// (metrics). A run stops early when the job is cancelled (shutdown).
pub fn scheduled_job(
    registry: Arc<Registry>,
    default_schedule: Option<String>,
    opts: GcOptions,
    tick: Duration,
    on_run: impl Fn(&GcOutcome) + Send + Sync + 'static,
) -> BackgroundJob {
    let last_look = Arc::new(std::sync::Mutex::new(now_ms()));
    let on_run = Arc::new(on_run);
    BackgroundJob::new(SCHEDULE_JOB, tick, move |cancel| {
        let (registry, default_schedule, last_look, on_run) = (
            registry.clone(),
            default_schedule.clone(),
            last_look.clone(),
            on_run.clone(),
        );
        let opts = GcOptions {
            cancel,
            ..opts.clone()
        };
        async move {
            let last = *last_look.lock().unwrap_or_else(|e| e.into_inner());
            let (look, outcome) = schedule_tick(&registry, default_schedule, &opts, last).await;
            *last_look.lock().unwrap_or_else(|e| e.into_inner()) = look;
            if let Some(outcome) = outcome {
                on_run(&outcome);
            }
        }
    })
    .exclusive()
}

/// One look at the schedule (see [`scheduled_job`]): the new `last_look`, and the outcome
/// of the run if one ran.
async fn schedule_tick(
    registry: &Registry,
    default_schedule: Option<String>,
    opts: &GcOptions,
    last_look: i64,
) -> (i64, Option<GcOutcome>) {
    let meta = registry.meta().clone();
    let now = now_ms();
    let schedule = match meta.gc_settings().await {
        Ok(s) => s.schedule.or(default_schedule),
        Err(e) => {
            tracing::warn!(error = %e, "reading the GC schedule");
            return (last_look, None);
        }
    };
    let Some(expr) = schedule.filter(|s| !s.trim().is_empty()) else {
        return (now, None);
    };
    let fired = match next_fire(&expr, last_look) {
        Ok(Some(at)) if at <= now => at,
        Ok(_) => return (now, None),
        Err(e) => {
            tracing::warn!(error = %e, "the GC schedule does not parse; no scheduled GC");
            return (now, None);
        }
    };
    // Another replica may have run it already for this firing.
    match meta.gc_runs(1).await {
        Ok(runs) if runs.first().is_some_and(|r| r.started_at >= fired) => return (now, None),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "reading GC runs");
            return (now, None);
        }
    }
    match run(meta, registry.blobs().clone(), opts).await {
        Ok(outcome) => (now, Some(outcome)),
        Err(GcError::Busy(holder)) => {
            tracing::debug!(%holder, "scheduled GC skipped: another process runs it");
            (now, None)
        }
        Err(e) => {
            tracing::error!(error = %e, "scheduled GC failed");
            (now, None)
        }
    }
}

/// Follows the shared read-only flag of a read-only GC (set by whichever process runs
/// it) and makes `registry` refuse writes while it is set and the GC lease is held (a
/// flag left by a killed process lapses with its lease). A job of every replica (not
/// exclusive), looking `every` so often.
pub fn read_only_job(registry: Arc<Registry>, every: Duration) -> BackgroundJob {
    BackgroundJob::new("gc-read-only", every, move |_| {
        let registry = registry.clone();
        async move { follow_read_only(&registry).await }
    })
}

async fn follow_read_only(registry: &Registry) {
    let meta = registry.meta();
    match tokio::try_join!(meta.gc_settings(), meta.lease(LEASE)) {
        Ok((s, lease)) => registry.set_gc_read_only(
            s.read_only_since
                .filter(|_| lease.is_some_and(|l| l.live_at(now_ms())))
                .map(|since| {
                    format!(
                        "garbage collection is running in read-only mode since {} (run by {})",
                        rfc3339(since),
                        s.read_only_by.as_deref().unwrap_or("another replica")
                    )
                }),
        ),
        Err(e) => tracing::warn!(error = %e, "reading the GC read-only flag"),
    }
}
