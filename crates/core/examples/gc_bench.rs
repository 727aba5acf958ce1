//! GC benchmark (BENCHMARKS.md, "Garbage collection"): registries of N blobs on SQLite and
//! the filesystem, 10% of them made garbage, and the time of the run that collects it; then
//! a fixed amount of garbage in registries of growing size; then push throughput with and
//! without an online GC running. In-process (the `Registry` service, no HTTP), so it
//! measures GC and the stores, not the network stack.
//!
//! `cargo run --release -p berth-core --example gc_bench -- 1000 10000 100000`

use berth_blob::fs::FsBlobStore;
use berth_blob::BlobStore;
use berth_core::gc::{self, GcOptions};
use berth_core::{Registry, RegistryConfig};
use berth_meta::prelude::*;
use berth_meta::SqliteMetaStore;
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Pushes one image of two unique blobs (config, layer) as `repo:tag`.
async fn push(reg: &Registry, repo: &RepoName, tag: &str) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut descs = Vec::new();
    for kind in ["config", "layer"] {
        let bytes = Bytes::from(format!("{kind} {n} {}", "x".repeat(64)));
        let d = Digest::sha256_of(&bytes);
        let len = bytes.len();
        let body = futures::stream::once(async move { Ok(bytes) }).boxed();
        reg.upload_monolithic(repo, &d, body, None)
            .await
            .expect("upload");
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.{}","digest":"{d}","size":{len}}}"#,
            if kind == "config" {
                "config.v1+json"
            } else {
                "layer.v1.tar"
            }
        ));
    }
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        descs[0], descs[1]
    );
    reg.manifest_put(
        repo,
        &Reference::Tag(Tag::parse(tag).expect("tag")),
        Some("application/vnd.oci.image.manifest.v1+json"),
        Bytes::from(m),
    )
    .await
    .expect("manifest");
}

/// Pushes `images` images into 100 repositories with 32 pushes in flight.
async fn populate(reg: &Arc<Registry>, images: u64, prefix: &str) -> Duration {
    let t = Instant::now();
    futures::stream::iter(0..images)
        .map(|i| {
            let reg = reg.clone();
            let repo = RepoName::parse(&format!("bench/{prefix}{}", i % 100)).expect("repo");
            async move { push(&reg, &repo, &format!("t{i}")).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    t.elapsed()
}

fn opts() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        holder: "bench".into(),
        read_only_settle: Duration::ZERO,
        // The tables measure the work itself; the throughput run below uses the default
        // pace, as `berth serve` and `berth gc` do.
        pace: 1.0,
        ..GcOptions::default()
    }
}

async fn open(dir: &std::path::Path) -> Arc<Registry> {
    let meta: Arc<dyn MetaStore> = Arc::new(
        SqliteMetaStore::open(&dir.join("meta.db"))
            .await
            .expect("sqlite"),
    );
    let blobs: Arc<dyn BlobStore> =
        Arc::new(FsBlobStore::open(dir.join("blobs")).expect("fs blobs"));
    Arc::new(Registry::new(meta, blobs, RegistryConfig::default()))
}

/// Untags `images` images pushed by `populate` (tags `t0..`), round-robin over repositories.
async fn untag(reg: &Registry, images: u64, prefix: &str) {
    for i in 0..images {
        let repo = RepoName::parse(&format!("bench/{prefix}{}", i % 100)).expect("repo");
        reg.manifest_delete(
            &repo,
            &Reference::Tag(Tag::parse(&format!("t{i}")).expect("tag")),
        )
        .await
        .expect("untag");
    }
}

async fn gc_time(reg: &Registry) -> (Duration, u64) {
    let t = Instant::now();
    let out = gc::run(reg.meta().clone(), reg.blobs().clone(), &opts())
        .await
        .expect("gc");
    (t.elapsed(), out.run.blobs_deleted)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("blob counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    println!("| blobs | populate | first GC (examines everything) | 10% garbage: GC time | deleted | fixed 1,000 garbage blobs: GC time |");
    println!("|---|---|---|---|---|---|");
    for &blobs in &sizes {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let reg = open(dir.path()).await;
        let images = blobs / 2;
        let pop = populate(&reg, images, "r").await;
        let (first, _) = gc_time(&reg).await;
        untag(&reg, images / 10, "r").await;
        let (ten, deleted) = gc_time(&reg).await;
        // A fixed amount of garbage, three times: 500 more images pushed and untagged.
        let mut fixed = Vec::new();
        for round in 0..3 {
            let prefix = format!("g{round}-");
            populate(&reg, 500, &prefix).await;
            gc_time(&reg).await;
            untag(&reg, 500, &prefix).await;
            let (t, n) = gc_time(&reg).await;
            assert_eq!(n, 1000, "the fixed garbage is 1,000 blobs");
            fixed.push(format!("{:.3}", t.as_secs_f64()));
        }
        println!(
            "| {blobs} | {:.1} s | {:.2} s | {:.3} s | {deleted} | {} s |",
            pop.as_secs_f64(),
            first.as_secs_f64(),
            ten.as_secs_f64(),
            fixed.join(" / ")
        );
    }
    // Push throughput with and without an online GC running beside it: 8,000 garbage
    // blobs (4,000 untagged images) are there for it to collect.
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let reg = open(dir.path()).await;
    populate(&reg, 4000, "w").await;
    gc_time(&reg).await;
    untag(&reg, 4000, "w").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alone = populate(&reg, 2000, "p").await;
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (reg, stop) = (reg.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut runs, mut deleted) = (0u32, 0u64);
            let opts = GcOptions {
                grace: Duration::from_secs(1),
                batch: 100,
                pace: GcOptions::default().pace,
                ..opts()
            };
            while !stop.load(Ordering::Relaxed) {
                let out = gc::run(reg.meta().clone(), reg.blobs().clone(), &opts)
                    .await
                    .expect("gc");
                runs += 1;
                deleted += out.run.blobs_deleted;
            }
            (runs, deleted)
        })
    };
    let during = populate(&reg, 2000, "q").await;
    stop.store(true, Ordering::Relaxed);
    let (runs, deleted) = collector.await.expect("collector");
    println!();
    println!(
        "push throughput (2,000 images = 4,000 blobs + 2,000 manifests, 32 in flight): alone {:.0} images/s; with online GC running ({runs} runs, {deleted} blobs deleted meanwhile) {:.0} images/s ({:+.0}%)",
        2000.0 / alone.as_secs_f64(),
        2000.0 / during.as_secs_f64(),
        (alone.as_secs_f64() / during.as_secs_f64() - 1.0) * 100.0
    );
}
