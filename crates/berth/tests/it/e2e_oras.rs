//! The `oras` Python SDK pushes artifacts whose manifests have a `subject`; Berth lists them
//! on the referrers API, filtered by artifact type on request. The SDK authenticates with
//! the administrator's username and password (the token protocol).

use berth_testkit::e2e::*;
use serde_json::Value;

both_backends!(oras_referrers);

/// Pushes two artifacts about a subject (one with chunked uploads), pulls the first back,
/// and prints what the registry answered as one JSON line.
const SCRIPT: &str = r#"
import hashlib, json, os, sys
import oras.oci, oras.provider

host, repo, digest, size, media_type = sys.argv[1:6]
# Basic credentials on each request: oras-py's token backend answers a 401 with
# error="insufficient_scope" by resending the token it holds (only a 403 makes it fetch
# another), so a pull-scoped token from a HEAD never becomes a push token.
client = oras.provider.Registry(hostname=host, insecure=True, auth_backend="basic")
client.auth.set_basic_auth(os.environ["BERTH_USER"], os.environ["BERTH_PASSWORD"])
subject = oras.oci.Subject(mediaType=media_type, digest=digest, size=int(size))
out = {}
# A 9 MiB payload sent in 2 MiB PATCHes crosses S3's 5 MiB part size between requests.
with open("big.bin", "wb") as f:
    f.write(os.urandom(9 * 1024 * 1024))
for name, art_type, chunked in [("sbom", "application/vnd.example.sbom.v1+json", True),
                                ("sig", "application/vnd.example.signature.v1+json", False)]:
    with open(name + ".json", "w") as f:
        json.dump({"kind": name, "about": digest}, f)
    with open(name + "-config.json", "w") as f:
        json.dump({"artifact": name}, f)
    files = [name + ".json:application/vnd.example.payload+json"]
    if chunked:
        files.append("big.bin:application/octet-stream")
    resp = client.push(
        target=f"{host}/{repo}:{name}",
        files=files,
        manifest_config=f"{name}-config.json:{art_type}",
        manifest_annotations={"org.example.kind": name},
        subject=subject,
        do_chunked=chunked,
        chunk_size=2 * 1024 * 1024,
        quiet=True,
    )
    out[name] = {
        "status": resp.status_code,
        "digest": resp.headers.get("Docker-Content-Digest"),
        "oci_subject": resp.headers.get("OCI-Subject"),
        "artifact_type": art_type,
    }
files = client.pull(target=f"{host}/{repo}:sbom", outdir="pulled")
out["pulled"] = sorted(hashlib.sha256(open(p, "rb").read()).hexdigest() for p in files)
out["sent"] = sorted(hashlib.sha256(open(p, "rb").read()).hexdigest() for p in ["sbom.json", "big.bin"])
print(json.dumps(out))
"#;

fn descriptors(index: &Value) -> Vec<Value> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests array in {index}"))
        .clone()
}

