//! The conformance suite against a real S3-compatible server. Each case works under its
//! own random prefix of the bucket. Without `BERTH_TEST_S3_ENDPOINT` these tests fail: start
//! the server with `eval "$(cargo xtask peers)"`, which exports the variables below.

use berth_blob::conformance::{self, Fixture};
use berth_blob::s3::{S3BlobStore, S3Config};
use berth_blob::BlobStore;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStore;
use rand::Rng;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set. The S3 tests need a running S3 server: start one and export \
             BERTH_TEST_S3_ENDPOINT, BERTH_TEST_S3_BUCKET, BERTH_TEST_S3_ACCESS_KEY, \
             BERTH_TEST_S3_SECRET_KEY and BERTH_TEST_S3_REGION with `eval \"$(cargo xtask peers)\"`"
        )
    })
}

/// The server from the environment, under a fresh random prefix.
fn config() -> S3Config {
    let endpoint = env("BERTH_TEST_S3_ENDPOINT");
    let suffix: u64 = rand::thread_rng().gen();
    S3Config {
        allow_http: endpoint.starts_with("http://"),
        endpoint: Some(endpoint),
        bucket: env("BERTH_TEST_S3_BUCKET"),
        region: std::env::var("BERTH_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        access_key_id: Some(env("BERTH_TEST_S3_ACCESS_KEY")),
        secret_access_key: Some(env("BERTH_TEST_S3_SECRET_KEY")),
        path_style: true,
        prefix: format!("berth-test/{suffix:016x}/"),
    }
}

fn fixture() -> Fixture {
    let cfg = config();
    Fixture::new((), move || S3BlobStore::new(cfg.clone()))
}

berth_blob::blob_store_conformance!(s3, async { fixture() });

/// A client on the same bucket that does not go through the store, to plant strays.
fn raw(cfg: &S3Config) -> impl ObjectStore {
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&cfg.bucket)
        .with_region(&cfg.region)
        .with_allow_http(cfg.allow_http)
        .with_virtual_hosted_style_request(false);
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e);
    }
    if let (Some(k), Some(s)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
    }
    b.build().expect("raw s3 client")
}

/// Objects under the prefix that are neither blobs nor upload data are foreign; the
/// same names in another prefix are not this store's business.
#[tokio::test]
async fn strays_are_foreign() {
    let cfg = config();
    let store = S3BlobStore::new(cfg.clone()).expect("store");
    let data = conformance::test_bytes(1, 1000);
    let d = conformance::upload(&store, "good-1", &[&data]).await;
    let hex = d.hex();
    let strays = [
        "stray.txt".to_string(),
        format!("blobs/sha256/00/{hex}"),
        "blobs/sha256/zz/whatever".to_string(),
        "uploads/bad.name/data".to_string(),
        "uploads/loose".to_string(),
        "tmp/x".to_string(),
    ];
    let raw = raw(&cfg);
    for key in &strays {
        raw.put(&Path::from(format!("{}{key}", cfg.prefix)), "x".into())
            .await
            .expect("plant a stray");
    }
    let got = conformance::foreign(&store).await;
    let mut want = strays.to_vec();
    want.sort();
    assert_eq!(got, want);
    let listed: Vec<_> = store.list().try_collect().await.expect("list");
    assert_eq!(listed, vec![(d.clone(), 1000)]);
    for key in &want {
        store.delete_foreign(key).await.expect("delete_foreign");
    }
    conformance::drain(&store).await;
}

/// Large appends really go out as parts and only the remainder stays as a tail: the state
/// lists the parts, and the upload's objects are the marker and one small tail.
#[tokio::test]
async fn large_appends_become_parts() {
    let cfg = config();
    let store = S3BlobStore::new(cfg.clone()).expect("store");
    let id = "parts-1";
    let data = conformance::test_bytes(2, 12 << 20);
    let state = store.upload_start(id).await.expect("start");
    let (state, n) = store
        .upload_append(id, &state, 0, conformance::body(&data, 1 << 20))
        .await
        .expect("append");
    assert_eq!(n, data.len() as u64);
    let json: serde_json::Value = serde_json::from_str(&state.0).expect("state is json");
    assert_eq!(json["parts"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json["sent"], 8 << 20, "{json}");
    assert!(json["multipart"].is_string(), "{json}");
    let raw = raw(&cfg);
    let mut objects: Vec<(String, u64)> = raw
        .list(Some(&Path::from(format!("{}uploads/{id}", cfg.prefix))))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .expect("list");
    objects.sort();
    let names: Vec<(&str, u64)> = objects
        .iter()
        .map(|(k, s)| (k.rsplit('/').next().unwrap_or_default(), *s))
        .filter(|(k, _)| *k != "upload")
        .collect();
    assert_eq!(names, [("tail.8388608", 4 << 20)]);
    let d = berth_oci::Digest::sha256_of(&data);
    store
        .upload_commit(
            id,
            &state,
            data.len() as u64,
            &d,
            berth_blob::Existing::Keep,
        )
        .await
        .expect("commit");
    conformance::assert_blob(&store, &d, &data).await;
    conformance::drain(&store).await;
}
