//! End-to-end harness: starts the real `berth` binary on a free loopback port over either
//! store pair, runs unmodified registry clients against it with isolated configuration,
//! and builds small random test images in Rust (no network: only loopback exists here).
//!
//! Every server gets its own random first-administrator password; the harness's HTTP
//! helpers authenticate as that administrator with Basic credentials (the `*_anon` ones
//! send none), and clients log in through their own commands (`docker login`,
//! `crane auth login`, `--creds` for containers/image tools).
//!
//! A test that needs a service or a client that is missing fails with a message saying
//! what to install or which variable to set; nothing here skips.

#![allow(dead_code)] // each test binary uses a different part of the harness

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default limit for one client command: generous for a loaded 2-core machine, short
/// enough that a hung client fails the test instead of the whole suite.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a client that understands every current format sends.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Generates one `#[test]` per store pair for a scenario `fn name(backend: Backend)`
/// (the test file declares `#[macro_use] mod common;`).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name($crate::common::Backend::Embedded)
            }
            #[test]
            fn scaled() {
                super::$name($crate::common::Backend::Scaled)
            }
        }
    )+};
}

// ---------------------------------------------------------------------------------------
// Unique names and random bytes
// ---------------------------------------------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// splitmix64: fast, good enough to make layers whose bytes never repeat across tests.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        Rng(seed())
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// A short lowercase token, unique within this machine for the test run.
pub fn unique() -> String {
    format!("{:012x}", Rng::new().next_u64() & 0xffff_ffff_ffff)
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn hex_of(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

// ---------------------------------------------------------------------------------------
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

/// `USER:PASSWORD`, the value of skopeo's `--creds`, `--src-creds` and `--dest-creds` and
/// of podman's and buildah's `--creds`.
pub fn creds(user: &str, password: &str) -> String {
    format!("{user}:{password}")
}

/// The `Authorization` header value of Basic credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// Which store pair the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and the filesystem under the data directory.
    Embedded,
    /// PostgreSQL (a fresh database per server) and S3 (a fresh key prefix per server).
    Scaled,
}

#[derive(Clone)]
struct Scaled {
    /// Whether this server created (and so drops) the database.
    owner: bool,
    admin_url: String,
    db: String,
    url: String,
    prefix: String,
}

/// A running `berth serve`; killed on drop. When the test failed, its directory (data and
/// log) is kept and its log's tail printed.
pub struct Server {
    child: Option<Child>,
    pub backend: Backend,
    /// `127.0.0.1:PORT`: the registry host as clients write it in image references.
    pub host: String,
    dir: Option<tempfile::TempDir>,
    scaled: Option<Scaled>,
    /// The first administrator's password, random per server (shared by its replicas).
    admin_password: String,
    /// Sends the administrator's Basic credentials with every request.
    http: reqwest::blocking::Client,
    /// Sends no credentials.
    anon: reqwest::blocking::Client,
}

/// The first administrator's name, created by `berth serve` on first start.
pub const ADMIN: &str = "admin";

fn http_client(auth: Option<String>) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = auth {
        let mut v = reqwest::header::HeaderValue::from_str(&a).expect("header value");
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("http client")
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-server-")
            .tempdir()
            .expect("tempdir");
        let scaled = (backend == Backend::Scaled).then(Scaled::create);
        let admin_password = format!("adm-{}", hex::encode(Rng::new().bytes(16)));
        let mut server = Server {
            child: None,
            backend,
            host: String::new(),
            dir: Some(dir),
            scaled,
            http: http_client(Some(basic_auth(ADMIN, &admin_password))),
            anon: http_client(None),
            admin_password,
        };
        server.launch();
        server
    }

    /// Another process on the same PostgreSQL database and S3 prefix (with its own data
    /// directory): what a second replica behind a load balancer is.
    pub fn replica(&self) -> Server {
        let scaled = self.scaled.as_ref().unwrap_or_else(|| {
            panic!("only the scaled backend is shared by replicas; the embedded one has a single process")
        });
        let mut server = Server {
            child: None,
            backend: self.backend,
            host: String::new(),
            dir: Some(
                tempfile::Builder::new()
                    .prefix("berth-e2e-replica-")
                    .tempdir()
                    .expect("tempdir"),
            ),
            scaled: Some(Scaled {
                owner: false,
                ..scaled.clone()
            }),
            admin_password: self.admin_password.clone(),
            http: self.http.clone(),
            anon: self.anon.clone(),
        };
        server.launch();
        server
    }

    /// Kills the process without warning (SIGKILL, as a crash would) and starts a new one
    /// on the same stores; it listens on a new port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn launch(&mut self) {
        let log_path = self.dir().join("berth.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let from = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir().join("data"));
        configure_stores(&mut cmd, self.scaled.as_ref());
        cmd.env("BERTH_LOG", "info")
            .env("BERTH_ADMIN_PASSWORD", &self.admin_password)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("starting the berth binary"));
        self.host = self.wait_listening(from);
        self.wait_healthy();
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("server dir").path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("berth.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self, from: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let full = self.log();
            let log = full.get(from..).unwrap_or_default();
            if let Some(i) = log.find("berth listening on http://") {
                let rest = &log[i + "berth listening on http://".len()..];
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                assert!(
                    addr.starts_with("127.0.0.1:"),
                    "unexpected listen address in log line: {rest:.80}"
                );
                return addr;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("berth exited before listening ({st}); its log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "berth did not log `berth listening on` within 60 s; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.http.get(self.url("/health")).send() {
                Ok(r) if r.status() == 200 => return,
                Ok(r) => last = format!("{} {}", r.status(), r.text().unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "GET /health did not answer 200 within 60 s (last: {last}); log:\n{}",
            self.log()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.host, path)
    }

    /// `HOST:PORT/repo:tag` style reference.
    pub fn reference(&self, repo_and_ref: &str) -> String {
        format!("{}/{}", self.host, repo_and_ref)
    }

    /// The first administrator's name and password.
    pub fn admin_creds(&self) -> (&str, &str) {
        (ADMIN, &self.admin_password)
    }

    /// `admin:PASSWORD` for `--creds` style flags.
    pub fn creds(&self) -> String {
        creds(ADMIN, &self.admin_password)
    }

    /// The administrator's `Authorization` header value (for hand-written requests).
    pub fn basic(&self) -> String {
        basic_auth(ADMIN, &self.admin_password)
    }

    /// An HTTP client that authenticates as the administrator (Basic) on every request.
    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// An HTTP client that sends no credentials.
    pub fn http_anon(&self) -> &reqwest::blocking::Client {
        &self.anon
    }

    fn send(
        &self,
        client: &reqwest::blocking::Client,
        method: reqwest::Method,
        path: &str,
        accept: Option<&str>,
    ) -> Response {
        let mut rq = client.request(method.clone(), self.url(path));
        if let Some(a) = accept {
            rq = rq.header("Accept", a);
        }
        Response::from(
            rq.send().unwrap_or_else(|e| panic!("{method} {path}: {e}")),
            method.as_str(),
            path,
        )
    }

    /// `GET` as the administrator.
    pub fn get(&self, path: &str, accept: Option<&str>) -> Response {
        self.send(&self.http, reqwest::Method::GET, path, accept)
    }

    /// `HEAD` as the administrator.
    pub fn head(&self, path: &str, accept: Option<&str>) -> Response {
        self.send(&self.http, reqwest::Method::HEAD, path, accept)
    }

    /// `GET` with no credentials.
    pub fn get_anon(&self, path: &str, accept: Option<&str>) -> Response {
        self.send(&self.anon, reqwest::Method::GET, path, accept)
    }

    /// `HEAD` with no credentials.
    pub fn head_anon(&self, path: &str, accept: Option<&str>) -> Response {
        self.send(&self.anon, reqwest::Method::HEAD, path, accept)
    }

    /// Any method with Basic credentials of the caller's choosing.
    pub fn request_as(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        password: &str,
    ) -> Response {
        let r = self
            .anon
            .request(method.clone(), self.url(path))
            .header("Authorization", basic_auth(user, password))
            .header("Accept", ACCEPT_ALL)
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Response::from(r, method.as_str(), path)
    }

    /// `berth admin ARGS` on this server's stores (the same data directory, database and
    /// bucket), with `stdin` as its standard input; the output, whatever it is.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["admin", "--data-dir"])
            .arg(self.dir().join("data"));
        configure_stores(&mut cmd, self.scaled.as_ref());
        cmd.args(args).env("NO_COLOR", "1");
        run_input(&mut cmd, stdin, Duration::from_secs(120))
    }

    /// `berth admin ARGS`, which must succeed; its standard output.
    pub fn admin_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.admin(args, stdin);
        assert!(
            out.status.success(),
            "berth admin {}: {}\n{}\n{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Creates a local user with `password` through `berth admin user create`.
    pub fn create_user(&self, name: &str, password: &str) {
        self.admin_ok(
            &["user", "create", name, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
    }

    /// The manifest `reference` of `repo` as served, checked against its digest header.
    pub fn manifest(&self, repo: &str, reference: &str) -> Response {
        let r = self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(ACCEPT_ALL),
        );
        r.expect(200);
        let header = r
            .header("docker-content-digest")
            .unwrap_or_else(|| panic!("{}: no Docker-Content-Digest", r.what));
        assert_eq!(
            header,
            sha256_digest(&r.body),
            "{}: Docker-Content-Digest does not match the body",
            r.what
        );
        if reference.starts_with("sha256:") {
            assert_eq!(header, reference, "{}: served a different manifest", r.what);
        }
        r
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{repo}/tags/list"), None);
        r.expect(200);
        let v = r.json();
        assert_eq!(v["name"], repo, "{}: wrong name in {v}", r.what);
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    pub fn catalog(&self) -> Vec<String> {
        let r = self.get("/v2/_catalog", None);
        r.expect(200);
        let v = r.json();
        v["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no repositories array in {v}", r.what))
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect()
    }

    /// Every blob of `image` is served by `repo` with exactly its bytes.
    pub fn assert_has_image(&self, repo: &str, image: &Image) {
        self.manifest(repo, &image.manifest_digest);
        self.assert_blob(repo, &image.config_digest, &image.config);
        for l in &image.layers {
            self.assert_blob(repo, &l.digest, &l.gz);
        }
    }

    pub fn assert_blob(&self, repo: &str, digest: &str, bytes: &[u8]) {
        let r = self.get(&format!("/v2/{repo}/blobs/{digest}"), None);
        r.expect(200);
        assert!(
            r.body == bytes,
            "{}: served {} bytes that differ from the {} pushed",
            r.what,
            r.body.len(),
            bytes.len()
        );
    }

    /// `berth fsck` over this server's stores must find nothing.
    pub fn fsck(&self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["fsck", "--data-dir"])
            .arg(self.dir().join("data"));
        configure_stores(&mut cmd, self.scaled.as_ref());
        cmd.env("NO_COLOR", "1");
        run_ok(&mut cmd, Duration::from_secs(120));
    }
}

fn configure_stores(cmd: &mut Command, scaled: Option<&Scaled>) {
    if let Some(s) = scaled {
        cmd.args(["--metadata", &s.url, "--blobs", "s3"])
            .env("BERTH_S3_ENDPOINT", require_env("BERTH_TEST_S3_ENDPOINT"))
            .env("BERTH_S3_BUCKET", require_env("BERTH_TEST_S3_BUCKET"))
            .env("BERTH_S3_REGION", require_env("BERTH_TEST_S3_REGION"))
            .env(
                "BERTH_S3_ACCESS_KEY_ID",
                require_env("BERTH_TEST_S3_ACCESS_KEY"),
            )
            .env(
                "BERTH_S3_SECRET_ACCESS_KEY",
                require_env("BERTH_TEST_S3_SECRET_KEY"),
            )
            .env("BERTH_S3_PATH_STYLE", "true")
            .env("BERTH_S3_ALLOW_HTTP", "true")
            .env("BERTH_S3_PREFIX", &s.prefix);
    }
}

impl Scaled {
    fn create() -> Scaled {
        let admin_url = require_env("BERTH_TEST_PG_URL");
        let db = format!("berth_e2e_{}", unique());
        psql(&admin_url, &format!("CREATE DATABASE {db}"));
        let url = with_database(&admin_url, &db);
        Scaled {
            owner: true,
            admin_url,
            db,
            url,
            prefix: format!("e2e-{}/", unique()),
        }
    }
}

fn psql(url: &str, sql: &str) {
    let bin = require_tool(
        "psql",
        "install Debian package postgresql-client (cargo xtask ci installs postgresql)",
    );
    run_ok(
        Command::new(bin).env("PGCONNECT_TIMEOUT", "10").args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ]),
        Duration::from_secs(60),
    );
}

/// The same server URL naming another database.
fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url
        .find("://")
        .map(|i| i + 3)
        .unwrap_or_else(|| panic!("not a URL: BERTH_TEST_PG_URL={url}"));
    let (query_at, query) = match url.find('?') {
        Some(q) => (q, &url[q..]),
        None => (url.len(), ""),
    };
    let host_end = url[scheme_end..query_at]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(query_at);
    format!("{}/{}{}", &url[..host_end], db, query)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let dir = self.dir.take().expect("server dir").keep();
            eprintln!(
                "--- berth ({:?}) log tail; data and log kept in {} ---\n{}",
                self.backend,
                dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            if let Some(s) = &self.scaled {
                eprintln!(
                    "--- PostgreSQL database {} and S3 prefix {} kept ---",
                    s.db, s.prefix
                );
            }
            return;
        }
        if let Some(s) = self.scaled.as_ref().filter(|s| s.owner) {
            let _ = std::panic::catch_unwind(|| {
                psql(
                    &s.admin_url,
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", s.db),
                )
            });
        }
    }
}

