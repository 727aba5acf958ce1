//! The reference Notary (TUF) server, Debian `notary` 0.7, for Docker Content Trust tests:
//! TLS with a CA generated in the state directory (`openssl`; SANs localhost, 127.0.0.1,
//! ::1), memory storage (Debian's build has no sqlite driver, and mysql/postgres need
//! upstream migrations Debian does not ship) and the built-in local signer.

use super::{port_busy, run, which, Daemon, Env, Settings, Status};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn daemon(s: &Settings) -> Result<Daemon> {
    Daemon::new(s, &format!("notary-{}", s.notary_port), "notary-server")
}

/// A self-signed CA and a server certificate it signs, made once.
fn tls(dir: &Path) -> Result<PathBuf> {
    let tls = dir.join("tls");
    let ca = tls.join("ca.crt");
    if tls.join("server.crt").exists() && ca.exists() {
        return Ok(ca);
    }
    std::fs::create_dir_all(&tls)?;
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(&tls).args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=berth test notary CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=notary-server",
    ])?;
    std::fs::write(
        tls.join("ext.cnf"),
        "subjectAltName=DNS:localhost,DNS:notary-server,IP:127.0.0.1,IP:::1\n\
         extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "825",
        "-extfile",
        "ext.cnf",
    ])?;
    Ok(ca)
}

fn healthy(s: &Settings, ca: &Path) -> bool {
    super::http_answers(
        &format!("https://127.0.0.1:{}/_notary_server/health", s.notary_port),
        &["-f", "--cacert", &ca.display().to_string()],
    )
}

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let d = daemon(s)?;
    let ca = tls(&d.dir)?;
    env.push((
        "BERTH_TEST_NOTARY_URL".into(),
        format!("https://127.0.0.1:{}", s.notary_port),
    ));
    env.push(("BERTH_TEST_NOTARY_CA".into(), ca.display().to_string()));
    if d.pid().is_some() && healthy(s, &ca) {
        return Ok(Status::Running);
    }
    if port_busy(s.notary_port) {
        bail!(
            "port {} is in use by another process; choose another with BERTH_PEERS_NOTARY_PORT",
            s.notary_port
        );
    }
    let bin = which("notary-server").context("notary-server not found (Debian package notary)")?;
    let t = Instant::now();
    let config = d.dir.join("server.json");
    let tls = d.dir.join("tls");
    std::fs::write(
        &config,
        format!(
            r#"{{
  "server": {{"http_addr": "127.0.0.1:{}", "tls_key_file": "{}", "tls_cert_file": "{}"}},
  "trust_service": {{"type": "local"}},
  "storage": {{"backend": "memory"}},
  "logging": {{"level": "info"}}
}}
"#,
            s.notary_port,
            tls.join("server.key").display(),
            tls.join("server.crt").display()
        ),
    )?;
    d.start(
        Command::new(bin)
            .arg("-config")
            .arg(&config)
            .args(["-logf", "logfmt"]),
        Duration::from_secs(30),
        || healthy(s, &ca),
    )?;
    Ok(Status::Started(t.elapsed()))
}

pub fn stop(s: &Settings) -> Result<Option<String>> {
    let addr = format!("https://127.0.0.1:{}", s.notary_port);
    daemon(s)?.stop_at(Duration::from_secs(10), &addr)
}
