//! `berth admin` and the first-start administrator, through the real binary: a fresh
//! installation gets an `admin` with a generated password printed once (or the one
//! configured, never printed), and operators manage users, organisations and teams before
//! the API is reachable, with passwords only from a file or standard input.

#[macro_use]
mod common;

use common::*;
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
    assert!(ok, "{out}");
    let (ok, out) = admin(
        &data,
        &["user", "create", "alice", "--password-stdin"],
        Some("correct horse\n"),
    );
    assert!(!ok, "a second alice was created: {out}");
    let (ok, out) = admin(
        &data,
        &["user", "create", "bob", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok && out.contains("at least 8"), "{out}");
    let (ok, out) = admin(
        &data,
        &["user", "create", "Bad/Name", "--password-stdin"],
        Some("long enough pw\n"),
    );
    assert!(!ok && out.contains("not a valid account name"), "{out}");
    let (ok, out) = admin(
        &data,
        &[
            "user",
            "create",
            "x'); DROP TABLE accounts;--",
            "--password-stdin",
        ],
        Some("long enough pw\n"),
    );
    assert!(!ok, "{out}");
    let (ok, out) = admin(
        &data,
        &["user", "password", "alice", "--password-stdin"],
        Some("a new long password\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = admin(
        &data,
        &["user", "password", "nobody", "--password-stdin"],
        Some("a new long password\n"),
    );
    assert!(!ok && out.contains("no user"), "{out}");
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
    let data = dir.path().join("data");
    let log = dir.path().join("berth.log");
    let secret = "configured-admin-secret-42";
    let p = Process::spawn(
        &["--data-dir".as_ref(), data.as_os_str()],
        &[("BERTH_ADMIN_PASSWORD", secret), ("BERTH_LOG", "debug")],
        &log,
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("configured password"), "{text}");
    assert!(
        !text.contains(secret),
        "the admin password reached the log:\n{text}"
    );
    drop(p);
    let (_, out) = admin(&data, &["user", "list"], None);
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
    let out = server.admin_ok(
        &[
            "team",
            "grant",
            "shop",
            "devs",
            "--namespace",
            "--role",
            "read-only",
        ],
        None,
    );
    assert_eq!(out.trim(), "shop/devs has read-only on shop/*");
    assert_eq!(pull("shop/app", pw), 200);
    assert_eq!(pull("shop/web", pw), 200);
    assert_eq!(push("shop/app", pw), 403);
    // A repository grant adds to it, on that repository only.
    server.admin_ok(
        &[
            "team",
            "grant",
            "shop",
            "devs",
            "--repo",
            "shop/app",
            "--role",
            "read-write",
        ],
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
    for args in [
        &[
            "team", "grant", "shop", "devs", "--repo", "bob/own", "--role", "admin",
        ][..],
        &[
            "team",
            "grant",
            "shop",
            "devs",
            "--namespace",
            "--role",
            "owner",
        ],
        &["team", "grant", "shop", "devs", "--role", "admin"],
        &[
            "team",
            "grant",
            "shop",
            "devs",
            "--namespace",
            "--repo",
            "shop/app",
            "--role",
            "admin",
        ],
    ] {
        let out = server.admin(args, None);
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
    let out = server.admin_ok(&["token", "list", "bob"], None);
    assert_eq!(out.trim(), format!("{id}\tactive\tci pulls"));
    assert!(!out.contains(&token), "token list printed the secret");
    let out = server.admin_ok(&["token", "revoke", id], None);
    assert_eq!(out.trim(), format!("revoked token {id}"));
    assert_eq!(pull("shop/app", &token), 401);
    let out = server.admin_ok(&["token", "list", "bob"], None);
    assert_eq!(out.trim(), format!("{id}\trevoked\tci pulls"));
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
        !out.status.success() && out.stderr.contains("no repository"),
        "{}",
        out.stderr
    );
}
