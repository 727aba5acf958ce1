//! The `crane` CLI (google/go-containerregistry), which the crane end-to-end tests drive.
//! Debian ships its Go source (`golang-github-google-go-containerregistry-dev`, in
//! bookworm-backports with a Go new enough to build it); xtask compiles it once, in GOPATH
//! mode over `/usr/share/gocode`, into the state directory. Nothing but Debian packages is
//! downloaded. A `crane` already on PATH is used as it is.

use super::{output, run, which, Env, Settings, Status};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SOURCE: &str = "/usr/share/gocode/src/github.com/google/go-containerregistry/cmd/crane";
const PACKAGES: &[&str] = &[
    "golang-1.23-go",
    "golang-github-google-go-containerregistry-dev",
];

/// The newest Debian Go toolchain (`/usr/lib/go-1.N/bin/go`).
fn go() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let minor = name.strip_prefix("go-1.")?.parse().ok()?;
            let bin = e.path().join("bin/go");
            bin.exists().then_some((minor, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .filter(|(minor, _)| *minor >= 21)
        .map(|(_, p)| p)
}

/// Adds bookworm-backports (from the Debian mirror apt already uses) when apt lacks it.
fn ensure_backports() -> Result<()> {
    let policy = output(Command::new("apt-cache").arg("policy"))?;
    if policy.contains("bookworm-backports") {
        return Ok(());
    }
    let mut uri = None;
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            uri = uri.or_else(|| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("URIs:"))
                    .flat_map(str::split_whitespace)
                    .find(|u| u.trim_end_matches('/').ends_with("/debian"))
                    .map(str::to_string)
            });
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    uri = uri.or_else(|| {
        list.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| {
                w.len() > 1 && w[0] == "deb" && w[1].trim_end_matches('/').ends_with("/debian")
            })
            .map(|w| w[1].to_string())
    });
    let Some(uri) = uri else {
        bail!("cannot find the Debian mirror in the apt sources to add bookworm-backports");
    };
    std::fs::write(
        "/etc/apt/sources.list.d/berth-backports.sources",
        format!(
            "Types: deb\nURIs: {uri}\nSuites: bookworm-backports\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )?;
    run(Command::new("apt-get").args(["update", "-qq"]))
}

fn build(dir: &Path, bin: &Path) -> Result<()> {
    if !Path::new(SOURCE).is_dir() || go().is_none() {
        ensure_backports()?;
        eprintln!(
            "xtask: installing {} from bookworm-backports",
            PACKAGES.join(" ")
        );
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "-t", "bookworm-backports"])
            .args(PACKAGES))?;
    }
    let go = go().context("no Go toolchain >= 1.21 under /usr/lib/go-1.*")?;
    eprintln!("xtask: building crane with {}", go.display());
    let tmp = bin.with_extension("tmp");
    run(Command::new(go)
        .args(["build", "-o"])
        .arg(&tmp)
        .arg("github.com/google/go-containerregistry/cmd/crane")
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env(
            "GOPATH",
            format!("{}:/usr/share/gocode", dir.join("gopath").display()),
        )
        .env("GOCACHE", dir.join("gocache")))?;
    std::fs::rename(&tmp, bin)?;
    Ok(())
}

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let t = Instant::now();
    let bin = match which("crane") {
        Some(p) => p,
        None => {
            let dir = s.dir("crane")?;
            let bin = dir.join("crane");
            if !bin.exists() {
                build(&dir, &bin)?;
            }
            bin
        }
    };
    env.push(("BERTH_TEST_CRANE".into(), bin.display().to_string()));
    Ok(Status::Ready(t.elapsed()))
}

pub fn stop(_: &Settings) -> Result<Option<String>> {
    Ok(None)
}
