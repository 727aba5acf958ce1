//! The npm sigstore CLI (`@sigstore/cli`) and `@sigstore/mock`, which the signature tests use
//! to make real keyless sigstore bundles and attach them as referrers, offline: the tests
//! start `mock-sigstore.js` (a Fulcio and a Rekor on loopback) themselves. The versions are
//! pinned by `xtask/sigstore/package-lock.json` (the newest releases need Node 22); `npm
//! ci` installs them into the state directory, again only when the lock file changed.
//! Debian's `nodejs` and `npm` are installed when there is no `node`.

use super::{run, which, Env, Settings, Status};
use anyhow::{Context, Result};
use std::process::Command;
use std::time::Instant;

const FILES: &[&str] = &["package.json", "package-lock.json", "mock-sigstore.js"];

pub fn start(s: &Settings, env: &mut Env) -> Result<Status> {
    let t = Instant::now();
    if which("node").is_none() || which("npm").is_none() {
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "nodejs",
                "npm",
            ]))?;
    }
    let dir = s.dir("sigstore")?;
    let source = crate::root().join("xtask/sigstore");
    let lock = std::fs::read(source.join("package-lock.json"))
        .with_context(|| format!("reading {}", source.display()))?;
    let installed = std::fs::read(dir.join("installed.lock")).unwrap_or_default();
    for f in FILES {
        std::fs::copy(source.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
    }
    if installed != lock || !dir.join("node_modules/.bin/sigstore").exists() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--no-update-notifier"])
            .current_dir(&dir))?;
        std::fs::write(dir.join("installed.lock"), &lock)?;
    }
    env.push(("BERTH_TEST_SIGSTORE".into(), dir.display().to_string()));
    Ok(Status::Ready(t.elapsed()))
}

pub fn stop(_: &Settings) -> Result<Option<String>> {
    Ok(None)
}
