//! Directory users end to end: the real `berth` binary (on SQLite and the filesystem, and
//! on PostgreSQL and S3), configured with a TOML file pointing at a real slapd started by
//! `berth_testkit::Slapd` (one per test, on a free port), once with the plain OpenLDAP directory (`uid`,
//! `groupOfNames`) and once with the Active-Directory-like one (`sAMAccountName`,
//! `memberOf`, `userAccountControl`).
//!
//! What each run shows: a directory user who was never synced logs in and gets an account
//! with their mapped team at once (and one in no mapped group is refused); `berth admin
//! directory sync` creates the others; groups map to teams, and a team's grant on a private
//! repository lets its members pull, with `docker login` and `docker pull` through the
//! Docker engine; a user removed from a group (ldapmodify) loses the pull after the next
//! sync; a password changed in the directory ends the old password's refresh tokens at the
//! first login with the new one; a deleted user is deactivated and their access and refresh
//! tokens stop working;
//! with slapd stopped a sync fails and changes nothing, and users keep logging in (the
//! password hash cached at their last bind) and pulling; once slapd is back, the schedule
//! (`BERTH_DIRECTORY_SYNC_INTERVAL_SECS`) syncs again by itself.
//!
//! Needs Debian's slapd and ldap-utils (`cargo xtask peers` installs them), a
//! Docker engine (`DOCKER_HOST`), and for the scaled variant PostgreSQL and S3
//! (`BERTH_TEST_PG_URL`, `BERTH_TEST_S3_*`). Without them the tests fail: they never skip.

use berth_testkit::e2e::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

both_backends!(openldap, active_directory);

const ADMIN_PW: &str = "ldap-e2e-admin-pw";
const REPO: &str = "acme/private";

fn slapd_admin_password() -> String {
    berth_testkit::slapd::ADMIN_PASSWORD.into()
}

/// Which of the two sample directories.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    OpenLdap,
    ActiveDirectory,
}

/// A test's own slapd (from the test kit: free port, fresh data), with the directory
/// changes these tests make; stopped when dropped.
struct Slapd {
    kind: Kind,
    server: berth_testkit::Slapd,
}

impl Slapd {
    fn start(kind: Kind) -> Slapd {
        let directory = match kind {
            Kind::OpenLdap => berth_testkit::Directory::OpenLdap,
            Kind::ActiveDirectory => berth_testkit::Directory::ActiveDirectory,
        };
        Slapd {
            kind,
            server: berth_testkit::Slapd::start(directory),
        }
    }

    /// Starts slapd again on its existing data.
    fn up(&self) {
        self.server.up();
    }

    fn stop(&self) {
        self.server.stop();
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn admin_dn(&self) -> String {
        self.server.admin_dn()
    }

    /// The DN of one of the sample users.
    fn user_dn(&self, name: &str) -> String {
        match self.kind {
            Kind::OpenLdap => format!("uid={name},ou=people,dc=example,dc=org"),
            Kind::ActiveDirectory => {
                let cn = match name {
                    "alice" => "Alice Liddell",
                    "bob" => "Bob Builder",
                    "carol" => "Carol Danvers",
                    other => other,
                };
                format!("CN={cn},CN=Users,DC=corp,DC=example,DC=com")
            }
        }
    }

    /// The DN of the group mapped to acme/devs.
    fn developers_dn(&self) -> &'static str {
        match self.kind {
            Kind::OpenLdap => "cn=developers,ou=groups,dc=example,dc=org",
            Kind::ActiveDirectory => "CN=Registry Developers,CN=Users,DC=corp,DC=example,DC=com",
        }
    }

    /// The `[directory]` section for this server: developers -> acme/devs (by name),
    /// admins -> acme/admins (by DN).
    fn config_section(&self) -> String {
        let (pw, url, admin) = (slapd_admin_password(), self.url(), self.admin_dn());
        match self.kind {
            Kind::OpenLdap => format!(
                r#"[directory]
url = "{url}"
bind_dn = "{admin}"
bind_password = "{pw}"
user_base = "ou=people,dc=example,dc=org"
group_base = "ou=groups,dc=example,dc=org"

[[directory.sync.teams]]
group = "developers"
team = "acme/devs"

[[directory.sync.teams]]
group = "cn=admins,ou=groups,dc=example,dc=org"
team = "acme/admins"
"#
            ),
            // OpenLDAP has no AD shorthand `objectCategory=person`; the class is enough here.
            Kind::ActiveDirectory => format!(
                r#"[directory]
url = "{url}"
bind_dn = "{admin}"
bind_password = "{pw}"
user_base = "CN=Users,DC=corp,DC=example,DC=com"
user_filter = "(objectClass=user)"
username_attribute = "sAMAccountName"
full_name_attribute = "displayName"
group_base = "DC=corp,DC=example,DC=com"
group_filter = "(objectClass=group)"
group_name_attribute = "sAMAccountName"
membership = "user-member-of"
ad_disabled_flag = true

[[directory.sync.teams]]
group = "registry-developers"
team = "acme/devs"

[[directory.sync.teams]]
group = "CN=Registry Admins,CN=Users,DC=corp,DC=example,DC=com"
team = "acme/admins"
"#
            ),
        }
    }

