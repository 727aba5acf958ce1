//! `berth gc`: garbage collection from the command line, on the same stores as `berth
//! serve` (and while it serves: the lease keeps runs to one at a time), and `--status`,
//! the last runs and who holds the lease.

use crate::config::{parse_duration, Config};
use anyhow::Context;
use berth_blob::BlobStore;
use berth_core::gc::{self, rfc3339, GcError, GcMode};
use berth_meta::{GcRun, MetaStore};
use std::sync::Arc;

/// Flags of `berth gc`; each overrides the `[gc]` setting of the configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GcFlags {
    /// Keep unreferenced blobs and untagged manifests younger than this (`0s`: none).
    #[arg(long)]
    pub grace: Option<String>,
    /// Report what would be deleted and how many bytes; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `online` (no pause) or `read-only` (every replica refuses writes meanwhile).
    #[arg(long)]
    pub mode: Option<String>,
    /// Also list blob storage for files metadata does not know and remove those older
    /// than the grace period (slow: reads the whole listing).
    #[arg(long)]
    pub verify_storage: bool,
    /// Stop cleanly after this long; the next run continues.
    #[arg(long)]
    pub max_duration: Option<String>,
    /// Online runs: the share of wall time the sweep works (1: as fast as it can).
    #[arg(long)]
    pub pace: Option<f64>,
    /// Show the last runs and whether GC is running, instead of running it.
    #[arg(long)]
    pub status: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("berth-gc@{host}:{}", std::process::id())
}

/// Runs `berth gc`; the process exit code.
pub async fn run(
    cfg: &Config,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    flags: GcFlags,
) -> anyhow::Result<i32> {
    if flags.status {
        status(meta.as_ref(), flags.json).await?;
        return Ok(0);
    }
    let mut opts = cfg.gc.options()?;
    if let Some(g) = &flags.grace {
        opts.grace = parse_duration(g).context("--grace")?;
    }
    if let Some(m) = &flags.mode {
        opts.mode = m.parse::<GcMode>().map_err(anyhow::Error::msg)?;
    }
    if let Some(m) = &flags.max_duration {
        opts.max_duration = Some(parse_duration(m).context("--max-duration")?);
    }
    if let Some(p) = flags.pace {
        opts.pace = crate::config::check_pace(p).context("--pace")?;
    }
    opts.dry_run = flags.dry_run;
    opts.verify_storage = flags.verify_storage;
    opts.holder = holder();
    opts.started_by = "cli".into();
    // SIGTERM or SIGINT stops the run as its maximum duration would: the batch in hand
    // finishes, the run is recorded `stopped`, a read-only run lifts read-only mode, the
    // lease is released, and the next run goes on from there.
    let cancel = opts.cancel.clone();
    let on_signal = tokio::spawn(async move {
        crate::shutdown_signal().await;
        eprintln!("signal received: stopping the garbage collection run cleanly");
        cancel.cancel();
    });
    let result = gc::run(meta, blobs, &opts).await;
    on_signal.abort();
    let outcome = match result {
        Ok(o) => o,
        Err(GcError::Busy(h)) => {
            eprintln!("garbage collection is already running ({h} holds it)");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    if flags.json {
        let listed: Vec<_> = outcome
            .blobs
            .iter()
            .map(|(d, s)| serde_json::json!({ "digest": d.to_string(), "size": s }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "run": outcome.run, "blobs": listed })
        );
    } else {
        if flags.dry_run {
            for (d, size) in &outcome.blobs {
                println!("would delete {d} ({size} bytes)");
            }
        }
        print_run(&outcome.run);
    }
    Ok(match outcome.run.status.as_str() {
        "finished" | "stopped" => 0,
        _ => 1,
    })
}

fn print_run(r: &GcRun) {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "gc run {} {} ({} mode{}): {} {} manifests, {} links, {} blobs ({} bytes), {} uploads, {} orphans ({} bytes); started {}{}",
        r.id,
        r.status,
        r.mode,
        if r.dry_run { ", dry run" } else { "" },
        verb,
        r.manifests_deleted,
        r.links_deleted,
        r.blobs_deleted,
        r.blob_bytes,
        r.uploads_purged,
        r.orphans_deleted,
        r.orphan_bytes,
        rfc3339(r.started_at),
        r.finished_at
            .map(|f| format!(", took {:.1}s", (f - r.started_at) as f64 / 1000.0))
            .unwrap_or_default(),
    );
    for e in &r.errors {
        println!("  error: {e}");
    }
}

async fn status(meta: &dyn MetaStore, json: bool) -> anyhow::Result<()> {
    let runs = meta.gc_runs(20).await?;
    let leases = meta.leases().await?;
    let settings = meta.gc_settings().await?;
    let now = gc::now_ms();
    let running = leases
        .iter()
        .find(|l| l.name == gc::LEASE && l.live_at(now));
    // The other background jobs' leases: which replica runs each scheduled job.
    let jobs: Vec<_> = leases
        .iter()
        .filter(|l| l.name != gc::LEASE && l.live_at(now))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "running": running.is_some(),
                "holder": running.map(|l| l.holder.clone()),
                "since": running.map(|l| l.acquired_at),
                "read_only_since": settings.read_only_since,
                "schedule": settings.schedule,
                "jobs": jobs,
                "runs": runs,
            })
        );
        return Ok(());
    }
    match running {
        Some(l) => println!(
            "garbage collection is running: {} since {}",
            l.holder,
            rfc3339(l.acquired_at)
        ),
        None => println!("garbage collection is not running"),
    }
    if let Some(since) = settings.read_only_since {
        println!("the registry is read-only for GC since {}", rfc3339(since));
    }
    if let Some(s) = &settings.schedule {
        println!("schedule (set through the API): {s}");
    }
    for l in &jobs {
        println!(
            "job {} runs on {} (lease until {})",
            l.name,
            l.holder,
            rfc3339(l.expires_at)
        );
    }
    for r in &runs {
        print_run(r);
    }
    Ok(())
}
