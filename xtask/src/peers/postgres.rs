//! A throwaway PostgreSQL cluster (Debian `postgresql`): `initdb` into the state directory on
//! first use, listening only on 127.0.0.1, with role and database `registry` (password
//! `registry`). fsync is off: fast tests, not crash-safe. `initdb` and `postgres` refuse to
//! run as root, so as root the server runs as Debian's `postgres` system user.

use super::{output, port_busy, run, Env, Settings, Status};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const USER: &str = "registry";
const PASSWORD: &str = "registry";
const DATABASE: &str = "registry";

fn bindir() -> Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (Debian package postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, p)) => Ok(p),
        None => bail!("no initdb under /usr/lib/postgresql/*/bin (Debian package postgresql)"),
    }
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|u| u == "0")
}

/// A command run as the `postgres` user when xtask runs as root.
fn as_pg(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn paths(s: &Settings) -> Result<(PathBuf, PathBuf)> {
    let dir = s.dir(&format!("postgres-{}", s.pg_port))?;
    let data = dir.join("data");
    Ok((dir, data))
}

fn running(bin: &Path, data: &Path) -> bool {
    data.join("postmaster.pid").exists()
        && as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn url(s: &Settings) -> String {
    format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
        s.pg_port
    )
}

/// Someone else's server on the port that takes our credentials is as good as ours.
fn answers_as_ours(bin: &Path, s: &Settings) -> bool {
    Command::new(bin.join("psql"))
        .args(["-X", "-q", "-tAc", "select 1", "-d", &url(s)])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let bin = bindir()?;
    let (dir, data) = paths(s)?;
    let t = Instant::now();
    let mut status = Status::Running;
    if !running(&bin, &data) {
        if port_busy(s.pg_port) {
            if answers_as_ours(&bin, s) {
                env.push(("BERTH_TEST_PG_URL".into(), url(s)));
                return Ok(Status::Running);
            }
            bail!(
                "port {} is in use by another process; choose another with BERTH_PEERS_PG_PORT",
                s.pg_port
            );
        }
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        if !data.join("PG_VERSION").exists() {
            let pwfile = dir.join("pwfile");
            std::fs::write(&pwfile, PASSWORD)?;
            if is_root() {
                run(Command::new("chown").arg("postgres:postgres").arg(&pwfile))?;
            }
            let init = run(as_pg(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", USER, "-A", "scram-sha-256", "--auth-local=trust"])
                .args(["-E", "UTF8", "--locale=C.UTF-8"])
                .arg(format!("--pwfile={}", pwfile.display())));
            let _ = std::fs::remove_file(&pwfile);
            init?;
            let conf = format!(
                "\n# written by cargo xtask\nlisten_addresses = '127.0.0.1'\nport = {}\n\
                 unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
                 full_page_writes = off\nmax_connections = 200\n",
                s.pg_port,
                dir.display()
            );
            let path = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&path)?;
            text.push_str(&conf);
            std::fs::write(&path, text)?;
        }
        let log = dir.join("postgres.log");
        run(as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]))
        .with_context(|| super::tail(&log))?;
        status = Status::Started(t.elapsed());
    }
    let port = s.pg_port.to_string();
    let exists = output(
        as_pg(&bin.join("psql"))
            .arg("-h")
            .arg(&dir)
            .args(["-p", &port, "-U", USER, "-d", "postgres", "-X", "-tAc"])
            .arg(format!(
                "select 1 from pg_database where datname = '{DATABASE}'"
            )),
    )?;
    if exists != "1" {
        run(as_pg(&bin.join("createdb"))
            .arg("-h")
            .arg(&dir)
            .args(["-p", &port, "-U", USER, DATABASE]))?;
    }
    if let Status::Started(_) = status {
        status = Status::Started(t.elapsed());
    }
    env.push(("BERTH_TEST_PG_URL".into(), url(s)));
    Ok(status)
}

pub fn stop(s: &Settings) -> Result<Option<String>> {
    let data = s.state.join(format!("postgres-{}", s.pg_port)).join("data");
    if !data.join("postmaster.pid").exists() {
        return Ok(None);
    }
    let bin = bindir()?;
    if !running(&bin, &data) {
        return Ok(None);
    }
    run(as_pg(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-m", "fast", "-w", "stop"]))?;
    Ok(Some(format!(
        "127.0.0.1:{} ({})",
        s.pg_port,
        data.display()
    )))
}
