//! No secret reaches the log or the audit trail. The real binary runs at `debug` level;
//! the Docker engine logs in (password grant, refresh token stored as its identity token,
//! refresh grant on the next pull), wrong passwords are tried, an access token and a
//! refresh token are used, bearer tokens are issued; then neither the server's log nor the
//! audit log served by `/api/v0/audit` contains any of those secrets.

use berth_testkit::e2e::*;
use std::ffi::OsStr;

#[test]
fn secrets_never_reach_the_log_or_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin_pw = format!("admin-{}", unique());
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{admin_pw}\n")).unwrap();
    let log = dir.path().join("berth.log");
    let server = Process::spawn(
        &[
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--admin-password-file"),
            pw_file.as_os_str(),
        ],
        &[("BERTH_LOG", "debug")],
        &log,
    );
    let host = server.host.clone();
    let http = reqwest::blocking::Client::new();
    // `GET uri` as the administrator with `password` (a password or a token).
    let get_as_admin = |uri: &str, password: &str| {
        http.get(format!("http://{host}{uri}"))
            .basic_auth(ADMIN, Some(password))
            .send()
            .unwrap()
    };
    let mut secrets: Vec<String> = vec![admin_pw.clone()];

    // The Docker engine logs in, and pulls (missing image: the refresh grant runs).
    let env = ClientEnv::new();
    env.docker_login(&host, ADMIN, &admin_pw);
    let config = std::fs::read_to_string(env.path("docker/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let identity = config["auths"][&host]["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("docker stored no identity token: {config}"))
        .to_string();
    assert!(identity.starts_with("berth_"), "{identity}");
    secrets.push(identity);
    let out = run(
        env.docker()
            .args(["pull", &format!("{host}/admin/missing:1")]),
        CLIENT_TIMEOUT,
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("manifest unknown") || out.stderr.contains("not found"),
        "{}",
        out.stderr
    );

    // Wrong passwords, on /v2 and at the token service.
    for (i, uri) in ["/v2/", "/auth/token?service=berth"].iter().enumerate() {
        let wrong = format!("wrong-password-{i}-{}", unique());
        let r = get_as_admin(uri, &wrong);
        assert_eq!(r.status(), 401);
        secrets.push(wrong);
    }

    // An access token as a password; a refresh token from an offline GET, then used.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["admin", "--data-dir"]).arg(&data).args([
        "token",
        "create",
        ADMIN,
        "--description",
        "secrets test",
    ]);
    let token = run_ok(&mut cmd, CLIENT_TIMEOUT).stdout.trim().to_string();
    assert!(token.starts_with("berth_"), "{token}");
    let r = get_as_admin("/v2/_catalog", &token);
    assert_eq!(r.status(), 200);
    secrets.push(token);
    let r: serde_json::Value = get_as_admin(
        "/auth/token?service=berth&offline_token=true&scope=repository:admin/x:pull,push",
        &admin_pw,
    )
    .json()
    .unwrap();
    let refresh = r["refresh_token"].as_str().unwrap().to_string();
    secrets.push(r["token"].as_str().unwrap().to_string());
    let r: serde_json::Value = http
        .post(format!("http://{host}/auth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", "berth"),
            ("scope", "repository:admin/x:pull"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let jwt = r["access_token"].as_str().unwrap().to_string();
    let r = http
        .get(format!("http://{host}/v2/admin/x/tags/list"))
        .bearer_auth(&jwt)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "a pullable but empty repository");
    secrets.push(refresh);
    secrets.push(jwt);

    // The audit log recorded all of it, without the secrets.
    let audit = get_as_admin("/api/v0/audit?n=1000", &admin_pw);
    assert_eq!(audit.status(), 200);
    let audit = audit.text().unwrap();
    for action in [
        "login.success",
        "login.failure",
        "token.issue",
        "token.create",
    ] {
        assert!(audit.contains(action), "no {action} event in {audit}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("login refused"),
        "the debug log says nothing of refused logins:\n{text}"
    );
    for s in &secrets {
        // Any 12-character piece of a secret would be a leak (JWT header segments are
        // shared by all tokens of a key, so compare their signatures and claims only;
        // and a Berth token's id is not secret: it names the token in the audit log).
        let s = if s.starts_with("eyJ") {
            s.split('.').skip(1).collect::<Vec<_>>().join(".")
        } else if let Some(secret) = s.strip_prefix("berth_") {
            secret.rsplit('_').next().unwrap().to_string()
        } else {
            s.clone()
        };
        for piece in s.as_bytes().chunks(12).filter(|c| c.len() == 12) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !text.contains(piece),
                "the server log contains a secret: {piece}"
            );
            assert!(
                !audit.contains(piece),
                "the audit log contains a secret: {piece}"
            );
        }
    }
    drop(server);
}

/// A user name with a newline (Basic credentials, the token endpoint's form) cannot start a
/// line of its own in the text log: every field is written with its control characters
/// escaped, and such a name is refused before anything else.
#[test]
fn a_newline_in_a_user_name_forges_no_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn_in(
        dir.path(),
        &[
            ("BERTH_LOG", "debug"),
            ("BERTH_ADMIN_PASSWORD", "forge-test-admin"),
        ],
    );
    let log = server.log.clone();
    let http = reqwest::blocking::Client::new();
    let forged = "ghost\n2026-01-01T00:00:00Z  INFO berth: FORGED login.success user=admin";
    let r = http
        .get(format!("http://{}/v2/", server.host))
        .header("Authorization", basic_auth(forged, "wrong"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(format!("http://{}/auth/token", server.host))
        .form(&[
            ("grant_type", "password"),
            ("username", forged),
            ("password", "wrong"),
            ("service", "berth"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A request the server logs after them, so the log holds everything before it.
    let _ = http
        .get(format!("http://{}/v2/", server.host))
        .header("Authorization", basic_auth("ghost\u{1b}[2J", "wrong"))
        .send()
        .unwrap();
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ghost"),
        "the refused logins were not logged at all:\n{text}"
    );
    for line in text.lines() {
        assert!(
            !line.to_ascii_lowercase().contains("forged") || line.contains("ghost"),
            "a client-supplied name started a log line of its own: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "a raw escape sequence in the log: {line:?}"
        );
    }
}
