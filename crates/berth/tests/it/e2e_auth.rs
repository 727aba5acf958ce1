//! Access control with real clients. An organisation whose teams hold read-only, read-write
//! and admin on a private repository is set up with `berth admin` (on the server's own
//! stores, while it runs); then the Docker engine logged in with a password and with an
//! access token, skopeo and podman with `--creds`, and the oras SDK with username and
//! password each do what their role allows and are refused the rest, in the client's own
//! words. Anonymous callers pull public repositories and nothing else. Refresh tokens end
//! with the password or access token they were issued against, and are listed and revoked
//! through the API and `berth admin`.

use berth_testkit::e2e::*;
use reqwest::Method;
use serde_json::Value;

both_backends!(docker_roles, refresh_tokens_end_with_their_credential);

const ORG: &str = "acme";
const PRIVATE: &str = "acme/private";

/// The users of the organisation: one per role on [`PRIVATE`], and one with no role.
struct Users {
    reader: String,
    writer: String,
    owner: String,
    outsider: String,
}

/// Creates the organisation, its private repository and three teams holding read-only,
/// read-write and admin on it, each with one member; and a user with no role. Returns the
/// users' passwords.
fn setup_org(server: &Server) -> Users {
    let pw = |who: &str| format!("pw-{who}-{}", unique());
    let users = Users {
        reader: pw("reader"),
        writer: pw("writer"),
        owner: pw("owner"),
        outsider: pw("outsider"),
    };
    server.admin_ok(&["org", "create", ORG], None);
    let out = server.admin_ok(&["repo", "create", PRIVATE], None);
    assert!(out.contains("(private)"), "repo create: {out}");
    for (user, password, team, role) in [
        ("reader", &users.reader, "readers", "read-only"),
        ("writer", &users.writer, "writers", "read-write"),
        ("owner", &users.owner, "owners", "admin"),
    ] {
        server.create_user(user, password);
        server.admin_ok(&["team", "create", ORG, team], None);
        server.admin_ok(&["team", "add", ORG, team, user], None);
        let out = server.admin_ok(
            &[
                "team", "grant", ORG, team, "--repo", PRIVATE, "--role", role,
            ],
            None,
        );
        assert!(out.contains(role), "team grant: {out}");
    }
    server.create_user("outsider", &users.outsider);
    users
}

fn image_id(env: &ClientEnv, reference: &str) -> String {
    let out = run_ok(
        env.docker()
            .args(["image", "inspect", "--format", "{{.Id}}", reference]),
        CLIENT_TIMEOUT,
    );
    out.stdout.trim().to_string()
}

