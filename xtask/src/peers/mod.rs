//! The peer services the tests talk to, started from this repository's own code: one module
//! per peer, each with a `start` that reuses a live instance (idempotent) and a `stop` that
//! ends only what xtask itself started (everything it starts lives under the state directory,
//! with its pid, data and log).
//!
//! Where things go, with the environment variables that move them:
//!
//! | peer | default | variable |
//! |---|---|---|
//! | state directory (data, logs, pids, the crane build) | `/var/tmp/berth-peers` | `BERTH_PEERS_STATE` |
//! | PostgreSQL | `127.0.0.1:15432` | `BERTH_PEERS_PG_PORT` |
//! | S3 (SeaweedFS; also uses PORT+1..+5 and PORT+11..+15) | `127.0.0.1:19000` | `BERTH_PEERS_S3_PORT` |
//! | Docker engine | `STATE/dockerd/docker.sock` | `BERTH_PEERS_DOCKERD_SOCK` |
//! | reference registry (Distribution) | `127.0.0.1:15000` | `BERTH_PEERS_REGISTRY_PORT` |
//! | reference notary-server (TLS) | `127.0.0.1:14443` | `BERTH_PEERS_NOTARY_PORT` |
//! | the npm sigstore CLI and mock (installed, not started) | `STATE/sigstore` | - |
//!
//! slapd is not started here: each LDAP test starts its own (fresh data, free port) through
//! `berth-testkit`; xtask only installs it.

mod crane;
mod dockerd;
mod notary;
mod postgres;
mod registry;
mod s3;
mod sigstore;

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the peers listen and keep their state.
pub struct Settings {
    pub state: PathBuf,
    pub pg_port: u16,
    pub s3_port: u16,
    pub registry_port: u16,
    pub notary_port: u16,
    pub dockerd_sock: PathBuf,
}

fn port_var(name: &str, default: u16) -> Result<u16> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    pub fn from_env() -> Result<Settings> {
        let state = std::env::var_os("BERTH_PEERS_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-peers"));
        let dockerd_sock = std::env::var_os("BERTH_PEERS_DOCKERD_SOCK")
            .map(PathBuf::from)
            .unwrap_or_else(|| state.join("dockerd/docker.sock"));
        Ok(Settings {
            pg_port: port_var("BERTH_PEERS_PG_PORT", 15432)?,
            s3_port: port_var("BERTH_PEERS_S3_PORT", 19000)?,
            registry_port: port_var("BERTH_PEERS_REGISTRY_PORT", 15000)?,
            notary_port: port_var("BERTH_PEERS_NOTARY_PORT", 14443)?,
            dockerd_sock,
            state,
        })
    }

    /// The directory of one peer, created on first use.
    fn dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.state.join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }
}

/// What `start` found.
pub enum Status {
    /// Started by this call, in this long.
    Started(Duration),
    /// Already running (started earlier by xtask, or another server answering the same way).
    Running,
    /// Nothing to run (a tool that was built or found).
    Ready(Duration),
}

/// The environment the tests read, in the order it was produced.
pub type Env = Vec<(String, String)>;

struct Peer {
    name: &'static str,
    start: fn(&Settings, &mut Env) -> Result<Status>,
    /// Stops the peer if xtask started it (a live pid under the state directory); returns
    /// what it stopped.
    stop: fn(&Settings) -> Result<Option<String>>,
}

const PEERS: &[Peer] = &[
    Peer {
        name: "postgresql",
        start: postgres::start,
        stop: postgres::stop,
    },
    Peer {
        name: "s3 (seaweedfs)",
        start: s3::start,
        stop: s3::stop,
    },
    Peer {
        name: "dockerd",
        start: dockerd::start,
        stop: dockerd::stop,
    },
    Peer {
        name: "crane",
        start: crane::start,
        stop: crane::stop,
    },
    Peer {
        name: "registry (distribution)",
        start: registry::start,
        stop: registry::stop,
    },
    Peer {
        name: "notary-server",
        start: notary::start,
        stop: notary::stop,
    },
    Peer {
        name: "sigstore (npm)",
        start: sigstore::start,
        stop: sigstore::stop,
    },
];

/// The peers started by one `start_all`, so that `ci` stops exactly those.
#[derive(Default)]
pub struct Started {
    names: Vec<&'static str>,
    /// Found running: never stopped by `ci`.
    pub reused: Vec<&'static str>,
}

