//! Signature policies over cosign and Notation signatures: keys registered through the API
//! and `berth admin`, signatures made in the suite by its own signer after the published
//! formats (cosign's `sha256-<hex>.sig` tag with a simple-signing payload, a sigstore
//! bundle referrer, a Notation JWS referrer; `berth_trust::testing`) and by the real npm
//! sigstore CLI (keyless, against a Fulcio on loopback, attached by the CLI itself),
//! pushed over the distribution API and pulled with crane and plain requests as a user who
//! may only pull.
//! Each satisfies a policy trusting its key and fails one that does not; a signature over
//! another digest, a tampered payload and an expired certificate are refused; a key
//! registered after its signatures were pushed makes them count, a key removed stops them
//! at once; the signed status listing and the dry run say why; the decisions are the same
//! after a restart and on a second replica.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use berth_testkit::e2e::*;
use berth_trust::testing::{self as signer, ArtifactKey, Pushable, TestCa};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

both_backends!(signature_policies_over_cosign_and_notation);

const PW: &str = "signatures-user-password-3";
const REPO: &str = "acme/app";

/// Pushes a fresh one-layer image as `acme/app:tag`; its subject descriptor
/// (media type, digest, size).
fn push_image(server: &Server, tag: &str) -> (String, String, u64) {
    let image = Image::random(1, 1, "amd64");
    server.push_blob(REPO, &image.config);
    for l in &image.layers {
        server.push_blob(REPO, &l.gz);
    }
    let digest = server.push_manifest(REPO, tag, &image.manifest);
    (
        OCI_MANIFEST.to_string(),
        digest,
        image.manifest.len() as u64,
    )
}

/// Pushes a signature artifact: its blobs, then its manifest under its tag (cosign's tag
/// scheme) or by digest (a referrer).
fn push_signature(server: &Server, sig: &Pushable) -> String {
    for blob in &sig.blobs {
        server.push_blob(REPO, blob);
    }
    let digest = sha256_digest(&sig.manifest);
    let reference = sig.tag.clone().unwrap_or_else(|| digest.clone());
    let r = server
        .http()
        .put(server.url(&format!("/v2/{REPO}/manifests/{reference}")))
        .header("Content-Type", sig.media_type.as_str())
        .body(sig.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "signature push: {:?}", r.text());
    digest
}

/// The status of `reader` GETting `acme/app:reference`, and the body.
fn get_as_reader(server: &Server, reference: &str) -> (u16, String) {
    let r = server.request_as(
        Method::GET,
        &format!("/v2/{REPO}/manifests/{reference}"),
        "reader",
        PW,
    );
    (r.status, r.text())
}

fn served(server: &Server, reference: &str) {
    let (code, body) = get_as_reader(server, reference);
    assert_eq!(code, 200, "{reference}: {body}");
}

fn denied(server: &Server, reference: &str, missing: &str) {
    let (code, body) = get_as_reader(server, reference);
    assert_eq!(code, 403, "{reference}: {body}");
    assert!(
        body.contains("DENIED") && body.contains(missing),
        "{reference}: {body}"
    );
}

/// `acme/app`'s own policy, set through the API of `server` (which applies it at once;
/// another replica within a second): enforce, `formats`, any of `signers`.
fn policy(server: &Server, formats: &[&str], signers: &[&str]) {
    let body = json!({"mode": "enforce", "formats": formats, "signers": signers});
    let r = server
        .http()
        .put(server.url(&format!("/api/v0/repositories/{REPO}/policy")))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
}

/// The npm sigstore CLI, keyless, against a Fulcio and a Rekor of `@sigstore/mock` on
/// loopback (`mock-sigstore.js`, installed with the CLI by `cargo xtask peers`).
struct Sigstore {
    mock: Child,
    port: u16,
    cli: PathBuf,
    dir: tempfile::TempDir,
}

