//! Unmodified registry clients (docker, skopeo, podman, buildah, crane, oras through
//! python) run with isolated configuration, and the tools and variables they need.
//!
//! A test that needs a service or a client that is missing fails with a message saying
//! what to install or which variable to set; nothing here skips.

use crate::images::{find_digest, unique, Image, OciLayout};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Default limit for one client command: generous for a loaded 2-core machine, short
/// enough that a hung client fails the test instead of the whole suite.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

// Environment and tools
// ---------------------------------------------------------------------------------------

/// Reads a variable the suite needs; a missing one fails the test with how to get it.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "environment variable {name} is not set: this end-to-end test needs it. \
             Run the suite with `cargo xtask ci`, or `eval \"$(cargo xtask peers)\"` first"
        ),
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Absolute path of a client binary; fails the test when it is not installed.
pub fn require_tool(bin: &str, how: &str) -> PathBuf {
    on_path(bin).unwrap_or_else(|| panic!("`{bin}` is not installed (not on PATH): {how}"))
}

pub fn crane_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_TEST_CRANE") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BERTH_TEST_CRANE={} does not exist",
            p.display()
        );
        return p;
    }
    require_tool(
        "crane",
        "set BERTH_TEST_CRANE to the crane binary (`eval \"$(cargo xtask peers)\"` builds one and sets it)",
    )
}

/// The interpreter behind `python3`, resolved once with the real HOME: pyenv shims find
/// their interpreter through HOME, which isolated client runs replace.
pub fn python3_bin() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let py = require_tool("python3", "install Debian package python3");
        let out = run_ok(
            Command::new(&py).args(["-c", "import sys; print(sys.executable)"]),
            Duration::from_secs(60),
        );
        PathBuf::from(out.stdout.trim())
    })
    .clone()
}

// ---------------------------------------------------------------------------------------
// Running client commands
// ---------------------------------------------------------------------------------------

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (in its own process group, stdin closed) and kills the whole group when it
/// outlives `timeout`; then fails the test with everything the command printed.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_input(cmd, None, timeout)
}

