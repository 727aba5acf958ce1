//! Docker Content Trust served by Berth itself: the Debian `notary` CLI over HTTPS (a CA
//! made for the test), through Berth's token service, on both store pairs. Every command
//! of a repository's life: init, add, publish, list, lookup, remove, key rotation to the
//! server (snapshot and timestamp), a delegation added, signed into and removed, delete
//! --remote; the trust data after a restart and, on PostgreSQL, through a second process;
//! a user who may only pull reads trust data and cannot sign.

use berth_testkit::e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) const ADMIN_PASSWORD: &str = "trust-admin-password-41c7";

both_backends!(notary_cli_lifecycle);

/// Every form a secret could be written in: its bytes, hex and base64.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_vec(),
        hex.into_bytes(),
        b64.encode(secret).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The name the registry's GUNs start with, whatever port a process listens on (a restart
/// takes another): as a registry behind its DNS name keeps its GUNs.
pub(crate) const HOST: &str = "localhost:5999";

/// The roles of a repository with the delegation `targets/releases`.
const ROLES: [&str; 5] = [
    "root",
    "targets",
    "targets/releases",
    "snapshot",
    "timestamp",
];

/// A `berth serve` over TLS on `stores`, its data and certificates in `dir`.
pub(crate) fn serve(dir: &Path, stores: &Stores) -> Process {
    Process::spawn_on(
        Some(stores),
        &[
            "--data-dir".as_ref(),
            dir.join("data").as_os_str(),
            "--tls-cert".as_ref(),
            dir.join("server.crt").as_os_str(),
            "--tls-key".as_ref(),
            dir.join("server.key").as_os_str(),
        ],
        &[
            ("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("BERTH_TRUST_HOSTNAMES", HOST),
        ],
        &dir.join("berth.log"),
    )
}

/// The notary CLI of one user: its own key store and cache (`trust_dir`), Berth's CA.
pub(crate) struct Notary {
    url: String,
    ca: PathBuf,
    trust_dir: PathBuf,
    auth: String,
}

impl Notary {
    pub(crate) fn new(
        server: &Process,
        dir: &Path,
        name: &str,
        user: &str,
        password: &str,
    ) -> Notary {
        use base64::Engine;
        Notary {
            url: format!("https://{}", server.host),
            ca: dir.join("ca.crt"),
            trust_dir: dir.join(format!("notary-{name}")),
            auth: base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
        }
    }

    /// The client of the reference notary-server the test peers run (no authentication).
    fn reference(dir: &Path) -> Notary {
        Notary {
            url: require_env("BERTH_TEST_NOTARY_URL"),
            ca: PathBuf::from(require_env("BERTH_TEST_NOTARY_CA")),
            trust_dir: dir.join("notary-reference"),
            auth: String::new(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let bin = require_tool(
            "notary",
            "install Debian package notary (cargo xtask ci does)",
        );
        let mut cmd = Command::new(bin);
        cmd.arg("-s")
            .arg(&self.url)
            .arg("--tlscacert")
            .arg(&self.ca)
            .arg("-d")
            .arg(&self.trust_dir)
            .args(args)
            .env("NOTARY_AUTH", &self.auth);
        for role in ["ROOT", "TARGETS", "SNAPSHOT", "DELEGATION"] {
            cmd.env(
                format!("NOTARY_{role}_PASSPHRASE"),
                "notary-test-passphrase",
            );
        }
        run(&mut cmd, Duration::from_secs(120))
    }

    /// Runs `args`, which must succeed; their output (stdout and stderr).
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        succeeded(&format!("notary {args:?}"), self.run(args))
    }

    /// Runs `args`, which must fail; their output.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "notary {args:?} succeeded:\n{}",
            out.stdout
        );
        format!("{}{}", out.stdout, out.stderr)
    }

    /// The targets `notary list` shows: (name, role).
    fn list(&self, gun: &str) -> Vec<(String, String)> {
        let out = self.ok(&["list", gun]);
        let mut targets: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[1].len() == 64).then(|| (f[0].to_string(), f[3].to_string()))
            })
            .collect();
        targets.sort();
        targets
    }
}

