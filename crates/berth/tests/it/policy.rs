//! Signature policies enforced by Berth on every manifest GET and HEAD, over Docker Content
//! Trust signatures made by the docker CLI and the notary CLI, with the Docker engine,
//! skopeo and crane pulling: `enforce` refuses what the required signers did not sign, a
//! pusher pulls regardless, the children of a signed index pass, `audit` serves with a
//! `Warning` and an audit event; the policy is the same after a restart and through a
//! second process, on both store pairs.

use crate::trust::{
    admin_api, as_admin, create_user, curl, docker_server, image_of, serve, trusted_ok, Docker,
    Notary,
};
use berth_testkit::e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

both_backends!(signature_policies_over_dct);

const PW: &str = "policy-user-password-7";

/// `berth admin ARGS` on the stores of the server in `dir`, which must succeed.
fn berth_admin(dir: &Path, stores: &Stores, args: &[&str]) -> String {
    let mut cmd = Command::new(berth_bin());
    cmd.args(["admin", "--data-dir"]).arg(dir.join("data"));
    stores.configure(&mut cmd).args(args);
    run_ok(&mut cmd, Duration::from_secs(60)).stdout
}

/// `docker pull` with content trust off, after removing any local copy.
fn pull(docker: &Docker, image: &str) -> Output {
    let _ = run(
        docker.cmd().args(["rmi", "-f", image]),
        Duration::from_secs(30),
    );
    run(docker.cmd().args(["pull", image]), Duration::from_secs(120))
}

fn pulls(docker: &Docker, image: &str) {
    let out = pull(docker, image);
    assert!(out.status.success(), "pull {image}: {}", out.stderr);
}

/// A pull the policy of `scope` refuses, with Berth's message (what is `missing`) as the
/// engine prints it.
fn refused(docker: &Docker, image: &str, scope: &str, missing: &str) {
    let out = pull(docker, image);
    assert!(!out.status.success(), "pulled {image}: {}", out.stdout);
    let said = format!("denied: signature policy of {scope} not satisfied");
    assert!(
        out.stderr.contains(&said) && out.stderr.contains(missing),
        "pull {image}: {}",
        out.stderr
    );
}