/// A finished HTTP exchange, read whole (test payloads are small).
pub struct Response {
    pub what: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn from(r: reqwest::blocking::Response, method: &str, path: &str) -> Response {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Response {
            what: format!("{method} {path}"),
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what, self.text()))
    }

    /// Fails with the whole exchange unless the status is `status`.
    pub fn expect(&self, status: u16) -> &Response {
        assert_eq!(
            self.status,
            status,
            "{} answered {}\nheaders: {:?}\nbody: {}",
            self.what,
            self.status,
            self.headers,
            self.text()
        );
        self
    }
}

// ---------------------------------------------------------------------------------------
// Test images
// ---------------------------------------------------------------------------------------

/// One filesystem layer: the tar (whose digest is the config's diff id) and its gzip form.
#[derive(Clone)]
pub struct Layer {
    pub files: Vec<(String, Vec<u8>)>,
    pub tar: Vec<u8>,
    pub diff_id: String,
    pub gz: Vec<u8>,
    pub digest: String,
}

impl Layer {
    /// `files` random files of `size` bytes each under `dir/`.
    pub fn random(rng: &mut Rng, dir: &str, files: usize, size: usize) -> Layer {
        let files: Vec<(String, Vec<u8>)> = (0..files)
            .map(|i| (format!("{dir}/file-{i}.bin"), rng.bytes(size)))
            .collect();
        Layer::from_files(files)
    }

