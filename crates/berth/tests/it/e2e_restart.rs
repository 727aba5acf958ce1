//! State lives in the stores, not in a process: a server killed without warning comes back
//! with everything it acknowledged, an upload continues in the next process, and (on the
//! scaled stores) a second replica serves and extends what the first one wrote.

use berth_testkit::e2e::*;

both_backends!(restart_and_replicas);

const MIB: usize = 1024 * 1024;

/// The path and query of an upload `Location`, which may be absolute and name the process
/// that issued it.
fn location_path(r: &reqwest::blocking::Response) -> String {
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location on {} {}", r.status(), r.url()));
    path_of(loc)
}

fn expect_status(
    r: reqwest::blocking::Response,
    status: u16,
    what: &str,
) -> reqwest::blocking::Response {
    if r.status().as_u16() != status {
        let got = r.status();
        let headers = format!("{:?}", r.headers());
        panic!(
            "{what}: expected {status}, got {got}\nheaders: {headers}\nbody: {}",
            r.text().unwrap_or_default()
        );
    }
    r
}

fn patch(server: &Server, path: &str, data: &[u8], offset: usize) -> String {
    let r = patch_chunk(server.http(), server.url(path), data, offset)
        .header("Content-Type", "application/octet-stream")
        .send()
        .expect("PATCH");
    let r = expect_status(
        r,
        202,
        &format!("PATCH {path} at {offset} on {}", server.host),
    );
    let range = header_text(&r, "range");
    assert_eq!(
        range,
        format!("0-{}", offset + data.len() - 1),
        "Range after PATCH on {}",
        server.host
    );
    location_path(&r)
}

/// Tags the blob as the layer of an artifact (POST + PUT for the empty config, then the
/// manifest), so the repository holds a manifest like any other.
fn push_artifact(server: &Server, repo: &str, layer: &str, size: usize) {
    let config = b"{}";
    let r = server
        .http()
        .post(server.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .expect("POST");
    let upload = location_path(&expect_status(r, 202, "POST upload"));
    let sep = if upload.contains('?') { '&' } else { '?' };
    let r = server
        .http()
        .put(server.url(&format!("{upload}{sep}digest={}", sha256_digest(config))))
        .header("Content-Type", "application/octet-stream")
        .body(config.to_vec())
        .send()
        .expect("PUT");
    expect_status(r, 201, "PUT empty config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.big.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(config), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": size}]
    }))
    .expect("json");
    server.push_manifest(repo, "blob", &manifest);
}

fn restart_and_replicas(backend: Backend) {
    let mut server = Server::start(backend);
    let env = ClientEnv::new();
    let repo = "e2e/state/app";
    let first = Image::random(2, 100, "amd64");
    let second = Image::random(2, 64, "amd64");
    let src = env.image_layout("src", &[(&first, "first"), (&second, "second")]);
    // One administrator password for every process on these stores.
    let creds = server.creds();
    let skopeo_copy = |from: String, to: String| {
        run_ok(
            env.skopeo().args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--src-creds",
                &creds,
                "--dest-creds",
                &creds,
                &from,
                &to,
            ]),
            CLIENT_TIMEOUT,
        );
    };
    skopeo_copy(
        format!("oci:{}:first", src.display()),
        format!("docker://{}:v1", server.reference(repo)),
    );

    // An 11 MiB blob in uneven chunks (below and across S3's 5 MiB part size), its upload
    // interrupted by a crash.
    let data = Rng::new().bytes(11 * MIB);
    let digest = sha256_digest(&data);
    let r = server
        .http()
        .post(server.url("/v2/e2e/state/big/blobs/uploads/"))
        .send()
        .expect("POST");
    let mut upload = location_path(&expect_status(r, 202, "POST upload"));
    upload = patch(&server, &upload, &data[..3 * MIB], 0);

    server.restart();

    server.assert_has_image(repo, &first);
    assert_eq!(server.tags(repo), ["v1"]);
    let status = server
        .http()
        .get(server.url(&upload))
        .send()
        .expect("GET upload");
    let status = expect_status(status, 204, "GET upload status after restart");
    assert_eq!(
        status.headers().get("range").and_then(|v| v.to_str().ok()),
        Some(format!("0-{}", 3 * MIB - 1).as_str()),
        "upload offset after restart"
    );
    upload = patch(&server, &upload, &data[3 * MIB..7 * MIB], 3 * MIB);

    // On the scaled stores a second process takes part; on the embedded ones the same
    // process plays both roles.
    let replica = (backend == Backend::Scaled).then(|| server.replica());
    let other = replica.as_ref().unwrap_or(&server);
    upload = patch(other, &upload, &data[7 * MIB..10 * MIB], 7 * MIB);
    let sep = if upload.contains('?') { '&' } else { '?' };
    let r = server
        .http()
        .put(server.url(&format!("{upload}{sep}digest={digest}")))
        .header("Content-Type", "application/octet-stream")
        .body(data[10 * MIB..].to_vec())
        .send()
        .expect("PUT");
    let r = expect_status(r, 201, "PUT closing the upload");
    assert_eq!(header_text(&r, "docker-content-digest"), digest);
    server.assert_blob("e2e/state/big", &digest, &data);
    other.assert_blob("e2e/state/big", &digest, &data);
    push_artifact(other, "e2e/state/big", &digest, data.len());

    // Clients on either process see the same registry.
    other.assert_has_image(repo, &first);
    skopeo_copy(
        format!("oci:{}:second", src.display()),
        format!("docker://{}:v2", other.reference(repo)),
    );
    server.assert_has_image(repo, &second);
    assert_eq!(server.tags(repo), ["v1", "v2"]);
    assert_eq!(other.tags(repo), ["v1", "v2"]);
    let (user, password) = server.admin_creds();
    env.crane_login(&server.host, user, password);
    env.crane_login(&other.host, user, password);
    run_ok(
        env.crane().args([
            "--insecure",
            "copy",
            &format!("{}:v2", server.reference(repo)),
            &format!("{}:v1", other.reference("e2e/state/copy")),
        ]),
        CLIENT_TIMEOUT,
    );
    server.assert_has_image("e2e/state/copy", &second);
    let mut catalog = server.catalog();
    catalog.sort();
    assert_eq!(
        catalog,
        ["e2e/state/app", "e2e/state/big", "e2e/state/copy"]
    );
    assert_eq!(other.catalog(), server.catalog());

    // And once more after a second crash, read by a client.
    server.restart();
    let out = env.path("out");
    skopeo_copy(
        format!("docker://{}:v2", server.reference(repo)),
        format!("oci:{}:v2", out.display()),
    );
    assert_eq!(
        read_layout_index(&out)["v2"]["digest"],
        second.manifest_digest.as_str()
    );
    for l in &second.layers {
        assert!(read_layout_blob(&out, &l.digest) == l.gz);
    }

    server.fsck();
}