/// Fails unless `out` is a failed command whose output says each of `words`
/// (case-insensitively).
fn assert_refused(out: &Output, what: &str, words: &[&str]) {
    let text = format!("{}\n{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        !out.status.success() && words.iter().all(|w| text.contains(&w.to_lowercase())),
        "{what}: expected a failure saying {words:?}; exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

fn error_code(r: &Response) -> String {
    r.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no error code in {}", r.what, r.text()))
        .to_string()
}

/// Docker as each role on a private repository: read-write pushes (logged in with its
/// password), read-only pulls but may not push (logged in with an access token), admin
/// deletes; after `docker logout` the repository is out of reach, and a revoked token no
/// longer logs in.
fn docker_roles(backend: Backend) {
    let server = Server::start(backend);
    let users = setup_org(&server);
    let writer_env = ClientEnv::new();
    let reader_env = ClientEnv::new();
    let image = Image::random(2, 64, "amd64");
    let repo_ref = server.reference(PRIVATE);
    let v1 = format!("{repo_ref}:v1");
    let v2 = format!("{repo_ref}:v2");
    let _cleanup = DockerImages {
        env: &writer_env,
        refs: vec![v1.clone(), v2.clone(), image.config_digest.clone()],
    };

    // read-write, logged in with a password: the push goes through.
    writer_env.docker_login(&server.host, "writer", &users.writer);
    writer_env.docker_load(&image, &v1, "image.tar");
    let digest = pushed_digest(&run_ok(
        writer_env.docker().args(["push", &v1]),
        CLIENT_TIMEOUT,
    ));
    let m = server.manifest(PRIVATE, "v1");
    assert_eq!(
        m.header("docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(manifest_parts(&m.json()).0, image.config_digest);
    run_ok(writer_env.docker().args(["rmi", &v1]), CLIENT_TIMEOUT);

    // read-only, logged in with an access token as the password: pulls, may not push.
    let token = server
        .admin_ok(
            &["token", "create", "reader", "--description", "e2e reader"],
            None,
        )
        .trim()
        .to_string();
    assert!(
        token.starts_with("berth_") && !token.contains('\n'),
        "token create printed {token:?}"
    );
    reader_env.docker_login(&server.host, "reader", &token);
    run_ok(reader_env.docker().args(["pull", &v1]), CLIENT_TIMEOUT);
    assert_eq!(
        image_id(&reader_env, &v1),
        image.config_digest,
        "image pulled by the read-only user"
    );
    run_ok(reader_env.docker().args(["tag", &v1, &v2]), CLIENT_TIMEOUT);
    let out = run(reader_env.docker().args(["push", &v2]), CLIENT_TIMEOUT);
    assert_refused(
        &out,
        "docker push as read-only",
        &["requested access to the resource is denied"],
    );
    assert_eq!(server.tags(PRIVATE), ["v1"], "a refused push left a tag");
    // Issue 11: a push where the user may not create a repository (a namespace of nobody)
    // says that the right is missing, as above, not that the repository is unknown.
    let elsewhere = format!("{}:v1", server.reference("top/app"));
    run_ok(
        reader_env.docker().args(["tag", &v1, &elsewhere]),
        CLIENT_TIMEOUT,
    );
    let out = run(
        reader_env.docker().args(["push", &elsewhere]),
        CLIENT_TIMEOUT,
    );
    assert_refused(
        &out,
        "docker push into a namespace of nobody",
        &["denied: requested access to the resource is denied"],
    );

    // read-write may not delete: 403 DENIED (it can pull, so it learns the repository exists).
    let del = format!("/v2/{PRIVATE}/manifests/{digest}");
    let r = server.request_as(Method::DELETE, &del, "writer", &users.writer);
    r.expect(403);
    assert_eq!(error_code(&r), "DENIED", "{}", r.text());

    // Logged out, the private repository cannot be pulled, and Docker says why.
    run_ok(reader_env.docker().args(["rmi", &v1, &v2]), CLIENT_TIMEOUT);
    reader_env.docker_logout(&server.host);
    let config = std::fs::read_to_string(reader_env.path("docker/config.json")).expect("config");
    assert!(
        !config.contains(&server.host),
        "docker logout left the login: {config}"
    );
    let out = run(reader_env.docker().args(["pull", &v1]), CLIENT_TIMEOUT);
    assert_refused(
        &out,
        "docker pull after logout",
        &["pull access denied", "may require 'docker login'"],
    );
    let gone = run(
        reader_env.docker().args(["image", "inspect", &v1]),
        CLIENT_TIMEOUT,
    );
    assert!(!gone.status.success(), "a refused pull left {v1}");

    // A revoked token no longer logs in.
    server.admin_ok(&["token", "revoke", &token], None);
    let out = reader_env.try_docker_login(&server.host, "reader", &token);
    assert_refused(
        &out,
        "docker login with a revoked token",
        &["unauthorized", "revoked token"],
    );

    // admin deletes (skopeo, with the owner's --creds); the manifest is gone.
    run_ok(
        writer_env
            .skopeo()
            .args(["delete", "--tls-verify=false", "--creds"])
            .arg(creds("owner", &users.owner))
            .arg(format!("docker://{v1}")),
        CLIENT_TIMEOUT,
    );
    let r = server.get(&del.to_string(), Some(ACCEPT_ALL));
    r.expect(404);
    assert_eq!(error_code(&r), "MANIFEST_UNKNOWN");
    server.fsck();
}

/// skopeo with `--creds` as the read-write user copies in and out; as the read-only user it
/// copies out but not in. podman with `--creds` as the read-only user pulls, not pushes.
#[test]
fn skopeo_and_podman_with_creds() {
    let server = Server::start(Backend::Embedded);
    let users = setup_org(&server);
    let env = ClientEnv::new();
    let image = Image::random(2, 64, "amd64");
    let src = env.path("src");
    OciLayout::new(&src).add_image(&image, "v1");
    let layout = format!("oci:{}:v1", src.display());
    let remote = |tag: &str| format!("docker://{}:{tag}", server.reference(PRIVATE));
    let writer = creds("writer", &users.writer);
    let reader = creds("reader", &users.reader);

    // read-write: in, byte for byte.
    run_ok(
        env.skopeo()
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &writer])
            .args([layout.as_str(), &remote("v1")]),
        CLIENT_TIMEOUT,
    );
    server.manifest_as_pushed(PRIVATE, "v1", &image.manifest);

    // read-only: out works, in is refused.
    let out_dir = env.path("out");
    run_ok(
        env.skopeo()
            .args(["copy", "--src-tls-verify=false", "--src-creds", &reader])
            .arg(remote("v1"))
            .arg(format!("oci:{}:v1", out_dir.display())),
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        read_layout_index(&out_dir)["v1"]["digest"],
        image.manifest_digest.as_str()
    );
    let out = run(
        env.skopeo()
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &reader])
            .args([layout.as_str(), &remote("ro")]),
        CLIENT_TIMEOUT,
    );
    assert_refused(
        &out,
        "skopeo copy in as read-only",
        &[
            "uploading manifest ro",
            "requested access to the resource is denied",
        ],
    );
    // Without credentials skopeo cannot even read it.
    let out = run(
        env.skopeo()
            .args(["inspect", "--raw", "--tls-verify=false", "--no-creds"])
            .arg(remote("v1")),
        CLIENT_TIMEOUT,
    );
    assert_refused(
        &out,
        "skopeo inspect without credentials",
        &["reading manifest v1", "unauthorized"],
    );

    // podman as read-only: pull yes, push no.
    let podman = || env.containers_tool("podman");
    let reference = format!("{}:v1", server.reference(PRIVATE));
    run_ok(
        podman().args(["pull", "--tls-verify=false", "--creds", &reader, &reference]),
        CLIENT_TIMEOUT,
    );
    let out = run_ok(
        podman().args(["image", "inspect", "--format", "{{.Digest}}", &reference]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.stdout.trim(), image.manifest_digest, "podman pulled");
    let pushed = format!("{}:podman", server.reference(PRIVATE));
    run_ok(podman().args(["tag", &reference, &pushed]), CLIENT_TIMEOUT);
    let out = run(
        podman().args(["push", "--tls-verify=false", "--creds", &reader, &pushed]),
        CLIENT_TIMEOUT,
    );
    assert_refused(
        &out,
        "podman push as read-only",
        &[
            "uploading manifest podman",
            "requested access to the resource is denied",
        ],
    );
    assert_eq!(server.tags(PRIVATE), ["v1"], "a refused push left a tag");
}

/// Pushes (mode `push`) a random file as an artifact to TARGET, or pulls TARGET back (mode
/// `pull`), as BERTH_USER / BERTH_PASSWORD; prints one JSON line.
const ORAS_SCRIPT: &str = r#"
import hashlib, json, os, sys
import oras.provider

host, target, mode = sys.argv[1:4]
# Basic credentials on each request: oras-py's token backend answers a 401 with
# error="insufficient_scope" by resending the token it holds (only a 403 makes it fetch
# another), so a pull-scoped token from a HEAD never becomes a push token.
client = oras.provider.Registry(hostname=host, insecure=True, auth_backend="basic")
client.auth.set_basic_auth(os.environ["BERTH_USER"], os.environ["BERTH_PASSWORD"])
out = {}
try:
    if mode == "push":
        with open("artifact.bin", "wb") as f:
            f.write(os.urandom(64 * 1024))
        resp = client.push(target=target, files=["artifact.bin:application/octet-stream"], quiet=True)
        out["status"] = resp.status_code
        out["sent"] = hashlib.sha256(open("artifact.bin", "rb").read()).hexdigest()
    else:
        files = client.pull(target=target, outdir="pulled")
        out["pulled"] = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in files]
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"#;