/// `curl` over the test's CA: status and body.
pub(crate) fn curl(dir: &Path, url: &str, auth: &str, extra: &[&str]) -> (u16, String) {
    let out = run_ok(
        Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(dir.join("ca.crt"))
            .args(["-u", auth])
            .args(extra)
            .arg(url),
        Duration::from_secs(30),
    );
    let (body, code) = out.stdout.trim_end().rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

/// A request as the administrator to `path` of `server`, with curl's `extra` arguments.
pub(crate) fn as_admin(dir: &Path, server: &Process, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("https://{}{path}", server.host);
    curl(dir, &url, &format!("{ADMIN}:{ADMIN_PASSWORD}"), extra)
}

/// A management API request as the administrator, with a JSON `body`.
pub(crate) fn admin_api(
    dir: &Path,
    server: &Process,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let headers = [
        "-X",
        method,
        "-H",
        "content-type: application/json",
        "-d",
        body,
    ];
    as_admin(dir, server, path, &headers)
}

/// The output (stdout and stderr) of a command `what` that must have succeeded.
pub(crate) fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    format!("{}{}", out.stdout, out.stderr)
}

/// Creates a user with no role anywhere.
pub(crate) fn create_user(dir: &Path, server: &Process, name: &str, password: &str) {
    let body = serde_json::json!({ "name": name, "password": password }).to_string();
    let (code, answer) = admin_api(dir, server, "POST", "/api/v0/users", &body);
    assert_eq!(code, 201, "{answer}");
}

fn pair(name: &str, role: &str) -> (String, String) {
    (name.to_string(), role.to_string())
}

