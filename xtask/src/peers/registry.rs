//! The reference registry: CNCF Distribution (Debian `docker-registry`) on 127.0.0.1 with
//! filesystem storage in the state directory and deletes enabled, for tests that compare
//! Berth's answers with the reference implementation's.

use super::{http_answers, port_busy, which, Daemon, Env, Settings, Status};
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

fn daemon(s: &Settings) -> Result<Daemon> {
    Daemon::new(
        s,
        &format!("registry-{}", s.registry_port),
        "docker-registry",
    )
}

fn url(s: &Settings) -> String {
    format!("http://127.0.0.1:{}/v2/", s.registry_port)
}

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let d = daemon(s)?;
    env.push((
        "BERTH_TEST_REFERENCE_REGISTRY".into(),
        format!("127.0.0.1:{}", s.registry_port),
    ));
    if d.pid().is_some() && http_answers(&url(s), &[]) {
        return Ok(Status::Running);
    }
    if port_busy(s.registry_port) {
        bail!(
            "port {} is in use by another process; choose another with BERTH_PEERS_REGISTRY_PORT",
            s.registry_port
        );
    }
    let bin = which("docker-registry")
        .context("docker-registry not found (Debian package docker-registry)")?;
    let t = Instant::now();
    let config = d.dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
            d.dir.join("data").display(),
            s.registry_port
        ),
    )?;
    // Distribution's S3 driver panics when AWS_CA_BUNDLE is set; keep it out in any case.
    d.start(
        Command::new(bin)
            .arg("serve")
            .arg(&config)
            .env_remove("AWS_CA_BUNDLE"),
        Duration::from_secs(30),
        || http_answers(&url(s), &[]),
    )?;
    Ok(Status::Started(t.elapsed()))
}

pub fn stop(s: &Settings) -> Result<Option<String>> {
    let addr = format!("127.0.0.1:{}", s.registry_port);
    daemon(s)?.stop_at(Duration::from_secs(10), &addr)
}