fn oras(
    env: &ClientEnv,
    server: &Server,
    user: &str,
    password: &str,
    mode: &str,
    tag: &str,
) -> Value {
    let target = format!("{}:{tag}", server.reference(PRIVATE));
    let out = run_ok(
        env.python_as(ORAS_SCRIPT, user, password)
            .args([server.host.as_str(), &target, mode]),
        CLIENT_TIMEOUT,
    );
    serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "oras script output is not JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    })
}

/// The oras SDK with username and password: the read-write user pushes and the read-only
/// user pulls the same bytes back; the read-only user's push is refused.
#[test]
fn oras_with_username_and_password() {
    let server = Server::start(Backend::Embedded);
    let users = setup_org(&server);
    let env = ClientEnv::new();

    let pushed = oras(&env, &server, "writer", &users.writer, "push", "art");
    assert_eq!(pushed["status"], 201, "push as read-write: {pushed}");
    let sent = pushed["sent"].as_str().expect("sent digest").to_string();
    let m = server.manifest(PRIVATE, "art");
    let layers = manifest_parts(&m.json()).1;
    assert_eq!(layers, [format!("sha256:{sent}")], "artifact layer");

    let pulled = oras(&env, &server, "reader", &users.reader, "pull", "art");
    assert_eq!(
        pulled["pulled"],
        serde_json::json!([sent]),
        "pull as read-only: {pulled}"
    );

    let refused = oras(&env, &server, "reader", &users.reader, "push", "ro");
    let error = refused["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("'code': 'denied'") && error.contains("push on acme/private"),
        "push as read-only was not refused with DENIED: {refused}"
    );
    assert_eq!(server.tags(PRIVATE), ["art"], "a refused push left a tag");
}

