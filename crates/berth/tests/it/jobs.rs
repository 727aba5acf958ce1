//! Background jobs and shutdown, with the real binary, two processes sharing one data
//! directory and one store pair (as two replicas share a database), on both store pairs:
//!
//! - SIGTERM while a slow chunked upload (a PATCH body still arriving) and a manifest PUT
//!   are in flight: both complete with their normal status, new connections are refused
//!   from the signal on, the process exits 0 within the shutdown deadline, and the job
//!   lease it held is released: another process takes the job at once, long before the
//!   lease would have expired.
//! - SIGKILL of a lease holder: the other process takes its job once the lease expires,
//!   and not before.
//! - SIGTERM to `berth gc` in the middle of a run: the run stops cleanly (`stopped`), the
//!   lease is released, the process exits 0, and the next run collects the rest.
//! - Cluster status lists every replica with its address, version, heartbeat and leases; a
//!   replica killed with SIGKILL is down (with a critical issue) within the documented
//!   window and healthy again when it restarts; one stopped with SIGTERM leaves the list.

use berth_testkit::e2e::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The scheduled GC job: every `berth serve` starts it, one holds its lease.
const JOB: &str = "gc-schedule";

/// Where a test's processes meet: one data directory and one store pair.
struct Site {
    _dir: tempfile::TempDir,
    data: PathBuf,
    stores: Stores,
}

impl Site {
    fn new(backend: Backend) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        Site {
            data: dir.path().join("data"),
            _dir: dir,
            stores: Stores::new(backend),
        }
    }

    /// `berth ARGS --data-dir DATA` on this site's stores.
    fn berth(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(args).arg("--data-dir").arg(&self.data);
        self.stores.configure(&mut cmd).env("NO_COLOR", "1");
        cmd
    }
}

both_backends!(
    sigterm_drains_requests_stops_jobs_and_releases_leases,
    sigkill_of_a_holder_hands_its_job_over_after_expiry,
    gc_command_stops_cleanly_on_sigterm,
    cluster_status_lists_every_replica_and_sees_one_die,
);

/// A `berth serve` on a site, with its own replica id and settings.
struct Proc {
    child: Child,
    host: String,
    log: PathBuf,
}