/// Starts every peer (reusing live ones) and returns the test environment; `started`
/// records which peers this call started, also when it fails half-way.
pub fn start_all(s: &Settings, started: &mut Started) -> Result<Env> {
    let mut env = Env::new();
    for p in PEERS {
        match (p.start)(s, &mut env).with_context(|| format!("starting {}", p.name))? {
            Status::Started(t) => {
                eprintln!("xtask: started {} in {:.1} s", p.name, t.as_secs_f64());
                started.names.push(p.name);
            }
            Status::Running => {
                eprintln!("xtask: {} already running, reused", p.name);
                started.reused.push(p.name);
            }
            Status::Ready(t) => eprintln!("xtask: {} ready in {:.1} s", p.name, t.as_secs_f64()),
        }
    }
    Ok(env)
}

/// Stops the peers `started` names (or every peer xtask runs when `started` is `None`), and
/// returns one line per stopped peer.
pub fn stop(s: &Settings, started: Option<&Started>) -> Vec<String> {
    let mut lines = vec![];
    for p in PEERS.iter().rev() {
        if let Some(st) = started {
            if !st.names.contains(&p.name) {
                continue;
            }
        }
        match (p.stop)(s) {
            Ok(Some(what)) => lines.push(format!("stopped {}: {what}", p.name)),
            Ok(None) => {}
            Err(e) => lines.push(format!("could not stop {}: {e:#}", p.name)),
        }
    }
    lines
}

// ---- helpers shared by the peers ----

pub fn run(cmd: &mut Command) -> Result<()> {
    checked(cmd, true).map(drop)
}

/// What `cmd` printed on standard output, trimmed.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = checked(cmd, false)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `cmd` without input; a failure names it, its exit status and what it printed on
/// standard error (and standard output too with `with_stdout`).
fn checked(cmd: &mut Command, with_stdout: bool) -> Result<std::process::Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        let stdout = if with_stdout { &out.stdout[..] } else { &[] };
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_busy(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Polls `ok` every 250 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ok() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    format!(
        "last lines of {}:\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

/// `curl` answered with any HTTP status (the server is up).
pub fn http_answers(url: &str, extra: &[&str]) -> bool {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", "2"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A long-running process that xtask starts in its own process group (so it outlives
/// xtask and a Ctrl-C of the test run), with its pid and log in `dir`.
pub struct Daemon {
    pub dir: PathBuf,
    /// Name of the executable, looked for in `/proc/PID/cmdline` so a recycled pid is
    /// never signalled.
    pub exe: &'static str,
}

impl Daemon {
    /// A daemon running `exe` whose pid, log and data live in `STATE/dir`.
    pub fn new(s: &Settings, dir: &str, exe: &'static str) -> Result<Daemon> {
        Ok(Daemon {
            dir: s.dir(dir)?,
            exe,
        })
    }

    /// [`Daemon::stop`], saying what was stopped: its pid and `addr`.
    pub fn stop_at(&self, grace: Duration, addr: &str) -> Result<Option<String>> {
        Ok(self.stop(grace)?.map(|pid| format!("pid {pid}, {addr}")))
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }

    /// The pid of the live process this daemon started, if any.
    pub fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit(')').next()?.trim_start().chars().next()?;
        if state == 'Z' || state == 'X' {
            return None;
        }
        // The whole command line, not argv[0]: a wrapper (a pyenv shim) may still be
        // executing before it `exec`s the program.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(self.exe)
            .then_some(pid)
    }

    /// Starts `cmd` and waits until `up` holds; fails at once if the process exits first.
    pub fn start(
        &self,
        cmd: &mut Command,
        timeout: Duration,
        mut up: impl FnMut() -> bool,
    ) -> Result<()> {
        let log = File::create(self.log())?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        std::fs::write(self.pid_file(), child.id().to_string())?;
        let mut exited = None;
        let ok = wait_until(timeout, || {
            if let Ok(Some(st)) = child.try_wait() {
                exited = Some(st);
                return true;
            }
            up()
        });
        if let Some(st) = exited {
            bail!("{} exited ({st}); {}", self.exe, tail(&self.log()));
        }
        if !ok {
            bail!(
                "{} did not come up within {} s; {}",
                self.exe,
                timeout.as_secs(),
                tail(&self.log())
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns the pid it stopped.
    pub fn stop(&self, grace: Duration) -> Result<Option<u32>> {
        let Some(pid) = self.pid() else {
            let _ = std::fs::remove_file(self.pid_file());
            return Ok(None);
        };
        run(Command::new("kill").arg(pid.to_string()))?;
        if !wait_until(grace, || self.pid().is_none()) {
            let _ = run(Command::new("kill").args(["-KILL", &pid.to_string()]));
            wait_until(Duration::from_secs(5), || self.pid().is_none());
        }
        let _ = std::fs::remove_file(self.pid_file());
        Ok(Some(pid))
    }
}

/// The first executable named `bin` on PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
