//! crane (go-containerregistry) pushes tarballs and layouts, copies between repositories,
//! tags, lists, validates and deletes, logged in as the administrator with
//! `crane auth login`.

use berth_testkit::e2e::*;

both_backends!(crane_push_copy_list, crane_concurrent_pushes);

fn crane_push_copy_list(backend: Backend) {
    let server = Server::start(backend);
    let env = server.crane_env();
    let crane = || {
        let mut c = env.crane();
        c.arg("--insecure");
        c
    };
    let at = |repo_tag: &str| server.reference(repo_tag);
    // The digest crane resolves for a reference, as it prints it.
    let digest_of = |repo_tag: &str| {
        run_ok(crane().args(["digest", &at(repo_tag)]), CLIENT_TIMEOUT)
            .stdout
            .trim()
            .to_string()
    };

    // A `docker save` tarball: crane writes its own manifest around the same config.
    let tarred = Image::random(2, 100, "amd64");
    let archive = env.path("image.tar");
    tarred.write_docker_archive(&archive, "e2e/ignored:latest");
    let refs = env.path("refs");
    run_ok(
        crane()
            .arg("push")
            .arg(&archive)
            .arg(at("e2e/crane/tarball:v1"))
            .arg("--image-refs")
            .arg(&refs),
        CLIENT_TIMEOUT,
    );
    let pushed = find_digest(&std::fs::read_to_string(&refs).expect("image refs"))
        .expect("digest in --image-refs");
    let digest = digest_of("e2e/crane/tarball:v1");
    assert_eq!(digest, pushed, "crane digest after crane push");
    let config = run_ok(
        crane().args(["config", &at("e2e/crane/tarball:v1")]),
        CLIENT_TIMEOUT,
    )
    .stdout;
    assert_eq!(
        sha256_digest(config.as_bytes()),
        tarred.config_digest,
        "config read back"
    );

    // An OCI layout with one image: pushed as is.
    let image = Image::random(3, 64, "amd64");
    let layout = env.image_layout("layout", &[(&image, "v1")]);
    run_ok(
        crane()
            .arg("push")
            .arg(&layout)
            .arg(at("e2e/crane/layout:v1")),
        CLIENT_TIMEOUT,
    );
    server.assert_has_image("e2e/crane/layout", &image);
    server.manifest_as_pushed("e2e/crane/layout", "v1", &image.manifest);

    // Copy to another repository (crane mounts the blobs), tag, list.
    run_ok(
        crane().args(["copy", &at("e2e/crane/layout:v1"), &at("e2e/crane/copy:v2")]),
        CLIENT_TIMEOUT,
    );
    let digest = digest_of("e2e/crane/copy:v2");
    assert_eq!(digest, image.manifest_digest, "crane digest of the copy");
    server.assert_has_image("e2e/crane/copy", &image);
    run_ok(
        crane().args(["tag", &at("e2e/crane/copy:v2"), "v3"]),
        CLIENT_TIMEOUT,
    );
    let tags = run_ok(crane().args(["ls", &at("e2e/crane/copy")]), CLIENT_TIMEOUT).stdout;
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["v2", "v3"]);
    let catalog = run_ok(crane().args(["catalog", &server.host]), CLIENT_TIMEOUT).stdout;
    let mut catalog: Vec<&str> = catalog.lines().collect();
    catalog.sort();
    assert_eq!(
        catalog,
        ["e2e/crane/copy", "e2e/crane/layout", "e2e/crane/tarball"]
    );

    // Every blob downloaded and checked by the client.
    for r in ["e2e/crane/tarball:v1", "e2e/crane/copy:v3"] {
        let out = run_ok(
            crane().args(["validate", "--remote", &at(r)]),
            CLIENT_TIMEOUT,
        );
        assert!(
            out.stdout.contains("PASS"),
            "crane validate {r}: {}",
            out.stdout
        );
    }

    // Delete a tag: only the tag goes.
    run_ok(
        crane().args(["tag", &at("e2e/crane/copy:v2"), "v4"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        crane().args(["delete", &at("e2e/crane/copy:v4")]),
        CLIENT_TIMEOUT,
    );
    server
        .get("/v2/e2e/crane/copy/manifests/v4", Some(ACCEPT_ALL))
        .expect(404);
    assert_eq!(server.tags("e2e/crane/copy"), ["v2", "v3"]);
    server.manifest("e2e/crane/copy", &image.manifest_digest);

    // Delete by digest: both tags of the copy go with it, the source stays.
    run_ok(
        crane().args([
            "delete",
            &format!("{}@{}", at("e2e/crane/copy"), image.manifest_digest),
        ]),
        CLIENT_TIMEOUT,
    );
    for reference in [image.manifest_digest.as_str(), "v2", "v3"] {
        server
            .get(
                &format!("/v2/e2e/crane/copy/manifests/{reference}"),
                Some(ACCEPT_ALL),
            )
            .expect(404);
    }
    let gone = run(
        crane().args(["digest", &at("e2e/crane/copy:v2")]),
        CLIENT_TIMEOUT,
    );
    assert!(
        !gone.status.success(),
        "crane still resolves a deleted manifest: {}",
        gone.stdout
    );
    server.manifest("e2e/crane/layout", &image.manifest_digest);

    server.fsck();
}

/// Eight pushes of one image at once, four to one repository and four to four others: the
/// same blobs are uploaded, committed and linked concurrently.
fn crane_concurrent_pushes(backend: Backend) {
    let server = Server::start(backend);
    let env = server.crane_env();
    let image = Image::random(3, 64, "amd64");
    let layout = env.image_layout("layout", &[(&image, "v1")]);
    let targets: Vec<String> = (0..4)
        .map(|i| format!("e2e/race/shared:t{i}"))
        .chain((0..4).map(|i| format!("e2e/race/own{i}:t")))
        .collect();
    std::thread::scope(|s| {
        for t in &targets {
            let (env, layout, server) = (&env, &layout, &server);
            s.spawn(move || {
                run_ok(
                    env.crane()
                        .arg("--insecure")
                        .arg("push")
                        .arg(layout)
                        .arg(server.reference(t)),
                    CLIENT_TIMEOUT,
                )
            });
        }
    });
    assert_eq!(server.tags("e2e/race/shared"), ["t0", "t1", "t2", "t3"]);
    for t in &targets {
        let (repo, tag) = t.split_once(':').expect("repo:tag");
        let m = server.manifest(repo, tag);
        assert_eq!(
            m.header("docker-content-digest").as_deref(),
            Some(image.manifest_digest.as_str()),
            "{t}"
        );
        server.assert_has_image(repo, &image);
    }
    server.fsck();
}