    pub fn from_files(files: Vec<(String, Vec<u8>)>) -> Layer {
        let mut b = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        for (name, _) in &files {
            let mut p = Path::new(name).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_path_buf());
                p = d.parent();
            }
        }
        for d in &dirs {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, format!("{}/", d.display()), std::io::empty())
                .expect("tar dir");
        }
        for (name, data) in &files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data.as_slice())
                .expect("tar file");
        }
        let tar = b.into_inner().expect("tar");
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        Layer {
            diff_id: sha256_digest(&tar),
            digest: sha256_digest(&gz),
            files,
            tar,
            gz,
        }
    }
}

/// A complete single-platform OCI image: random layers, a config, a manifest.
pub struct Image {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    /// `layers` layers of three files of `file_kib` KiB each; a random label makes the
    /// config (and so the image id) unique even when layers are shared.
    pub fn random(layers: usize, file_kib: usize, arch: &str) -> Image {
        let mut rng = Rng::new();
        let layers = (0..layers)
            .map(|i| Layer::random(&mut rng, &format!("layer{i}"), 3, file_kib * 1024))
            .collect();
        Image::from_layers(layers, arch)
    }

    pub fn from_layers(layers: Vec<Layer>, arch: &str) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = layers
            .iter()
            .map(
                |l| json!({"created_by": format!("berth e2e layer {}", &hex_of(&l.diff_id)[..12])}),
            )
            .collect();
        let config = serde_json::to_vec(&json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/layer0/file-0.bin"],
                "Labels": {"org.example.berth-e2e": unique()}
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history
        }))
        .expect("config json");
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.gz.len()})).collect::<Vec<_>>()
        }))
        .expect("manifest json");
        Image {
            arch: arch.to_string(),
            manifest_digest: sha256_digest(&manifest),
            layers,
            config,
            config_digest,
            manifest,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
            "platform": {"architecture": self.arch, "os": "linux"}
        })
    }

    /// Writes a `docker save` style archive (uncompressed layers) tagged `repo_tag`,
    /// readable by `docker load`, `podman load` and `crane push`.
    pub fn write_docker_archive(&self, path: &Path, repo_tag: &str) {
        let mut b = tar::Builder::new(std::fs::File::create(path).expect("create archive"));
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data).expect("archive entry");
        };
        let config_name = format!("{}.json", hex_of(&self.config_digest));
        add(&config_name, &self.config);
        let mut layer_names = Vec::new();
        for l in &self.layers {
            let name = format!("{}/layer.tar", hex_of(&l.diff_id));
            add(&name, &l.tar);
            layer_names.push(name);
        }
        let manifest = serde_json::to_vec(
            &json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]),
        )
        .expect("json");
        add("manifest.json", &manifest);
        b.into_inner()
            .expect("archive")
            .sync_all()
            .expect("sync archive");
    }
}

