//! podman and buildah (containers/image, vfs storage in a private root) push to and pull
//! from Berth as the administrator: podman after `podman login`, buildah with `--creds`.

use berth_testkit::e2e::*;

both_backends!(podman_push_pull, buildah_build_push_pull);

fn digestfile(env: &ClientEnv) -> (std::path::PathBuf, impl Fn() -> String) {
    let path = env.path(&format!("digest-{}", unique()));
    let p = path.clone();
    (path, move || {
        std::fs::read_to_string(&p)
            .expect("digest file written")
            .trim()
            .to_string()
    })
}

fn podman_push_pull(backend: Backend) {
    let server = Server::start(backend);
    let env = ClientEnv::new();
    let podman = || env.containers_tool("podman");
    let (user, password) = server.admin_creds();
    env.containers_login("podman", &server.host, user, password);
    let image = Image::random(3, 100, "amd64");
    let repo = "e2e/podman/app";
    let reference = format!("{}:v1", server.reference(repo));
    let load = |image: &Image, reference: &str, archive: &str| {
        let archive = env.path(archive);
        image.write_docker_archive(&archive, reference);
        run_ok(podman().arg("load").arg("-i").arg(&archive), CLIENT_TIMEOUT);
    };
    // `podman push --tls-verify=false FLAGS SOURCE [DESTINATION]`: the digest it pushed.
    let push = |flags: &[&str], refs: &[&str]| {
        let (file, pushed) = digestfile(&env);
        run_ok(
            podman()
                .args(["push", "--tls-verify=false"])
                .args(flags)
                .arg("--digestfile")
                .arg(&file)
                .args(refs),
            CLIENT_TIMEOUT,
        );
        pushed()
    };
    load(&image, &reference, "app.tar");

    // Once as podman's default (Docker schema 2), once converted to OCI.
    let v1 = push(&[], &[&reference]);
    let oci_ref = format!("{}:oci", server.reference(repo));
    let oci = push(&["--format", "oci"], &[&reference, &oci_ref]);
    // And with zstd layers, which only OCI manifests can name: another image, since
    // podman reuses the gzip blobs it already pushed for the first.
    let packed = Image::random(2, 64, "amd64");
    let zstd_ref = format!("{}:zstd", server.reference(repo));
    load(&packed, &zstd_ref, "zstd.tar");
    let zstd = push(
        &["--format", "oci", "--compression-format", "zstd"],
        &[&zstd_ref],
    );

    let mut configs = Vec::new();
    for (tag, digest, media_type) in [("v1", &v1, DOCKER_MANIFEST), ("oci", &oci, OCI_MANIFEST)] {
        let m = server.manifest(repo, tag);
        assert_eq!(
            m.header("docker-content-digest").as_ref(),
            Some(digest),
            "digest of tag {tag}"
        );
        assert_eq!(
            m.header("content-type").as_deref(),
            Some(media_type),
            "media type of tag {tag}"
        );
        let (config, layers) = manifest_parts(&m.json());
        let blob = server.get(&format!("/v2/{repo}/blobs/{config}"), None);
        blob.expect(200);
        assert_eq!(sha256_digest(&blob.body), config, "{}", blob.what);
        let diff_ids = blob.json()["rootfs"]["diff_ids"].clone();
        let expected: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
        assert_eq!(
            diff_ids,
            serde_json::json!(expected),
            "{}: diff ids",
            blob.what
        );
        for (digest, layer) in layers.iter().zip(&image.layers) {
            let blob = server.get(&format!("/v2/{repo}/blobs/{digest}"), None);
            blob.expect(200);
            assert_eq!(
                sha256_digest(&gunzip(&blob.body)),
                layer.diff_id,
                "{} is not the loaded layer",
                blob.what
            );
        }
        configs.push(config);
    }
    // Docker schema 2 keeps the loaded config; the conversion to OCI rewrites it.
    assert_eq!(configs[0], image.config_digest);

    let m = server.manifest(repo, "zstd");
    assert_eq!(m.header("docker-content-digest").as_ref(), Some(&zstd));
    let v = m.json();
    let (config, layers) = manifest_parts(&v);
    let blob = server.get(&format!("/v2/{repo}/blobs/{config}"), None);
    blob.expect(200);
    let expected: Vec<&str> = packed.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(
        blob.json()["rootfs"]["diff_ids"],
        serde_json::json!(expected),
        "{}",
        blob.what
    );
    assert_eq!(layers.len(), packed.layers.len());
    for (l, digest) in v["layers"].as_array().expect("layers").iter().zip(&layers) {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{v}"
        );
        let blob = server.get(&format!("/v2/{repo}/blobs/{digest}"), None);
        blob.expect(200);
        assert_eq!(&sha256_digest(&blob.body), digest, "{}", blob.what);
        assert_eq!(
            blob.body.get(..4),
            Some(&[0x28, 0xb5, 0x2f, 0xfd][..]),
            "{}: not a zstd frame",
            blob.what
        );
    }
    configs.push(config);
    assert_eq!(server.tags(repo), ["oci", "v1", "zstd"]);

    run_ok(
        podman().args([
            "rmi",
            "--force",
            &image.config_digest,
            &packed.config_digest,
        ]),
        CLIENT_TIMEOUT,
    );
    let gone = run(
        podman().args(["image", "exists", &reference]),
        CLIENT_TIMEOUT,
    );
    assert!(
        !gone.status.success(),
        "{reference} still in local storage after rmi"
    );
    for ((reference, digest), config) in [(&reference, &v1), (&oci_ref, &oci), (&zstd_ref, &zstd)]
        .into_iter()
        .zip(&configs)
    {
        run_ok(
            podman().args(["pull", "--tls-verify=false", reference]),
            CLIENT_TIMEOUT,
        );
        let out = run_ok(
            podman().args([
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{.Digest}}",
                reference,
            ]),
            CLIENT_TIMEOUT,
        );
        assert_eq!(
            out.stdout.trim(),
            format!("{} {digest}", hex_of(config)),
            "pulled {reference}"
        );
    }

    server.fsck();
}