/// Anonymous callers: pull a public repository with no login (Docker and HTTP), see only
/// public repositories in the catalog, push nowhere; a private repository answers them
/// exactly as a missing one does, and a user with no role gets 404 for it.
#[test]
fn anonymous_public_and_private() {
    let server = Server::start(Backend::Embedded);
    let users = setup_org(&server);
    let public = "acme/site";
    let out = server.admin_ok(&["repo", "create", public, "--public"], None);
    assert!(out.contains("(public)"), "repo create --public: {out}");

    // The administrator pushes one image to each repository.
    let image = Image::random(2, 64, "amd64");
    let admin_env = ClientEnv::new();
    let src = admin_env.path("src");
    OciLayout::new(&src).add_image(&image, "v1");
    for repo in [public, PRIVATE] {
        admin_env.skopeo_copy(
            &server.creds(),
            &[],
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{}:v1", server.reference(repo)),
        );
    }

    // Docker with no login pulls the public image.
    let env = ClientEnv::new();
    let pub_v1 = format!("{}:v1", server.reference(public));
    let pub_v2 = format!("{}:v2", server.reference(public));
    let _cleanup = DockerImages {
        env: &env,
        refs: vec![pub_v1.clone(), pub_v2.clone(), image.config_digest.clone()],
    };
    run_ok(env.docker().args(["pull", &pub_v1]), CLIENT_TIMEOUT);
    assert_eq!(image_id(&env, &pub_v1), image.config_digest);
    let r = server.get_anon(&format!("/v2/{public}/manifests/v1"), Some(ACCEPT_ALL));
    r.expect(200);
    assert_eq!(
        r.header("docker-content-digest").as_deref(),
        Some(image.manifest_digest.as_str())
    );

    // ... and may not push there.
    run_ok(env.docker().args(["tag", &pub_v1, &pub_v2]), CLIENT_TIMEOUT);
    let out = run(env.docker().args(["push", &pub_v2]), CLIENT_TIMEOUT);
    assert_refused(
        &out,
        "anonymous docker push",
        &["requested access to the resource is denied", "unauthorized"],
    );
    let r = server
        .http_anon()
        .post(server.url(&format!("/v2/{public}/blobs/uploads/")))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401, "anonymous upload");
    let challenge = header_text(&r, "www-authenticate");
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/auth/token\",service=\"berth\",scope=\"repository:{public}:pull,push\"",
            server.host
        )
    );
    assert_eq!(server.tags(public), ["v1"], "a refused push left a tag");

    // The anonymous catalog lists the public repository only.
    let r = server.get_anon("/v2/_catalog", None);
    r.expect(200);
    assert_eq!(r.json()["repositories"], serde_json::json!([public]));

    // A private repository answers anonymous callers as a missing one does: 401 with the
    // challenge; a user with no role on it gets 404 as for a missing one.
    let private_m = format!("/v2/{PRIVATE}/manifests/v1");
    let missing_m = "/v2/acme/missing/manifests/v1";
    let a = server.get_anon(&private_m, Some(ACCEPT_ALL));
    let b = server.get_anon(missing_m, Some(ACCEPT_ALL));
    a.expect(401);
    b.expect(401);
    assert_eq!(error_code(&a), error_code(&b));
    let a = server.request_as(Method::GET, &private_m, "outsider", &users.outsider);
    let b = server.request_as(Method::GET, missing_m, "outsider", &users.outsider);
    a.expect(404);
    b.expect(404);
    assert_eq!(error_code(&a), "NAME_UNKNOWN");
    assert_eq!(error_code(&b), "NAME_UNKNOWN");
    let out = run(
        env.docker()
            .args(["pull", &format!("{}:v1", server.reference(PRIVATE))]),
        CLIENT_TIMEOUT,
    );
    assert_refused(
        &out,
        "anonymous docker pull of a private repository",
        &["pull access denied", "may require 'docker login'"],
    );

    // Made private, the public repository is out of anonymous reach too.
    server.admin_ok(&["repo", "visibility", public, "private"], None);
    server
        .get_anon(&format!("/v2/{public}/manifests/v1"), Some(ACCEPT_ALL))
        .expect(401);
    let r = server.get_anon("/v2/_catalog", None);
    r.expect(200);
    assert_eq!(r.json()["repositories"], serde_json::json!([]));
}

