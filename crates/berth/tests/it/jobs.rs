//! Background jobs and shutdown, with the real binary on SQLite, two processes sharing
//! one data directory (as two replicas share a database):
//!
//! - SIGTERM while a slow chunked upload (a PATCH body still arriving) and a manifest PUT
//!   are in flight: both complete with their normal status, new connections are refused
//!   from the signal on, the process exits 0 within the shutdown deadline, and the job
//!   lease it held is released: another process takes the job at once, long before the
//!   lease would have expired.
//! - SIGKILL of a lease holder: the other process takes its job once the lease expires,
//!   and not before.

use berth_testkit::e2e::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The scheduled GC job: every `berth serve` starts it, one holds its lease.
const JOB: &str = "gc-schedule";

/// A `berth serve` on a given data directory, with its own replica id and settings.
struct Proc {
    child: Child,
    host: String,
    log: PathBuf,
}

impl Proc {
    fn start(data: &Path, id: &str, env: &[(&str, &str)]) -> Proc {
        let log = data.with_file_name(format!("{id}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("BERTH_REPLICA_ID", id)
            .env("BERTH_ADMIN_PASSWORD", PASSWORD)
            .env("BERTH_LOG", "info")
            .env("NO_COLOR", "1")
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
fn holder(data: &Path, job: &str) -> Option<Value> {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["gc", "--status", "--json", "--data-dir"])
            .arg(data)
            .env("NO_COLOR", "1"),
        Duration::from_secs(30),
    );
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("status JSON");
    v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|l| l["name"] == job)
        .cloned()
}

fn wait_holder(data: &Path, job: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(l) = holder(data, job).filter(|l| l["holder"] == want) {
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

fn push_blob(host: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256_digest(data);
    let r = client()
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/?digest={d}"))
        .basic_auth(ADMIN, Some(PASSWORD))
        .body(data.to_vec())
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201, "push: {:?}", r.text());
    d
}

#[test]
fn sigterm_drains_requests_stops_jobs_and_releases_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A long lease: a take-over within it can only come from a release.
    let env = [
        ("BERTH_JOBS_LEASE_TTL", "60s"),
        ("BERTH_HTTP_SHUTDOWN_TIMEOUT", "20s"),
    ];
    let mut a = Proc::start(&data, "replica-a", &env);
    wait_holder(&data, JOB, "replica-a", Duration::from_secs(20));

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
    let r = client()
        .post(format!("http://{}/v2/{repo}/blobs/uploads/", a.host))
        .basic_auth(ADMIN, Some(PASSWORD))
        .send()
        .expect("POST");
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
    let patched = finish_request(
        patch,
        &chunk[chunk.len() / 4..],
        8,
        Duration::from_millis(250),
    );
    assert!(
        patched.contains(" 202 "),
        "PATCH in flight at SIGTERM: {patched}"
    );
    let put_done = finish_request(
        put,
        &manifest[manifest.len() / 2..],
        2,
        Duration::from_millis(100),
    );
    assert!(
        put_done.contains(" 201 "),
        "manifest PUT in flight at SIGTERM: {put_done}"
    );

    let status = a.wait(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}; log:\n{}", a.log());
    assert!(
        took < Duration::from_secs(20),
        "exited {took:?} after SIGTERM"
    );

    // Released: nothing holds the job now, and another process takes it at once (its
    // first attempt), not after the 60 s the lease would have lived.
    assert_eq!(holder(&data, JOB), None, "the lease was released at exit");
    assert!(a.log().contains("job lease released"), "log:\n{}", a.log());
    let started = Instant::now();
    let b = Proc::start(&data, "replica-b", &env);
    wait_holder(&data, JOB, "replica-b", Duration::from_secs(20));
    let taken = started.elapsed();
    assert!(taken < Duration::from_secs(30));
    eprintln!("exit 0 {took:?} after SIGTERM; replica-b held {JOB} {taken:?} after its start");

    // What both requests wrote is there.
    let r = client()
        .get(format!("http://{}{upload}", b.host))
        .basic_auth(ADMIN, Some(PASSWORD))
        .send()
        .expect("GET upload");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", chunk.len() - 1)
    );
    let r = client()
        .get(format!("http://{}/v2/{repo}/manifests/v1", b.host))
        .basic_auth(ADMIN, Some(PASSWORD))
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect("GET manifest");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().expect("body").to_vec(), manifest);
}

#[test]
fn sigkill_of_a_holder_hands_its_job_over_after_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let env = [("BERTH_JOBS_LEASE_TTL", "2s")];
    let mut a = Proc::start(&data, "replica-a", &env);
    wait_holder(&data, JOB, "replica-a", Duration::from_secs(20));
    let b = Proc::start(&data, "replica-b", &env);

    // While A lives it renews its lease: B never gets the job, over several lifetimes.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        let l = holder(&data, JOB).expect("held while A lives");
        assert_eq!(
            l["holder"], "replica-a",
            "B took the job from a live holder"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let before = holder(&data, JOB).expect("held");
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    let killed = Instant::now();
    let expires = before["expires_at"].as_i64().expect("expires_at");

    let taken = wait_holder(&data, JOB, "replica-b", Duration::from_secs(15));
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