impl Sigstore {
    fn start() -> Sigstore {
        let home = PathBuf::from(require_env("BERTH_TEST_SIGSTORE"));
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("mock.log")).unwrap();
        let mut mock = Command::new(require_tool("node", "install Debian package nodejs"))
            .arg(home.join("mock-sigstore.js"))
            .arg("0")
            .arg(dir.path())
            .current_dir(&home)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting mock-sigstore.js");
        let mut first = String::new();
        std::io::BufReader::new(mock.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("PORT=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("mock-sigstore.js said {first:?}"));
        let cli = home.join("node_modules/.bin/sigstore");
        Sigstore {
            mock,
            port,
            cli,
            dir,
        }
    }

    /// The mock Fulcio's root certificate, what a user registers to trust its leaves.
    fn fulcio_root(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fulcio-root.pem")).unwrap()
    }

    /// Signs a cosign signature statement over `digest` of `host/repo` with a certificate
    /// the mock Fulcio issues, and attaches the bundle to the image as `user`.
    fn sign_and_attach(&self, host: &str, repo: &str, digest: &str, user: &str) {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": format!("{host}/{repo}"), "digest": {"sha256": &digest[7..]}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        });
        let (stmt, bundle) = (
            self.dir.path().join("stmt.json"),
            self.dir.path().join("bundle.json"),
        );
        std::fs::write(&stmt, statement.to_string()).unwrap();
        // An identity token the mock Fulcio decodes without verifying it.
        let claims = json!({"iss": "https://oidc.berth.test", "sub": "https://ci.berth.test/sign",
            "aud": "sigstore", "email": "ci@berth.test", "email_verified": true});
        let token = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64URL.encode(claims.to_string())
        );
        let mock = format!("http://127.0.0.1:{}", self.port);
        run_ok(
            Command::new(&self.cli)
                .arg("attest")
                .arg(&stmt)
                .args(["--fulcio-url", &mock, "--rekor-url", &mock, "-o"])
                .arg(&bundle)
                .env("CI", "true")
                .env("SIGSTORE_ID_TOKEN", token),
            Duration::from_secs(60),
        );
        run_ok(
            Command::new(&self.cli)
                .args(["attach", "--attestation"])
                .arg(&bundle)
                .args(["-u", user, "-p", PW, &format!("{host}/{repo}@{digest}")]),
            Duration::from_secs(60),
        );
    }
}

impl Drop for Sigstore {
    fn drop(&mut self) {
        let _ = self.mock.kill();
        let _ = self.mock.wait();
    }
}

