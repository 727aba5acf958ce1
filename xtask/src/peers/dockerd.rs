//! A private Docker engine (Debian `docker.io`) on its own socket, data root, exec root and
//! pid file, so it runs beside any other engine on the machine. No iptables and no bridge:
//! containers need `--network none` or `--network host`. Registries on 127.0.0.0/8 are
//! insecure registries by default, so plain-http pushes to a test registry work.

use super::{wait_until, which, Daemon, Env, Settings, Status};
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn daemon(s: &Settings) -> Result<Daemon> {
    Daemon::new(s, "dockerd", "dockerd")
}

fn host(s: &Settings) -> String {
    format!("unix://{}", s.dockerd_sock.display())
}

fn api_up(s: &Settings) -> bool {
    Command::new("docker")
        .args(["-H", &host(s), "version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let d = daemon(s)?;
    env.push(("DOCKER_HOST".into(), host(s)));
    if api_up(s) {
        return Ok(Status::Running);
    }
    if d.pid().is_some() {
        // Started but not answering yet (a previous run still starting): wait for it.
        if wait_until(Duration::from_secs(60), || api_up(s)) {
            return Ok(Status::Running);
        }
        bail!(
            "dockerd is running but its API does not answer; {}",
            super::tail(&d.log())
        );
    }
    let dockerd = which("dockerd").context("dockerd not found (Debian package docker.io)")?;
    let t = Instant::now();
    if let Some(parent) = s.dockerd_sock.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&s.dockerd_sock);
    d.start(
        Command::new(dockerd)
            .arg("--host")
            .arg(host(s))
            .arg("--data-root")
            .arg(d.dir.join("root"))
            .arg("--exec-root")
            .arg(d.dir.join("exec"))
            .arg("--pidfile")
            .arg(d.dir.join("dockerd.pid"))
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"]),
        Duration::from_secs(60),
        || api_up(s),
    )?;
    Ok(Status::Started(t.elapsed()))
}

pub fn stop(s: &Settings) -> Result<Option<String>> {
    let d = daemon(s)?;
    let stopped = d.stop(Duration::from_secs(30))?;
    if stopped.is_some() {
        let _ = std::fs::remove_file(&s.dockerd_sock);
    }
    Ok(stopped.map(|pid| format!("pid {pid}, {}", host(s))))
}