fn notary_cli_lifecycle(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs::ca_and_server(d);
    let stores = Stores::new(backend);
    let mut server = serve(d, &stores);
    let mut admin = Notary::new(&server, d, "admin", ADMIN, ADMIN_PASSWORD);
    let gun = format!("{HOST}/admin/app");
    let g = gun.as_str();
    for (file, text) in [("one", "manifest one"), ("two", "manifest two")] {
        std::fs::write(d.join(file), text).unwrap();
    }
    let file = |f: &str| d.join(f).display().to_string();

    // A repository's first publish: the client holds root, targets and snapshot keys.
    admin.ok(&["init", g]);
    admin.ok(&["add", g, "v1", &file("one")]);
    admin.ok(&["publish", g]);
    assert_eq!(admin.list(g), [pair("v1", "targets")]);
    let lookup = admin.ok(&["lookup", g, "v1"]);
    assert!(
        lookup
            .contains("sha256:095e2178ce5ba5f6c1b0186254ff7f8aed333db87b9fd35495921a4dbb193e26 12"),
        "{lookup}"
    );
    // The same repository under a GUN whose host is not this registry's is not ours.
    let (code, body) = as_admin(
        d,
        &server,
        "/v2/elsewhere.example:5000/admin/app/_trust/tuf/root.json",
        &[],
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("METADATA_NOT_FOUND"), "{body}");

    // The snapshot and timestamp keys move to (new keys of) the server.
    for role in ["snapshot", "timestamp"] {
        let out = admin.ok(&["key", "rotate", g, role, "-r"]);
        assert!(
            out.contains(&format!("Successfully rotated {role} key")),
            "{out}"
        );
    }
    // A delegation whose key is a certificate, then a target signed by it.
    certs::signer(d, "releases", "/CN=releases");
    admin.ok(&[
        "delegation",
        "add",
        g,
        "targets/releases",
        &file("releases.crt"),
        "--all-paths",
    ]);
    admin.ok(&["publish", g]);
    admin.ok(&[
        "key",
        "import",
        &file("releases.key"),
        "--role",
        "targets/releases",
    ]);
    admin.ok(&["add", g, "v2", &file("two"), "--roles", "targets/releases"]);
    admin.ok(&["publish", g]);
    assert_eq!(
        admin.list(g),
        [pair("v1", "targets"), pair("v2", "targets/releases")]
    );

    // Another client, with nothing cached, sees the same after a restart of the server.
    server = {
        drop(server);
        serve(d, &stores)
    };
    admin = Notary::new(&server, d, "admin", ADMIN, ADMIN_PASSWORD);
    let fresh = Notary::new(&server, d, "fresh", ADMIN, ADMIN_PASSWORD);
    assert_eq!(
        fresh.list(g),
        [pair("v1", "targets"), pair("v2", "targets/releases")]
    );

    // On PostgreSQL, a second process serves the same bytes.
    if backend == Backend::Scaled {
        let other_dir = tempfile::tempdir().unwrap();
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(d.join(f), other_dir.path().join(f)).unwrap();
        }
        let other = serve(other_dir.path(), &stores);
        let admin_auth = format!("{ADMIN}:{ADMIN_PASSWORD}");
        for role in ROLES {
            let path = format!("/v2/{HOST}/admin/app/_trust/tuf/{role}.json");
            let a = curl(
                d,
                &format!("https://{}{path}", server.host),
                &admin_auth,
                &[],
            );
            let b = curl(
                d,
                &format!("https://{}{path}", other.host),
                &admin_auth,
                &[],
            );
            assert_eq!(a.0, 200, "{role}: {}", a.1);
            assert_eq!(a, b, "{role} through two processes");
        }
    }

    // A user who may only pull reads the trust data and cannot sign.
    let get = |path: &str| as_admin(d, &server, path, &[]);
    let api = |method: &str, path: &str, body: &str| admin_api(d, &server, method, path, body);
    create_user(d, &server, "reader", "reader-password-1");
    let reader = Notary::new(&server, d, "reader", "reader", "reader-password-1");
    let hidden = reader.fails(&["list", g]);
    assert!(
        hidden.contains("does not have trust data") || hidden.contains("not authorized"),
        "{hidden}"
    );
    // The first signing created the repository (private, as a first push would).
    let public = api(
        "PATCH",
        "/api/v0/repositories/admin/app",
        r#"{"visibility":"public"}"#,
    );
    assert_eq!(public.0, 200, "{}", public.1);
    assert_eq!(
        reader.list(g),
        [pair("v1", "targets"), pair("v2", "targets/releases")]
    );
    reader.ok(&["init", &format!("{HOST}/reader/own")]);
    reader.ok(&["publish", &format!("{HOST}/reader/own")]);
    // The reader's client has no key of admin/app's targets: it cannot even stage; its
    // own root and targets for the GUN are refused by the server (no push right).
    let denied = reader.fails(&["delete", g, "--remote"]);
    assert!(
        denied.contains("not authorized") || denied.contains("401") || denied.contains("403"),
        "{denied}"
    );
    assert_eq!(
        fresh.list(g),
        [pair("v1", "targets"), pair("v2", "targets/releases")]
    );

    // The management API and `berth admin trust status` show the signed tags and roles.
    let (code, body) = get("/api/v0/repositories/admin/app/trust");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["signed"], true, "{status}");
    let tags: Vec<(String, String)> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_string(),
                t["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        [pair("v1", "targets"), pair("v2", "targets/releases")]
    );
    let roles: Vec<&str> = status["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "root",
            "targets",
            "targets/releases",
            "snapshot",
            "timestamp"
        ]
    );
    let mut cmd = Command::new(berth_bin());
    cmd.args(["admin", "--data-dir"]).arg(d.join("data"));
    stores
        .configure(&mut cmd)
        .args(["trust", "status", "admin/app"]);
    let printed = run_ok(&mut cmd, Duration::from_secs(60)).stdout;
    let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(printed["targets"], status["targets"], "{printed}");

    // Removal of a target, then of the delegation (the client then writes `"roles": null`).
    admin.ok(&["remove", g, "v1"]);
    admin.ok(&["publish", g]);
    admin.ok(&["delegation", "remove", g, "targets/releases", "-y"]);
    admin.ok(&["publish", g]);
    let delegations = admin.ok(&["delegation", "list", g]);
    assert!(!delegations.contains("targets/releases"), "{delegations}");

    // The changefeed records each timestamp, oldest first.
    let (code, feed) = get(&format!("/v2/{g}/_trust/changefeed?records=100"));
    assert_eq!(code, 200, "{feed}");
    let feed: serde_json::Value = serde_json::from_str(&feed).unwrap();
    let versions: Vec<i64> = feed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Version"].as_i64().unwrap())
        .collect();
    assert!(
        versions.len() >= 6 && versions.windows(2).all(|w| w[0] < w[1]),
        "{feed}"
    );
    assert!(feed["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["GUN"] == g && r["Category"] == "update"));

    // Deleted remotely: nobody has trust data for it any more.
    admin.ok(&["delete", g, "--remote"]);
    let after = Notary::new(&server, d, "after", ADMIN, ADMIN_PASSWORD);
    let gone = after.fails(&["list", g]);
    assert!(gone.contains("does not have trust data"), "{gone}");
    let (code, body) = get(&format!("/v2/{g}/_trust/tuf/root.json"));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("METADATA_NOT_FOUND"), "{body}");

    // Deleting a repository deletes its trust data.
    let other = format!("{HOST}/admin/other");
    admin.ok(&["init", &other]);
    admin.ok(&["publish", &other]);
    let (code, body) = api("DELETE", "/api/v0/repositories/admin/other", "");
    assert_eq!(code, 204, "{body}");
    let (code, body) = get(&format!("/v2/{other}/_trust/tuf/root.json"));
    assert_eq!(code, 404, "{body}");
}