/// A multi-platform image: an OCI index over single-platform images.
pub struct Index {
    pub images: Vec<Image>,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Index {
    pub fn new(images: Vec<Image>) -> Index {
        let bytes = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": images.iter().map(Image::descriptor).collect::<Vec<_>>()
        }))
        .expect("index json");
        Index {
            digest: sha256_digest(&bytes),
            images,
            bytes,
        }
    }
}

/// Writes an OCI image layout directory (blobs + `index.json` with tagged entries).
pub struct OciLayout {
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl OciLayout {
    pub fn new(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir layout");
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        OciLayout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    fn blob(&self, digest: &str, bytes: &[u8]) {
        std::fs::write(self.dir.join("blobs/sha256").join(hex_of(digest)), bytes)
            .expect("write blob");
    }

    fn image_blobs(&self, image: &Image) {
        self.blob(&image.config_digest, &image.config);
        for l in &image.layers {
            self.blob(&l.digest, &l.gz);
        }
        self.blob(&image.manifest_digest, &image.manifest);
    }

    pub fn add_image(&mut self, image: &Image, tag: &str) -> &mut Self {
        self.image_blobs(image);
        let mut d = image.descriptor();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.entries.push(d);
        self.write_index();
        self
    }

    pub fn add_index(&mut self, index: &Index, tag: &str) -> &mut Self {
        for i in &index.images {
            self.image_blobs(i);
        }
        self.blob(&index.digest, &index.bytes);
        self.entries.push(json!({
            "mediaType": OCI_INDEX,
            "digest": index.digest,
            "size": index.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
        self.write_index();
        self
    }

    fn write_index(&self) {
        let v = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(&v).expect("json"),
        )
        .expect("index.json");
    }
}

/// Reads an OCI layout written by a client: tag -> descriptor of its `index.json`.
pub fn read_layout_index(dir: &Path) -> BTreeMap<String, Value> {
    let raw = std::fs::read(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("{}/index.json: {e}", dir.display()));
    let v: Value = serde_json::from_slice(&raw).expect("index.json is JSON");
    let mut out = BTreeMap::new();
    for m in v["manifests"].as_array().expect("manifests array") {
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        out.insert(tag, m.clone());
    }
    out
}

/// The blob `digest` of an OCI layout, checked against its digest.
pub fn read_layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let p = dir.join("blobs/sha256").join(hex_of(digest));
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        sha256_digest(&b),
        digest,
        "{} does not hash to its name",
        p.display()
    );
    b
}

/// A digest printed somewhere in a client's output (`sha256:` and 64 hex digits).
pub fn find_digest(text: &str) -> Option<String> {
    let i = text.find("sha256:")?;
    let hex: String = text[i + 7..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (hex.len() == 64).then(|| format!("sha256:{hex}"))
}

/// The uncompressed bytes of a gzip layer blob.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("layer blob is not gzip");
    out
}

/// `(config digest, layer digests)` named by a served image manifest.
pub fn manifest_parts(manifest: &Value) -> (String, Vec<String>) {
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no config digest in {manifest}"))
        .to_string();
    let layers = manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {manifest}"))
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect();
    (config, layers)
}

// ---------------------------------------------------------------------------------------
// A berth process with arguments of the test's choosing
// ---------------------------------------------------------------------------------------

/// A `berth serve` started with the caller's own flags and environment (for TLS or store
/// failures that the `Server` harness does not model); killed on drop.
pub struct Process {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub log: PathBuf,
}

impl Process {
    /// Starts `berth serve --listen 127.0.0.1:0 ARGS` with `envs`, logging to `log`, and
    /// waits for its "listening on" line (http or https).
    // The child is waited on by `Process`'s Drop, or before the start-up panic.
    #[allow(clippy::zombie_processes)]
    pub fn spawn(args: &[&std::ffi::OsStr], envs: &[(&str, &str)], log: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("starting the berth binary");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(i) = text.find("berth listening on http") {
                let rest = &text[i..];
                let rest = &rest[rest.find("://").map_or(0, |j| j + 3)..];
                let host: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                return Process {
                    child,
                    host,
                    log: log.to_path_buf(),
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
