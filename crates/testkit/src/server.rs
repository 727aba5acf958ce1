//! The real `berth` binary on a free loopback port over either store pair (SQLite and the
//! filesystem, or PostgreSQL and S3), with the HTTP helpers the end-to-end tests use.
//!
//! Every server gets its own random first-administrator password; the helpers authenticate
//! as that administrator with Basic credentials (the `*_anon` ones send none), and clients
//! log in through their own commands (`docker login`, `crane auth login`, `--creds` for
//! containers/image tools).

use crate::clients::{require_env, require_tool, run_input, run_ok, ClientEnv, Output};
use crate::images::{sha256_digest, unique, Image, Rng};
use crate::wire::{basic_auth, creds, ACCEPT_ALL, OCI_MANIFEST};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generates one `#[test]` per store pair for a scenario `fn name(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name($crate::server::Backend::Embedded)
            }
            #[test]
            fn scaled() {
                super::$name($crate::server::Backend::Scaled)
            }
        }
    )+};
}

/// The `berth` binary that cargo built for the running test: `CARGO_BIN_EXE_berth` (cargo
/// sets it for the binary's own integration tests, at build and run time), else the
/// binary beside the test's `deps/` directory, where cargo puts it.
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_berth") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("berth"))
        .filter(|b| b.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no berth binary next to {}: run the test through `cargo test -p berth`, which builds it",
                exe.display()
            )
        });
    bin
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

    /// Kills the process without warning (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
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
        let mut cmd = Command::new(berth_bin());
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

    /// A new client environment in which `docker` is logged in here as the administrator.
    pub fn docker_env(&self) -> ClientEnv {
        let env = ClientEnv::new();
        env.docker_login(&self.host, ADMIN, &self.admin_password);
        env
    }

    /// A new client environment in which `crane` is logged in here as the administrator.
    pub fn crane_env(&self) -> ClientEnv {
        let env = ClientEnv::new();
        env.crane_login(&self.host, ADMIN, &self.admin_password);
        env
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
        let mut cmd = Command::new(berth_bin());
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

    /// The manifest `reference` of `repo` as served (see [`Server::manifest`]), which must be
    /// exactly the bytes that were pushed.
    pub fn manifest_as_pushed(&self, repo: &str, reference: &str, pushed: &[u8]) -> Response {
        let served = self.manifest(repo, reference);
        assert!(
            served.body == pushed,
            "{}: manifest served differs from the one pushed:\n{}",
            served.what,
            served.text()
        );
        served
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

    /// Pushes `data` as a blob of `repo` in one monolithic POST; its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256_digest(data);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .expect("POST");
        assert_eq!(r.status().as_u16(), 201, "monolithic push: {:?}", r.text());
        d
    }

    /// Pushes `manifest` (an OCI image manifest) as `repo:reference`; it must be created and
    /// answered with its own digest, which is returned.
    pub fn push_manifest(&self, repo: &str, reference: &str, manifest: &[u8]) -> String {
        let what = format!("PUT /v2/{repo}/manifests/{reference}");
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.to_vec())
            .send()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status().as_u16();
        let header = header_text(&r, "docker-content-digest");
        assert_eq!(status, 201, "{what}: {:?}", r.text());
        let digest = sha256_digest(manifest);
        assert_eq!(header, digest, "{what}: Docker-Content-Digest");
        digest
    }

    /// `berth fsck` over this server's stores must find nothing.
    pub fn fsck(&self) {
        let mut cmd = Command::new(berth_bin());
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
            .env("BERTH_KEK_FILE", s.kek_file())
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

/// Store pairs for tests that run their own `berth` processes (several replicas, the
/// command line): on `Embedded`, nothing beyond the data directory the processes share
/// (SQLite and the filesystem in it); on `Scaled`, a fresh PostgreSQL database and S3
/// prefix, dropped with this value unless the test failed.
pub struct Stores {
    scaled: Option<Scaled>,
}

impl Stores {
    pub fn new(backend: Backend) -> Stores {
        Stores {
            scaled: (backend == Backend::Scaled).then(Scaled::create),
        }
    }

    /// Points `cmd` (`berth serve`, `berth gc`, ...) at these stores.
    pub fn configure<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        configure_stores(cmd, self.scaled.as_ref());
        cmd
    }

    /// The PostgreSQL URL of the metadata store; `None` on the embedded default (SQLite in
    /// the data directory).
    pub fn metadata_url(&self) -> Option<&str> {
        self.scaled.as_ref().map(|s| s.url.as_str())
    }

    /// The key-encryption key file of processes on these stores with data in `data_dir`.
    pub fn kek_file(&self, data_dir: &Path) -> PathBuf {
        match &self.scaled {
            Some(s) => s.kek_file(),
            None => data_dir.join("kek"),
        }
    }

    /// Everything the metadata store holds, as bytes, by where it is: on the embedded
    /// default each file of `data_dir` but the key-encryption key, on PostgreSQL a dump of
    /// the database.
    pub fn metadata_bytes(&self, data_dir: &Path) -> Vec<(String, Vec<u8>)> {
        let Some(s) = &self.scaled else {
            let files = std::fs::read_dir(data_dir).expect("reading the data directory");
            return files
                .map(|f| f.expect("a data directory entry").path())
                .filter(|p| p.is_file() && p.file_name() != Some("kek".as_ref()))
                .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
                .collect();
        };
        let bin = require_tool("pg_dump", "install Debian package postgresql-client");
        let dump = run_ok(
            Command::new(bin)
                .env("PGCONNECT_TIMEOUT", "10")
                .args(["--data-only", "-d", &s.url]),
            Duration::from_secs(120),
        );
        vec![(format!("pg_dump of {}", s.db), dump.stdout.into_bytes())]
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        match &self.scaled {
            Some(s) if std::thread::panicking() => s.kept(),
            Some(s) => s.drop_database(),
            None => {}
        }
    }
}

impl Scaled {
    fn kept(&self) {
        eprintln!(
            "--- PostgreSQL database {} and S3 prefix {} kept ---",
            self.db, self.prefix
        );
    }

    /// The key-encryption key every process on this database shares (PostgreSQL needs one
    /// configured), made with the database.
    fn kek_file(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}.kek", self.db))
    }

    fn drop_database(&self) {
        let _ = std::fs::remove_file(self.kek_file());
        let _ = std::panic::catch_unwind(|| {
            psql(
                &self.admin_url,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
            )
        });
    }

    fn create() -> Scaled {
        let admin_url = require_env("BERTH_TEST_PG_URL");
        let db = format!("berth_e2e_{}", unique());
        psql(&admin_url, &format!("CREATE DATABASE {db}"));
        let url = with_database(&admin_url, &db);
        let scaled = Scaled {
            owner: true,
            admin_url,
            db,
            url,
            prefix: format!("e2e-{}/", unique()),
        };
        use base64::Engine;
        let kek = base64::engine::general_purpose::STANDARD.encode(Rng::new().bytes(32));
        std::fs::write(scaled.kek_file(), kek).expect("writing the test key-encryption key");
        scaled
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
                s.kept();
            }
            return;
        }
        if let Some(s) = self.scaled.as_ref().filter(|s| s.owner) {
            s.drop_database();
        }
    }
}

/// The path and query of a `Location` header value, which may be absolute and name the
/// process that issued it.
pub fn path_of(location: &str) -> String {
    match location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_string(),
        None => location.to_string(),
    }
}

/// A header of a client response as text, `""` when it is absent or not text.
pub fn header_text(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A chunk `PATCH` of `data` at `offset` (its `Content-Range`) to `url`, ready to send.
pub fn patch_chunk(
    client: &reqwest::blocking::Client,
    url: String,
    data: &[u8],
    offset: usize,
) -> reqwest::blocking::RequestBuilder {
    client
        .patch(url)
        .header(
            "Content-Range",
            format!("{}-{}", offset, offset + data.len() - 1),
        )
        .body(data.to_vec())
}

/// Sends a request's `head` (its request line and own header lines) with `Host`,
/// `Authorization` and the `Content-Length` of the whole `body`, then only the first `send`
/// bytes of the body: the request stays in flight on the returned connection.
pub fn start_request(
    host: &str,
    authorization: &str,
    head: &str,
    body: &[u8],
    send: usize,
) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "{head}Host: {host}\r\nAuthorization: {authorization}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("request head");
    s.write_all(&body[..send]).expect("part of the body");
    s.flush().unwrap();
    s
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
    /// Starts `berth serve` with `envs`, its data directory `dir/data` and its log
    /// `dir/berth.log` (see [`Process::spawn`]).
    pub fn spawn_in(dir: &Path, envs: &[(&str, &str)]) -> Process {
        let data = dir.join("data");
        Process::spawn(
            &["--data-dir".as_ref(), data.as_os_str()],
            envs,
            &dir.join("berth.log"),
        )
    }

    /// Starts `berth serve --listen 127.0.0.1:0 ARGS` with `envs`, logging to `log`, and
    /// waits for its "listening on" line (http or https).
    // The child is waited on by `Process`'s Drop, or before the start-up panic.
    #[allow(clippy::zombie_processes)]
    pub fn spawn(args: &[&std::ffi::OsStr], envs: &[(&str, &str)], log: &Path) -> Process {
        Process::spawn_on(None, args, envs, log)
    }

    /// `berth serve` over HTTPS with `dir/server.crt` and `dir/server.key` (see
    /// [`crate::certs`]), its data in `dir/data`, its log `dir/berth.log`, on `stores`.
    pub fn spawn_tls(stores: Option<&Stores>, dir: &Path, envs: &[(&str, &str)]) -> Process {
        let (data, cert, key) = (
            dir.join("data"),
            dir.join("server.crt"),
            dir.join("server.key"),
        );
        let args: [&std::ffi::OsStr; 6] = [
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ];
        Process::spawn_on(stores, &args, envs, &dir.join("berth.log"))
    }

    /// [`Process::spawn`] on `stores` (the embedded default when `None`).
    #[allow(clippy::zombie_processes)]
    pub fn spawn_on(
        stores: Option<&Stores>,
        args: &[&std::ffi::OsStr],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Process {
        let mut cmd = Command::new(berth_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(stores) = stores {
            stores.configure(&mut cmd);
        }
        let mut child = cmd
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