impl Proc {
    fn start(site: &Site, id: &str, env: &[(&str, &str)]) -> Proc {
        let log = site.data.with_file_name(format!("{id}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = site.berth(&["serve", "--listen", "127.0.0.1:0"]);
        cmd.env("BERTH_REPLICA_ID", id)
            .env("BERTH_ADMIN_PASSWORD", PASSWORD)
            .env("BERTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting berth");
        let deadline = Instant::now() + Duration::from_secs(60);
        let host = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(i) = text.find("berth listening on http://") {
                let rest = &text[i + "berth listening on http://".len()..];
                break rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect::<String>();
            }
            if let Some(st) = child.try_wait().expect("try_wait") {
                panic!("berth {id} exited before listening ({st}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "berth {id} not listening:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Proc { child, host, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig}");
    }

    /// Waits for the process to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "berth still running {limit:?} after the signal; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PASSWORD: &str = "jobs-test-password";

/// The live lease of `job` as `berth gc --status --json` (a third process) sees it.
fn holder(site: &Site, job: &str) -> Option<Value> {
    gc_status(site)["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|l| l["name"] == job)
        .cloned()
}

/// What `berth gc --status --json` says.
fn gc_status(site: &Site) -> Value {
    let out = run_ok(
        &mut site.berth(&["gc", "--status", "--json"]),
        Duration::from_secs(30),
    );
    serde_json::from_str(out.stdout.trim()).expect("status JSON")
}

fn wait_holder(site: &Site, job: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(l) = holder(site, job).filter(|l| l["holder"] == want) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{want} did not take {job} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends the rest of the body in `pieces`, `pause` apart, and returns the status line.
fn finish_request(mut s: TcpStream, rest: &[u8], pieces: usize, pause: Duration) -> String {
    for piece in rest.chunks(rest.len().div_ceil(pieces).max(1)) {
        std::thread::sleep(pause);
        s.write_all(piece).expect("rest of the body");
        s.flush().unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Sends `request` as the administrator.
fn as_admin(request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::Response {
    request
        .basic_auth(ADMIN, Some(PASSWORD))
        .send()
        .expect("request")
}

fn push_blob(host: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256_digest(data);
    let r = as_admin(
        client()
            .post(format!("http://{host}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(data.to_vec()),
    );
    assert_eq!(r.status().as_u16(), 201, "push: {:?}", r.text());
    d
}

fn sigterm_drains_requests_stops_jobs_and_releases_leases(backend: Backend) {
    let site = Site::new(backend);
    // A long lease: a take-over within it can only come from a release.
    let env = [
        ("BERTH_JOBS_LEASE_TTL", "60s"),
        ("BERTH_HTTP_SHUTDOWN_TIMEOUT", "20s"),
    ];
    let mut a = Proc::start(&site, "replica-a", &env);
    wait_holder(&site, JOB, "replica-a", Duration::from_secs(20));

    let repo = format!("jobs/{}", unique());
    let mut rng = Rng::new();
    let config = push_blob(&a.host, &repo, b"{}");
    let layer = rng.bytes(200_000);
    let layer_d = push_blob(&a.host, &repo, &layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{}}}]}}"#,
        layer.len()
    )
    .into_bytes();
    let r = as_admin(client().post(format!("http://{}/v2/{repo}/blobs/uploads/", a.host)));
    assert_eq!(r.status().as_u16(), 202);
    let upload = path_of(r.headers()["location"].to_str().unwrap());
    let chunk = rng.bytes(1024 * 1024);

    // Both requests in flight: part of each body sent.
    let patch = start_request(
        &a.host,
        &basic_auth(ADMIN, PASSWORD),
        &format!(
            "PATCH {upload} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Range: 0-{}\r\n",
            chunk.len() - 1
        ),
        &chunk,
        chunk.len() / 4,
    );
    let put = start_request(
        &a.host,
        &basic_auth(ADMIN, PASSWORD),
        &format!("PUT /v2/{repo}/manifests/v1 HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\n"),
        &manifest,
        manifest.len() / 2,
    );
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    a.signal("-TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(&a.host).is_err(),
        "a new connection is refused after SIGTERM"
    );

    // The slow upload keeps sending for about two seconds, then the manifest finishes.
    let rest_of_patch = &chunk[chunk.len() / 4..];
    let rest_of_put = &manifest[manifest.len() / 2..];
    for (request, rest, pieces, pause, want, what) in [
        (patch, rest_of_patch, 8, 250, " 202 ", "PATCH"),
        (put, rest_of_put, 2, 100, " 201 ", "manifest PUT"),
    ] {
        let answer = finish_request(request, rest, pieces, Duration::from_millis(pause));
        assert!(
            answer.contains(want),
            "{what} in flight at SIGTERM: {answer}"
        );
    }

    let status = a.wait(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}; log:\n{}", a.log());
    assert!(
        took < Duration::from_secs(20),
        "exited {took:?} after SIGTERM"
    );

    // Released: nothing holds the job now, and another process takes it at once (its
    // first attempt), not after the 60 s the lease would have lived.
    assert_eq!(holder(&site, JOB), None, "the lease was released at exit");
    assert!(a.log().contains("job lease released"), "log:\n{}", a.log());
    let started = Instant::now();
    let b = Proc::start(&site, "replica-b", &env);
    wait_holder(&site, JOB, "replica-b", Duration::from_secs(20));
    let taken = started.elapsed();
    assert!(taken < Duration::from_secs(30));
    eprintln!("exit 0 {took:?} after SIGTERM; replica-b held {JOB} {taken:?} after its start");

    // What both requests wrote is there.
    let r = as_admin(client().get(format!("http://{}{upload}", b.host)));
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", chunk.len() - 1)
    );
    let r = as_admin(
        client()
            .get(format!("http://{}/v2/{repo}/manifests/v1", b.host))
            .header("Accept", OCI_MANIFEST),
    );
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().expect("body").to_vec(), manifest);
}

fn sigkill_of_a_holder_hands_its_job_over_after_expiry(backend: Backend) {
    let site = Site::new(backend);
    let env = [("BERTH_JOBS_LEASE_TTL", "2s")];
    let mut a = Proc::start(&site, "replica-a", &env);
    wait_holder(&site, JOB, "replica-a", Duration::from_secs(20));
    let b = Proc::start(&site, "replica-b", &env);

    // While A lives it renews its lease: B never gets the job, over several lifetimes.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        let l = holder(&site, JOB).expect("held while A lives");
        assert_eq!(
            l["holder"], "replica-a",
            "B took the job from a live holder"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let before = holder(&site, JOB).expect("held");
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    let killed = Instant::now();
    let expires = before["expires_at"].as_i64().expect("expires_at");

    let taken = wait_holder(&site, JOB, "replica-b", Duration::from_secs(15));
    let after = killed.elapsed();
    assert!(
        taken["acquired_at"].as_i64().expect("acquired_at") >= expires,
        "B took the lease before it expired: {before} then {taken}"
    );
    // At most the lease's lifetime plus B's retry interval (a third of it) and the time
    // `berth gc --status` takes to look.
    assert!(after < Duration::from_secs(8), "take-over took {after:?}");
    assert!(b.log().contains("job lease taken"), "log:\n{}", b.log());
    eprintln!("job {JOB} moved to replica-b {after:?} after SIGKILL");
}

fn gc_command_stops_cleanly_on_sigterm(backend: Backend) {
    const MANIFESTS: usize = 150;
    let site = Site::new(backend);
    let a = Proc::start(&site, "replica-a", &[]);
    let repo = format!("jobs/{}", unique());
    let config = push_blob(&a.host, &repo, b"{}");
    let layer = push_blob(&a.host, &repo, b"one layer");
    // Untagged manifests pushed by digest: garbage once older than the grace period (0s).
    for i in 0..MANIFESTS {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":9}}],"annotations":{{"n":"{i}"}}}}"#
        );
        let digest = sha256_digest(manifest.as_bytes());
        let r = as_admin(
            client()
                .put(format!("http://{}/v2/{repo}/manifests/{digest}", a.host))
                .header("Content-Type", OCI_MANIFEST)
                .body(manifest),
        );
        assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    }

    // A slow run (it rests 999 times as long as each batch of at most 100 took), stopped
    // by SIGTERM while it rests after its first batch.
    let log = site.data.with_file_name("gc.log");
    let mut gc = site
        .berth(&["gc", "--grace", "0s", "--pace", "0.001"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("berth gc");
    let deadline = Instant::now() + Duration::from_secs(60);
    let cli = loop {
        let st = gc_status(&site);
        let first = &st["runs"][0];
        if st["running"] == true && first["manifests_deleted"].as_u64().unwrap_or(0) > 0 {
            break st["holder"].as_str().expect("holder").to_string();
        }
        if let Some(exit) = gc.try_wait().expect("try_wait") {
            panic!("berth gc ended ({exit}) before it was signalled: {st}");
        }
        assert!(Instant::now() < deadline, "no progress: {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(cli.starts_with("berth-gc@"), "{cli}");
    let signalled = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &gc.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let exit = loop {
        if let Some(exit) = gc.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "berth gc still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "exit {exit}:\n{text}");
    assert!(
        text.contains("stopping the garbage collection run"),
        "{text}"
    );
    let st = gc_status(&site);
    assert_eq!(st["running"], false, "the lease was released: {st}");
    let stopped = &st["runs"][0];
    assert_eq!(stopped["status"], "stopped", "{st}");
    assert_eq!(stopped["holder"], cli.as_str(), "{st}");
    let first = stopped["manifests_deleted"].as_u64().expect("count");
    assert!(first > 0 && first < MANIFESTS as u64, "{st}");

    // The next run collects the rest.
    run_ok(
        &mut site.berth(&["gc", "--grace", "0s"]),
        Duration::from_secs(120),
    );
    let st = gc_status(&site);
    assert_eq!(st["runs"][0]["status"], "finished", "{st}");
    let rest = st["runs"][0]["manifests_deleted"].as_u64().expect("count");
    assert_eq!(first + rest, MANIFESTS as u64, "{st}");
    eprintln!("berth gc exited 0 {took:?} after SIGTERM, {first} manifests collected, then {rest}");
}

/// The cluster as replica `host` says it is.
fn cluster(host: &str) -> Value {
    let r = as_admin(client().get(format!("http://{host}/api/v0/meta/cluster_status")));
    assert_eq!(r.status().as_u16(), 200);
    r.json().expect("cluster status JSON")
}

/// Waits until `host`'s cluster status satisfies `want`, at most `limit`; how long it took.
fn wait_cluster(host: &str, limit: Duration, want: impl Fn(&Value) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        let c = cluster(host);
        if want(&c) {
            return t.elapsed();
        }
        assert!(t.elapsed() < limit, "not within {limit:?}: {c}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replica<'a>(c: &'a Value, id: &str) -> Option<&'a Value> {
    c["replicas"].as_array()?.iter().find(|r| r["id"] == id)
}

fn cluster_status_lists_every_replica_and_sees_one_die(backend: Backend) {
    let site = Site::new(backend);
    // Down after 3 missed heartbeats of 300 ms: 900 ms.
    let env = [
        ("BERTH_CLUSTER_HEARTBEAT", "300ms"),
        ("BERTH_CLUSTER_MISSED_HEARTBEATS", "3"),
        ("BERTH_CLUSTER_EXPECTED_REPLICAS", "2"),
    ];
    let a = Proc::start(&site, "replica-a", &env);
    wait_holder(&site, JOB, "replica-a", Duration::from_secs(20));
    let mut b = Proc::start(&site, "replica-b", &env);
    let both_up = |c: &Value| {
        ["replica-a", "replica-b"]
            .iter()
            .all(|id| replica(c, id).is_some_and(|r| r["healthy"] == true))
    };
    wait_cluster(&a.host, Duration::from_secs(10), both_up);
    let c = cluster(&a.host);
    assert_eq!(
        c["replicas"][0]["id"], "replica-a",
        "this replica first: {c}"
    );
    assert_eq!(c["healthy_replicas"], 2, "{c}");
    assert_eq!(c["issues"], serde_json::json!([]), "{c}");
    let rb = replica(&c, "replica-b").unwrap();
    assert_eq!(rb["address"], b.host.as_str(), "{c}");
    assert_eq!(rb["version"], c["replicas"][0]["version"], "{c}");
    assert_eq!(rb["read_only"], false, "{c}");
    assert!(rb["last_heartbeat"].as_str().unwrap().ends_with('Z'), "{c}");
    assert!(
        c["replicas"][0]["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j == JOB),
        "{c}"
    );
    assert!(
        c["replicas"][0]["stores"]["metadata"]["latency_ms"].is_number(),
        "{c}"
    );

    // B killed: down within the window (900 ms, plus a heartbeat of slack for the poll).
    b.child.kill().expect("SIGKILL");
    let _ = b.child.wait();
    let down = wait_cluster(&a.host, Duration::from_secs(10), |c| {
        replica(c, "replica-b").is_some_and(|r| r["healthy"] == false)
    });
    assert!(down < Duration::from_millis(2500), "B down after {down:?}");
    let c = cluster(&a.host);
    let issues = c["issues"].to_string();
    assert!(
        issues.contains("replica replica-b") && issues.contains("is down"),
        "{c}"
    );
    assert!(
        issues.contains("1 of 2 expected replicas are healthy"),
        "{c}"
    );
    eprintln!("replica-b down in cluster status {down:?} after SIGKILL");

    // Back: healthy again; stopped cleanly: gone from the list.
    let b = Proc::start(&site, "replica-b", &env);
    wait_cluster(&a.host, Duration::from_secs(10), both_up);
    b.signal("-TERM");
    let mut b = b;
    assert!(b.wait(Duration::from_secs(30)).success());
    let c = cluster(&a.host);
    assert!(replica(&c, "replica-b").is_none(), "{c}");
}
