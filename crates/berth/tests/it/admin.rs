//! `berth admin` and the first-start administrator, through the real binary: a fresh
//! installation gets an `admin` with a generated password printed once (or the one
//! configured, never printed), and operators manage users, organisations and teams before
//! the API is reachable, with passwords only from a file or standard input.

use berth_testkit::e2e::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn admin(data: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["admin", "--data-dir"])
        .arg(data)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth admin");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn first_admin_and_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("berth.log");
    let p = Process::spawn(&["--data-dir".as_ref(), data.as_os_str()], &[], &log);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("generated password: "))
        .unwrap_or_else(|| panic!("no generated password on first start:\n{text}"));
    let pw = line.rsplit(": ").next().unwrap();
    assert!(pw.len() >= 24, "generated password too short: {pw:?}");
    drop(p);

    // A second start does not create (or print) anything again.
    let log2 = dir.path().join("berth2.log");
    let p = Process::spawn(&["--data-dir".as_ref(), data.as_os_str()], &[], &log2);
    assert!(!std::fs::read_to_string(&log2)
        .unwrap()
        .contains("generated password"));

    let (ok, out) = admin(&data, &["user", "list"], None);
    assert!(ok, "{out}");
    assert!(
        out.lines().any(|l| l == "admin\tlocal\tactive\tadmin"),
        "{out}"
    );

    // Users, with passwords from standard input or a file only.
    let (ok, out) = admin(
        &data,
        &[
            "user",
            "create",
            "alice",
            "--password-stdin",
            "--email",
            "a@example.org",
        ],
        Some("correct horse\n"),
    );
    assert!(ok, "{out}");
    // A service account has no password (it uses access tokens), as through the API.
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "another long secret\n").unwrap();
    let (ok, out) = admin(
        &data,
        &[
            "user",
            "create",
            "ci-bot",
            "--service-account",
            "--password-file",
            pwfile.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok && out.contains("no password"), "{out}");
    let (ok, out) = admin(
        &data,
        &["user", "create", "ci-bot", "--service-account"],
        None,
    );
    assert!(ok, "{out}");
    // Each command: `None` where it must succeed, else what its refusal must say ("" where
    // any refusal will do).
    let long_pw = Some("long enough pw\n");
    let new_pw = Some("a new long password\n");
    for (args, stdin, refusal) in [
        (
            &["user", "create", "alice", "--password-stdin"][..],
            Some("correct horse\n"),
            Some(""),
        ),
        (
            &["user", "create", "bob", "--password-stdin"],
            Some("short\n"),
            Some("8 to 1024 characters"),
        ),
        (
            &["user", "create", "Bad/Name", "--password-stdin"],
            long_pw,
            Some("invalid user name"),
        ),
        (
            &[
                "user",
                "create",
                "x'); DROP TABLE accounts;--",
                "--password-stdin",
            ],
            long_pw,
            Some(""),
        ),
        (
            &["user", "password", "alice", "--password-stdin"],
            new_pw,
            None,
        ),
        (
            &["user", "password", "nobody", "--password-stdin"],
            new_pw,
            Some("user nobody not found"),
        ),
    ] {
        let (ok, out) = admin(&data, args, stdin);
        match refusal {
            None => assert!(ok, "{args:?}: {out}"),
            Some(why) => assert!(
                !ok && out.contains(why),
                "{args:?} was not refused ({why:?}): {out}"
            ),
        }
    }
    let (_, out) = admin(&data, &["user", "list"], None);
    assert!(out.lines().any(|l| l == "alice\tlocal\tactive"), "{out}");
    assert!(
        out.lines().any(|l| l == "ci-bot\tlocal\tactive\tservice"),
        "{out}"
    );
    assert!(
        !out.contains("argon2"),
        "a password hash was printed: {out}"
    );

    // Organisations and teams; an organisation cannot take a user's name.
    let (ok, out) = admin(
        &data,
        &["org", "create", "acme", "--members-can-create"],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = admin(&data, &["org", "create", "alice"], None);
    assert!(!ok, "an organisation took a user's name: {out}");
    let (ok, out) = admin(&data, &["team", "create", "acme", "devs"], None);
    assert!(ok, "{out}");
    let (ok, out) = admin(&data, &["team", "add", "acme", "devs", "alice"], None);
    assert!(ok, "{out}");
    let (ok, out) = admin(&data, &["team", "add", "acme", "ghosts", "alice"], None);
    assert!(!ok, "added to a team that does not exist: {out}");
    let (_, out) = admin(&data, &["team", "list", "acme"], None);
    assert_eq!(out.trim(), "devs");
    let (_, out) = admin(&data, &["org", "list"], None);
    assert_eq!(out.trim(), "acme");
    drop(p);
}

#[test]
fn configured_admin_password_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "configured-admin-secret-42";
    let p = Process::spawn_in(
        dir.path(),
        &[("BERTH_ADMIN_PASSWORD", secret), ("BERTH_LOG", "debug")],
    );
    let text = std::fs::read_to_string(&p.log).unwrap();
    assert!(text.contains("configured password"), "{text}");
    assert!(
        !text.contains(secret),
        "the admin password reached the log:\n{text}"
    );
    drop(p);
    let (_, out) = admin(&dir.path().join("data"), &["user", "list"], None);
    assert!(
        out.lines().any(|l| l == "admin\tlocal\tactive\tadmin"),
        "{out}"
    );
}

