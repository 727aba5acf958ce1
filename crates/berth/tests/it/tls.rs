//! HTTPS: `berth serve --tls-cert FILE --tls-key FILE` turns the listener into TLS (rustls).
//! Real clients verify the certificate against a CA made for the test: curl over HTTP/1.1
//! and HTTP/2, skopeo pushing and pulling an image and crane reading it with verification
//! on, all as the administrator. An anonymous caller is sent to the token service at an `https` realm. A
//! plain-HTTP request to the TLS port gets no registry answer.

use berth_testkit::e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ADMIN_PASSWORD: &str = "tls-admin-password-9f3c";

fn start(dir: &Path) -> Process {
    Process::spawn_tls(None, dir, &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)])
}

#[test]
fn https_with_verified_clients() {
    let env = ClientEnv::new();
    let dir = tempfile::tempdir().unwrap();
    certs::ca_and_server(dir.path());
    let server = start(dir.path());
    let ca = dir.path().join("ca.crt");
    let admin = creds(ADMIN, ADMIN_PASSWORD);

    // Anonymous: 401, and the challenge names the token service at the address the client
    // used, over https, whether the request carries `Host` (HTTP/1.1) or `:authority`
    // (HTTP/2, what Go clients such as skopeo and Docker negotiate over TLS).
    let want = format!(
        "bearer realm=\"https://{}/auth/token\",service=\"berth\"",
        server.host
    );
    for (proto, status) in [("--http1.1", "HTTP/1.1 401"), ("--http2", "HTTP/2 401")] {
        let out = run_ok(
            Command::new("curl")
                .args(["-sS", proto, "-D", "-", "-o", "/dev/null", "--cacert"])
                .arg(&ca)
                .arg(format!("https://{}/v2/", server.host)),
            Duration::from_secs(30),
        );
        assert!(
            out.stdout.starts_with(status),
            "anonymous /v2/ over TLS with curl {proto}: {}",
            out.stdout
        );
        assert!(
            out.stdout
                .to_ascii_lowercase()
                .contains(&want.to_ascii_lowercase()),
            "curl {proto}: no challenge naming {want} in:\n{}",
            out.stdout
        );
    }

    for proto in ["--http1.1", "--http2"] {
        let out = run_ok(
            Command::new("curl")
                .args([
                    "-sS",
                    "--fail",
                    proto,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_version} %{http_code}",
                    "-u",
                    &admin,
                    "--cacert",
                ])
                .arg(&ca)
                .arg(format!("https://{}/v2/", server.host)),
            Duration::from_secs(30),
        );
        let want = if proto == "--http2" {
            "2 200"
        } else {
            "1.1 200"
        };
        assert_eq!(out.stdout.trim(), want, "curl {proto}");
    }
    // Without the CA the certificate is refused: verification is real.
    let out = run(
        Command::new("curl")
            .args(["-sS", "--fail", "-o", "/dev/null"])
            .arg(format!("https://{}/v2/", server.host)),
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "curl accepted an unknown CA");
    // Plain HTTP to the TLS listener gets no registry answer.
    let out = run(
        Command::new("curl")
            .args(["-sS", "--fail", "-o", "/dev/null", "-m", "5"])
            .arg(format!("http://{}/v2/", server.host)),
        Duration::from_secs(30),
    );
    assert!(
        !out.status.success(),
        "plain http was answered on the TLS port"
    );

    // skopeo with certificate verification on.
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let src = env.path("layout");
    let image = Image::random(2, 64, "amd64");
    OciLayout::new(&src).add_image(&image, "v1");
    let remote = format!("docker://{}/tls/app:v1", server.host);
    run_ok(
        env.skopeo()
            .args(["copy", "--dest-creds", &admin, "--dest-cert-dir"])
            .arg(&certs)
            .arg(format!("oci:{}:v1", src.display()))
            .arg(&remote),
        Duration::from_secs(120),
    );
    let out = run_ok(
        env.skopeo()
            .args(["inspect", "--raw", "--creds", &admin, "--cert-dir"])
            .arg(&certs)
            .arg(&remote),
        Duration::from_secs(60),
    );
    assert_eq!(
        sha256_digest(out.stdout.as_bytes()),
        image.manifest_digest,
        "manifest served over TLS"
    );
    // crane (go-containerregistry negotiates HTTP/2 over TLS) follows the token protocol
    // to the realm the challenge names.
    let crane = || {
        let mut c = env.crane();
        c.env("SSL_CERT_FILE", &ca);
        c
    };
    run_input_ok(
        crane().args([
            "auth",
            "login",
            &server.host,
            "--username",
            ADMIN,
            "--password-stdin",
        ]),
        Some(ADMIN_PASSWORD),
        Duration::from_secs(60),
    );
    let out = run_ok(
        crane().args(["digest", &format!("{}/tls/app:v1", server.host)]),
        Duration::from_secs(60),
    );
    assert_eq!(out.stdout.trim(), image.manifest_digest, "crane over TLS");
    let back = env.path("back");
    run_ok(
        env.skopeo()
            .args(["copy", "--src-creds", &admin, "--src-cert-dir"])
            .arg(&certs)
            .arg(&remote)
            .arg(format!("oci:{}:v1", back.display())),
        Duration::from_secs(120),
    );
    assert_eq!(
        read_layout_index(&back)["v1"]["digest"],
        image.manifest_digest.as_str()
    );
}