/// What a client of `server` (host and port) shows: the server's address as `<server>`,
/// log times dropped, and the ids it makes at random (keys, new on every run) replaced by
/// their order of first appearance; digests of `content` stay (the same on both).
fn transcript(server: &str, steps: &[(String, Output)], content: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for (step, out) in steps {
        lines.push(format!("$ {step} -> {}", out.status.success()));
        for line in format!("{}{}", out.stdout, out.stderr).lines() {
            let mut line = line.replace(server, "<server>");
            if let Some(at) = line.find("time=\"") {
                let end = line[at + 6..].find('"').map_or(line.len(), |e| at + 7 + e);
                line.replace_range(at..end, "");
            }
            let words: Vec<String> = line
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| w.len() >= 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                .filter(|w| !content.iter().any(|c| c == w))
                .map(str::to_string)
                .collect();
            for w in words {
                let n = ids.iter().position(|i| *i == w).unwrap_or_else(|| {
                    ids.push(w.clone());
                    ids.len() - 1
                });
                line = line.replace(&w, &format!("<key {n}>"));
            }
            lines.push(line.trim().to_string());
        }
    }
    lines
}

/// The same notary CLI sequence, from no trust data to deleted, against Berth and against
/// the reference notary-server: every step succeeds or fails alike and shows the same
/// output, up to the key ids each client makes at random.
#[test]
fn the_notary_cli_sees_what_the_reference_server_shows() {
    let (dir, _stores, server, berth) = new_server(Backend::Embedded);
    let d = dir.path();
    let reference = Notary::reference(d);
    // The reference keeps every GUN in memory while it runs: a new one for each run.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let gun = format!("{HOST}/admin/compare-{nanos}");
    let g = gun.as_str();
    for (file, text) in [("one", "manifest one"), ("two", "manifest two")] {
        std::fs::write(d.join(file), text).unwrap();
    }
    certs::signer(d, "releases", "/CN=releases");
    let file = |f: &str| d.join(f).display().to_string();
    let (one, two, cert, key) = (
        file("one"),
        file("two"),
        file("releases.crt"),
        file("releases.key"),
    );
    let steps: Vec<Vec<&str>> = vec![
        vec!["list", g],
        vec!["init", g],
        vec!["add", g, "v1", &one],
        vec!["publish", g],
        vec!["list", g],
        vec!["lookup", g, "v1"],
        vec!["lookup", g, "missing"],
        vec!["add", g, "v2", &two],
        vec!["remove", g, "v1"],
        vec!["publish", g],
        vec!["list", g],
        vec!["key", "rotate", g, "snapshot", "-r"],
        vec!["key", "rotate", g, "timestamp", "-r"],
        vec!["list", g],
        vec![
            "delegation",
            "add",
            g,
            "targets/releases",
            &cert,
            "--all-paths",
        ],
        vec!["publish", g],
        vec!["key", "import", &key, "--role", "targets/releases"],
        vec!["add", g, "v3", &one, "--roles", "targets/releases"],
        vec!["publish", g],
        vec!["list", g],
        vec!["list", g, "--roles", "targets/releases"],
        vec!["delegation", "remove", g, "targets/releases", "-y"],
        vec!["publish", g],
        vec!["list", g],
        vec!["delete", g, "--remote"],
        vec!["list", g],
    ];
    let content: Vec<String> = ["manifest one", "manifest two"]
        .iter()
        .map(|t| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t)))
        .collect();
    let run_all = |client: &Notary| {
        let steps: Vec<(String, Output)> = steps
            .iter()
            .map(|args| (args.join(" "), client.run(args)))
            .collect();
        let server = client.url.trim_start_matches("https://");
        transcript(server, &steps, &content)
    };
    let at_reference = run_all(&reference);
    let at_berth = run_all(&berth);
    for (i, (r, b)) in at_reference.iter().zip(&at_berth).enumerate() {
        assert_eq!(
            r,
            b,
            "line {i} differs\nreference:\n{}\nberth:\n{}",
            at_reference.join("\n"),
            at_berth.join("\n")
        );
    }
    assert_eq!(at_reference.len(), at_berth.len());
    let published = at_berth
        .iter()
        .filter(|l| l.starts_with("$ publish") && l.ends_with("-> true"))
        .count();
    assert_eq!(published, 5, "{}", at_berth.join("\n"));
    drop(server);
}

/// On PostgreSQL `berth serve` does not start without a key-encryption key, and says what
/// to do; a `kek_file` that does not hold 32 bytes in base64 is refused on any backend.
#[test]
fn a_key_encryption_key_is_required_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(berth_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .envs(envs.iter().copied());
        run(&mut cmd, Duration::from_secs(60))
    };
    // Refused before any connection is tried: the database need not even exist.
    let out = serve(&[("BERTH_METADATA_URL", "postgres://nobody@127.0.0.1:1/none")]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("keys.kek_file (or BERTH_KEK_FILE) must name a file"),
        "{}",
        out.stderr
    );
    std::fs::write(dir.path().join("short"), "c2hvcnQ=\n").unwrap();
    let short = dir.path().join("short").display().to_string();
    let out = serve(&[("BERTH_KEK_FILE", short.as_str())]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("does not hold 32 bytes in base64"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("data").join("berth.db").exists(),
        "nothing created"
    );
}

