//! skopeo copies OCI layouts into Berth and back out byte for byte, including a
//! multi-platform index, lists tags and deletes manifests; as the administrator, with
//! `--creds`, `--src-creds` and `--dest-creds`.

use berth_testkit::e2e::*;
use std::path::Path;

both_backends!(skopeo_copy_list_delete, skopeo_multi_platform);

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// The image skopeo wrote to `dir` under `tag` is `image`, blob for blob.
fn assert_layout_has(dir: &Path, tag: &str, image: &Image) {
    let index = read_layout_index(dir);
    let entry = index
        .get(tag)
        .unwrap_or_else(|| panic!("{} has no tag {tag}: {index:?}", dir.display()));
    assert_eq!(
        entry["digest"],
        image.manifest_digest.as_str(),
        "manifest digest copied out"
    );
    assert_eq!(
        read_layout_blob(dir, &image.manifest_digest),
        image.manifest
    );
    assert_eq!(read_layout_blob(dir, &image.config_digest), image.config);
    for l in &image.layers {
        assert!(
            read_layout_blob(dir, &l.digest) == l.gz,
            "layer {} copied out differs",
            l.digest
        );
    }
}

fn skopeo_copy_list_delete(backend: Backend) {
    let server = Server::start(backend);
    let env = ClientEnv::new();
    let image = Image::random(3, 100, "amd64");
    let doomed = Image::random(1, 64, "amd64");
    let src = env.image_layout("src", &[(&image, "v1"), (&doomed, "doomed")]);
    let repo = "e2e/skopeo/app";
    let remote = |tag: &str| format!("docker://{}:{tag}", server.reference(repo));

    // In: the digest of the manifest as the layout holds it, stored byte for byte.
    let digest = env.skopeo_copy(&server.creds(), &[], &oci(&src, "v1"), &remote("v1"));
    assert_eq!(
        digest, image.manifest_digest,
        "skopeo reports the layout's manifest digest"
    );
    let served = server.manifest_as_pushed(repo, "v1", &image.manifest);
    assert_eq!(served.header("content-type").as_deref(), Some(OCI_MANIFEST));
    server.assert_has_image(repo, &image);
    let raw = run_ok(
        env.skopeo()
            .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
            .args([&server.creds(), &remote("v1")]),
        CLIENT_TIMEOUT,
    );
    assert!(
        raw.stdout.as_bytes() == image.manifest.as_slice(),
        "skopeo inspect --raw differs:\n{}",
        raw.stdout
    );

    // Registry to registry: a second tag, and a second repository (blobs mounted or re-sent).
    assert_eq!(
        env.skopeo_copy(&server.creds(), &[], &remote("v1"), &remote("v2")),
        image.manifest_digest
    );
    let other = format!("docker://{}:copy", server.reference("e2e/skopeo/other"));
    assert_eq!(
        env.skopeo_copy(&server.creds(), &[], &remote("v1"), &other),
        image.manifest_digest
    );
    server.assert_has_image("e2e/skopeo/other", &image);

    // Out: an OCI layout identical to the source.
    let out = env.path("out");
    assert_eq!(
        env.skopeo_copy(&server.creds(), &[], &remote("v2"), &oci(&out, "v2")),
        image.manifest_digest
    );
    assert_layout_has(&out, "v2", &image);

    // Delete: the manifest and its tag are gone, the other image is untouched.
    assert_eq!(
        env.skopeo_copy(
            &server.creds(),
            &[],
            &oci(&src, "doomed"),
            &remote("doomed")
        ),
        doomed.manifest_digest
    );
    let tags = run_ok(
        env.skopeo()
            .args([
                "list-tags",
                "--tls-verify=false",
                "--creds",
                &server.creds(),
            ])
            .arg(format!("docker://{}", server.reference(repo))),
        CLIENT_TIMEOUT,
    );
    let listed: serde_json::Value =
        serde_json::from_str(&tags.stdout).expect("list-tags prints JSON");
    let mut listed: Vec<&str> = listed["Tags"]
        .as_array()
        .expect("Tags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    listed.sort();
    assert_eq!(listed, ["doomed", "v1", "v2"]);

    run_ok(
        env.skopeo()
            .args(["delete", "--tls-verify=false", "--creds"])
            .args([&server.creds(), &remote("doomed")]),
        CLIENT_TIMEOUT,
    );
    for reference in [doomed.manifest_digest.as_str(), "doomed"] {
        let r = server.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(ACCEPT_ALL),
        );
        r.expect(404);
        assert_eq!(
            r.json()["errors"][0]["code"],
            "MANIFEST_UNKNOWN",
            "{}: {}",
            r.what,
            r.text()
        );
        server
            .head(
                &format!("/v2/{repo}/manifests/{reference}"),
                Some(ACCEPT_ALL),
            )
            .expect(404);
    }
    let inspect = berth_testkit::clients::run(
        env.skopeo()
            .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
            .args([&server.creds(), &remote("doomed")]),
        CLIENT_TIMEOUT,
    );
    assert!(
        !inspect.status.success() && inspect.stderr.contains("manifest unknown"),
        "skopeo still reads a deleted manifest (or failed for another reason):\n{}\n{}",
        inspect.stdout,
        inspect.stderr
    );
    assert_eq!(server.tags(repo), ["v1", "v2"]);
    server.manifest(repo, &image.manifest_digest);
    let mut catalog = server.catalog();
    catalog.sort();
    assert_eq!(catalog, ["e2e/skopeo/app", "e2e/skopeo/other"]);

    server.fsck();
}

