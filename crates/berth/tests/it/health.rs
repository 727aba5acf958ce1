//! `/health` and `/api/v0/meta/cluster_status` tell the truth about the stores: 503 naming
//! the failing component when blob storage or the metadata database is unreachable, and
//! 200 again once it is back. The stores' calls (and their failures) show on `/metrics`.

use berth_testkit::e2e::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn get_json(host: &str, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::get(format!("http://{host}{path}")).expect("GET");
    let status = r.status().as_u16();
    (status, r.json().expect("JSON body"))
}

/// `path`, as the administrator whose password is `password`.
fn get_as_admin(host: &str, path: &str, password: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .get(format!("http://{host}{path}"))
        .basic_auth("admin", Some(password))
        .send()
        .expect("GET")
}

/// The `/metrics` lines of `metric` whose labels include every one of `labels`.
fn metric_lines(host: &str, metric: &str, labels: &[&str]) -> Vec<String> {
    let text = reqwest::blocking::get(format!("http://{host}/metrics"))
        .expect("GET /metrics")
        .text()
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(str::to_string)
        .collect()
}

fn wait_for(host: &str, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get_json(host, "/health");
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/health stayed {status}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn unreachable_blob_storage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: S3 requests fail at connect.
    let p = Process::spawn(
        &[
            "--data-dir".as_ref(),
            dir.path().join("data").as_os_str(),
            "--blobs".as_ref(),
            "s3".as_ref(),
        ],
        &[
            ("BERTH_S3_ENDPOINT", "http://127.0.0.1:1"),
            ("BERTH_S3_BUCKET", "nowhere"),
            ("BERTH_S3_ALLOW_HTTP", "true"),
            ("BERTH_S3_PATH_STYLE", "true"),
            ("BERTH_S3_ACCESS_KEY_ID", "k"),
            ("BERTH_S3_SECRET_ACCESS_KEY", "s"),
            ("BERTH_ADMIN_PASSWORD", "health-admin-pw"),
        ],
        &dir.path().join("berth.log"),
    );
    let body = wait_for(&p.host, 503);
    assert_eq!(body["failing"], serde_json::json!(["blobs"]), "{body}");
    assert_eq!(body["components"]["metadata"]["healthy"], true);
    // Cluster status names stores and their errors: system administrators only.
    let (status, _) = get_json(&p.host, "/api/v0/meta/cluster_status");
    assert_eq!(status, 401);
    let r = get_as_admin(&p.host, "/api/v0/meta/cluster_status", "health-admin-pw");
    assert_eq!(r.status().as_u16(), 200);
    let cs: serde_json::Value = r.json().expect("JSON body");
    assert_eq!(
        cs["replicas"][0]["stores"]["blobs"]["healthy"], false,
        "{cs}"
    );
    // The instrumenting wrapper counted the failed pings.
    let errors = metric_lines(
        &p.host,
        "berth_store_errors_total",
        &[r#"store="BlobStore""#, r#"method="ping""#],
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(
        !log.contains("BERTH_S3_SECRET") && !log.contains("=s\""),
        "secret in log:\n{log}"
    );
}

/// Every store is wrapped by `berth`: a call to each shows on `/metrics` as a latency
/// histogram labelled with the store trait and the method.
#[test]
fn store_calls_show_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::spawn(
        &["--data-dir".as_ref(), dir.path().join("data").as_os_str()],
        &[("BERTH_ADMIN_PASSWORD", "metrics-admin-pw")],
        &dir.path().join("berth.log"),
    );
    wait_for(&p.host, 200);
    // An administrator's catalog request: the caller from the identity store, the names
    // from the registry store.
    let r = get_as_admin(&p.host, "/v2/_catalog", "metrics-admin-pw");
    assert_eq!(r.status().as_u16(), 200);
    for (store, method) in [
        ("RegistryStore", "ping"),
        ("BlobStore", "ping"),
        ("AccountStore", "user_get"),
        ("RegistryStore", "catalog"),
    ] {
        let store_label = format!("store=\"{store}\"");
        let method_label = format!("method=\"{method}\"");
        let counts = metric_lines(
            &p.host,
            "berth_store_call_duration_seconds_count",
            &[&store_label, &method_label],
        );
        let all = metric_lines(&p.host, "berth_store_call_duration_seconds_count", &[]);
        assert_eq!(
            counts.len(),
            1,
            "{store}::{method} not on /metrics: {all:#?}"
        );
        let n: u64 = counts[0]
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .expect("count");
        assert!(n >= 1, "{}", counts[0]);
    }
}

#[test]
fn unreachable_database_is_named_and_recovers() {
    let admin = require_env("BERTH_TEST_PG_URL");
    let db = format!("berth_health_{}", unique().replace('-', "_"));
    let psql = |sql: &str| {
        run_ok(
            Command::new("psql").args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql]),
            Duration::from_secs(60),
        );
    };
    psql(&format!("CREATE DATABASE {db}"));
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .expect("database URL");
    let url = format!("{base}/{db}");
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL needs a key-encryption key configured.
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let kek = kek.display().to_string();
    let p = Process::spawn(
        &[
            "--data-dir".as_ref(),
            dir.path().join("data").as_os_str(),
            "--metadata".as_ref(),
            url.as_ref(),
        ],
        &[("BERTH_KEK_FILE", kek.as_str())],
        &dir.path().join("berth.log"),
    );
    wait_for(&p.host, 200);
    // The database refuses connections and its sessions are ended: as if it went away.
    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ));
    let body = wait_for(&p.host, 503);
    assert_eq!(body["failing"], serde_json::json!(["metadata"]), "{body}");
    assert_eq!(body["components"]["blobs"]["healthy"], true);
    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    wait_for(&p.host, 200);
    drop(p);
    psql(&format!("DROP DATABASE {db} WITH (FORCE)"));
}