/// A server on `backend` over TLS in a new directory, and the administrator's notary
/// client.
fn new_server(backend: Backend) -> (tempfile::TempDir, Stores, Process, Notary) {
    let dir = tempfile::tempdir().unwrap();
    certs::ca_and_server(dir.path());
    let stores = Stores::new(backend);
    let server = serve(dir.path(), &stores);
    let admin = Notary::new(&server, dir.path(), "admin", ADMIN, ADMIN_PASSWORD);
    (dir, stores, server, admin)
}

/// The key-encryption key of the processes on `stores`.
fn kek_of(stores: &Stores, data: &Path) -> berth_core::Kek {
    use base64::Engine;
    let text = std::fs::read_to_string(stores.kek_file(data)).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap();
    berth_core::Kek::new(bytes.try_into().unwrap())
}

/// The sealed trust keys of `repo` and the token signing keys, read from the metadata
/// store of the processes on `stores`.
fn stored_keys(
    stores: &Stores,
    data: &Path,
    repo: &str,
) -> (
    Vec<berth_meta::TrustKey>,
    Vec<berth_meta::identity::SigningKeyRecord>,
) {
    use berth_meta::{TokenStore, TrustStore};
    async fn read<S: TrustStore + TokenStore>(
        meta: S,
        repo: &str,
    ) -> (
        Vec<berth_meta::TrustKey>,
        Vec<berth_meta::identity::SigningKeyRecord>,
    ) {
        let keys = meta.trust_keys(repo).await.unwrap();
        (keys, meta.signing_keys().await.unwrap())
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        match stores.metadata_url() {
            Some(url) => read(berth_meta::PgMetaStore::connect(url).await.unwrap(), repo).await,
            None => {
                let path = data.join("berth.db");
                read(
                    berth_meta::SqliteMetaStore::open(&path).await.unwrap(),
                    repo,
                )
                .await
            }
        }
    })
}

both_backends!(private_keys_are_never_in_clear);

/// No private key is in clear in the database (SQLite's files; a dump of PostgreSQL), the
/// log, an API response or `/metrics`: neither the keys the server made (the trust
/// service's and the token service's, opened here with the key-encryption key to know what
/// to look for) nor a key the client made (a delegation's).
fn private_keys_are_never_in_clear(backend: Backend) {
    let (dir, stores, server, admin) = new_server(backend);
    let d = dir.path();
    let data = d.join("data");
    let g = format!("{HOST}/admin/keys");
    std::fs::write(d.join("one"), "manifest one").unwrap();
    certs::signer(d, "releases", "/CN=releases");
    admin.ok(&["init", &g]);
    admin.ok(&["add", &g, "v1", &d.join("one").display().to_string()]);
    admin.ok(&["publish", &g]);
    for role in ["snapshot", "timestamp"] {
        admin.ok(&["key", "rotate", &g, role, "-r"]);
    }
    let releases = d.join("releases.crt").display().to_string();
    admin.ok(&[
        "delegation",
        "add",
        &g,
        "targets/releases",
        &releases,
        "--all-paths",
    ]);
    admin.ok(&["publish", &g]);

    // What to look for: the server's keys, opened, and the delegation's private key.
    let kek = kek_of(&stores, &data);
    let (sealed, token_keys) = stored_keys(&stores, &data, "admin/keys");
    assert_eq!(
        sealed.len(),
        3,
        "the first timestamp key and two rotated ones"
    );
    let mut secrets: Vec<Vec<u8>> = sealed
        .iter()
        .map(|k| kek.open(&["admin/keys", &k.key_id], &k.sealed).unwrap())
        .collect();
    assert!(!token_keys.is_empty());
    for k in &token_keys {
        let key = berth_core::access::signing_key(&kek, k).unwrap();
        secrets.push(pem_body(&key.to_pkcs8_pem()));
    }
    secrets.push(pem_body(
        &std::fs::read_to_string(d.join("releases.key")).unwrap(),
    ));

    // Where it must not be.
    let get = |path: &str| as_admin(d, &server, path, &[]).1;
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("/metrics".into(), get("/metrics").into_bytes()),
        (
            "trust status".into(),
            get("/api/v0/repositories/admin/keys/trust").into_bytes(),
        ),
        (
            "cluster status".into(),
            get("/api/v0/meta/cluster_status").into_bytes(),
        ),
        ("audit".into(), get("/api/v0/audit?n=1000").into_bytes()),
    ];
    for role in ROLES {
        let file = get(&format!("/v2/{g}/_trust/tuf/{role}.json"));
        places.push((role.into(), file.into_bytes()));
    }
    for role in ["snapshot", "timestamp"] {
        places.push((
            format!("{role}.key"),
            get(&format!("/v2/{g}/_trust/tuf/{role}.key")).into_bytes(),
        ));
    }
    drop(server);
    places.push(("log".into(), std::fs::read(d.join("berth.log")).unwrap()));
    places.extend(stores.metadata_bytes(&data));
    for secret in &secrets {
        for form in forms(secret) {
            for (place, bytes) in &places {
                assert!(!contains(bytes, &form), "a private key in clear in {place}");
            }
        }
    }
}

