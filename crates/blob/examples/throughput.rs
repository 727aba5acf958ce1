//! Measures a store's push and pull throughput for one large blob, the numbers the
//! benchmark against CNCF Distribution depends on: a monolithic push (start, one append,
//! commit) and reads of the committed blob (the first may come from disk, the next from the
//! page cache).
//!
//! ```text
//! cargo run --release -p berth-blob --example throughput -- [fs|s3] [MiB] [chunk KiB]
//! ```
//!
//! `fs` works in a temporary directory (under `$TMPDIR`); `s3` reads the same
//! `BERTH_TEST_S3_*` variables as the S3 tests.

use anyhow::Context;
use berth_blob::conformance::{body, test_bytes};
use berth_blob::fs::FsBlobStore;
use berth_blob::s3::{S3BlobStore, S3Config};
use berth_blob::BlobStore;
use berth_oci::Digest;
use futures::StreamExt;
use std::time::Instant;

fn s3_from_env() -> anyhow::Result<S3BlobStore> {
    let var = |n: &str| std::env::var(n).with_context(|| format!("{n} is not set"));
    let endpoint = var("BERTH_TEST_S3_ENDPOINT")?;
    let cfg = S3Config {
        allow_http: endpoint.starts_with("http://"),
        endpoint: Some(endpoint),
        bucket: var("BERTH_TEST_S3_BUCKET")?,
        region: var("BERTH_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        access_key_id: Some(var("BERTH_TEST_S3_ACCESS_KEY")?),
        secret_access_key: Some(var("BERTH_TEST_S3_SECRET_KEY")?),
        path_style: true,
        prefix: format!("berth-bench/{}/", std::process::id()),
    };
    Ok(S3BlobStore::new(cfg)?)
}

fn rate(bytes: usize, secs: f64) -> String {
    format!("{:8.1} MiB/s", bytes as f64 / (1 << 20) as f64 / secs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map(String::as_str).unwrap_or("fs");
    let mib: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let chunk_kib: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let store: Box<dyn BlobStore> = match kind {
        "fs" => Box::new(FsBlobStore::open(dir.path().to_path_buf())?),
        "s3" => Box::new(s3_from_env()?),
        other => anyhow::bail!("unknown store {other}: fs or s3"),
    };
    let data = test_bytes(7, mib << 20);
    let digest = Digest::sha256_of(&data);
    println!(
        "{} store, {mib} MiB blob, {chunk_kib} KiB body chunks",
        store.kind()
    );

    for round in 0..3 {
        let id = format!("bench-{round}");
        let t = Instant::now();
        let state = store.upload_start(&id).await?;
        let (state, n) = store
            .upload_append(&id, &state, 0, body(&data, chunk_kib << 10))
            .await?;
        let appended = t.elapsed().as_secs_f64();
        store
            .upload_commit(&id, &state, n, &digest, berth_blob::Existing::Keep)
            .await?;
        let total = t.elapsed().as_secs_f64();
        println!(
            "push {round}: {} (append {} + commit {:.1} ms)",
            rate(data.len(), total),
            rate(data.len(), appended),
            (total - appended) * 1000.0
        );
        if round < 2 {
            store.delete(&digest).await?;
        }
    }

    for round in 0..3 {
        let t = Instant::now();
        let mut stream = store.get(&digest, None).await?.stream;
        let mut n = 0usize;
        while let Some(chunk) = stream.next().await {
            n += chunk?.len();
        }
        anyhow::ensure!(n == data.len(), "read {n} bytes");
        println!("read {round}: {}", rate(n, t.elapsed().as_secs_f64()));
    }
    store.delete(&digest).await?;
    Ok(())
}