    /// A user in no group (so not eligible for an account under the default policy).
    fn add_ungrouped_user(&self, name: &str, password: &str) {
        let ldif = match self.kind {
            Kind::OpenLdap => format!(
                "dn: uid={name},ou=people,dc=example,dc=org\nchangetype: add\n\
                 objectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\n\
                 userPassword: {password}\n"
            ),
            Kind::ActiveDirectory => format!(
                "dn: CN={name},CN=Users,DC=corp,DC=example,DC=com\nchangetype: add\n\
                 objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
                 objectClass: user\ncn: {name}\nsn: {name}\nsAMAccountName: {name}\n\
                 userAccountControl: 512\nuserPassword: {password}\n"
            ),
        };
        self.modify(&ldif);
    }

    fn set_developer(&self, user: &str, member: bool) {
        let op = if member { "add" } else { "delete" };
        self.modify(&format!(
            "dn: {}\nchangetype: modify\n{op}: member\nmember: {}\n",
            self.developers_dn(),
            self.user_dn(user)
        ));
    }

    /// Changes a user's password in the directory.
    fn set_password(&self, user: &str, password: &str) {
        self.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: userPassword\nuserPassword: {password}\n",
            self.user_dn(user)
        ));
    }

    fn modify(&self, ldif: &str) {
        self.server.modify(ldif);
    }

    fn delete(&self, dn: &str) {
        self.server.delete(dn);
    }
}

/// A Berth data directory with its configuration file, and the processes run on it.
struct Berth {
    dir: tempfile::TempDir,
    config: PathBuf,
    http: reqwest::blocking::Client,
    /// The PostgreSQL database created for this test (scaled backend), dropped at the end.
    database: Option<String>,
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Some(db) = &self.database {
            let _ = std::panic::catch_unwind(|| {
                psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            });
        }
    }
}

/// Runs one statement on the test PostgreSQL server's administrative database.
fn psql(sql: &str) {
    let url = require_env("BERTH_TEST_PG_URL");
    let psql = require_tool("psql", "install Debian package postgresql-client");
    run_ok(
        Command::new(psql).args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql]),
        Duration::from_secs(60),
    );
}

