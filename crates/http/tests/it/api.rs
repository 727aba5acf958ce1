//! In-process tests of the `/v2` API: every request goes through the real router, the real
//! core and real stores (SQLite in a temporary directory, the in-memory blob store), and
//! checks status codes, headers and the OCI error envelope.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_blob::memory::MemoryBlobStore;
use berth_core::{Registry, RegistryConfig};
use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::Digest;
use berth_testkit::wire::OCI_MANIFEST;
use berth_testkit::world::{request, send, Resp};
use std::sync::Arc;

struct App {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

async fn app_with(cfg: RegistryConfig) -> App {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetaStore::open(&dir.path().join("m.db"))
        .await
        .unwrap();
    let meta = Arc::new(meta);
    let reg = Registry::new(meta.clone(), Arc::new(MemoryBlobStore::new()), cfg);
    // These tests are about the distribution protocol: an open registry. Access control
    // has its own tests (auth.rs).
    let access = berth_core::Access::new(
        meta,
        None,
        berth_core::AccessConfig {
            anonymous_push: true,
            ..Default::default()
        },
        berth_core::Kek::generate(),
    )
    .await
    .unwrap();
    App {
        router: crate::app(Arc::new(reg), Arc::new(access)),
        _dir: dir,
    }
}

async fn app() -> App {
    app_with(RegistryConfig::default()).await
}

impl App {
    async fn req(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        send(&self.router, request(method, uri, None, headers, body)).await
    }

    /// A request with no headers and no body.
    async fn call(&self, method: &str, uri: &str) -> Resp {
        self.req(method, uri, &[], Body::empty()).await
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[("content-length", &data.len().to_string())],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        d
    }