fn buildah_build_push_pull(backend: Backend) {
    let server = Server::start(backend);
    let env = ClientEnv::new();
    let buildah = || env.containers_tool("buildah");
    let payload = Rng::new().bytes(200 * 1024);
    std::fs::write(env.path("payload.bin"), &payload).expect("write payload");
    let repo = "e2e/buildah/built";
    let reference = format!("{}:v1", server.reference(repo));

    let ctr = run_ok(buildah().args(["from", "scratch"]), CLIENT_TIMEOUT)
        .stdout
        .trim()
        .to_string();
    run_ok(
        buildah()
            .args(["add", &ctr])
            .arg(env.path("payload.bin"))
            .arg("/data/payload.bin"),
        CLIENT_TIMEOUT,
    );
    run_ok(
        buildah().args([
            "config",
            "--label",
            "org.example.berth-e2e=buildah",
            "--cmd",
            "/data/payload.bin",
            &ctr,
        ]),
        CLIENT_TIMEOUT,
    );
    let id = run_ok(
        buildah().args(["commit", "--quiet", &ctr, &reference]),
        CLIENT_TIMEOUT,
    )
    .stdout
    .trim()
    .to_string();
    run_ok(buildah().args(["rm", &ctr]), CLIENT_TIMEOUT);

    let (file, pushed) = digestfile(&env);
    run_ok(
        buildah()
            .args(["push", "--tls-verify=false", "--creds", &server.creds()])
            .arg("--digestfile")
            .arg(&file)
            .arg(&reference),
        CLIENT_TIMEOUT,
    );
    let digest = pushed();
    let m = server.manifest(repo, "v1");
    assert_eq!(m.header("docker-content-digest").as_ref(), Some(&digest));
    assert_eq!(
        m.header("content-type").as_deref(),
        Some(OCI_MANIFEST),
        "buildah pushes OCI by default"
    );
    let (config, layers) = manifest_parts(&m.json());
    assert_eq!(
        config,
        format!("sha256:{id}"),
        "config digest is the image id buildah committed"
    );
    assert_eq!(layers.len(), 1);

    run_ok(buildah().args(["rmi", &reference]), CLIENT_TIMEOUT);
    run_ok(
        buildah().args([
            "pull",
            "--tls-verify=false",
            "--creds",
            &server.creds(),
            &reference,
        ]),
        CLIENT_TIMEOUT,
    );
    let out = run_ok(
        buildah().args([
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.FromImageID}} {{.FromImageDigest}}",
            &reference,
        ]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.stdout.trim(), format!("{id} {digest}"), "pulled image");
    // The file comes back byte for byte.
    let ctr = run_ok(buildah().args(["from", &reference]), CLIENT_TIMEOUT)
        .stdout
        .trim()
        .to_string();
    let mnt = run_ok(buildah().args(["mount", &ctr]), CLIENT_TIMEOUT)
        .stdout
        .trim()
        .to_string();
    let back = std::fs::read(std::path::Path::new(&mnt).join("data/payload.bin"))
        .expect("payload in the pulled image");
    assert!(
        back == payload,
        "payload pulled back differs from the one built"
    );
    run_ok(buildah().args(["umount", &ctr]), CLIENT_TIMEOUT);
    run_ok(buildah().args(["rm", &ctr]), CLIENT_TIMEOUT);

    server.fsck();
}