fn skopeo_multi_platform(backend: Backend) {
    let server = Server::start(backend);
    let env = ClientEnv::new();
    let index = Index::new(vec![
        Image::random(2, 64, "amd64"),
        Image::random(2, 64, "arm64"),
    ]);
    let src = env.path("src");
    OciLayout::new(&src).add_index(&index, "multi");
    let repo = "e2e/skopeo/multi";
    let remote = format!("docker://{}:v1", server.reference(repo));

    // `--all` keeps the index as it is, with every platform image.
    assert_eq!(
        env.skopeo_copy(&server.creds(), &["--all"], &oci(&src, "multi"), &remote),
        index.digest
    );
    let served = server.manifest_as_pushed(repo, "v1", &index.bytes);
    assert_eq!(served.header("content-type").as_deref(), Some(OCI_INDEX));
    for child in &index.images {
        server.assert_has_image(repo, child);
    }

    // Back out whole.
    let out = env.path("out");
    assert_eq!(
        env.skopeo_copy(&server.creds(), &["--all"], &remote, &oci(&out, "multi")),
        index.digest
    );
    let entry = read_layout_index(&out)
        .remove("multi")
        .expect("tag multi in the copied layout");
    assert_eq!(entry["digest"], index.digest.as_str());
    assert_eq!(read_layout_blob(&out, &index.digest), index.bytes);
    for child in &index.images {
        assert_eq!(
            read_layout_blob(&out, &child.manifest_digest),
            child.manifest
        );
        assert_eq!(read_layout_blob(&out, &child.config_digest), child.config);
        for l in &child.layers {
            assert!(
                read_layout_blob(&out, &l.digest) == l.gz,
                "layer {} of {} differs",
                l.digest,
                child.arch
            );
        }
    }

    // A single platform, chosen by the client from the served index.
    let arm = env.path("arm");
    run_ok(
        env.skopeo()
            .args([
                "--override-arch",
                "arm64",
                "--override-os",
                "linux",
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                &server.creds(),
            ])
            .args([remote.as_str(), &oci(&arm, "arm")]),
        CLIENT_TIMEOUT,
    );
    assert_layout_has(&arm, "arm", &index.images[1]);

    server.fsck();
}