    async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Digest, Vec<u8>) {
        let cfg = self.push_blob(repo, b"{}").await;
        let l = self.push_blob(repo, layer).await;
        let m = image_manifest(&cfg, 2, &l, layer.len(), "");
        let r = self
            .req(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                m.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (Digest::parse(r.header("docker-content-digest")).unwrap(), m)
    }
}

fn image_manifest(
    cfg: &Digest,
    cfg_size: usize,
    layer: &Digest,
    layer_size: usize,
    extra: &str,
) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{cfg_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_size}}}]{extra}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn base_and_version_header() {
    let a = app().await;
    let r = a.call("GET", "/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk_and_status() {
    let a = app().await;
    let r = a.call("POST", "/v2/x/y/blobs/uploads/").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location").to_string();
    assert!(loc.starts_with("/v2/x/y/blobs/uploads/"));
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let r = a
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-4999"), ("content-length", "5000")],
            data[..5000].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.header("range"), "0-4999");
    // A chunk that skips ahead is refused with 416 and the current range.
    let r = a
        .req(
            "PATCH",
            &loc,
            &[("content-range", "6000-6999")],
            data[6000..7000].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), "0-4999");
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    let r = a.call("GET", &loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-4999");
    let d = Digest::sha256_of(&data);
    let r = a
        .req(
            "PATCH",
            &loc,
            &[("content-range", "5000-9999")],
            data[5000..].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = a
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("location"), format!("/v2/x/y/blobs/{d}"));
    let r = a.call("GET", &format!("/v2/x/y/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], &data[..]);
    assert_eq!(r.header("docker-content-digest"), d.as_str());
    let r = a
        .req(
            "GET",
            &format!("/v2/x/y/blobs/{d}"),
            &[("range", "bytes=10-19")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], &data[10..20]);
    assert_eq!(r.header("content-range"), "bytes 10-19/10000");
    let r = a
        .req(
            "GET",
            &format!("/v2/x/y/blobs/{d}"),
            &[("range", "bytes=20000-")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // The finished upload is gone.
    let r = a.call("GET", &loc).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn post_then_put_and_cancel() {
    let a = app().await;
    let r = a.call("POST", "/v2/p/blobs/uploads/").await;
    let loc = r.header("location").to_string();
    let d = Digest::sha256_of(b"hello");
    let r = a
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-length", "5")],
            "hello",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = a.call("HEAD", &format!("/v2/p/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "5");
    let r = a.call("POST", "/v2/p/blobs/uploads/").await;
    let loc = r.header("location").to_string();
    assert_eq!(a.call("DELETE", &loc).await.status, StatusCode::NO_CONTENT);
    assert_eq!(a.call("GET", &loc).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mount_with_and_without_from_and_fallback() {
    let a = app().await;
    let d = a.push_blob("src", b"shared layer").await;
    let r = a
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{d}"));
    let r = a
        .call("POST", &format!("/v2/dst2/blobs/uploads/?mount={d}"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Not mountable from a repository that does not have it: a new upload instead.
    let r = a
        .call(
            "POST",
            &format!("/v2/dst3/blobs/uploads/?mount={d}&from=nothere"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").contains("/blobs/uploads/"));
    assert_eq!(
        a.call("HEAD", &format!("/v2/dst3/blobs/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn manifests_tags_delete_and_accept() {
    let a = app().await;
    let (d, m) = a.push_image("app", "v1", b"layer-1").await;
    let r = a
        .req(
            "GET",
            "/v2/app/manifests/v1",
            &[("accept", OCI_MANIFEST)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], &m[..]);
    assert_eq!(r.header("content-type"), OCI_MANIFEST);
    assert_eq!(r.header("docker-content-digest"), d.as_str());
    let r = a.call("HEAD", &format!("/v2/app/manifests/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), m.len().to_string());
    // Several Accept lines, as the Docker daemon sends them.
    let r = a
        .req(
            "GET",
            "/v2/app/manifests/v1",
            &[
                (
                    "accept",
                    "application/vnd.docker.distribution.manifest.v2+json",
                ),
                ("accept", OCI_MANIFEST),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for t in ["v2", "a", "b"] {
        let r = a
            .req(
                "PUT",
                &format!("/v2/app/manifests/{t}"),
                &[("content-type", OCI_MANIFEST)],
                m.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = a.call("GET", "/v2/app/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = a.call("GET", "/v2/app/tags/list?n=2&last=b").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["v1", "v2"]));
    assert_eq!(r.header("link"), "");
    // Deleting a tag leaves the manifest; deleting by digest removes it and its tags.
    assert_eq!(
        a.call("DELETE", "/v2/app/manifests/a").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        a.call("GET", "/v2/app/manifests/a").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call("DELETE", &format!("/v2/app/manifests/{d}"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let r = a.call("GET", "/v2/app/manifests/v1").await;
    r.assert_is(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    let r = a.call("GET", "/v2/app/tags/list").await;
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    let r = a.call("GET", "/v2/nope/tags/list").await;
    r.assert_is(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_pagination() {
    let a = app().await;
    for r in ["c/b", "a", "c", "b/x"] {
        a.push_blob(r, r.as_bytes()).await;
    }
    let r = a.call("GET", "/v2/_catalog").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["a", "b/x", "c", "c/b"])
    );
    let r = a.call("GET", "/v2/_catalog?n=3").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["a", "b/x", "c"])
    );
    assert_eq!(r.header("link"), "</v2/_catalog?n=3&last=c>; rel=\"next\"");
    let r = a.call("GET", "/v2/_catalog?n=3&last=c").await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["c/b"]));
    assert_eq!(r.header("link"), "");
}

#[tokio::test]
async fn referrers_with_filter_and_fallback_tag() {
    let a = app().await;
    let (subject, m) = a.push_image("r", "v1", b"base").await;
    let empty = a.push_blob("r", b"{}").await;
    let art = a.push_blob("r", b"signature").await;
    let subj = format!(
        r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}"#,
        m.len()
    );
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{art}","size":9}}]{subj},"annotations":{{"k":"v"}}}}"#
    );
    let sig_d = Digest::sha256_of(sig.as_bytes());
    let r = a
        .req(
            "PUT",
            &format!("/v2/r/manifests/{sig_d}"),
            &[("content-type", OCI_MANIFEST)],
            sig.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("oci-subject"), subject.as_str());
    let sbom = String::from_utf8(image_manifest(&empty, 2, &art, 9, &subj)).unwrap().replace(
        r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json""#,
        r#""artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json""#,
    );
    let r = a
        .req(
            "PUT",
            "/v2/r/manifests/sbom",
            &[("content-type", OCI_MANIFEST)],
            sbom,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = a.call("GET", &format!("/v2/r/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(r.header("oci-filters-applied"), "");
    let r = a
        .call(
            "GET",
            &format!("/v2/r/referrers/{subject}?artifactType=application/vnd.example.sig"),
        )
        .await;
    let list = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sig_d.as_str());
    assert_eq!(list[0]["annotations"]["k"], "v");
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    // A pre-existing fallback tag index is merged in.
    let other = format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":7,"artifactType":"application/vnd.example.old"}}"#,
        "1".repeat(64)
    );
    let idx = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{other}]}}"#
    );
    let child = Digest::parse(&format!("sha256:{}", "1".repeat(64))).unwrap();
    let _ = child;
    // The index's child is not in the repository, so storing it must fail...
    let tag = format!("sha256-{}", subject.hex());
    let r = a
        .req(
            "PUT",
            &format!("/v2/r/manifests/{tag}"),
            &[("content-type", "application/vnd.oci.image.index.v1+json")],
            idx,
        )
        .await;
    r.assert_is(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    // ...while an index of manifests that exist is accepted and merged.
    let idx = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{sig_d}","size":{}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{},"artifactType":"application/vnd.example.old"}}]}}"#,
        sig.len(),
        m.len()
    );
    let r = a
        .req(
            "PUT",
            &format!("/v2/r/manifests/{tag}"),
            &[("content-type", "application/vnd.oci.image.index.v1+json")],
            idx,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = a.call("GET", &format!("/v2/r/referrers/{subject}")).await;
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_input_gets_spec_errors() {
    let a = app().await;
    let cfg = a.push_blob("b", b"{}").await;
    let missing = Digest::sha256_of(b"never pushed");
    // method, URI, headers, body, expected status, expected error code
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "PUT",
            "/v2/b/manifests/v1".into(),
            vec![("content-type", OCI_MANIFEST)],
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "PUT",
            "/v2/b/manifests/v1".into(),
            vec![("content-type", "application/vnd.example+json")],
            br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "PUT",
            "/v2/b/manifests/v1".into(),
            vec![("content-type", OCI_MANIFEST)],
            image_manifest(&cfg, 2, &missing, 3, ""),
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "PUT",
            format!("/v2/b/manifests/{missing}"),
            vec![("content-type", OCI_MANIFEST)],
            image_manifest(&cfg, 2, &cfg, 2, ""),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "PUT",
            "/v2/b/manifests/v1".into(),
            vec![("content-type", OCI_MANIFEST)],
            vec![b' '; 4 * 1024 * 1024 + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
        ),
        (
            "POST",
            format!("/v2/b/blobs/uploads/?digest={missing}"),
            vec![],
            b"other bytes".to_vec(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            "/v2/b/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            vec![],
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/b/blobs/sha256:xyz".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/a/../b/tags/list".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/Upper/tags/list".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a%2fb/tags/list".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/b/blobs/{missing}"),
            vec![],
            vec![],
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
        (
            "GET",
            "/v2/b/manifests/nope".into(),
            vec![],
            vec![],
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            "/v2/b/blobs/uploads/0000".into(),
            vec![],
            vec![],
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "GET",
            "/v2/b/blobs/uploads/../../x".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/_catalog?n=abc".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
        ),
        (
            "POST",
            "/v2/b/manifests/v1".into(),
            vec![],
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        ),
    ];
    for (method, uri, headers, body, status, code) in cases {
        let r = a.req(method, &uri, &headers, body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{method} {uri}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // A bad Content-Range on a chunk.
    let r = a.call("POST", "/v2/b/blobs/uploads/").await;
    let loc = r.header("location").to_string();
    for cr in ["bytes=abc", "10-5", "-"] {
        let r = a.req("PATCH", &loc, &[("content-range", cr)], "x").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            "{cr}"
        );
    }
    // A Content-Range that disagrees with the body length.
    let r = a
        .req("PATCH", &loc, &[("content-range", "0-9")], "short")
        .await;
    r.assert_is(StatusCode::BAD_REQUEST, "SIZE_INVALID");
    // And the upload is still usable from offset 0.
    let r = a
        .req("PATCH", &loc, &[("content-range", "0-4")], "hello")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn docker_manifest_list_and_schema1_refused() {
    let a = app().await;
    let cfg = a.push_blob("d", b"{}").await;
    let layer = a.push_blob("d", b"layer").await;
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{cfg}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{layer}","size":5}}]}}"#
    );
    let md = Digest::sha256_of(m.as_bytes());
    let r = a
        .req(
            "PUT",
            "/v2/d/manifests/amd64",
            &[(
                "content-type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )],
            m.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{md}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        m.len()
    );
    let r = a
        .req(
            "PUT",
            "/v2/d/manifests/latest",
            &[(
                "content-type",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            )],
            list,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // A client that only takes single manifests cannot be handed the list.
    let r = a
        .req(
            "GET",
            "/v2/d/manifests/latest",
            &[(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = a
        .req(
            "GET",
            "/v2/d/manifests/latest",
            &[(
                "accept",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            )],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .req(
            "PUT",
            "/v2/d/manifests/old",
            &[(
                "content-type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )],
            r#"{"schemaVersion":1}"#,
        )
        .await;
    r.assert_is(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
}

#[tokio::test]
async fn read_only_refuses_writes_serves_reads() {
    let a = app_with(RegistryConfig {
        read_only: Some("maintenance".into()),
        ..RegistryConfig::default()
    })
    .await;
    let r = a.call("POST", "/v2/ro/blobs/uploads/").await;
    r.assert_is(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    let r = a.call("GET", "/v2/_catalog").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn ops_endpoints() {
    let a = app().await;
    let r = a.call("GET", "/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["healthy"], true);
    let r = a.call("GET", "/nginx_status").await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.starts_with("Active connections: "), "{text}");
    assert!(text.contains("server accepts handled requests"));
    // Cluster status is for system administrators, even in an open registry (see the
    // operations test in auth_attacks.rs).
    let r = a.call("GET", "/api/v0/meta/cluster_status").await;
    r.assert_is(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = a.call("GET", "/metrics").await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.contains("berth_http_requests_total"), "{text}");
    assert!(text.contains("berth_upload_sessions_open"), "{text}");
    assert!(
        text.contains("berth_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn chunk_min_length_is_advertised_when_configured() {
    let a = app().await;
    let r = a.call("POST", "/v2/c/blobs/uploads/").await;
    assert_eq!(r.header("oci-chunk-min-length"), "");
    let a = app_with(RegistryConfig {
        chunk_min_length: 5 * 1024 * 1024,
        ..RegistryConfig::default()
    })
    .await;
    let r = a.call("POST", "/v2/c/blobs/uploads/").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("oci-chunk-min-length"), "5242880");
    let loc = r.header("location").to_string();
    let r = a
        .req("PATCH", &loc, &[("content-range", "0-2")], "abc")
        .await;
    assert_eq!(r.header("oci-chunk-min-length"), "5242880");
}

/// Client-supplied numbers never wrap (issue 10, item 13): a `Content-Range` whose length
/// overflows (`0-18446744073709551615`, empty body) or a `Content-Length` past any size is
/// refused and leaves the session where it was; a manifest whose descriptor gives a blob
/// another size than the stored one is `MANIFEST_INVALID`.
#[tokio::test]
async fn client_numbers_never_wrap_and_descriptor_sizes_must_match() {
    let a = app().await;
    let r = a.call("POST", "/v2/n/blobs/uploads/").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location").to_string();
    for (range, len) in [
        ("0-18446744073709551615", "0"),
        ("bytes 0-18446744073709551615/*", "0"),
    ] {
        let r = a
            .req(
                "PATCH",
                &loc,
                &[("content-range", range), ("content-length", len)],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "Content-Range {range}");
        assert_eq!(r.code(), "SIZE_INVALID");
    }
    let r = a
        .req(
            "PATCH",
            &loc,
            &[("content-length", "18446744073709551615")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "huge Content-Length");
    let d = Digest::sha256_of(b"x");
    let r = a
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[
                ("content-range", "0-18446744073709551615"),
                ("content-length", "1"),
            ],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "PUT with a wrapping range"
    );
    let r = a.call("GET", &loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-0", "the session did not move");
    // The session still works.
    let r = a
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-2"), ("content-length", "3")],
            b"abc".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-2");
    // A range read past the end of the u64 range is clamped, not wrapped.
    let blob = a.push_blob("n", b"ranged").await;
    let r = a
        .req(
            "GET",
            &format!("/v2/n/blobs/{blob}"),
            &[("range", "bytes=2-18446744073709551615")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], b"nged");

    // Descriptor sizes against stored sizes.
    let cfg = a.push_blob("n", b"{}").await;
    let layer = a.push_blob("n", b"layer bytes").await;
    for (cfg_size, layer_size) in [(3, 11), (2, 10), (2, 12)] {
        let m = image_manifest(&cfg, cfg_size, &layer, layer_size, "");
        let r = a
            .req(
                "PUT",
                "/v2/n/manifests/sizes",
                &[("content-type", OCI_MANIFEST)],
                m,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "sizes {cfg_size}/{layer_size}"
        );
        assert_eq!(r.code(), "MANIFEST_INVALID");
    }
    let r = a
        .req(
            "PUT",
            "/v2/n/manifests/sizes",
            &[("content-type", OCI_MANIFEST)],
            image_manifest(&cfg, 2, &layer, 11, ""),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "the right sizes");
}

/// Chunked and streamed uploads completed with a `sha512:` digest (issue 10, item 20):
/// hashed with SHA-512 from the start when the POST says `?digest-algorithm=sha512`, else
/// verified at completion by a second pass over the staged bytes; a wrong digest is
/// `DIGEST_INVALID`, an unknown algorithm `UNSUPPORTED`.
#[tokio::test]
async fn sha512_chunked_uploads() {
    let a = app().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d512 = Digest::of(berth_oci::Algorithm::Sha512, &data);
    for post in [
        "/v2/s/blobs/uploads/?digest-algorithm=sha512",
        "/v2/s/blobs/uploads/",
    ] {
        let r = a.call("POST", post).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{post}");
        let loc = r.header("location").to_string();
        let r = a
            .req(
                "PATCH",
                &loc,
                &[("content-range", "0-99999"), ("content-length", "100000")],
                data[..100_000].to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        // The rest streamed with the PUT.
        let r = a
            .req(
                "PUT",
                &format!("{loc}?digest={d512}"),
                &[("content-length", "200000")],
                data[100_000..].to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{post}: {:?}", r.body);
        let r = a.call("GET", &format!("/v2/s/blobs/{d512}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], &data[..]);
    }
    // A wrong sha512 digest, after chunks hashed with sha256.
    let r = a.call("POST", "/v2/s/blobs/uploads/").await;
    let loc = r.header("location").to_string();
    let r = a
        .req("PATCH", &loc, &[("content-length", "5")], b"hello".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let wrong = Digest::of(berth_oci::Algorithm::Sha512, b"other");
    let r = a.call("PUT", &format!("{loc}?digest={wrong}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = a
        .call("POST", "/v2/s/blobs/uploads/?digest-algorithm=md5")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "UNSUPPORTED");
}

/// Every response carries `X-Request-Id`: the caller's own when it is a sane token, a
/// fresh one otherwise (too long, a control or space character, two of them) (issue 11,
/// observability). That every log line of a request names it is checked through the
/// binary, whose log goes to a file: `crates/berth/tests/it/newcomer.rs`.
#[tokio::test]
async fn request_id_is_returned() {
    let a = app().await;
    let r = a
        .req(
            "GET",
            "/v2/",
            &[("x-request-id", "build-42.step:7_a")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), "build-42.step:7_a");
    // An error answer carries it too.
    let r = a
        .req(
            "GET",
            "/v2/no/such/manifests/latest",
            &[("x-request-id", "err-1")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-request-id"), "err-1");

    // Without an id, or with one that could forge or flood a log, a fresh one is made.
    let long = "x".repeat(129);
    for sent in [
        None,
        Some(long.as_str()),
        Some("a b"),
        Some("a\tb"),
        Some("x\"y"),
    ] {
        let mut headers = vec![];
        if let Some(s) = sent {
            headers.push(("x-request-id", s));
        }
        let r = a.req("GET", "/v2/", &headers, Body::empty()).await;
        let id = r.header("x-request-id").to_string();
        assert!(
            !id.is_empty() && Some(id.as_str()) != sent,
            "{sent:?} -> {id:?}"
        );
        assert!(uuid_like(&id), "{id}");
    }
    // Two ids: neither is trusted.
    let req = Request::builder()
        .uri("/health")
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .body(Body::empty())
        .unwrap();
    let resp = send(&a.router, req).await;
    let ids: Vec<_> = resp.headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1);
    assert!(uuid_like(ids[0].to_str().unwrap()), "{ids:?}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// `/api/v0` requests are counted under their route's pattern, never under the raw path
/// or a catch-all (issue 11): the label set stays closed however many names are used.
#[tokio::test]
async fn api_v0_routes_have_their_own_metric_labels() {
    let a = app().await;
    for user in ["u-one", "u-two"] {
        a.call("GET", &format!("/api/v0/users/{user}")).await;
    }
    a.call("GET", "/api/v0/orgs").await;
    a.call("GET", "/api/v0/no/such/thing").await;
    let r = a.call("GET", "/metrics").await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let routes: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("berth_http_requests_total{"))
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .collect();
    for want in ["/api/v0/users/{user}", "/api/v0/orgs", "not_found"] {
        assert!(routes.contains(want), "no {want} in {routes:?}");
    }
    for route in &routes {
        assert!(
            !route.contains("u-one") && !route.contains("no/such") && *route != "other",
            "{route} in {routes:?}"
        );
    }
}