fn oras_referrers(backend: Backend) {
    let server = Server::start(backend);
    let env = ClientEnv::new();
    let repo = "e2e/oras/app";

    // The subject: an ordinary image, pushed with skopeo.
    let image = Image::random(1, 64, "amd64");
    let src = env.path("src");
    OciLayout::new(&src).add_image(&image, "v1");
    env.skopeo_copy(
        &server.creds(),
        &[],
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{}:v1", server.reference(repo)),
    );
    server.manifest(repo, &image.manifest_digest);

    // Before any referrer: an empty index, not an error.
    let referrers = format!("/v2/{repo}/referrers/{}", image.manifest_digest);
    let empty = server.get(&referrers, None);
    empty.expect(200);
    assert_eq!(
        descriptors(&empty.json()),
        Vec::<Value>::new(),
        "{}",
        empty.what
    );

    let (user, password) = server.admin_creds();
    let out = run_ok(
        env.python_as(SCRIPT, user, password).args([
            server.host.as_str(),
            repo,
            &image.manifest_digest,
            &image.manifest.len().to_string(),
            OCI_MANIFEST,
        ]),
        CLIENT_TIMEOUT,
    );
    let pushed: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!(
                "oras script output is not JSON ({e}):\n{}\n{}",
                out.stdout, out.stderr
            )
        });
    for name in ["sbom", "sig"] {
        let p = &pushed[name];
        assert_eq!(p["status"], 201, "manifest PUT of {name}: {p}");
        assert_eq!(
            p["oci_subject"],
            image.manifest_digest.as_str(),
            "OCI-Subject header on the PUT of {name}: {p}"
        );
    }
    assert_eq!(
        pushed["pulled"].as_array().map(Vec::len),
        Some(2),
        "{pushed}"
    );
    assert_eq!(
        pushed["pulled"], pushed["sent"],
        "files pulled back differ from the ones pushed"
    );

    // Unfiltered: both artifacts, described by their manifests.
    let all = server.get(&referrers, None);
    all.expect(200);
    assert_eq!(
        all.header("content-type").as_deref(),
        Some(OCI_INDEX),
        "{}",
        all.what
    );
    assert_eq!(
        all.header("oci-filters-applied"),
        None,
        "{}: no filter was asked for",
        all.what
    );
    let index = all.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let found = descriptors(&index);
    assert_eq!(found.len(), 2, "{}: {index}", all.what);
    for name in ["sbom", "sig"] {
        let p = &pushed[name];
        let d = found
            .iter()
            .find(|d| d["digest"] == p["digest"])
            .unwrap_or_else(|| {
                panic!("{}: {name} ({}) not listed: {index}", all.what, p["digest"])
            });
        // oras sets no artifactType: the config's media type stands in for it.
        assert_eq!(d["artifactType"], p["artifact_type"], "{name}: {d}");
        assert_eq!(d["mediaType"], OCI_MANIFEST, "{name}: {d}");
        assert_eq!(
            d["annotations"]["org.example.kind"], name,
            "{name}: annotations carried over: {d}"
        );
        let m = server.manifest(repo, d["digest"].as_str().expect("digest"));
        assert_eq!(
            d["size"],
            m.body.len(),
            "{name}: size is the manifest's length"
        );
        assert_eq!(
            m.json()["subject"]["digest"],
            image.manifest_digest.as_str()
        );
    }

    // Filtered by artifact type.
    let sbom_type = "application/vnd.example.sbom.v1+json";
    // As clients send it: `+` percent-encoded, since a bare `+` in a query means a space.
    let query = sbom_type.replace('+', "%2B");
    let filtered = server.get(&format!("{referrers}?artifactType={query}"), None);
    filtered.expect(200);
    assert_eq!(
        filtered.header("oci-filters-applied").as_deref(),
        Some("artifactType"),
        "{}",
        filtered.what
    );
    let only = descriptors(&filtered.json());
    assert_eq!(only.len(), 1, "{}: {}", filtered.what, filtered.text());
    assert_eq!(only[0]["digest"], pushed["sbom"]["digest"]);
    let none = server.get(
        &format!("{referrers}?artifactType=application/vnd.example.none"),
        None,
    );
    none.expect(200);
    assert_eq!(
        none.header("oci-filters-applied").as_deref(),
        Some("artifactType"),
        "{}",
        none.what
    );
    assert_eq!(
        descriptors(&none.json()),
        Vec::<Value>::new(),
        "{}",
        none.what
    );

    // Deleting a referrer takes it off the list.
    let sig = pushed["sig"]["digest"].as_str().expect("sig digest");
    let del = server
        .http()
        .delete(server.url(&format!("/v2/{repo}/manifests/{sig}")))
        .send()
        .expect("DELETE");
    assert_eq!(
        del.status(),
        202,
        "DELETE /v2/{repo}/manifests/{sig}: {}",
        del.text().unwrap_or_default()
    );
    let left = descriptors(&server.get(&referrers, None).json());
    assert_eq!(left.len(), 1, "after deleting {sig}: {left:?}");
    assert_eq!(left[0]["digest"], pushed["sbom"]["digest"]);

    server.fsck();
}