/// The DER bytes of a PEM block.
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

both_backends!(docker_content_trust);

/// The engine's trust of a registry's CA (`/etc/docker/certs.d/<host>/ca.crt`, read at
/// each connection), removed when dropped.
pub(crate) struct EngineTrustsCa(PathBuf);

impl EngineTrustsCa {
    pub(crate) fn new(host: &str, ca: &Path) -> EngineTrustsCa {
        let dir = PathBuf::from("/etc/docker/certs.d").join(host);
        std::fs::create_dir_all(&dir).expect("creating /etc/docker/certs.d/<host>");
        std::fs::copy(ca, dir.join("ca.crt")).expect("copying the CA for the engine");
        EngineTrustsCa(dir)
    }
}

impl Drop for EngineTrustsCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One user's docker CLI (the binary `bin`) with content trust on: its own config
/// (logins, trust keys, Berth's CA for the trust client).
pub(crate) struct Docker {
    env: ClientEnv,
    bin: PathBuf,
}

impl Docker {
    pub(crate) fn new(
        bin: &Path,
        server: &Process,
        ca: &Path,
        user: &str,
        password: &str,
    ) -> Docker {
        let env = ClientEnv::new();
        let tls = env.path("docker/tls").join(&server.host);
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::copy(ca, tls.join("ca.crt")).unwrap();
        env.docker_login(&server.host, user, password);
        Docker {
            env,
            bin: bin.to_path_buf(),
        }
    }

    /// This CLI against the engine of DOCKER_HOST.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = self.env.cmd(&self.bin);
        c.env("DOCKER_HOST", require_env("DOCKER_HOST"));
        c
    }

    pub(crate) fn path(&self, sub: &str) -> PathBuf {
        self.env.path(sub)
    }
}

fn trusted(env: &Docker, args: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.args(args)
        .env("DOCKER_CONTENT_TRUST", "1")
        .env(
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
            "docker-root-passphrase",
        )
        .env(
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
            "docker-repo-passphrase",
        );
    run(&mut cmd, Duration::from_secs(180))
}

/// A one-layer image `image` in the engine, of a file holding `content`.
pub(crate) fn image_of(docker: &Docker, content: &str, image: &str) {
    std::fs::write(docker.path("tmp/f"), content).unwrap();
    let tar = docker.path("tmp/image.tar");
    run_ok(
        Command::new("tar")
            .arg("cf")
            .arg(&tar)
            .arg("-C")
            .arg(docker.path("tmp"))
            .arg("f"),
        Duration::from_secs(30),
    );
    run_ok(
        docker.cmd().arg("import").arg(&tar).arg(image),
        Duration::from_secs(60),
    );
}

pub(crate) fn trusted_ok(env: &Docker, args: &[&str]) -> String {
    succeeded(&format!("docker {args:?}"), trusted(env, args))
}