fn signature_policies_over_dct(backend: Backend) {
    let (dir, stores, server, ca, _engine) = docker_server(backend);
    let d = dir.path();
    let bin = require_tool("docker", "install Debian package docker.io");

    // acme: alice in team qa, bob in team devs (both may push to every repository of
    // acme), reader may only pull.
    berth_admin(d, &stores, &["org", "create", "acme"]);
    for (user, team, role) in [
        ("alice", "qa", "read-write"),
        ("bob", "devs", "read-write"),
        ("reader", "readers", "read-only"),
    ] {
        create_user(d, &server, user, PW);
        berth_admin(d, &stores, &["team", "create", "acme", team]);
        berth_admin(d, &stores, &["team", "add", "acme", team, user]);
        let grant = ["team", "grant", "acme", team, "--namespace", "--role", role];
        berth_admin(d, &stores, &grant);
    }
    let alice = Docker::new(&bin, &server, &ca, "alice", PW);
    let bob = Docker::new(&bin, &server, &ca, "bob", PW);
    let reader = Docker::new(&bin, &server, &ca, "reader", PW);
    let image = |repo: &str, tag: &str| format!("{}/acme/{repo}:{tag}", server.host);

    // alice signs acme/app:signed (her push creates the trust data: she is its signer)
    // and pushes acme/app:plain without trust; bob signs acme/other:1.
    image_of(&alice, "signed by alice\n", &image("app", "signed"));
    trusted_ok(&alice, &["push", &image("app", "signed")]);
    image_of(&alice, "not signed\n", &image("app", "plain"));
    run_ok(
        alice.cmd().args(["push", &image("app", "plain")]),
        Duration::from_secs(120),
    );
    image_of(&bob, "signed by bob\n", &image("other", "1"));
    trusted_ok(&bob, &["push", &image("other", "1")]);

    let set = berth_admin(
        d,
        &stores,
        &["policy", "set", "acme", "--mode", "enforce", "team:acme/qa"],
    );
    assert_eq!(set.trim(), "set the signature policy of acme");
    pulls(&reader, &image("app", "signed"));
    refused(
        &reader,
        &image("app", "plain"),
        "acme",
        "no valid signature",
    );
    // Signed, but by someone outside the required team.
    refused(
        &reader,
        &image("other", "1"),
        "acme",
        "no valid signature from team:acme/qa",
    );
    // A pusher pulls regardless.
    pulls(&alice, &image("app", "plain"));

    // skopeo and crane meet the same refusal, by tag and by digest.
    let env = ClientEnv::new();
    let creds = format!("reader:{PW}");
    let inspect = |img: &str| {
        run(
            env.skopeo().args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                &creds,
                &format!("docker://{img}"),
            ]),
            Duration::from_secs(60),
        )
    };
    assert!(inspect(&image("app", "signed")).status.success());
    let out = inspect(&image("app", "plain"));
    assert!(
        !out.status.success()
            && out
                .stderr
                .contains("signature policy of acme not satisfied"),
        "skopeo: {}",
        out.stderr
    );
    let crane = |args: &[&str]| {
        let mut c = env.crane();
        c.args(["auth", "login", &server.host, "-u", "reader", "-p", PW]);
        run_ok(&mut c, Duration::from_secs(30));
        let mut c = env.crane();
        c.arg("--insecure").args(args);
        run(&mut c, Duration::from_secs(60))
    };
    let digest = |img: &str| {
        let out = crane(&["digest", img]);
        (
            out.status.success(),
            out.stdout.trim().to_string(),
            out.stderr,
        )
    };
    let (ok, signed_digest, _) = digest(&image("app", "signed"));
    assert!(ok);
    let (ok, _, err) = digest(&image("app", "plain"));
    assert!(!ok && err.contains("DENIED"), "crane: {err}");
    let by_digest = format!("{}/acme/app@{signed_digest}", server.host);
    assert!(crane(&["manifest", &by_digest]).status.success());

    // The signed tag moved to an unsigned image: refused again (a tag does not inherit
    // the signature of the digest it had).
    image_of(&alice, "moved\n", &image("app", "signed"));
    run_ok(
        alice.cmd().args(["push", &image("app", "signed")]),
        Duration::from_secs(120),
    );
    refused(
        &reader,
        &image("app", "signed"),
        "acme",
        "no valid signature",
    );
    // ... while the signed digest itself still passes.
    assert!(crane(&["manifest", &by_digest]).status.success());

    // A multi-platform index signed by alice (notary CLI, its bytes as the target): its
    // children pass by digest; the same children under an unsigned index in another
    // repository do not.
    let index = Index::new(vec![
        Image::random(1, 32, "amd64"),
        Image::random(1, 32, "arm64"),
    ]);
    let layout = env.path("multi");
    OciLayout::new(&layout).add_index(&index, "multi");
    let alice_creds = format!("alice:{PW}");
    for repo in ["multi", "multi-unsigned"] {
        env.skopeo_copy(
            &alice_creds,
            &["--all"],
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{}", image(repo, "v1")),
        );
    }
    std::fs::write(d.join("index.json"), &index.bytes).unwrap();
    let notary = Notary::new(&server, d, "alice", "alice", PW);
    let gun = format!("{}/acme/multi", server.host);
    notary.ok(&["init", &gun]);
    let index_file = d.join("index.json").display().to_string();
    notary.ok(&["add", &gun, "v1", &index_file]);
    notary.ok(&["publish", &gun]);
    for child in &index.images {
        let signed = format!("{}/acme/multi@{}", server.host, child.manifest_digest);
        let out = crane(&["manifest", &signed]);
        assert!(
            out.status.success(),
            "child of a signed index: {}",
            out.stderr
        );
        let unsigned = format!(
            "{}/acme/multi-unsigned@{}",
            server.host, child.manifest_digest
        );
        let out = crane(&["manifest", &unsigned]);
        assert!(
            !out.status.success() && out.stderr.contains("DENIED"),
            "{}",
            out.stderr
        );
    }

    // audit: served, with a Warning and an audit event.
    berth_admin(
        d,
        &stores,
        &["policy", "set", "acme", "--mode", "audit", "team:acme/qa"],
    );
    pulls(&reader, &image("app", "plain"));
    let url = format!("https://{}/v2/acme/app/manifests/plain", server.host);
    let (code, _) = curl(d, &url, &creds, &["-I"]);
    assert_eq!(code, 200);
    let headers = run_ok(
        Command::new("curl")
            .args(["-sS", "-I", "--cacert"])
            .arg(&ca)
            .args(["-u", &creds, &url]),
        Duration::from_secs(30),
    )
    .stdout;
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("warning: 299 - \"signature policy of acme not satisfied"),
        "{headers}"
    );
    let (code, events) = as_admin(d, &server, "/api/v0/audit?action=policy.audit", &[]);
    assert_eq!(code, 200, "{events}");
    assert!(events.contains("acme/app"), "{events}");

    // The repository's own policy replaces the namespace's, through the API; the policy
    // is the same after a restart and, on PostgreSQL, through a second process.
    let (code, body) = admin_api(
        d,
        &server,
        "PUT",
        "/api/v0/repositories/acme/app/policy",
        r#"{"mode":"enforce","signers":["user:alice"]}"#,
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = admin_api(
        d,
        &server,
        "PUT",
        "/api/v0/repositories/acme/app/policy",
        r#"{"mode":"sometimes"}"#,
    );
    assert_eq!(code, 400, "{body}");
    refused(
        &reader,
        &image("app", "plain"),
        "acme/app",
        "no valid signature",
    );
    // alice's signed digest passes, until the repository's trust data is deleted.
    let signed_url = format!(
        "https://{}/v2/acme/app/manifests/{signed_digest}",
        server.host
    );
    assert_eq!(curl(d, &signed_url, &creds, &[]).0, 200);
    let (code, body) = admin_api(
        d,
        &server,
        "DELETE",
        "/api/v0/repositories/acme/app/trust",
        "",
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = curl(d, &signed_url, &creds, &[]);
    assert_eq!(code, 403, "{body}");
    drop(server);
    let server = serve(d, &stores);
    let reader = Docker::new(&bin, &server, &ca, "reader", PW);
    let image = |repo: &str, tag: &str| format!("{}/acme/{repo}:{tag}", server.host);
    refused(
        &reader,
        &image("app", "plain"),
        "acme/app",
        "no valid signature",
    );
    let shown = berth_admin(d, &stores, &["policy", "show", "acme/app"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["source"]["kind"], "repository", "{shown}");
    assert_eq!(shown["policy"]["signers"][0], "user:alice", "{shown}");
    if backend == Backend::Scaled {
        let other_dir = tempfile::tempdir().unwrap();
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(d.join(f), other_dir.path().join(f)).unwrap();
        }
        let other = serve(other_dir.path(), &stores);
        let url = format!("https://{}/v2/acme/app/manifests/plain", other.host);
        let (code, body) = curl(d, &url, &creds, &[]);
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("DENIED"), "{body}");
    }
}
