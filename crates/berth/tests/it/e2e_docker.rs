//! The Docker engine (the private `dockerd` named by DOCKER_HOST) pushes to and pulls from
//! Berth over plain http (loopback registries are insecure by default for it), logged in
//! as the administrator with `docker login`.

use berth_testkit::e2e::*;
use serde_json::Value;

both_backends!(docker_push_pull, docker_pull_multi_platform);

/// `docker image inspect` output `v` lists `want` among its repository digests.
fn assert_repo_digest(v: &Value, want: &str) {
    assert!(
        v["RepoDigests"]
            .as_array()
            .expect("RepoDigests")
            .iter()
            .any(|d| d == want),
        "RepoDigests {} lack {want}",
        v["RepoDigests"]
    );
}

fn inspect(env: &ClientEnv, reference: &str) -> Value {
    let out = run_ok(
        env.docker().args(["image", "inspect", reference]),
        CLIENT_TIMEOUT,
    );
    let v: Value = serde_json::from_str(&out.stdout).expect("docker image inspect prints JSON");
    v[0].clone()
}

/// The image Docker pulled back is the one that was loaded: same id (config digest), same
/// layer diff ids, and its repo digest is what the push reported.
fn assert_pulled(env: &ClientEnv, reference: &str, repo_ref: &str, image: &Image, pushed: &str) {
    let v = inspect(env, reference);
    assert_eq!(v["Id"], image.config_digest.as_str(), "image id after pull");
    let layers: Vec<&str> = v["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(layers, expected, "layer diff ids after pull");
    assert_repo_digest(&v, &format!("{repo_ref}@{pushed}"));
}

/// What the registry stores for a Docker push: the manifest digest the push reported, the
/// config as loaded, and layers that decompress to the loaded tars.
fn assert_served(server: &Server, repo: &str, tag: &str, image: &Image, pushed: &str) {
    let m = server.manifest(repo, tag);
    assert_eq!(
        m.header("docker-content-digest").as_deref(),
        Some(pushed),
        "digest of {repo}:{tag}"
    );
    let (config, layers) = manifest_parts(&m.json());
    assert_eq!(config, image.config_digest, "config of {repo}:{tag}");
    server.assert_blob(repo, &config, &image.config);
    assert_eq!(
        layers.len(),
        image.layers.len(),
        "layer count of {repo}:{tag}"
    );
    for (digest, layer) in layers.iter().zip(&image.layers) {
        let blob = server.get(&format!("/v2/{repo}/blobs/{digest}"), None);
        blob.expect(200);
        assert_eq!(
            &sha256_digest(&blob.body),
            digest,
            "{}: bytes do not hash to the digest",
            blob.what
        );
        assert_eq!(
            sha256_digest(&gunzip(&blob.body)),
            layer.diff_id,
            "{}: not the loaded layer",
            blob.what
        );
    }
}

fn docker_push_pull(backend: Backend) {
    let server = Server::start(backend);
    let env = server.docker_env();

    // Two images sharing their first two layers, pushed to two repositories: the second
    // push mounts the shared layers from the first repository.
    let app = Image::random(3, 100, "amd64");
    let mut layers = app.layers[..2].to_vec();
    // 6 MiB of incompressible data: crosses the S3 part size within one PATCH.
    layers.push(Layer::random(&mut Rng::new(), "extra", 1, 6 * 1024 * 1024));
    let tool = Image::from_layers(layers, "amd64");

    let app_repo = server.reference("e2e/app");
    let tool_repo = server.reference("e2e/tools/tool");
    let app_v1 = format!("{app_repo}:v1");
    let app_v2 = format!("{app_repo}:v2");
    let tool_v1 = format!("{tool_repo}:v1");
    let _cleanup = DockerImages {
        env: &env,
        refs: vec![
            app_v1.clone(),
            app_v2.clone(),
            tool_v1.clone(),
            app.config_digest.clone(),
            tool.config_digest.clone(),
        ],
    };

    for (image, reference, file) in [(&app, &app_v1, "app.tar"), (&tool, &tool_v1, "tool.tar")] {
        env.docker_load(image, reference, file);
    }
    run_ok(env.docker().args(["tag", &app_v1, &app_v2]), CLIENT_TIMEOUT);

    let app_digest = pushed_digest(&run_ok(
        env.docker().args(["push", &app_v1]),
        CLIENT_TIMEOUT,
    ));
    let again = pushed_digest(&run_ok(
        env.docker().args(["push", &app_v2]),
        CLIENT_TIMEOUT,
    ));
    assert_eq!(
        again, app_digest,
        "the same image pushed under a second tag"
    );
    let tool_digest = pushed_digest(&run_ok(
        env.docker().args(["push", &tool_v1]),
        CLIENT_TIMEOUT,
    ));

    assert_served(&server, "e2e/app", "v1", &app, &app_digest);
    assert_served(&server, "e2e/app", "v2", &app, &app_digest);
    assert_served(&server, "e2e/tools/tool", "v1", &tool, &tool_digest);
    assert_eq!(server.tags("e2e/app"), ["v1", "v2"]);
    assert_eq!(server.tags("e2e/tools/tool"), ["v1"]);
    assert_eq!(server.catalog(), ["e2e/app", "e2e/tools/tool"]);

    // Remove everything locally, then pull back by tag and by digest.
    run_ok(
        env.docker().args(["rmi", &app_v1, &app_v2, &tool_v1]),
        CLIENT_TIMEOUT,
    );
    let gone = berth_testkit::clients::run(
        env.docker().args(["image", "inspect", &app.config_digest]),
        CLIENT_TIMEOUT,
    );
    assert!(
        !gone.status.success(),
        "image {} still present after rmi",
        app.config_digest
    );

    run_ok(env.docker().args(["pull", &app_v1]), CLIENT_TIMEOUT);
    assert_pulled(&env, &app_v1, &app_repo, &app, &app_digest);
    let tool_by_digest = format!("{tool_repo}@{tool_digest}");
    run_ok(env.docker().args(["pull", &tool_by_digest]), CLIENT_TIMEOUT);
    assert_pulled(&env, &tool_by_digest, &tool_repo, &tool, &tool_digest);

    server.fsck();
}

/// Docker picks its platform out of an index (pushed by skopeo, as OCI and as a Docker
/// manifest list) and pulls another platform on request.
fn docker_pull_multi_platform(backend: Backend) {
    let server = Server::start(backend);
    let env = server.docker_env();
    let index = Index::new(vec![
        Image::random(2, 64, "amd64"),
        Image::random(2, 64, "arm64"),
    ]);
    let (amd, arm) = (&index.images[0], &index.images[1]);
    let src = env.path("src");
    OciLayout::new(&src).add_index(&index, "multi");
    let repo = server.reference("e2e/multi");
    let _cleanup = DockerImages {
        env: &env,
        refs: vec![
            format!("{repo}:oci"),
            format!("{repo}:list"),
            amd.config_digest.clone(),
            arm.config_digest.clone(),
        ],
    };
    env.skopeo_copy(
        &server.creds(),
        &["--all"],
        &format!("oci:{}:multi", src.display()),
        &format!("docker://{repo}:oci"),
    );
    env.skopeo_copy(
        &server.creds(),
        &["--all", "--format", "v2s2"],
        &format!("docker://{repo}:oci"),
        &format!("docker://{repo}:list"),
    );
    let list = server.manifest("e2e/multi", "list");
    assert_eq!(list.header("content-type").as_deref(), Some(DOCKER_LIST));
    let list_digest = list.header("docker-content-digest").expect("digest");

    for (tag, digest) in [("oci", index.digest.clone()), ("list", list_digest)] {
        let reference = format!("{repo}:{tag}");
        // The engine's own platform (linux/amd64 here).
        run_ok(env.docker().args(["pull", &reference]), CLIENT_TIMEOUT);
        let v = inspect(&env, &reference);
        assert_eq!(
            v["Id"],
            amd.config_digest.as_str(),
            "{reference}: default platform"
        );
        assert_repo_digest(&v, &format!("{repo}@{digest}"));
        run_ok(
            env.docker()
                .args(["pull", "--platform", "linux/arm64", &reference]),
            CLIENT_TIMEOUT,
        );
        let v = inspect(&env, &reference);
        assert_eq!(
            v["Id"],
            arm.config_digest.as_str(),
            "{reference}: linux/arm64"
        );
        assert_eq!(v["Architecture"], "arm64");
        run_ok(
            env.docker().args(["rmi", &reference, &amd.config_digest]),
            CLIENT_TIMEOUT,
        );
    }

    server.fsck();
}