/// A JSON request to the management API as `user`.
fn api_as(
    server: &Server,
    method: Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http_anon()
        .request(method, server.url(path))
        .header("Authorization", basic_auth(user, PW));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn signature_policies_over_cosign_and_notation(backend: Backend) {
    let mut server = Server::start(backend);
    server.admin_ok(&["org", "create", "acme"], None);
    for (user, team, role) in [
        ("ci", "signers", "read-write"),
        ("nora", "release", "read-write"),
        ("reader", "readers", "read-only"),
    ] {
        server.create_user(user, PW);
        server.admin_ok(&["team", "create", "acme", team], None);
        server.admin_ok(&["team", "add", "acme", team, user], None);
        let grant = ["team", "grant", "acme", team, "--namespace", "--role", role];
        server.admin_ok(&grant, None);
    }
    let reference = server.reference(REPO);

    // ci registers a cosign key through the API; nora's Notation trust root goes in
    // through `berth admin`.
    let ci_key = ArtifactKey::new();
    let (code, key) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/ci/keys",
        "ci",
        Some(json!({"name": "ci cosign", "pem": ci_key.public_pem()})),
    );
    assert_eq!(code, 201, "{key}");
    let ci_key_id = key["id"].as_str().unwrap().to_string();
    assert_eq!(key["kind"], "public-key", "{key}");
    let (code, err) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/nora/keys",
        "ci",
        Some(json!({"pem": ci_key.public_pem()})),
    );
    assert_eq!(code, 403, "ci may not register keys for nora: {err}");
    let (code, err) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/ci/keys",
        "ci",
        Some(json!({"pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"})),
    );
    assert_eq!(code, 400, "{err}");
    let ca = TestCa::new("acme release CA");
    let ca_id = server
        .admin_ok(
            &["key", "add", "nora", "-", "--name", "release CA"],
            Some(&ca.ca_pem()),
        )
        .trim()
        .to_string();
    assert_eq!(ca_id.len(), 64, "{ca_id}");
    let listed = server.admin_ok(&["key", "list", "nora"], None);
    assert!(
        listed.contains(&ca_id) && listed.contains("certificate"),
        "{listed}"
    );

    // v1: cosign tag scheme; v2: a sigstore bundle referrer; v3: Notation JWS. All by the
    // registered keys.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let nora_leaf = ca.leaf("nora", now - 3600, now + 30 * 86400);
    let v1 = push_image(&server, "v1");
    let sig1 = signer::cosign_simple_signing((&v1.0, &v1.1, v1.2), &reference, &ci_key);
    assert_eq!(
        sig1.tag.as_deref(),
        Some(format!("sha256-{}.sig", &v1.1[7..]).as_str())
    );
    push_signature(&server, &sig1);
    let v2 = push_image(&server, "v2");
    push_signature(
        &server,
        &signer::cosign_bundle((&v2.0, &v2.1, v2.2), &ci_key),
    );
    let v3 = push_image(&server, "v3");
    push_signature(
        &server,
        &signer::notation_jws((&v3.0, &v3.1, v3.2), &nora_leaf, None),
    );

    // Bad signatures: v4's names another digest, v5's payload was changed after signing,
    // v6's certificate has expired.
    let v4 = push_image(&server, "v4");
    push_signature(
        &server,
        &signer::cosign_simple_signing_with(
            (&v4.0, &v4.1, v4.2),
            &reference,
            &ci_key,
            &v1.1,
            false,
        ),
    );
    let v5 = push_image(&server, "v5");
    push_signature(
        &server,
        &signer::cosign_simple_signing_with((&v5.0, &v5.1, v5.2), &reference, &ci_key, &v5.1, true),
    );
    let v6 = push_image(&server, "v6");
    let expired = ca.leaf("nora", now - 10 * 86400, now - 86400);
    push_signature(
        &server,
        &signer::notation_jws((&v6.0, &v6.1, v6.2), &expired, None),
    );
    // v7: signed with a key nobody has registered yet.
    let late_key = ArtifactKey::new();
    let v7 = push_image(&server, "v7");
    push_signature(
        &server,
        &signer::cosign_bundle((&v7.0, &v7.1, v7.2), &late_key),
    );
    let unsigned = push_image(&server, "unsigned");

    // Any valid signature in any format.
    policy(&server, &[], &[]);
    for v in ["v1", "v2", "v3"] {
        served(&server, v);
    }
    for v in ["v4", "v5", "v6", "v7", "unsigned"] {
        denied(&server, v, "no valid signature");
    }
    // By digest too; the signature artifacts themselves pass.
    served(&server, &v1.1);
    denied(&server, &unsigned.1, "no valid signature");
    served(&server, sig1.tag.as_deref().unwrap());

    // Signed by ci (the user, the team, the key): cosign passes, Notation does not.
    for signers in [
        ["user:ci"],
        ["team:acme/signers"],
        [&format!("key:{ci_key_id}") as &str],
    ] {
        policy(&server, &[], &signers);
        served(&server, "v1");
        served(&server, "v2");
        denied(
            &server,
            "v3",
            &format!("no valid signature from {}", signers[0]),
        );
    }
    // nora's trust root: Notation passes; a cosign-only policy refuses it.
    policy(&server, &["notation"], &[&format!("key:{ca_id}")]);
    served(&server, "v3");
    denied(&server, "v1", "accepted: notation");
    policy(&server, &["cosign"], &["user:nora"]);
    denied(&server, "v3", "has no valid signature (accepted: cosign)");
    // A key nobody signed with satisfies nothing.
    let other = ArtifactKey::new();
    let (code, other_key) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/reader/keys",
        "reader",
        Some(json!({"pem": other.public_pem()})),
    );
    assert_eq!(code, 201, "{other_key}");
    policy(
        &server,
        &[],
        &[&format!("key:{}", other_key["id"].as_str().unwrap())],
    );
    for v in ["v1", "v2", "v3"] {
        denied(&server, v, "no valid signature from key:");
    }

    // crane shows the refusal.
    policy(&server, &[], &["team:acme/signers"]);
    let env = ClientEnv::new();
    env.crane_login(&server.host, "reader", PW);
    let crane = |r: &str| {
        let mut c = env.crane();
        c.args([
            "manifest",
            "--insecure",
            &server.reference(&format!("{REPO}:{r}")),
        ]);
        run(&mut c, Duration::from_secs(60))
    };
    assert!(crane("v1").status.success(), "{}", crane("v1").stderr);
    let out = crane("unsigned");
    assert!(
        !out.status.success()
            && out.stderr.contains("DENIED")
            && out
                .stderr
                .contains("signature policy of acme/app not satisfied"),
        "{}",
        out.stderr
    );

    // The signed status says why each tag passes or not.
    let (code, status) = api_as(
        &server,
        Method::GET,
        &format!("/api/v0/repositories/{REPO}/signatures"),
        "reader",
        None,
    );
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["policy"]["source"]["kind"], "repository", "{status}");
    let tag = |name: &str| -> Value {
        status["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tag"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    assert_eq!(tag("v1")["satisfied"], true, "{status}");
    assert_eq!(tag("v1")["signatures"][0]["format"], "cosign");
    assert_eq!(tag("v1")["signatures"][0]["signer"], "ci");
    assert_eq!(tag("v3")["signatures"][0]["format"], "notation");
    assert_eq!(tag("v3")["signatures"][0]["signer"], "nora");
    let reason = |name: &str| {
        tag(name)["signatures"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        reason("v4").contains(&v1.1) && reason("v4").contains(&v4.1),
        "{}",
        reason("v4")
    );
    assert!(!reason("v5").is_empty(), "tampered: {status}");
    assert!(
        reason("v6").contains("certificate expired"),
        "{}",
        reason("v6")
    );
    assert_eq!(tag("unsigned")["satisfied"], false, "{status}");
    assert!(tag("unsigned")["signatures"].as_array().unwrap().is_empty());

    // The dry run: reader would be refused the unsigned tag, ci (a pusher) served; only
    // repository admins ask for someone else.
    let check = |user: &str, asker: &str, r: &str| {
        api_as(
            &server,
            Method::GET,
            &format!("/api/v0/repositories/{REPO}/policy/check?reference={r}&user={user}"),
            asker,
            None,
        )
    };
    let (code, v) = check("reader", "reader", "unsigned");
    assert_eq!((code, v["outcome"].as_str()), (200, Some("deny")), "{v}");
    let (code, v) = check("reader", "reader", "v1");
    assert_eq!((code, v["outcome"].as_str()), (200, Some("serve")), "{v}");
    let (code, v) = check("ci", "ci", "unsigned");
    assert_eq!((code, v["outcome"].as_str()), (200, Some("serve")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("push"), "{v}");
    let (code, v) = check("ci", "reader", "v1");
    assert_eq!(code, 403, "{v}");

    // A key registered after its signature was pushed makes it count; removed, it stops
    // counting at once.
    denied(&server, "v7", "no valid signature");
    let (code, late) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/ci/keys",
        "ci",
        Some(json!({"name": "late", "pem": late_key.public_pem()})),
    );
    assert_eq!(code, 201, "{late}");
    served(&server, "v7");
    let late_id = late["id"].as_str().unwrap();
    let (code, body) = api_as(
        &server,
        Method::DELETE,
        &format!("/api/v0/users/ci/keys/{late_id}"),
        "ci",
        None,
    );
    assert_eq!(code, 204, "{body}");
    denied(&server, "v7", "no valid signature");
    let (code, keys) = api_as(&server, Method::GET, "/api/v0/users/ci/keys", "ci", None);
    assert_eq!(code, 200, "{keys}");
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");

    // A real keyless sigstore bundle: the npm sigstore CLI signs with a certificate from a
    // Fulcio on loopback and attaches it. It counts once ci trusts that Fulcio's root.
    let sigstore = Sigstore::start();
    let v8 = push_image(&server, "v8");
    sigstore.sign_and_attach(&server.host, REPO, &v8.1, "ci");
    denied(&server, "v8", "no valid signature");
    let (code, root) = api_as(
        &server,
        Method::POST,
        "/api/v0/users/ci/keys",
        "ci",
        Some(json!({"name": "fulcio", "pem": sigstore.fulcio_root()})),
    );
    assert_eq!(
        (code, root["kind"].as_str()),
        (201, Some("certificate")),
        "{root}"
    );
    served(&server, "v8");

    // The same decisions after a restart, and on a second replica.
    server.restart();
    served(&server, "v1");
    denied(&server, "unsigned", "no valid signature");
    if backend == Backend::Scaled {
        let replica = server.replica();
        served(&replica, "v2");
        denied(&replica, "v6", "no valid signature");
    }
}