/// `docker trust inspect`: each signed tag with its signers.
fn signed_tags(env: &Docker, repo: &str) -> Vec<(String, Vec<String>)> {
    let out = trusted_ok(env, &["trust", "inspect", repo]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let tags = v[0]["SignedTags"].as_array().cloned().unwrap_or_default();
    tags.iter()
        .map(|t| {
            let signers = t["Signers"].as_array().unwrap().iter();
            let signers = signers.map(|s| s.as_str().unwrap().to_string()).collect();
            (t["SignedTag"].as_str().unwrap().to_string(), signers)
        })
        .collect()
}

/// The docker CLI on PATH (version 28, which still signs and verifies) on both store
/// pairs.
fn docker_content_trust(backend: Backend) {
    let bin = require_tool("docker", "install Debian package docker.io");
    docker_content_trust_with(backend, &bin);
}

/// Debian's own docker CLI (package docker.io, 20.10 on bookworm), which may be another
/// version than the one on PATH.
#[test]
fn debian_docker_cli_content_trust() {
    let files = run_ok(
        Command::new("dpkg-query").args(["-L", "docker.io"]),
        Duration::from_secs(30),
    );
    let bin = files
        .stdout
        .lines()
        .find(|l| l.ends_with("/bin/docker"))
        .expect("Debian package docker.io installs bin/docker");
    docker_content_trust_with(Backend::Embedded, Path::new(bin));
}

/// A server over TLS on `backend` whose certificate the Docker engine trusts (while the
/// last value lives), in a new directory; the CA's path.
pub(crate) fn docker_server(
    backend: Backend,
) -> (tempfile::TempDir, Stores, Process, PathBuf, EngineTrustsCa) {
    let dir = tempfile::tempdir().unwrap();
    certs::ca_and_server(dir.path());
    let stores = Stores::new(backend);
    let server = serve(dir.path(), &stores);
    let ca = dir.path().join("ca.crt");
    let engine = EngineTrustsCa::new(&server.host, &ca);
    (dir, stores, server, ca, engine)
}

/// A docker CLI (`bin`) through Berth's token service over HTTPS: a trusted push signs,
/// `docker trust inspect` shows it, a signer is added and signs, a signature is revoked, a
/// trusted pull verifies a signed tag and refuses an unsigned one, and a user who may only
/// pull verifies but cannot sign.
fn docker_content_trust_with(backend: Backend, bin: &Path) {
    let (dir, _stores, server, ca, _engine) = docker_server(backend);
    let d = dir.path();
    let admin = Docker::new(bin, &server, &ca, ADMIN, ADMIN_PASSWORD);
    let repo = format!("{}/admin/dct", server.host);
    let image = |tag: &str| format!("{repo}:{tag}");
    // A one-layer image of the test's own.
    std::fs::write(admin.path("tmp/f"), "trusted content\n").unwrap();
    run_ok(
        Command::new("tar")
            .args(["cf"])
            .arg(admin.path("tmp/image.tar"))
            .arg("-C")
            .arg(admin.path("tmp"))
            .arg("f"),
        Duration::from_secs(30),
    );
    run_ok(
        admin
            .cmd()
            .arg("import")
            .arg(admin.path("tmp/image.tar"))
            .arg(image("1")),
        Duration::from_secs(60),
    );

    let pushed = trusted_ok(&admin, &["push", &image("1")]);
    assert!(pushed.contains("Successfully signed"), "{pushed}");
    assert_eq!(
        signed_tags(&admin, &repo),
        [("1".to_string(), vec!["Repo Admin".to_string()])]
    );

    // A signer with a key of their own signs a second tag; the signature is then revoked.
    let keys = admin.path("tmp");
    let keys = keys.display().to_string();
    trusted_ok(
        &admin,
        &["trust", "key", "generate", "alice", "--dir", &keys],
    );
    let alice_pub = format!("{keys}/alice.pub");
    trusted_ok(
        &admin,
        &[
            "trust", "signer", "add", "--key", &alice_pub, "alice", &repo,
        ],
    );
    run_ok(
        admin.cmd().args(["tag", &image("1"), &image("2")]),
        Duration::from_secs(30),
    );
    let signed = trusted_ok(&admin, &["trust", "sign", &image("2")]);
    assert!(signed.contains("Successfully signed"), "{signed}");
    let tags = signed_tags(&admin, &repo);
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags[1], ("2".to_string(), vec!["alice".to_string()]));
    trusted_ok(&admin, &["trust", "revoke", "-y", &image("2")]);
    assert_eq!(signed_tags(&admin, &repo).len(), 1);

    // A trusted pull verifies a signed tag, and refuses one pushed without trust.
    run_ok(
        admin.cmd().args(["rmi", &image("1"), &image("2")]),
        Duration::from_secs(30),
    );
    let pulled = trusted_ok(&admin, &["pull", &image("1")]);
    assert!(
        pulled.contains(&format!("Tagging {repo}@sha256:")),
        "{pulled}"
    );
    run_ok(
        admin.cmd().args(["tag", &image("1"), &image("unsigned")]),
        Duration::from_secs(30),
    );
    run_ok(
        admin.cmd().args(["push", &image("unsigned")]),
        Duration::from_secs(120),
    );
    run_ok(
        admin.cmd().args(["rmi", &image("unsigned")]),
        Duration::from_secs(30),
    );
    let refused = trusted(&admin, &["pull", &image("unsigned")]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("No valid trust data for unsigned"),
        "{}",
        refused.stderr
    );

    // A signed tag pushed over without trust by another image, then garbage collected with
    // no grace: the manifest its signed target names stays (nothing else keeps it), and a
    // trusted pull still gets it.
    let import = |content: &str, tag: &str| image_of(&admin, content, &image(tag));
    let digest_in = |out: &str| {
        let at = out.find("digest: sha256:").expect("a pushed digest") + 8;
        out[at..at + 71].to_string()
    };
    import("signed alone\n", "3");
    let signed = digest_in(&trusted_ok(&admin, &["push", &image("3")]));
    import("pushed over\n", "3");
    let over = run_ok(
        admin.cmd().args(["push", &image("3")]),
        Duration::from_secs(120),
    );
    assert_ne!(digest_in(&over.stdout), signed);
    let api = |method: &str, path: &str, body: &str| admin_api(d, &server, method, path, body);
    let gc = api(
        "POST",
        "/api/v0/gc/runs",
        r#"{"wait": true, "grace": "0s"}"#,
    );
    assert_eq!(gc.0, 200, "{}", gc.1);
    run_ok(
        admin.cmd().args(["rmi", &image("3")]),
        Duration::from_secs(30),
    );
    let pulled = trusted_ok(&admin, &["pull", &image("3")]);
    assert!(pulled.contains(&format!("{repo}@{signed}")), "{pulled}");

    // A user who may only pull (the repository made public) verifies, and cannot sign.
    create_user(d, &server, "viewer", "viewer-password-1");
    let public = api(
        "PATCH",
        "/api/v0/repositories/admin/dct",
        r#"{"visibility":"public"}"#,
    );
    assert_eq!(public.0, 200, "{}", public.1);
    let viewer = Docker::new(bin, &server, &ca, "viewer", "viewer-password-1");
    let pulled = trusted_ok(&viewer, &["pull", &image("1")]);
    assert!(
        pulled.contains(&format!("Tagging {repo}@sha256:")),
        "{pulled}"
    );
    let denied = trusted(&viewer, &["trust", "sign", &image("1")]);
    assert!(
        !denied.status.success(),
        "a pull-only user signed:\n{}",
        denied.stdout
    );
    // Unchanged: 1 as pushed, 3 signed by the push with trust into alice's role.
    assert_eq!(
        signed_tags(&admin, &repo),
        [
            ("1".to_string(), vec!["Repo Admin".to_string()]),
            ("3".to_string(), vec!["alice".to_string()])
        ]
    );
    for env in [&admin, &viewer] {
        let _ = run(
            env.cmd().args(["rmi", "-f", &image("1")]),
            Duration::from_secs(30),
        );
    }
}