/// `berth admin team grant|revoke`, `repo create|visibility` and `token
/// create|list|revoke`, run on a live server's stores, change what callers may do on `/v2`
/// at once.
#[test]
fn grants_repositories_and_tokens() {
    use reqwest::Method;
    let server = Server::start(Backend::Embedded);
    let pw = "bob-password-1234";
    server.admin_ok(&["org", "create", "shop"], None);
    server.create_user("bob", pw);
    server.admin_ok(&["team", "create", "shop", "devs"], None);
    server.admin_ok(&["team", "add", "shop", "devs", "bob"], None);
    for repo in ["shop/app", "shop/web"] {
        let out = server.admin_ok(&["repo", "create", repo], None);
        assert_eq!(out.trim(), format!("created repository {repo} (private)"));
    }
    let out = server.admin(&["repo", "create", "shop/app"], None);
    assert!(!out.status.success(), "created twice: {}", out.stdout);
    // `team grant shop devs FLAGS`.
    let devs_grant =
        |flags: &[&'static str]| [&["team", "grant", "shop", "devs"][..], flags].concat();
    let as_bob = |method: Method, path: &str, password: &str| {
        server.request_as(method, path, "bob", password).status
    };
    let pull = |repo: &str, password: &str| {
        as_bob(Method::GET, &format!("/v2/{repo}/tags/list"), password)
    };
    let push = |repo: &str, password: &str| {
        as_bob(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            password,
        )
    };

    // No role: the private repositories are invisible to bob.
    assert_eq!(pull("shop/app", pw), 404);
    // A namespace grant covers every repository of the organisation.
    let out = server.admin_ok(&devs_grant(&["--namespace", "--role", "read-only"]), None);
    assert_eq!(out.trim(), "shop/devs has read-only on shop/*");
    assert_eq!(pull("shop/app", pw), 200);
    assert_eq!(pull("shop/web", pw), 200);
    assert_eq!(push("shop/app", pw), 403);
    // A repository grant adds to it, on that repository only.
    server.admin_ok(
        &devs_grant(&["--repo", "shop/app", "--role", "read-write"]),
        None,
    );
    assert_eq!(push("shop/app", pw), 202);
    assert_eq!(push("shop/web", pw), 403);
    // Revoking the namespace grant leaves the repository grant.
    server.admin_ok(&["team", "revoke", "shop", "devs", "--namespace"], None);
    assert_eq!(pull("shop/web", pw), 404);
    assert_eq!(push("shop/app", pw), 202);
    let out = server.admin(&["team", "revoke", "shop", "devs", "--namespace"], None);
    assert!(
        !out.status.success() && out.stderr.contains("has no role on shop/*"),
        "{}",
        out.stderr
    );
    // Refused: a repository outside the organisation, a role that does not exist, both or
    // neither of --repo and --namespace.
    server.admin_ok(&["repo", "create", "bob/own"], None);
    for flags in [
        &["--repo", "bob/own", "--role", "admin"][..],
        &["--namespace", "--role", "owner"],
        &["--role", "admin"],
        &["--namespace", "--repo", "shop/app", "--role", "admin"],
    ] {
        let args = devs_grant(flags);
        let out = server.admin(&args, None);
        assert!(
            !out.status.success(),
            "berth admin {args:?} succeeded: {}",
            out.stdout
        );
    }

    // An access token restricted to read-only on shop/app: pulls there, pushes nowhere,
    // and sees nothing else, although bob may push to shop/app.
    let token = server
        .admin_ok(
            &[
                "token",
                "create",
                "bob",
                "--description",
                "ci pulls",
                "--expires-in-days",
                "1",
                "--scope",
                "shop/app=read-only",
            ],
            None,
        )
        .trim()
        .to_string();
    assert!(token.starts_with("berth_"), "{token}");
    assert_eq!(pull("shop/app", &token), 200);
    assert_eq!(push("shop/app", &token), 403);
    assert_eq!(pull("bob/own", pw), 200);
    assert_eq!(pull("bob/own", &token), 404);
    let id = token
        .strip_prefix("berth_")
        .and_then(|t| t.split('_').next())
        .expect("token id");
    // The list shows the expiry and the scope (issue 11): id, state, expiry, scope,
    // description.
    let out = server.admin_ok(&["token", "list", "bob"], None);
    let cols: Vec<&str> = out.trim().split('\t').collect();
    assert_eq!(cols.len(), 5, "{out}");
    assert_eq!((cols[0], cols[1]), (id, "active"), "{out}");
    assert!(
        cols[2].starts_with("20") && cols[2].ends_with('Z') && cols[2].len() == 20,
        "expiry {out}"
    );
    assert_eq!(
        (cols[3], cols[4]),
        ("shop/app=read-only", "ci pulls"),
        "{out}"
    );
    assert!(!out.contains(&token), "token list printed the secret");
    let out = server.admin_ok(&["token", "revoke", id], None);
    assert_eq!(out.trim(), format!("revoked token {id}"));
    assert_eq!(pull("shop/app", &token), 401);
    let out = server.admin_ok(&["token", "list", "bob"], None);
    assert!(out.starts_with(&format!("{id}\trevoked\t")), "{out}");
    // A token without scope nor expiry says so.
    server.admin_ok(&["token", "create", "bob"], None);
    let out = server.admin_ok(&["token", "list", "bob"], None);
    assert!(
        out.lines().any(|l| l.contains("\tactive\tnever\tall\t")),
        "{out}"
    );
    let bad = server.admin(
        &["token", "create", "bob", "--scope", "Shop/*=read-only"],
        None,
    );
    assert!(!bad.status.success(), "{}", bad.stdout);

    // Visibility: public lets anonymous callers pull, private takes it back.
    let anon_tags = |repo: &str| {
        server
            .get_anon(&format!("/v2/{repo}/tags/list"), None)
            .status
    };
    assert_eq!(anon_tags("shop/web"), 401);
    server.admin_ok(&["repo", "visibility", "shop/web", "public"], None);
    assert_eq!(anon_tags("shop/web"), 200);
    server.admin_ok(&["repo", "visibility", "shop/web", "private"], None);
    assert_eq!(anon_tags("shop/web"), 401);
    let out = server.admin(&["repo", "visibility", "shop/none", "public"], None);
    assert!(
        !out.status.success() && out.stderr.contains("shop/none not known"),
        "{}",
        out.stderr
    );
}

both_backends!(ownerless_namespaces_are_claimed_only_explicitly);

/// Pushes a one-layer image as `repo:tag` with the administrator's credentials; its digest.
fn push_small(server: &Server, repo: &str, tag: &str) -> String {
    let http = server.http();
    let config = format!("{{\"salt\":\"{}\"}}", unique()).into_bytes();
    let layer = format!("layer {}", unique()).into_bytes();
    let mut descriptors = Vec::new();
    for (b, media) in [
        (&config, OCI_CONFIG),
        (&layer, "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let d = sha256_digest(b);
        let r = http
            .post(server.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("Content-Type", "application/octet-stream")
            .body(b.clone())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "blob into {repo}");
        descriptors.push(serde_json::json!({"mediaType": media, "digest": d, "size": b.len()}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptors[0],
        "layers": [descriptors[1]],
    }))
    .unwrap();
    let r = http
        .put(server.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "manifest {repo}:{tag}");
    sha256_digest(&manifest)
}

/// A JSON request to the management API as `user`; status and body.
fn api_as(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    user: (&str, &str),
    body: &str,
) -> (u16, String) {
    let r = server
        .http_anon()
        .request(method, server.url(path))
        .header("Authorization", basic_auth(user.0, user.1))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Issue 10, end to end on both store pairs: an organisation owner cannot make a service
/// account named after a namespace that holds repositories of no account (an
/// administrator's `library/base:1`, a deleted user's `carol/app`), so cannot overwrite or
/// publish them; `berth admin user create` refuses such a name too, and takes it with
/// `--claim-namespace` (audited), after which the new `carol` owns `carol/app`.
fn ownerless_namespaces_are_claimed_only_explicitly(backend: Backend) {
    use reqwest::Method;
    let server = Server::start(backend);
    let admin = server.admin_creds();
    let admin = (admin.0.to_string(), admin.1.to_string());
    let admin = (admin.0.as_str(), admin.1.as_str());
    let base = push_small(&server, "library/base", "1");
    server.admin_ok(&["org", "create", "acme"], None);
    let olive = ("olive", "olive-password-1234");
    server.create_user(olive.0, olive.1);
    let (s, b) = api_as(
        &server,
        Method::PUT,
        "/api/v0/orgs/acme/members/olive",
        admin,
        r#"{"is_owner": true}"#,
    );
    assert_eq!(s, 204, "{b}");
    server.create_user("carol", "carol-password-1234");
    push_small(&server, "carol/app", "1");
    let (s, b) = api_as(&server, Method::DELETE, "/api/v0/users/carol", admin, "");
    assert_eq!(s, 204, "{b}");

    for ns in ["library", "carol"] {
        let (s, b) = api_as(
            &server,
            Method::POST,
            "/api/v0/service-accounts",
            olive,
            &format!(r#"{{"name": "{ns}", "org": "acme"}}"#),
        );
        assert_eq!(s, 409, "service account {ns}: {b}");
        assert!(b.contains("CONFLICT") && b.contains("claim"), "{b}");
    }
    // The owner's own attempts on library/base: overwrite the tag, make it public.
    let r = server.request_as(
        Method::POST,
        "/v2/library/base/blobs/uploads/",
        olive.0,
        olive.1,
    );
    // Refused as every write the caller may not make is, whether the repository exists
    // or not (issue 11): 403 DENIED.
    assert_eq!(r.status, 403, "push into library/base");
    let (s, b) = api_as(
        &server,
        Method::PATCH,
        "/api/v0/repositories/library%2Fbase",
        olive,
        r#"{"visibility": "public"}"#,
    );
    assert_eq!(s, 404, "{b}");
    assert_eq!(
        server
            .get_anon("/v2/library/base/manifests/1", Some(OCI_MANIFEST))
            .status,
        401
    );
    let r = server.manifest("library/base", "1");
    assert_eq!(sha256_digest(&r.body), base);

    // `berth admin` goes through the same check, and claims only when told to.
    let out = server.admin(
        &["user", "create", "carol", "--password-stdin"],
        Some("carol-password-5678\n"),
    );
    assert!(!out.status.success(), "created carol: {}", out.stdout);
    assert!(out.stderr.contains("claim"), "{}", out.stderr);
    server.admin_ok(
        &[
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--claim-namespace",
        ],
        Some("carol-password-5678\n"),
    );
    let r = server.request_as(
        Method::GET,
        "/v2/carol/app/tags/list",
        "carol",
        "carol-password-5678",
    );
    assert_eq!(r.status, 200, "the claiming account owns carol/app");
    let r = server.get("/api/v0/audit?action=namespace.claim", None);
    r.expect(200);
    let audit: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(audit["items"][0]["target"], "carol", "{audit}");
    assert_eq!(audit["items"][0]["source"], "berth admin", "{audit}");
}

/// `berth admin --data-dir DIR --init ARGS` (creates the registry's database when DIR holds
/// none).
fn admin_init(data: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut all = vec!["--init"];
    all.extend_from_slice(args);
    admin(data, &all, stdin)
}

/// Issue 11, "one management path": every account and team name runs through the real
/// `berth admin` binary and through `/api/v0` of a running server, and both accept and
/// refuse exactly the same ones (they share `core::manage`'s check).
#[test]
fn cli_and_api_accept_and_refuse_the_same_names() {
    use reqwest::Method;
    let server = Server::start(Backend::Embedded);
    let creds = server.admin_creds();
    let creds = (creds.0.to_string(), creds.1.to_string());
    let as_admin = (creds.0.as_str(), creds.1.as_str());
    let dir = tempfile::tempdir().unwrap();
    let cli = dir.path().join("cli");
    let pw = "long enough pw";
    // The same starting point on both sides: a user `taken`, an organisation `acme`.
    let (ok, out) = admin_init(
        &cli,
        &["user", "create", "taken", "--password-stdin"],
        Some("long enough pw\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = admin(&cli, &["org", "create", "acme"], None);
    assert!(ok, "{out}");
    server.create_user("taken", pw);
    server.admin_ok(&["org", "create", "acme"], None);

    let long = "a".repeat(64);
    let too_long = "a".repeat(65);
    let cases: &[(&str, &str)] = &[
        ("valid", "alice"),
        ("digits", "team42"),
        ("one character", "a"),
        ("separators", "a.b_c-d"),
        ("64 characters", &long),
        ("65 characters", &too_long),
        ("empty", ""),
        ("uppercase", "Alice"),
        ("space", "al ice"),
        ("tab", "al\tice"),
        ("non-ASCII", "álice"),
        ("leading separator", "-alice"),
        ("trailing separator", "alice."),
        ("double separator", "al__ice"),
        ("slash", "acme/app"),
        ("quote", "x');drop"),
        ("taken", "taken"),
        ("an organisation's name", "acme"),
    ];
    let mut mismatches = Vec::new();
    for (case, name) in cases {
        // Users.
        let (cli_ok, cli_out) = admin(
            &cli,
            &["user", "create", name, "--password-stdin"],
            Some("long enough pw\n"),
        );
        let body = serde_json::json!({ "name": name, "password": pw }).to_string();
        let (status, api_out) = api_as(&server, Method::POST, "/api/v0/users", as_admin, &body);
        assert!(status < 500, "{case}: {status} {api_out}");
        if cli_ok != (status == 201) {
            mismatches.push(format!(
                "user {case} {name:?}: cli {cli_ok} ({}), api {status} ({api_out})",
                cli_out.trim()
            ));
        }
        // Teams (a namespace of their own, inside `acme`).
        let (cli_ok, cli_out) = admin(&cli, &["team", "create", "acme", name], None);
        let body = serde_json::json!({ "name": name }).to_string();
        let (status, api_out) = api_as(
            &server,
            Method::POST,
            "/api/v0/orgs/acme/teams",
            as_admin,
            &body,
        );
        assert!(status < 500, "{case}: {status} {api_out}");
        if cli_ok != (status == 201) {
            mismatches.push(format!(
                "team {case} {name:?}: cli {cli_ok} ({}), api {status} ({api_out})",
                cli_out.trim()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The valid ones were accepted, the others refused, on both sides alike.
    let (_, out) = admin(&cli, &["user", "list"], None);
    let users: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(
        users,
        ["a", "a.b_c-d", &long, "alice", "taken", "team42"],
        "{out}"
    );
}

/// Issue 11: `berth admin` run where no registry is (another directory, a mistyped
/// `--data-dir`) is refused with a clear message and creates nothing; `--init` creates one.
#[test]
fn admin_refuses_a_data_directory_without_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("berth-data");
    let (ok, out) = admin(&data, &["user", "list"], None);
    assert!(!ok, "berth admin ran on an empty directory: {out}");
    assert!(
        out.contains("no registry here") && out.contains("--init"),
        "{out}"
    );
    assert!(!data.exists(), "berth admin created {}", data.display());
    // Without --data-dir: the default ./berth-data of the working directory, refused too.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["admin", "org", "list"])
        .current_dir(dir.path())
        .env_remove("BERTH_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!data.exists(), "berth admin created ./berth-data");
    let (ok, out) = admin_init(&data, &["org", "create", "acme"], None);
    assert!(ok, "{out}");
    let (ok, out) = admin(&data, &["org", "list"], None);
    assert!(ok && out.trim() == "acme", "{out}");
}

/// Issue 11: creating a user that exists reports the conflict, whatever the password
/// (it used to report the password rule when standard input was empty or short).
#[test]
fn creating_an_existing_user_reports_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, out) = admin_init(
        &data,
        &["user", "create", "alice", "--password-stdin"],
        Some("correct horse\n"),
    );
    assert!(ok, "{out}");
    for stdin in ["", "short\n", "another good password\n"] {
        let (ok, out) = admin(
            &data,
            &["user", "create", "alice", "--password-stdin"],
            Some(stdin),
        );
        assert!(!ok, "{out}");
        assert!(
            out.contains("user alice already exists") && !out.contains("characters"),
            "stdin {stdin:?}: {out}"
        );
    }
}