// ---------------------------------------------------------------------------------------
// Refresh tokens (issue 10)

/// `GET /auth/token` for `scope` with Basic credentials, asking for a refresh token.
fn offline_login(server: &Server, user: &str, password: &str, scope: &str) -> Value {
    let r = server.request_as(
        Method::GET,
        &format!("/auth/token?scope={scope}&offline_token=true"),
        user,
        password,
    );
    r.expect(200);
    let body = r.json();
    assert!(
        body["refresh_token"].is_string(),
        "no refresh token for an offline login: {body}"
    );
    body
}

/// `POST /auth/token` with `grant_type=refresh_token`: the status and the body.
fn refresh(server: &Server, token: &str, scope: &str) -> (u16, Value) {
    let r = server
        .http_anon()
        .post(server.url("/auth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("scope", scope),
            ("service", "berth"),
        ])
        .send()
        .expect("POST /auth/token");
    let status = r.status().as_u16();
    let body = r.json().unwrap_or(Value::Null);
    (status, body)
}

/// A JSON request to the management API with Basic credentials: status and body.
fn api_as(
    server: &Server,
    method: Method,
    path: &str,
    user: &str,
    password: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rq = server
        .http_anon()
        .request(method.clone(), server.url(path))
        .header("Authorization", basic_auth(user, password));
    if let Some(b) = body {
        rq = rq.json(&b);
    }
    let r = rq.send().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The id part of a `berth_<id>_<secret>` token.
fn token_id(token: &str) -> String {
    token
        .split('_')
        .nth(1)
        .expect("berth_<id>_<secret>")
        .to_string()
}

/// The issue as reported: an access token with a 5-second life mints a 90-day refresh
/// token; after the access token is revoked and the password changed, the refresh token
/// must no longer grant pull and push. Also: a password login's refresh token ends with a
/// password change and with deactivation (reactivation does not revive it); a refresh
/// token expires with its parent access token; users list and revoke their refresh tokens
/// through the API, administrators through `berth admin token list|revoke`; and (scaled)
/// a password remembered by another replica stops working when the password changes.
fn refresh_tokens_end_with_their_credential(backend: Backend) {
    let server = Server::start(backend);
    let replica = (backend == Backend::Scaled).then(|| server.replica());
    let (admin, admin_pw) = server.admin_creds();
    let (admin, admin_pw) = (admin.to_string(), admin_pw.to_string());
    let pw1 = format!("pw-rita-{}", unique());
    let pw2 = format!("pw-rita-{}", unique());
    server.create_user("rita", &pw1);
    let scope = "repository:rita/app:pull,push";

    // An access token with a 5-second life, and the refresh token it mints.
    let (st, t) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/rita/tokens",
        "rita",
        &pw1,
        Some(serde_json::json!({"description": "short", "expires_in": 5})),
    );
    assert_eq!(st, 201, "token create: {t}");
    let short = t["token"].as_str().expect("secret").to_string();
    let from_token = offline_login(&server, "rita", &short, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let from_password = offline_login(&server, "rita", &pw1, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    for r in [&from_token, &from_password] {
        let (st, body) = refresh(&server, r, scope);
        assert_eq!(st, 200, "a fresh refresh token works: {body}");
        assert_eq!(body["scope"], scope, "grants pull and push: {body}");
    }

    // Both are listed, with what they derive from; the token's child expires with it.
    let (st, list) = api_as(
        &server,
        Method::GET,
        "/api/v0/users/rita/tokens?kind=refresh",
        "rita",
        &pw1,
        None,
    );
    assert_eq!(st, 200, "list: {list}");
    let items = list.as_array().expect("array");
    assert_eq!(items.len(), 2, "two refresh tokens: {list}");
    let child = items
        .iter()
        .find(|t| t["id"] == token_id(&from_token))
        .unwrap_or_else(|| panic!("the token's refresh token is not listed: {list}"));
    assert_eq!(child["kind"], "refresh");
    assert_eq!(child["issued_against"], "token");
    assert_eq!(child["parent_token"], token_id(&short));
    assert_eq!(
        child["expires_at"], t["expires_at"],
        "the refresh token expires with its access token, not in 90 days"
    );
    let pw_child = items
        .iter()
        .find(|t| t["id"] == token_id(&from_password))
        .unwrap_or_else(|| panic!("the password's refresh token is not listed: {list}"));
    assert_eq!(pw_child["issued_against"], "password");
    assert!(pw_child["parent_token"].is_null());
    let (_, access_list) = api_as(
        &server,
        Method::GET,
        "/api/v0/users/rita/tokens",
        "rita",
        &pw1,
        None,
    );
    assert_eq!(
        access_list.as_array().map(Vec::len),
        Some(1),
        "access tokens by default: {access_list}"
    );

    // Nobody else lists or revokes them; a kind that does not exist is a client error.
    let rob_pw = format!("pw-rob-{}", unique());
    server.create_user("rob", &rob_pw);
    let (st, body) = api_as(
        &server,
        Method::GET,
        "/api/v0/users/rita/tokens?kind=refresh",
        "rob",
        &rob_pw,
        None,
    );
    assert_eq!(st, 403, "another user lists rita's refresh tokens: {body}");
    let (st, body) = api_as(
        &server,
        Method::DELETE,
        &format!("/api/v0/users/rita/tokens/{}", token_id(&from_password)),
        "rob",
        &rob_pw,
        None,
    );
    assert_eq!(st, 403, "another user revokes rita's refresh token: {body}");
    let (st, body) = api_as(
        &server,
        Method::GET,
        "/api/v0/users/rita/tokens?kind=bogus",
        "rita",
        &pw1,
        None,
    );
    assert_eq!(st, 400, "kind=bogus: {body}");
    assert_eq!(refresh(&server, &from_password, scope).0, 200);

    // A replica remembers rita's password.
    if let Some(replica) = &replica {
        replica
            .request_as(Method::GET, "/v2/", "rita", &pw1)
            .expect(200);
        replica
            .request_as(Method::GET, "/v2/", "rita", &pw1)
            .expect(200);
    }

    // The access token is revoked and the password changed.
    let (st, body) = api_as(
        &server,
        Method::DELETE,
        &format!("/api/v0/users/rita/tokens/{}", token_id(&short)),
        "rita",
        &pw1,
        None,
    );
    assert_eq!(st, 204, "revoke: {body}");
    let (st, body) = api_as(
        &server,
        Method::PUT,
        "/api/v0/users/rita/password",
        "rita",
        &pw1,
        Some(serde_json::json!({"current_password": pw1, "new_password": pw2})),
    );
    assert_eq!(st, 204, "password change: {body}");
    for (what, r) in [
        ("access token's", &from_token),
        ("password's", &from_password),
    ] {
        let (st, body) = refresh(&server, r, scope);
        assert_eq!(
            st, 401,
            "the {what} refresh token still works after revocation and a password change: {body}"
        );
    }
    let (_, list) = api_as(
        &server,
        Method::GET,
        "/api/v0/users/rita/tokens?kind=refresh",
        "rita",
        &pw2,
        None,
    );
    assert!(
        list.as_array()
            .expect("array")
            .iter()
            .all(|t| t["revoked"] == true),
        "listed as revoked: {list}"
    );
    if let Some(replica) = &replica {
        let r = replica.request_as(Method::GET, "/v2/", "rita", &pw1);
        assert_eq!(
            r.status, 401,
            "the other replica still accepts the old password it remembered"
        );
        replica
            .request_as(Method::GET, "/v2/", "rita", &pw2)
            .expect(200);
    }

    // Expiry of the parent ends the child, with no revocation.
    let (st, t) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/rita/tokens",
        "rita",
        &pw2,
        Some(serde_json::json!({"description": "brief", "expires_in": 2})),
    );
    assert_eq!(st, 201, "token create: {t}");
    let brief = t["token"].as_str().unwrap().to_string();
    let r = offline_login(&server, "rita", &brief, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert_eq!(
        refresh(&server, &r, scope).0,
        401,
        "outlived its access token"
    );

    // A user revokes a refresh token through the API.
    let r = offline_login(&server, "rita", &pw2, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(refresh(&server, &r, scope).0, 200);
    let (st, body) = api_as(
        &server,
        Method::DELETE,
        &format!("/api/v0/users/rita/tokens/{}", token_id(&r)),
        "rita",
        &pw2,
        None,
    );
    assert_eq!(st, 204, "revoke a refresh token: {body}");
    assert_eq!(
        refresh(&server, &r, scope).0,
        401,
        "revoked through the API"
    );

    // An administrator lists and revokes one with `berth admin`.
    let r = offline_login(&server, "rita", &pw2, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = server.admin_ok(&["token", "list", "rita", "--kind", "refresh"], None);
    let line = out
        .lines()
        .find(|l| l.starts_with(&token_id(&r)))
        .unwrap_or_else(|| panic!("berth admin token list --kind refresh: {out}"));
    assert!(
        line.contains("\tactive\t") && line.ends_with("\tpassword"),
        "{line}"
    );
    assert!(!out.contains(&r), "token list printed a secret");
    server.admin_ok(&["token", "revoke", &token_id(&r)], None);
    assert_eq!(refresh(&server, &r, scope).0, 401, "revoked by berth admin");

    // Deactivation ends a password's sessions; reactivation does not revive them.
    let r = offline_login(&server, "rita", &pw2, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    for active in [false, true] {
        let (st, body) = api_as(
            &server,
            Method::PATCH,
            "/api/v0/users/rita",
            &admin,
            &admin_pw,
            Some(serde_json::json!({ "active": active })),
        );
        assert_eq!(st, 200, "PATCH active={active}: {body}");
    }
    assert_eq!(
        refresh(&server, &r, scope).0,
        401,
        "revived by reactivation"
    );
    // A new login works again.
    let r = offline_login(&server, "rita", &pw2, scope)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body) = refresh(&server, &r, scope);
    assert_eq!((st, &body["scope"]), (200, &Value::from(scope)), "{body}");
}

both_backends!(restricted_bearer_tokens);

/// A bearer token never carries more than its `access` claim and the restriction of the
/// credential it was issued to: not the system administrator's routes, not the whole
/// catalog, not a mount without `from` of a blob only a private repository holds.
fn restricted_bearer_tokens(backend: Backend) {
    let server = Server::start(backend);
    let http = server.http_anon();
    let send = |method: Method, path: &str, auth: &str, body: Option<&str>| {
        let mut rq = http
            .request(method.clone(), server.url(path))
            .header("Authorization", auth);
        if let Some(b) = body {
            rq = rq
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        Response::from(rq.send().expect("request"), method.as_str(), path)
    };
    // A blob only the private repository vault/secret holds, pushed by the administrator.
    let bytes = format!("secret layer {}", unique()).into_bytes();
    let digest = server.push_blob("vault/secret", &bytes);
    let bearer = |user: &str, secret: &str, scopes: &[&str]| -> String {
        let q: Vec<String> = scopes.iter().map(|s| format!("scope={s}")).collect();
        let path = format!("/auth/token?service=berth&{}", q.join("&"));
        let r = send(Method::GET, &path, &basic_auth(user, secret), None);
        r.expect(200);
        format!("Bearer {}", r.json()["token"].as_str().expect("token"))
    };

    // The administrator's access token restricted to ci/* (read-write).
    let ci = server
        .admin_ok(
            &["token", "create", "admin", "--scope", "ci/*=read-write"],
            None,
        )
        .trim()
        .to_string();
    let b = bearer(
        "admin",
        &ci,
        &["repository:ci/x:pull,push", "registry:catalog:*"],
    );
    for (method, path, body) in [
        (Method::GET, "/api/v0/meta/cluster_status", None),
        (Method::GET, "/api/v0/gc/runs", None),
        (
            Method::PUT,
            "/api/v0/gc/schedule",
            Some(r#"{"schedule":"* * * * *"}"#),
        ),
        (
            Method::POST,
            "/api/v0/gc/runs",
            Some(r#"{"grace":"0s","upload_max_age":"0s","wait":true}"#),
        ),
        (Method::GET, "/api/v0/users", None),
    ] {
        let r = send(method.clone(), path, &b, body);
        if path == "/api/v0/users" {
            // Readable by anyone authenticated, but the e-mail of others only to admins.
            r.expect(200);
            continue;
        }
        r.expect(403);
        assert_eq!(error_code(&r), "DENIED", "{method} {path}: {}", r.text());
    }
    let r = send(Method::GET, "/v2/_catalog", &b, None);
    r.expect(200);
    let listed = r.json()["repositories"].clone();
    assert!(
        !listed.to_string().contains("vault/secret"),
        "a ci/* bearer token listed {listed}"
    );
    let r = send(
        Method::POST,
        &format!("/v2/ci/x/blobs/uploads/?mount={digest}"),
        &b,
        None,
    );
    assert_eq!(
        r.status,
        202,
        "mount without from must become an upload: {}",
        r.text()
    );
    send(Method::GET, &format!("/v2/ci/x/blobs/{digest}"), &b, None).expect(404);

    // A user's token restricted to their own namespace: the catalog through a bearer
    // shows no other organisation's repository the user could otherwise pull.
    let pw = format!("pw-dev-{}", unique());
    server.create_user("dev", &pw);
    server.admin_ok(&["org", "create", "other"], None);
    server.admin_ok(&["repo", "create", "other/app"], None);
    server.admin_ok(&["team", "create", "other", "readers"], None);
    server.admin_ok(&["team", "add", "other", "readers", "dev"], None);
    server.admin_ok(
        &[
            "team",
            "grant",
            "other",
            "readers",
            "--repo",
            "other/app",
            "--role",
            "read-only",
        ],
        None,
    );
    let own = server
        .admin_ok(
            &["token", "create", "dev", "--scope", "dev/*=read-write"],
            None,
        )
        .trim()
        .to_string();
    let everything = |auth: &str| {
        let r = send(Method::GET, "/v2/_catalog", auth, None);
        r.expect(200);
        r.json()["repositories"].to_string()
    };
    assert!(everything(&basic_auth("dev", &pw)).contains("other/app"));
    assert!(!everything(&basic_auth("dev", &own)).contains("other/app"));
    let b = bearer("dev", &own, &["registry:catalog:*"]);
    assert!(
        !everything(&b).contains("other/app"),
        "a dev/* bearer token listed other/app"
    );

    // An unrestricted administrator's bearer token with the catalog scope still lists
    // everything (crane catalog, skopeo), and mounts only with a `from` it may pull.
    let (user, password) = server.admin_creds();
    let b = bearer(
        user,
        password,
        &[
            "repository:ci/y:pull,push",
            "repository:vault/secret:pull",
            "registry:catalog:*",
        ],
    );
    assert!(everything(&b).contains("vault/secret"));
    let r = send(
        Method::POST,
        &format!("/v2/ci/y/blobs/uploads/?mount={digest}&from=vault/secret"),
        &b,
        None,
    );
    assert_eq!(
        r.status,
        201,
        "mount from a repository the token may pull: {}",
        r.text()
    );
}