/// [`run`] with `input` written to the command's standard input (then closed): how
/// passwords reach `--password-stdin`.
pub fn run_input(cmd: &mut Command, input: Option<&str>, timeout: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let desc = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A client that exits without reading its input is judged by its output below.
        let _ = stdin.write_all(text.as_bytes());
    }
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for a child") {
            break st;
        }
        if Instant::now() > deadline {
            timed_out = true;
            kill_group(&mut child);
            break child.wait().expect("waiting for a killed child");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // A grandchild may still hold the pipes; the group kill above covers the timeout case.
    let stdout = String::from_utf8_lossy(&to.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&te.join().unwrap_or_default()).into_owned();
    if timed_out {
        panic!("{desc}\ntimed out after {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Like [`run`], and fails the test (printing the output) unless the command exits 0.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    run_input_ok(cmd, None, timeout)
}

/// Like [`run_input`], and fails the test unless the command exits 0.
pub fn run_input_ok(cmd: &mut Command, input: Option<&str>, timeout: Duration) -> Output {
    let desc = describe(cmd);
    let out = run_input(cmd, input, timeout);
    if !out.status.success() {
        panic!(
            "{desc}\nfailed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status, out.stdout, out.stderr
        );
    }
    out
}

fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
}

fn describe(cmd: &Command) -> String {
    let mut s = String::from("`");
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s.push('`');
    s
}

/// A private HOME, config and runtime directories for one test's clients, so they never
/// read or write the machine's credentials or container storage.
pub struct ClientEnv {
    pub dir: tempfile::TempDir,
}

impl Default for ClientEnv {
    fn default() -> ClientEnv {
        ClientEnv::new()
    }
}

impl ClientEnv {
    pub fn new() -> ClientEnv {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-client-")
            .tempdir()
            .expect("tempdir");
        for sub in [
            "home",
            "docker",
            "config",
            "data",
            "cache",
            "run",
            "tmp",
            "storage",
            "storage-run",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        std::fs::write(
            dir.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("auth.json"), r#"{"auths":{}}"#).expect("write");
        // Docker keeps logins in DOCKER_CONFIG/config.json unless a credential store is
        // named; naming none keeps them in this directory, where tests can read them.
        std::fs::write(dir.path().join("docker/config.json"), r#"{"auths":{}}"#).expect("write");
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("write");
        ClientEnv { dir }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// A new OCI image layout at `sub` holding each of `images` under its tag.
    pub fn image_layout(&self, sub: &str, images: &[(&Image, &str)]) -> PathBuf {
        let dir = self.path(sub);
        let mut layout = OciLayout::new(&dir);
        for (image, tag) in images {
            layout.add_image(image, tag);
        }
        dir
    }

    /// A command for `program` with this environment applied.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("HOME", self.path("home"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TMPDIR", self.path("tmp"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        c
    }

    /// `docker` against the private engine named by DOCKER_HOST.
    pub fn docker(&self) -> Command {
        let host = require_env("DOCKER_HOST");
        let bin = require_tool(
            "docker",
            "install Debian package docker.io and start an engine with `eval \"$(cargo xtask peers)\"`",
        );
        let mut c = self.cmd(bin);
        c.env("DOCKER_HOST", host);
        c
    }

    pub fn skopeo(&self) -> Command {
        let mut c = self.cmd(require_tool("skopeo", "install Debian package skopeo"));
        c.arg("--policy").arg(self.path("policy.json"));
        c
    }

    /// podman or buildah (same storage flags) on vfs storage inside this environment.
    pub fn containers_tool(&self, bin: &str) -> Command {
        let mut c = self.cmd(require_tool(bin, &format!("install Debian package {bin}")));
        c.arg("--root")
            .arg(self.path("storage"))
            .arg("--runroot")
            .arg(self.path("storage-run"))
            .args(["--storage-driver", "vfs"]);
        c
    }

    pub fn crane(&self) -> Command {
        self.cmd(crane_bin())
    }

    /// `python3 SCRIPT` with the isolated environment.
    pub fn python(&self, script: &str) -> Command {
        let path = self.path(&format!("script-{}.py", unique()));
        std::fs::write(&path, script).expect("write script");
        let mut c = self.cmd(python3_bin());
        c.arg(path);
        c
    }

    /// `python3 SCRIPT` with `BERTH_USER` and `BERTH_PASSWORD` in its environment (not on
    /// its command line), for scripts that give the oras client username and password.
    pub fn python_as(&self, script: &str, user: &str, password: &str) -> Command {
        let mut c = self.python(script);
        c.env("BERTH_USER", user).env("BERTH_PASSWORD", password);
        c
    }

    /// `skopeo copy FROM TO` with TLS verification off and `creds` (`USER:PASSWORD`) for
    /// both ends (skopeo uses them only for `docker://` ones), plus `extra` flags; the
    /// digest skopeo reports for what it wrote.
    pub fn skopeo_copy(&self, creds: &str, extra: &[&str], from: &str, to: &str) -> String {
        let digestfile = self.path(&format!("digest-{}", unique()));
        run_ok(
            self.skopeo()
                .args([
                    "copy",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    "--src-creds",
                    creds,
                    "--dest-creds",
                    creds,
                    "--digestfile",
                ])
                .arg(&digestfile)
                .args(extra)
                .args([from, to]),
            CLIENT_TIMEOUT,
        );
        std::fs::read_to_string(&digestfile)
            .expect("skopeo wrote the digest file")
            .trim()
            .to_string()
    }

    /// Writes `image` as a `docker save` archive named `archive` in this environment,
    /// tagged `reference`, and loads it into the engine.
    pub fn docker_load(&self, image: &Image, reference: &str, archive: &str) {
        let archive = self.path(archive);
        image.write_docker_archive(&archive, reference);
        run_ok(
            self.docker().arg("load").arg("-i").arg(&archive),
            CLIENT_TIMEOUT,
        );
    }

    /// `docker login HOST` with the password on standard input; the output, whatever it is.
    pub fn try_docker_login(&self, host: &str, user: &str, password: &str) -> Output {
        run_input(
            self.docker()
                .args(["login", "--username", user, "--password-stdin", host]),
            Some(password),
            CLIENT_TIMEOUT,
        )
    }

    /// `docker login HOST`, which must succeed and store the login in this environment's
    /// own DOCKER_CONFIG (never the machine's).
    pub fn docker_login(&self, host: &str, user: &str, password: &str) {
        let out = self.try_docker_login(host, user, password);
        assert!(
            out.status.success() && out.stdout.contains("Login Succeeded"),
            "docker login {host} as {user} failed ({}):\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        let config =
            std::fs::read_to_string(self.path("docker/config.json")).expect("docker config.json");
        assert!(
            config.contains(host),
            "docker login did not write its login for {host} to the private DOCKER_CONFIG: {config}"
        );
    }

    pub fn docker_logout(&self, host: &str) {
        run_ok(self.docker().args(["logout", host]), CLIENT_TIMEOUT);
    }

    /// `crane auth login HOST` (written to this environment's DOCKER_CONFIG).
    pub fn crane_login(&self, host: &str, user: &str, password: &str) {
        run_input_ok(
            self.crane().args([
                "auth",
                "login",
                host,
                "--username",
                user,
                "--password-stdin",
            ]),
            Some(password),
            CLIENT_TIMEOUT,
        );
    }

    /// `podman login HOST` (or buildah: same flags), written to this environment's
    /// REGISTRY_AUTH_FILE.
    pub fn containers_login(&self, bin: &str, host: &str, user: &str, password: &str) {
        let out = run_input_ok(
            self.containers_tool(bin).args([
                "login",
                "--tls-verify=false",
                "--username",
                user,
                "--password-stdin",
                host,
            ]),
            Some(password),
            CLIENT_TIMEOUT,
        );
        assert!(
            out.stdout.contains("Login Succeeded"),
            "{bin} login {host}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// Removes the test's images from the shared engine even when the test fails.
pub struct DockerImages<'a> {
    pub env: &'a ClientEnv,
    pub refs: Vec<String>,
}

impl Drop for DockerImages<'_> {
    fn drop(&mut self) {
        // Best effort, and never a second panic: the engine may be what is missing.
        if std::env::var_os("DOCKER_HOST").is_none() {
            return;
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut cmd = self.env.docker();
            cmd.args(["rmi", "-f"]).args(&self.refs);
            run(&mut cmd, CLIENT_TIMEOUT);
        }));
    }
}

/// The `digest: sha256:...` of `docker push` output.
pub fn pushed_digest(out: &Output) -> String {
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("digest: sha256:"))
        .unwrap_or_else(|| {
            panic!(
                "docker push printed no digest line:\n{}\n{}",
                out.stdout, out.stderr
            )
        });
    find_digest(line).expect("digest in the push line")
}