/// `BERTH_TEST_PG_URL` naming database `db` instead.
fn database_url(db: &str) -> String {
    let url = require_env("BERTH_TEST_PG_URL");
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (url.clone(), String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// The `[metadata]` and `[blobs]` sections of the scaled backend: a fresh database and a
/// fresh key prefix.
fn scaled_stores(db: &str) -> String {
    format!(
        r#"[metadata]
url = "{}"

[blobs]
kind = "s3"

[blobs.s3]
endpoint = "{}"
bucket = "{}"
region = "{}"
access_key_id = "{}"
secret_access_key = "{}"
path_style = true
allow_http = true
prefix = "ldap-e2e-{}/"
"#,
        database_url(db),
        require_env("BERTH_TEST_S3_ENDPOINT"),
        require_env("BERTH_TEST_S3_BUCKET"),
        require_env("BERTH_TEST_S3_REGION"),
        require_env("BERTH_TEST_S3_ACCESS_KEY"),
        require_env("BERTH_TEST_S3_SECRET_KEY"),
        unique()
    )
}

impl Berth {
    fn new(slapd: &Slapd, backend: Backend) -> Berth {
        let dir = tempfile::Builder::new()
            .prefix("berth-ldap-e2e-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("berth.toml");
        let (database, stores) = match backend {
            Backend::Embedded => (None, String::new()),
            Backend::Scaled => {
                let db = format!("berth_ldap_{}", unique());
                psql(&format!("CREATE DATABASE {db}"));
                // PostgreSQL needs a key-encryption key configured.
                let kek = dir.path().join("kek");
                std::fs::write(&kek, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
                    .expect("write kek");
                let keys = format!("[keys]\nkek_file = \"{}\"\n", kek.display());
                let stores = format!("{}\n{keys}", scaled_stores(&db));
                (Some(db), stores)
            }
        };
        // No password cache, so every login checks the directory (or the cached hash).
        let text = format!(
            "data_dir = \"{}\"\n\n[auth]\ncredential_cache_secs = 0\n\n{stores}\n{}\n[directory_sync]\ninterval_secs = 0\n",
            dir.path().join("data").display(),
            slapd.config_section()
        );
        std::fs::write(&config, text).expect("write config");
        Berth {
            dir,
            config,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            database,
        }
    }

    /// `berth serve --config FILE` with `envs`.
    fn serve(&self, envs: &[(&str, &str)]) -> Process {
        let mut all = vec![("BERTH_ADMIN_PASSWORD", ADMIN_PW), ("BERTH_LOG", "info")];
        all.extend_from_slice(envs);
        let log = self.dir.path().join(format!("berth-{}.log", unique()));
        Process::spawn(&["--config".as_ref(), self.config.as_os_str()], &all, &log)
    }

    /// `berth admin --init --config FILE ARGS` (the first call creates the registry, as
    /// an operator preparing one before its first `serve` would).
    fn admin(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("admin")
            .arg("--init")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("NO_COLOR", "1")
            .env("BERTH_LOG", "warn");
        run(&mut cmd, Duration::from_secs(120))
    }

    /// Runs a sync now; its report.
    fn sync(&self) -> Value {
        let out = self.admin(&["directory", "sync"]);
        let line = out.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "berth admin directory sync printed no report ({e}):\n{}\n{}",
                out.stdout, out.stderr
            )
        })
    }

    /// `name -> "origin\tstate"` from `berth admin user list`.
    fn users(&self) -> Vec<String> {
        let out = self.admin(&["user", "list"]);
        assert!(out.status.success(), "{}", out.stderr);
        out.stdout.lines().map(str::to_string).collect()
    }

    fn user_line(&self, name: &str) -> Option<String> {
        self.users()
            .into_iter()
            .find(|l| l.split('\t').next() == Some(name))
    }

    /// A registry token for `scope`, with Basic credentials: `(status, token, access)`.
    fn token(&self, host: &str, user: &str, password: &str, scope: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("http://{host}/auth/token"))
            .query(&[("service", "berth"), ("scope", scope)])
            .basic_auth(user, Some(password))
            .send()
            .expect("GET /auth/token");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The actions the token service grants `user` on the repository (401 -> None).
    fn granted(&self, host: &str, user: &str, password: &str) -> Option<Vec<String>> {
        let (status, body) = self.token(
            host,
            user,
            password,
            &format!("repository:{REPO}:pull,push"),
        );
        if status == 401 {
            return None;
        }
        assert_eq!(status, 200, "token for {user}: {body}");
        let token = body["token"].as_str().expect("token");
        let claims = jwt_claims(token);
        Some(
            claims["access"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|e| e["actions"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// GET of the image's manifest with a bearer token of `user`: the status.
    fn pull_status(&self, host: &str, user: &str, password: &str) -> u16 {
        let (status, body) = self.token(host, user, password, &format!("repository:{REPO}:pull"));
        if status != 200 {
            return status;
        }
        let r = self
            .http
            .get(format!("http://{host}/v2/{REPO}/manifests/v1"))
            .bearer_auth(body["token"].as_str().expect("token"))
            .header("Accept", ACCEPT_ALL)
            .send()
            .expect("GET manifest");
        r.status().as_u16()
    }

    /// GET of the image's manifest with Basic credentials (an access token as the password).
    fn basic_pull_status(&self, host: &str, user: &str, password: &str) -> u16 {
        self.http
            .get(format!("http://{host}/v2/{REPO}/manifests/v1"))
            .basic_auth(user, Some(password))
            .header("Accept", ACCEPT_ALL)
            .send()
            .expect("GET manifest")
            .status()
            .as_u16()
    }

    /// Pushes `image` as `REPO:v1`, as the administrator.
    fn push(&self, host: &str, image: &Image) {
        let (status, body) = self.token(
            host,
            "admin",
            ADMIN_PW,
            &format!("repository:{REPO}:pull,push"),
        );
        assert_eq!(status, 200, "admin token: {body}");
        let token = body["token"].as_str().expect("token").to_string();
        let mut blobs: Vec<(&str, &[u8])> = vec![(&image.config_digest, &image.config)];
        for l in &image.layers {
            blobs.push((&l.digest, &l.gz));
        }
        for (digest, bytes) in blobs {
            let r = self
                .http
                .post(format!(
                    "http://{host}/v2/{REPO}/blobs/uploads/?digest={digest}"
                ))
                .bearer_auth(&token)
                .body(bytes.to_vec())
                .send()
                .expect("POST blob");
            assert_eq!(r.status().as_u16(), 201, "blob push: {:?}", r.text());
        }
        let media: Value = serde_json::from_slice(&image.manifest).expect("manifest JSON");
        let r = self
            .http
            .put(format!("http://{host}/v2/{REPO}/manifests/v1"))
            .bearer_auth(&token)
            .header(
                "Content-Type",
                media["mediaType"].as_str().unwrap_or(OCI_MANIFEST),
            )
            .body(image.manifest.clone())
            .send()
            .expect("PUT manifest");
        assert_eq!(r.status().as_u16(), 201, "manifest push: {:?}", r.text());
    }
}

/// The claims of a JWT (not verified: the server did that).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Docker with its own configuration (credentials) against the shared engine; removes the
/// image it pulled when dropped.
struct Docker {
    env: ClientEnv,
    image: String,
}

impl Docker {
    fn login(&self, host: &str, user: &str, password: &str) -> Output {
        run(
            self.env
                .docker()
                .args(["login", "--username", user, "--password", password, host]),
            CLIENT_TIMEOUT,
        )
    }

    fn pull(&self) -> Output {
        run(
            self.env.docker().args(["pull", &self.image]),
            CLIENT_TIMEOUT,
        )
    }

    fn forget(&self) {
        run(
            self.env.docker().args(["rmi", "-f", &self.image]),
            CLIENT_TIMEOUT,
        );
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::env::var_os("DOCKER_HOST").is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.forget()));
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn scenario(kind: Kind, backend: Backend) {
    require_env("DOCKER_HOST");
    let slapd = Slapd::start(kind);
    let berth = Berth::new(&slapd, backend);
    // The organisation and its two teams exist before the directory is read.
    for args in [
        &["org", "create", "acme"][..],
        &["team", "create", "acme", "devs"],
        &["team", "create", "acme", "admins"],
    ] {
        let out = berth.admin(args);
        assert!(out.status.success(), "admin {args:?}: {}", out.stderr);
    }
    let server = berth.serve(&[]);
    let host = server.host.clone();
    let image = Image::random(1, 8, "amd64");
    berth.push(&host, &image);
    // devs may pull the private repository; admins have no grant on it.
    let out = berth.admin(&[
        "team",
        "grant",
        "--role",
        "read-only",
        "--repo",
        REPO,
        "acme",
        "devs",
    ]);
    assert!(out.status.success(), "team grant: {}", out.stderr);
    assert_eq!(berth.pull_status(&host, "admin", ADMIN_PW), 200);

    // Just in time: bob (developers) logs in before any sync and can pull at once.
    assert!(berth.user_line("bob").is_none());
    assert_eq!(
        berth.granted(&host, "bob", "bob-pw"),
        Some(vec!["pull".to_string()])
    );
    assert_eq!(berth.pull_status(&host, "bob", "bob-pw"), 200);
    assert_eq!(
        berth.user_line("bob").as_deref(),
        Some("bob\tdirectory\tactive")
    );
    // A directory user in no mapped group is refused, and gets no account.
    slapd.add_ungrouped_user("dave", "dave-pw");
    assert_eq!(berth.granted(&host, "dave", "dave-pw"), None);
    assert!(berth.user_line("dave").is_none());
    // A wrong directory password gets no account either.
    assert_eq!(berth.granted(&host, "carol", "not-carol-pw"), None);
    assert!(berth.user_line("carol").is_none());

    // The first sync creates alice and carol; bob exists already.
    let report = berth.sync();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["counts"]["created"], 2, "{report}");
    assert_eq!(report["counts"]["memberships_added"], 3, "{report}");
    let users = berth.users();
    for want in [
        "admin\tlocal\tactive\tadmin",
        "alice\tdirectory\tactive",
        "bob\tdirectory\tactive",
        "carol\tdirectory\tactive",
    ] {
        assert!(users.iter().any(|l| l == want), "{want} not in {users:?}");
    }
    assert!(!users.iter().any(|l| l.starts_with("dave\t")), "{users:?}");
    // A second sync has nothing to do.
    let again = berth.sync();
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["counts"]["created"], 0, "{again}");
    assert_eq!(again["counts"]["memberships_added"], 0, "{again}");

    // Groups map to teams: alice (developers) pulls with the Docker engine; carol (admins
    // only) may log in but cannot see the private repository.
    let docker = Docker {
        env: ClientEnv::new(),
        image: format!("{host}/{REPO}:v1"),
    };
    let out = docker.login(&host, "alice", "alice-pw");
    assert!(
        out.status.success(),
        "docker login as alice: {}\n{}",
        out.stdout,
        out.stderr
    );
    let out = docker.pull();
    assert!(
        out.status.success(),
        "docker pull as alice: {}\n{}",
        out.stdout,
        out.stderr
    );
    docker.forget();
    assert_eq!(berth.granted(&host, "carol", "carol-pw"), Some(vec![]));
    assert_eq!(berth.pull_status(&host, "carol", "carol-pw"), 404);

    // Alice leaves developers: after the next sync she can no longer pull.
    slapd.set_developer("alice", false);
    assert_eq!(berth.pull_status(&host, "alice", "alice-pw"), 200);
    let report = berth.sync();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["counts"]["memberships_removed"], 1, "{report}");
    // Still in acme/admins, so still a member of acme.
    assert_eq!(report["counts"]["org_memberships_removed"], 0, "{report}");
    assert_eq!(berth.granted(&host, "alice", "alice-pw"), Some(vec![]));
    assert_eq!(berth.pull_status(&host, "alice", "alice-pw"), 404);
    let out = docker.pull();
    assert!(
        !out.status.success(),
        "docker pulled after alice left the group:\n{}",
        out.stdout
    );
    assert_eq!(
        berth.user_line("alice").as_deref(),
        Some("alice\tdirectory\tactive")
    );

    // Bob has an access token (as a password) and a refresh token (docker login's offline
    // token); both work.
    let out = berth.admin(&["token", "create", "bob", "--description", "ci"]);
    assert!(out.status.success(), "token create: {}", out.stderr);
    let access = out
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("berth_"))
        .unwrap_or_else(|| panic!("no token printed: {}", out.stdout))
        .to_string();
    assert_eq!(berth.basic_pull_status(&host, "bob", &access), 200);
    let r = berth
        .http
        .get(format!("http://{host}/auth/token"))
        .query(&[
            ("service", "berth"),
            ("scope", &format!("repository:{REPO}:pull")),
            ("offline_token", "true"),
        ])
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    let old_refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token with offline_token=true")
        .to_string();
    let refresh_with = |refresh: &str| {
        berth
            .http
            .post(format!("http://{host}/auth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("service", "berth"),
                ("scope", &format!("repository:{REPO}:pull")),
                ("refresh_token", refresh),
            ])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(refresh_with(&old_refresh), 200);

    // Bob's password changes in the directory. His first login with the new one caches
    // its hash, which ends the old password's sessions (issue 10): the refresh token from
    // the old password stops, the remembered old password too; his access token is a
    // credential of its own and keeps working.
    slapd.set_password("bob", "bob-pw2");
    let r = berth
        .http
        .get(format!("http://{host}/auth/token"))
        .query(&[
            ("service", "berth"),
            ("scope", &format!("repository:{REPO}:pull")),
            ("offline_token", "true"),
        ])
        .basic_auth("bob", Some("bob-pw2"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "login with the new password");
    let body: Value = r.json().unwrap();
    assert_eq!(
        refresh_with(&old_refresh),
        401,
        "the old password's refresh token outlived a directory password change"
    );
    assert_eq!(
        berth.granted(&host, "bob", "bob-pw"),
        None,
        "the old password"
    );
    assert_eq!(berth.basic_pull_status(&host, "bob", &access), 200);
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token for the new password: {body}"))
        .to_string();
    let refresh_status = || refresh_with(&refresh);
    assert_eq!(refresh_status(), 200);

    // Bob is deleted from the directory: the next sync deactivates him and revokes his
    // tokens; neither his password nor his tokens work any more.
    slapd.delete(&slapd.user_dn("bob"));
    let report = berth.sync();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["counts"]["deactivated"], 1, "{report}");
    assert_eq!(report["counts"]["tokens_revoked"], 2, "{report}");
    // Out of acme/devs, his only team of acme: out of acme.
    assert_eq!(report["counts"]["memberships_removed"], 1, "{report}");
    assert_eq!(report["counts"]["org_memberships_removed"], 1, "{report}");
    assert_eq!(
        berth.user_line("bob").as_deref(),
        Some("bob\tdirectory\tinactive")
    );
    assert_eq!(berth.basic_pull_status(&host, "bob", &access), 401);
    assert_eq!(refresh_status(), 401);
    assert_eq!(berth.granted(&host, "bob", "bob-pw"), None);

    // Alice comes back to developers, but slapd is down: the sync fails and changes
    // nothing; users keep what they had (login with the cached hash, pulls).
    let before = berth.users();
    slapd.stop();
    let report = berth.sync();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["unreachable"], true, "{report}");
    assert_eq!(berth.users(), before);
    assert_eq!(
        berth.granted(&host, "carol", "carol-pw"),
        Some(vec![]),
        "carol logs in with the cached hash"
    );
    assert_eq!(berth.granted(&host, "alice", "not-alice-pw"), None);
    assert_eq!(berth.granted(&host, "bob", "bob-pw"), None);
    let out = docker.login(&host, "alice", "alice-pw");
    assert!(
        out.status.success(),
        "docker login with the directory down: {}",
        out.stderr
    );
    // A user who never logged in has no cached hash: refused while the directory is down.
    assert_eq!(berth.granted(&host, "dave", "dave-pw"), None);

    // The history of runs: newest first, the failed one on top.
    let out = berth.admin(&["directory", "runs", "-n", "3"]);
    assert!(out.status.success(), "{}", out.stderr);
    let runs: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON run"))
        .collect();
    assert_eq!(runs.len(), 3, "{}", out.stdout);
    assert_eq!(runs[0]["ok"], false);
    assert_eq!(runs[0]["trigger"], "command");
    assert_eq!(runs[1]["counts"]["deactivated"], 1);
    drop(server);

    // Slapd is back and alice is in developers again: a server whose schedule syncs every
    // second gives her the pull back without anyone asking.
    slapd.up();
    slapd.set_developer("alice", true);
    let server = berth.serve(&[("BERTH_DIRECTORY_SYNC_INTERVAL_SECS", "1")]);
    let host = server.host.clone();
    wait_for(
        "the scheduled sync to give alice her team back",
        Duration::from_secs(60),
        || berth.pull_status(&host, "alice", "alice-pw") == 200,
    );
    let out = berth.admin(&["directory", "runs", "-n", "1"]);
    let last: Value = serde_json::from_str(out.stdout.lines().next().expect("a run")).unwrap();
    assert_eq!(last["trigger"], "schedule", "{last}");
    assert_eq!(last["ok"], true, "{last}");
    assert_eq!(
        berth.user_line("bob").as_deref(),
        Some("bob\tdirectory\tinactive")
    );
    drop(server);
}

fn openldap(backend: Backend) {
    scenario(Kind::OpenLdap, backend);
}

fn active_directory(backend: Backend) {
    scenario(Kind::ActiveDirectory, backend);
}

/// Sets up acme with its two mapped teams and starts `berth serve`.
fn acme(berth: &Berth) {
    for args in [
        &["org", "create", "acme"][..],
        &["team", "create", "acme", "devs"],
        &["team", "create", "acme", "admins"],
    ] {
        let out = berth.admin(args);
        assert!(out.status.success(), "admin {args:?}: {}", out.stderr);
    }
}

fn wait_for_log(server: &Process, what: &str) -> String {
    let mut text = String::new();
    wait_for(
        &format!("{what:?} in the server log"),
        Duration::from_secs(30),
        || {
            text = std::fs::read_to_string(&server.log).unwrap_or_default();
            text.contains(what)
        },
    );
    text
}

/// Item 16: a wrong or expired service-account password locked out every directory user,
/// even those whose password was cached at their last bind. Now a service bind failure is
/// the directory's failure, not the user's: cached logins keep working, `berth serve` says
/// so at start, and `/health` and the cluster status show the directory failing.
#[test]
fn service_bind_failure_keeps_cached_logins() {
    let slapd = Slapd::start(Kind::OpenLdap);
    let berth = Berth::new(&slapd, Backend::Embedded);
    acme(&berth);
    let server = berth.serve(&[]);
    let host = server.host.clone();
    wait_for_log(&server, "directory check passed");
    // carol logs in once: her account is created and her password hash cached.
    assert_eq!(berth.granted(&host, "carol", "carol-pw"), Some(vec![]));
    let health: Value = berth
        .http
        .get(format!("http://{host}/health"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        health["components"]["directory"]["healthy"], true,
        "{health}"
    );
    drop(server);

    // The service account's password is changed in the directory, not in Berth.
    let text = std::fs::read_to_string(&berth.config).unwrap();
    let wrong = text.replace(
        &format!("bind_password = \"{}\"", slapd_admin_password()),
        "bind_password = \"expired-service-pw\"",
    );
    assert_ne!(wrong, text);
    std::fs::write(&berth.config, wrong).unwrap();
    let server = berth.serve(&[]);
    let host = server.host.clone();
    let log = wait_for_log(&server, "DIRECTORY CHECK FAILED");
    assert!(
        log.contains("invalidCredentials (result code 49)")
            && log.contains("cn=admin,dc=example,dc=org"),
        "{log}"
    );
    assert!(
        !log.contains("expired-service-pw"),
        "the password is logged:\n{log}"
    );

    // carol still logs in with her cached hash; a wrong password and a user who never
    // logged in are refused.
    assert_eq!(
        berth.granted(&host, "carol", "carol-pw"),
        Some(vec![]),
        "carol's cached login refused while the service bind fails"
    );
    assert_eq!(berth.granted(&host, "carol", "not-carol-pw"), None);
    assert_eq!(berth.granted(&host, "alice", "alice-pw"), None);

    // /health lists the directory as failing (without taking the replica out: 200) ...
    let r = berth
        .http
        .get(format!("http://{host}/health"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let health: Value = r.json().unwrap();
    let dir = &health["components"]["directory"];
    assert_eq!(dir["healthy"], false, "{health}");
    assert!(
        dir["error"]
            .as_str()
            .unwrap_or_default()
            .contains("invalidCredentials"),
        "{health}"
    );
    assert!(
        health["failing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "directory")),
        "{health}"
    );
    // ... and so does the cluster status.
    let status: Value = berth
        .http
        .get(format!("http://{host}/api/v0/meta/cluster_status"))
        .basic_auth("admin", Some(ADMIN_PW))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        status["replicas"][0]["directory"]["healthy"], false,
        "{status}"
    );
    drop(server);
}

/// Item 17: directory users whose names are not valid Berth names (a space, non-ASCII
/// letters) got accounts that the API could not manage (400 `NAME_INVALID` on deactivate,
/// team removal, token creation). Now their accounts take the documented mapped name
/// (`Jane Doe` -> `jane.doe`, `José` -> `jose`), which the API manages like any other; they
/// log in with their directory name; a name with nothing mappable gets no account and a
/// warning.
#[test]
fn directory_names_outside_the_name_rule_get_manageable_accounts() {
    let slapd = Slapd::start(Kind::OpenLdap);
    // (entry cn, uid as base64 LDIF, password): "Jane Doe", "José", "Ann Lee", "李雷".
    let people = [
        ("Jane Doe", "SmFuZSBEb2U=", "jane-pw"),
        ("Jose Garcia", "Sm9zw6k=", "jose-pw"),
        ("Ann Lee", "QW5uIExlZQ==", "ann-pw"),
        ("Li Lei", "5p2O6Zu3", "li-pw"),
    ];
    for (cn, uid, pw) in people {
        slapd.modify(&format!(
            "dn: cn={cn},ou=people,dc=example,dc=org\nchangetype: add\n\
             objectClass: inetOrgPerson\ncn: {cn}\nsn: {cn}\nuid:: {uid}\nuserPassword: {pw}\n\n\
             dn: cn=developers,ou=groups,dc=example,dc=org\nchangetype: modify\n\
             add: member\nmember: cn={cn},ou=people,dc=example,dc=org\n"
        ));
    }
    let berth = Berth::new(&slapd, Backend::Embedded);
    // Users may also log in with their e-mail address.
    let text = std::fs::read_to_string(&berth.config).unwrap();
    let text = text.replacen(
        "[directory]\n",
        "[directory]\nlogin_attributes = [\"mail\"]\n",
        1,
    );
    std::fs::write(&berth.config, text).unwrap();
    acme(&berth);
    let server = berth.serve(&[]);
    let host = server.host.clone();

    // Item 19: alice logs in first with her e-mail address: her account is alice, and the
    // next login by e-mail is that account's.
    assert_eq!(
        berth.granted(&host, "alice@example.org", "alice-pw"),
        Some(vec![])
    );
    assert_eq!(
        berth.user_line("alice").as_deref(),
        Some("alice\tdirectory\tactive")
    );
    assert_eq!(
        berth.granted(&host, "alice@example.org", "alice-pw"),
        Some(vec![])
    );
    assert_eq!(berth.granted(&host, "alice@example.org", "bob-pw"), None);
    assert_eq!(berth.granted(&host, "alice", "alice-pw"), Some(vec![]));
    assert!(berth.user_line("alice.example.org").is_none());

    // Ann logs in before any sync with her directory name: her account is ann.lee.
    assert_eq!(berth.granted(&host, "Ann Lee", "ann-pw"), Some(vec![]));
    assert_eq!(
        berth.user_line("ann.lee").as_deref(),
        Some("ann.lee\tdirectory\tactive")
    );
    let report = berth.sync();
    assert_eq!(report["ok"], true, "{report}");
    let users = berth.users();
    for want in ["jane.doe\tdirectory\tactive", "jose\tdirectory\tactive"] {
        assert!(users.iter().any(|l| l == want), "{want} not in {users:?}");
    }
    assert!(
        users.iter().all(|l| l
            .split('\t')
            .next()
            .is_some_and(|n| n.is_ascii() && !n.contains(' '))),
        "{users:?}"
    );
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("李雷") && warnings.contains("no account name"),
        "{report}"
    );
    // They log in with their directory names (and a wrong password is refused).
    assert_eq!(berth.granted(&host, "Jane Doe", "jane-pw"), Some(vec![]));
    assert_eq!(berth.granted(&host, "José", "jose-pw"), Some(vec![]));
    assert_eq!(berth.granted(&host, "José", "jane-pw"), None);
    assert_eq!(berth.granted(&host, "李雷", "li-pw"), None);

    // Item 19, profiles: a changed e-mail and display name reach the account at the next
    // sync.
    slapd.modify(
        "dn: cn=Jose Garcia,ou=people,dc=example,dc=org\nchangetype: modify\n\
         replace: mail\nmail: jose.garcia@example.org\n-\nreplace: cn\ncn: Jose Garcia\ncn: Pepe\n",
    );
    let report = berth.sync();
    assert_eq!(report["counts"]["profiles_updated"], 1, "{report}");
    let jose: Value = berth
        .http
        .get(format!("http://{host}/api/v0/users/jose"))
        .basic_auth("admin", Some(ADMIN_PW))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jose["email"], "jose.garcia@example.org", "{jose}");
    assert_eq!(berth.sync()["counts"]["profiles_updated"], 0);

    // The API manages them: token creation, team removal, deactivation.
    let api = |who: (&str, &str), method: reqwest::Method, path: &str, body: Value| {
        let r = berth
            .http
            .request(method, format!("http://{host}{path}"))
            .basic_auth(who.0, Some(who.1))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    };
    // José creates his own token, logging in with his directory name.
    let (status, body) = api(
        ("José", "jose-pw"),
        reqwest::Method::POST,
        "/api/v0/users/jose/tokens",
        serde_json::json!({"description": "ci"}),
    );
    assert_eq!(status, 201, "{body}");
    let admin = ("admin", ADMIN_PW);
    let (status, body) = api(
        admin,
        reqwest::Method::DELETE,
        "/api/v0/orgs/acme/teams/devs/members/jose",
        Value::Null,
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = api(
        admin,
        reqwest::Method::PATCH,
        "/api/v0/users/jane.doe",
        serde_json::json!({"active": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        berth.granted(&host, "Jane Doe", "jane-pw"),
        None,
        "deactivated"
    );
    drop(server);
}

/// Issue 10 item 19: accounts are bound to the directory entry's immutable identifier
/// (`entryUUID`), not to its name. `sam` gets an account (and with it the namespace
/// `sam/`, where their private repositories live); `sam` leaves the directory, and the
/// name is given to another person (a new entry, a new `entryUUID`). Before the fix the
/// next sync reactivated the old account and the newcomer's login was that account, with
/// everything in `sam/`. Now the sync warns and leaves the account inactive, and the
/// newcomer's login is refused (logged with the reason).
#[test]
fn a_reused_directory_name_does_not_inherit_the_account() {
    let slapd = Slapd::start(Kind::OpenLdap);
    let add_sam = |password: &str| {
        slapd.add_ungrouped_user("sam", password);
        slapd.set_developer("sam", true);
    };
    add_sam("first-sam-pw");
    let berth = Berth::new(&slapd, Backend::Embedded);
    acme(&berth);
    let server = berth.serve(&[]);
    let host = server.host.clone();
    let scope = "repository:sam/private:pull,push";
    let actions = |user: &str, password: &str| -> Option<Value> {
        let (status, body) = berth.token(&host, user, password, scope);
        if status == 401 {
            return None;
        }
        assert_eq!(status, 200, "{body}");
        Some(jwt_claims(body["token"].as_str().expect("token"))["access"][0]["actions"].clone())
    };
    // The first sam's account owns sam/.
    let report = berth.sync();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        berth.user_line("sam").as_deref(),
        Some("sam\tdirectory\tactive")
    );
    assert_eq!(
        actions("sam", "first-sam-pw"),
        Some(serde_json::json!(["pull", "push"]))
    );

    // sam leaves; the account is deactivated.
    slapd.set_developer("sam", false);
    slapd.delete("uid=sam,ou=people,dc=example,dc=org");
    let report = berth.sync();
    assert_eq!(report["counts"]["deactivated"], 1, "{report}");
    assert_eq!(
        berth.user_line("sam").as_deref(),
        Some("sam\tdirectory\tinactive")
    );

    // Another person gets the name sam.
    add_sam("second-sam-pw");
    let report = berth.sync();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["counts"]["reactivated"], 0, "{report}");
    assert!(
        report["warnings"].to_string().contains("reused"),
        "{report}"
    );
    assert_eq!(
        berth.user_line("sam").as_deref(),
        Some("sam\tdirectory\tinactive"),
        "the old account is not handed over"
    );
    assert_eq!(actions("sam", "second-sam-pw"), None);
    wait_for_log(&server, "name reused");
    // Still so at the next run (nothing changes, the warning stays).
    let report = berth.sync();
    assert_eq!(report["counts"]["reactivated"], 0, "{report}");
    assert_eq!(actions("sam", "second-sam-pw"), None);
    drop(server);
}