/// A replica started with another key-encryption key than the one that sealed the keys
/// refuses to start, and says why: it could neither verify the other replicas' tokens nor
/// sign with the trust keys. `/health` shows the trust service healthy when the key fits.
#[test]
fn a_wrong_key_encryption_key_is_refused_at_start() {
    let (dir, stores, server, admin) = new_server(Backend::Embedded);
    let d = dir.path();
    let g = format!("{HOST}/admin/kek");
    admin.ok(&["init", &g]);
    admin.ok(&["publish", &g]);
    let (code, body) = as_admin(d, &server, "/health", &[]);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, &body["components"]["trust"]["healthy"]),
        (200, &true.into()),
        "{body}"
    );
    drop(server);
    std::fs::write(
        d.join("other.kek"),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )
    .unwrap();
    let mut cmd = Command::new(berth_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.join("data"))
        .env("BERTH_KEK_FILE", d.join("other.kek"));
    let out = run(stores.configure(&mut cmd), Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("the token signing key")
            && out
                .stderr
                .contains("does not open with this key-encryption key"),
        "{}",
        out.stderr
    );
}

/// A token signing key stored in clear (as before keys were sealed) is sealed in place at
/// the next start, and keeps signing: a token it signed before still verifies.
#[test]
fn a_token_signing_key_stored_in_clear_is_sealed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs::ca_and_server(d);
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = berth_auth::token::SigningKey::generate();
    let pem = key.to_pkcs8_pem();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use berth_meta::TokenStore;
        let meta = berth_meta::SqliteMetaStore::open(&data.join("berth.db"))
            .await
            .unwrap();
        meta.signing_key_add(key.kid(), &pem).await.unwrap();
    });
    let stores = Stores::new(Backend::Embedded);
    let server = serve(d, &stores);
    let (_, stored) = stored_keys(&stores, &data, "");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kid, key.kid());
    assert_ne!(stored[0].pem, pem);
    let opened = berth_core::access::signing_key(&kek_of(&stores, &data), &stored[0]).unwrap();
    assert_eq!(opened.to_pkcs8_pem(), pem);
    // The token service signs with it.
    let (code, body) = as_admin(d, &server, "/auth/token?service=berth", &[]);
    assert_eq!(code, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let header = token["token"].as_str().unwrap().split('.').next().unwrap();
    let header = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap()
    };
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["kid"], key.kid(), "{header}");
}
