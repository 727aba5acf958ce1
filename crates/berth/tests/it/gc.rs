//! Garbage collection through the real binary (issue 4, must-shows 1, 3 and 5), on
//! SQLite + filesystem and PostgreSQL + S3:
//!
//! - `online_gc_under_load`: clients push images sharing layers with deleted images,
//!   mount blobs across repositories, delete tags and push them again, and readers pull
//!   throughout, while GC runs over and over; no read fails, every acknowledged image
//!   that is still tagged pulls completely with correct digests, the garbage is gone
//!   after a last run, and `berth fsck` is clean;
//! - `read_only_gc`: the same load while read-only runs repeat: every refused write is
//!   the 503 `UNAVAILABLE` saying GC runs and since when, no read fails, and writes work
//!   again after the runs;
//! - `crash_during_sweep`: SIGKILL while a run deletes; the next run finishes the work;
//! - `docker_during_online_gc`: the Docker engine pushes and pulls while GC runs;
//! - `gc_api_and_schedule`: the API is for system administrators, a schedule set through
//!   it runs, cluster status and metrics show GC.
//!
//! Every `berth serve` here has `BERTH_GC_GRACE=4s` (so a HEAD claims links older than
//! 2 s, as serve does with half its grace) and `BERTH_GC_PACE=0.15`; runs asked with
//! `"grace": "0s"` collect everything unreferenced.

use berth_testkit::e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

both_backends!(
    online_gc_under_load,
    read_only_gc,
    crash_during_sweep,
    abandoned_uploads_purged
);

#[test]
fn docker_during_online_gc() {
    docker_during_gc(Backend::Embedded);
}

#[test]
fn gc_api_and_schedule() {
    api_and_schedule(Backend::Embedded);
}

fn start(backend: Backend) -> Server {
    // Inherited by every `berth serve` this test binary starts (all of them use 4 s).
    std::env::set_var("BERTH_GC_GRACE", "4s");
    // Three times the default pace: the stress tests want as many runs racing the pushes
    // as their window allows, and the other tests a run that ends soon.
    std::env::set_var("BERTH_GC_PACE", "0.15");
    Server::start(backend)
}

/// Pushes an OCI image of `blobs` (the first is the config) as `repo:tag` over HTTP, as
/// a client does: a blob that HEAD finds is not sent again, `mount_from` is tried before
/// an upload. The manifest digest once acknowledged, or the status and body of the
/// request that failed (status 0: no response).
fn push(
    server: &Server,
    repo: &str,
    tag: &str,
    blobs: &[Vec<u8>],
    mount_from: Option<&str>,
) -> Result<String, (u16, String)> {
    let http = server.http();
    let mut descriptors = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        let d = sha256_digest(b);
        let head = http
            .head(server.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .map_err(|e| (0, e.to_string()))?;
        let mut have = head.status().as_u16() == 200;
        if !have {
            if let Some(from) = mount_from {
                let r = http
                    .post(server.url(&format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}")))
                    .send()
                    .map_err(|e| (0, e.to_string()))?;
                let status = r.status().as_u16();
                have = status == 201;
                if !have && status != 202 {
                    return Err((status, r.text().unwrap_or_default()));
                }
            }
        }
        if !have {
            created(
                http.post(server.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
                    .header("Content-Type", "application/octet-stream")
                    .body(b.clone())
                    .send(),
            )?;
        }
        let media = if i == 0 {
            OCI_CONFIG
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        descriptors.push(json!({"mediaType": media, "digest": d, "size": b.len()}));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptors[0],
        "layers": descriptors[1..],
    }))
    .expect("manifest json");
    created(
        http.put(server.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send(),
    )?;
    Ok(sha256_digest(&manifest))
}

/// A request that was answered 201; otherwise the status (0 when no answer came) and the body.
fn created(sent: reqwest::Result<reqwest::blocking::Response>) -> Result<(), (u16, String)> {
    let r = sent.map_err(|e| (0, e.to_string()))?;
    let status = r.status().as_u16();
    if status != 201 {
        return Err((status, r.text().unwrap_or_default()));
    }
    Ok(())
}

/// `POST /api/v0/gc/runs` with `body` and `"wait": true`, retried while another run holds
/// the lease; the run record.
fn gc(server: &Server, mut body: Value) -> Value {
    body["wait"] = json!(true);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = server
            .http()
            .post(server.url("/api/v0/gc/runs"))
            .json(&body)
            .timeout(Duration::from_secs(300))
            .send()
            .expect("POST /api/v0/gc/runs");
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        match status {
            200 => {
                let run: Value = serde_json::from_str(&text).expect("run json");
                assert!(run["status"] == "finished", "GC run did not finish: {run}");
                return run;
            }
            409 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => panic!("POST /api/v0/gc/runs: {status} {text}"),
        }
    }
}

fn runs(server: &Server) -> Value {
    let r = server.get("/api/v0/gc/runs", None);
    r.expect(200);
    r.json()
}

/// A blob that no other test and no other push has.
fn fresh(rng: &mut Rng, n: usize) -> Vec<u8> {
    rng.bytes(n)
}

#[derive(Clone)]
struct Pushed {
    manifest: String,
    blobs: Vec<Vec<u8>>,
}

fn assert_pulls(server: &Server, repo: &str, tag: &str, p: &Pushed) {
    let m = server.manifest(repo, tag);
    assert_eq!(
        m.header("docker-content-digest").as_deref(),
        Some(p.manifest.as_str()),
        "{repo}:{tag}"
    );
    for b in &p.blobs {
        server.assert_blob(repo, &sha256_digest(b), b);
    }
}

/// What a write refused by a read-only run must say: the spec's `UNAVAILABLE` with the
/// reason and the start time.
fn assert_read_only_refusal(status: u16, body: &str) {
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{body}");
    let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("garbage collection is running in read-only mode since 20"),
        "{msg}"
    );
}

fn online_gc_under_load(backend: Backend) {
    gc_under_load(backend, "online")
}

fn read_only_gc(backend: Backend) {
    gc_under_load(backend, "read-only")
}

/// Must-show 1: three pushers push images sharing layers with deleted images, mount
/// across repositories, delete tags and push them again; two readers pull a set of images
/// all along and none of their reads may fail; GC runs over and over in `mode`. Online,
/// pushes go through (a push may lose a race only for a blob GC took between its HEAD and
/// its manifest). Read-only, every refused write is the 503 `UNAVAILABLE` saying GC runs,
/// and writes work again once the runs end. Either way every acknowledged image that is
/// still tagged pulls completely, a last run removes all the garbage, `berth fsck` is clean.
fn gc_under_load(backend: Backend, mode: &'static str) {
    let read_only = mode == "read-only";
    let server = Arc::new(start(backend));
    let mut rng = Rng::new();
    // Layers shared by many images, some of whose images get deleted.
    let shared: Arc<Vec<Vec<u8>>> = Arc::new((0..6).map(|_| fresh(&mut rng, 4096)).collect());
    // What the readers pull throughout: never deleted, sharing the layers above.
    let stable: Arc<Vec<(String, Pushed)>> = Arc::new(
        (0..3)
            .map(|i| {
                let blobs = vec![
                    fresh(&mut rng, 300),
                    shared[i].clone(),
                    fresh(&mut rng, 5000),
                ];
                let manifest = push(&server, "load/stable", &format!("s{i}"), &blobs, None)
                    .expect("push a stable image");
                (format!("s{i}"), Pushed { manifest, blobs })
            })
            .collect(),
    );
    let tagged: Arc<Mutex<BTreeMap<(String, String), Pushed>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));

    let collector = {
        let (server, done) = (server.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            let mut deleted = 0;
            while !done.load(Ordering::Relaxed) || n < 3 {
                // The configured grace (4 s): a run without grace cuts every push in
                // flight by design (safely: the model test races those).
                let run = gc(&server, json!({ "mode": mode }));
                assert_eq!(run["mode"], mode, "{run}");
                deleted += run["blobs_deleted"].as_u64().unwrap_or(0);
                n += 1;
                if read_only {
                    // Room for writes between the read-only windows (each lasts the
                    // 3 s settle plus the run).
                    std::thread::sleep(Duration::from_millis(4000));
                }
            }
            (n, deleted)
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (server, stable, done) = (server.clone(), stable.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    for (tag, p) in stable.iter() {
                        // Panics (and so fails the test) on any read that does not serve
                        // the exact bytes.
                        assert_pulls(&server, "load/stable", tag, p);
                        let r = server.get("/v2/load/stable/tags/list", None);
                        r.expect(200);
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    let pushers: Vec<_> = (0..3)
        .map(|t| {
            let (server, shared, tagged, deleted) = (
                server.clone(),
                shared.clone(),
                tagged.clone(),
                deleted.clone(),
            );
            let (acked, failed, refused) = (acked.clone(), failed.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new();
                let repo = format!("load/r{t}");
                let other = format!("load/r{}", (t + 1) % 3);
                for i in 0..30u64 {
                    std::thread::sleep(Duration::from_millis(150));
                    let tag = format!("t{}", rng.next_u64() % 3);
                    let mut blobs = vec![fresh(&mut rng, 300)];
                    blobs.push(shared[(rng.next_u64() % 6) as usize].clone());
                    blobs.push(shared[(rng.next_u64() % 6) as usize].clone());
                    blobs.dedup();
                    blobs.push(fresh(&mut rng, 2048));
                    let mount = (i % 3 == 0).then_some(other.as_str());
                    match push(&server, &repo, &tag, &blobs, mount) {
                        Ok(manifest) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            let old = tagged
                                .lock()
                                .unwrap()
                                .insert((repo.clone(), tag.clone()), Pushed { manifest, blobs });
                            if let Some(old) = old {
                                // Its own config and last layer are garbage now.
                                let mut d = deleted.lock().unwrap();
                                d.push(old.blobs[0].clone());
                                d.push(old.blobs[old.blobs.len() - 1].clone());
                            }
                        }
                        Err((503, body)) if read_only => {
                            assert_read_only_refusal(503, &body);
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err((status, body)) => {
                            // Online: allowed (a blob GC took between HEAD and the
                            // manifest), never for an acknowledged image; counted.
                            assert!(!read_only, "push {repo}:{tag}: {status} {body}");
                            eprintln!("push {repo}:{tag} refused: {status} {body}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if i % 5 == 4 {
                        let tag = format!("t{}", rng.next_u64() % 3);
                        let r = server
                            .http()
                            .delete(server.url(&format!("/v2/{repo}/manifests/{tag}")))
                            .send()
                            .expect("DELETE tag");
                        let status = r.status().as_u16();
                        if status == 202 {
                            if let Some(old) =
                                tagged.lock().unwrap().remove(&(repo.clone(), tag.clone()))
                            {
                                let mut d = deleted.lock().unwrap();
                                d.push(old.blobs[0].clone());
                                d.push(old.blobs[old.blobs.len() - 1].clone());
                            }
                        } else if status == 503 && read_only {
                            assert_read_only_refusal(503, &r.text().unwrap_or_default());
                            refused.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // Only a tag this repository never had may be missing.
                            assert_eq!(status, 404, "DELETE {repo}:{tag}");
                        }
                    }
                }
            })
        })
        .collect();
    for p in pushers {
        p.join().expect("pusher");
    }
    done.store(true, Ordering::Relaxed);
    let (gc_runs, gc_deleted) = collector.join().expect("collector");
    let reads: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    let acked = acked.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "{mode}: {acked} pushes acknowledged, {refused} writes refused as read-only, {} failed; \
         {reads} reads, all served; {gc_runs} GC runs deleted {gc_deleted} blobs meanwhile",
        failed.load(Ordering::Relaxed)
    );
    assert!(gc_runs >= 3);
    if read_only {
        assert!(
            refused > 0,
            "no write was refused during {gc_runs} read-only runs"
        );
        // How many fit between the windows depends on the machine (10-20 of 90 on
        // PostgreSQL + S3 with 2 cores); some must, and once the runs end every write works.
        assert!(
            acked >= 3,
            "too few pushes between the read-only runs: {acked} of 90"
        );
        let mut rng = Rng::new();
        let blobs = vec![fresh(&mut rng, 300), fresh(&mut rng, 2048)];
        // Each replica follows the shared flag with a 1 s poll.
        let deadline = Instant::now() + Duration::from_secs(5);
        let manifest = loop {
            match push(&server, "load/after", "t", &blobs, None) {
                Ok(m) => break m,
                Err((503, body)) if Instant::now() < deadline => {
                    assert_read_only_refusal(503, &body);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("a push once the read-only runs have ended: {e:?}"),
            }
        };
        assert_pulls(&server, "load/after", "t", &Pushed { manifest, blobs });
    } else {
        assert!(acked >= 80, "too few pushes succeeded: {acked} of 90");
    }

    let tagged = tagged.lock().unwrap().clone();
    for ((repo, tag), p) in &tagged {
        assert_pulls(&server, repo, tag, p);
    }
    // A last run without grace: everything deletable goes.
    let last = gc(&server, json!({ "mode": mode, "grace": "0s" }));
    eprintln!("last run: {last}");
    for ((repo, tag), p) in &tagged {
        assert_pulls(&server, repo, tag, p);
    }
    for (tag, p) in stable.iter() {
        assert_pulls(&server, "load/stable", tag, p);
    }
    for b in deleted.lock().unwrap().iter() {
        let d = sha256_digest(b);
        for r in 0..3 {
            let resp = server.head(&format!("/v2/load/r{r}/blobs/{d}"), None);
            assert_eq!(resp.status, 404, "garbage {d} still served by load/r{r}");
        }
    }
    // Writes work again once the runs have ended (every replica's watcher clears the
    // read-only flag within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = vec![fresh(&mut rng, 200), fresh(&mut rng, 300)];
        match push(&server, "load/after", "v1", &again, None) {
            Ok(_) => break,
            Err((503, body)) if read_only && Instant::now() < deadline => {
                assert_read_only_refusal(503, &body);
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("write after the runs: {e:?}"),
        }
    }
    server.fsck();
    let total: u64 = runs(&server)["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["blobs_deleted"].as_u64().unwrap_or(0))
        .sum();
    assert!(total > 0, "no GC run deleted anything");
}

fn crash_during_sweep(backend: Backend) {
    let mut server = start(backend);
    let mut rng = Rng::new();
    let keep = vec![fresh(&mut rng, 200), fresh(&mut rng, 3000)];
    let kept = Pushed {
        manifest: push(&server, "crash/app", "v1", &keep, None).expect("push"),
        blobs: keep,
    };
    // Blobs uploaded and never referenced: garbage for a run without grace.
    let garbage: Vec<Vec<u8>> = (0..1600).map(|_| fresh(&mut rng, 64)).collect();
    let server_ref = &server;
    std::thread::scope(|s| {
        for chunk in garbage.chunks(400) {
            s.spawn(move || {
                for b in chunk {
                    server_ref.push_blob("crash/junk", b);
                }
            });
        }
    });
    let r = server
        .http()
        .post(server.url("/api/v0/gc/runs"))
        // Half pace: the run rests as long as each batch took, so the kill lands in the
        // middle of the blob batches even on a slow machine, and it gets there sooner
        // than at the default pace (links first, blob batches after).
        .json(&json!({ "grace": "0s", "pace": 0.5 }))
        .send()
        .expect("start");
    assert_eq!(r.status().as_u16(), 202);
    // Kill once the run has deleted some blobs and is still going.
    let deadline = Instant::now() + Duration::from_secs(240);
    let at_kill = loop {
        let st = runs(&server);
        let run = st["runs"][0].clone();
        if run["status"] == "running" && run["blobs_deleted"].as_u64().unwrap_or(0) > 0 {
            break run;
        }
        assert!(
            run["status"] == "running" || run.is_null(),
            "the run ended before it could be killed: {run}"
        );
        assert!(Instant::now() < deadline, "the run made no progress: {st}");
        std::thread::sleep(Duration::from_millis(2));
    };
    server.restart();
    eprintln!("killed during {at_kill}");
    let after = runs(&server);
    assert_eq!(
        after["runs"][0]["status"], "running",
        "the killed run's record"
    );
    // The dead process's lease still stands until it expires (30 s); the next run waits
    // for it (`gc` retries while the API answers 409), then finishes the tombstones.
    let next = gc(&server, json!({ "grace": "0s" }));
    let listed = runs(&server);
    assert_eq!(listed["runs"][1]["status"], "interrupted", "{listed}");
    let total = at_kill["blobs_deleted"].as_u64().unwrap_or(0)
        + next["blobs_deleted"].as_u64().unwrap_or(0);
    assert!(
        total >= 1600,
        "the two runs deleted {total} of 1600 garbage blobs"
    );
    assert_pulls(&server, "crash/app", "v1", &kept);
    for b in garbage.iter().step_by(97) {
        let d = sha256_digest(b);
        assert_eq!(
            server
                .head(&format!("/v2/crash/junk/blobs/{d}"), None)
                .status,
            404
        );
    }
    server.fsck();
}

fn docker_during_gc(backend: Backend) {
    let server = Arc::new(start(backend));
    let env = ClientEnv::new();
    let (user, password) = server.admin_creds();
    env.docker_login(&server.host, user, password);
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (server, done) = (server.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                gc(&server, json!({}));
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            n
        })
    };
    let app = Image::random(3, 64, "amd64");
    let mut layers = app.layers[..2].to_vec();
    layers.push(Layer::random(&mut Rng::new(), "extra", 1, 64 * 1024));
    let tool = Image::from_layers(layers, "amd64");
    let app_ref = server.reference("gc/app:v1");
    let tool_ref = server.reference("gc/tool:v1");
    for (image, reference, file) in [(&app, &app_ref, "app.tar"), (&tool, &tool_ref, "tool.tar")] {
        env.docker_load(image, reference, file);
    }
    for round in 0..4 {
        run_ok(env.docker().args(["push", &app_ref]), CLIENT_TIMEOUT);
        run_ok(env.docker().args(["push", &tool_ref]), CLIENT_TIMEOUT);
        // Untag app: its own layer becomes garbage while tool still shares two.
        let r = server
            .http()
            .delete(server.url("/v2/gc/app/manifests/v1"))
            .send()
            .expect("delete tag");
        assert_eq!(r.status().as_u16(), 202, "round {round}");
        // Let GC see it old enough (grace 4 s) before pushing it again.
        std::thread::sleep(Duration::from_secs(5));
        run_ok(env.docker().args(["push", &app_ref]), CLIENT_TIMEOUT);
        run_ok(
            env.docker().args(["rmi", &app_ref, &tool_ref]),
            CLIENT_TIMEOUT,
        );
        run_ok(env.docker().args(["pull", &app_ref]), CLIENT_TIMEOUT);
        run_ok(env.docker().args(["pull", &tool_ref]), CLIENT_TIMEOUT);
    }
    done.store(true, Ordering::Relaxed);
    let n = collector.join().expect("collector");
    eprintln!("{n} GC runs while Docker pushed and pulled");
    assert!(n >= 2);
    let _ = berth_testkit::clients::run(
        env.docker().args(["rmi", &app_ref, &tool_ref]),
        CLIENT_TIMEOUT,
    );
    server.fsck();
}

fn api_and_schedule(backend: Backend) {
    let server = start(backend);
    server.get_anon("/api/v0/gc/runs", None).expect(401);
    server.create_user("gcbob", "bob-password-1");
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let bob = server.request_as(method, "/api/v0/gc/runs", "gcbob", "bob-password-1");
        assert_eq!(bob.status, 403, "{}: {}", bob.what, bob.text());
    }
    for body in [
        json!({ "pace": 0 }),
        json!({ "pace": 1.5 }),
        json!({ "grace": "soon" }),
        json!({ "mode": "paused" }),
        json!({ "unknown": true }),
        // The document's forms only: an object, one number and one unit.
        json!([]),
        json!({ "grace": "1h 30m" }),
    ] {
        let r = server
            .http()
            .post(server.url("/api/v0/gc/runs"))
            .json(&body)
            .send()
            .expect("post");
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let v: Value = r.json().expect("error envelope");
        assert!(v["errors"][0]["code"].is_string(), "{body}: {v}");
    }

    let put_schedule = |schedule: Value| {
        server
            .http()
            .put(server.url("/api/v0/gc/schedule"))
            .json(&json!({ "schedule": schedule }))
            .send()
            .expect("put")
    };
    let bad = put_schedule(json!("every day"));
    assert_eq!(bad.status().as_u16(), 400);
    let set = put_schedule(json!("*/2 * * * * *"));
    assert_eq!(set.status().as_u16(), 200);
    let v: Value = set.json().expect("json");
    assert_eq!(v["source"], "api");
    assert!(
        v["next_run"].as_str().is_some_and(|s| s.starts_with("20")),
        "{v}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let scheduled = loop {
        let st = runs(&server);
        if let Some(r) = st["runs"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["started_by"] == "schedule").cloned())
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no scheduled run: {st}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(scheduled["mode"], "online");
    let cleared = put_schedule(Value::Null);
    assert_eq!(cleared.status().as_u16(), 200);
    let v: Value = cleared.json().expect("json");
    assert_eq!(v["schedule"], Value::Null);

    let cs = server.get("/api/v0/meta/cluster_status", None);
    cs.expect(200);
    let gc_status = &cs.json()["gc"];
    assert!(gc_status["running"].is_boolean(), "{gc_status}");
    assert!(gc_status["last_run"]["id"].is_number(), "{gc_status}");
    // The schedule's job lease is held by this replica, and said so twice.
    let cs = cs.json();
    let me = cs["this_replica"].as_str().expect("this_replica");
    let schedule = cs["leases"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["job"] == "gc-schedule"))
        .unwrap_or_else(|| panic!("no gc-schedule lease: {cs}"));
    assert_eq!(schedule["holder"], me, "{cs}");
    assert_eq!(schedule["live"], true, "{cs}");
    assert!(
        cs["replicas"][0]["leases"]
            .as_array()
            .is_some_and(|a| a.iter().any(|j| j == "gc-schedule")),
        "{cs}"
    );
    let metrics = server.get("/metrics", None).text();
    assert!(metrics.contains("berth_gc_runs_total"), "no GC metrics");
    assert!(metrics.contains("berth_gc_running"), "no GC running gauge");
}

/// An upload session left half way (6 MiB: an S3 multipart upload exists) is purged with
/// its data once older than the upload age; a live one is not.
fn abandoned_uploads_purged(backend: Backend) {
    let server = start(backend);
    let mut rng = Rng::new();
    let open_session = |data: Vec<u8>| -> String {
        let r = server
            .http()
            .post(server.url("/v2/gc/uploads/blobs/uploads/"))
            .send()
            .expect("POST upload");
        assert_eq!(r.status().as_u16(), 202);
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            server.url(&location)
        };
        let len = data.len();
        let r = server
            .http()
            .patch(&url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("0-{}", len - 1))
            .body(data)
            .send()
            .expect("PATCH");
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap_or_default());
        url
    };
    let abandoned = open_session(rng.bytes(6 * 1024 * 1024));
    std::thread::sleep(Duration::from_millis(2500));
    let live = open_session(rng.bytes(1000));
    let run = gc(&server, json!({ "upload_max_age": "2s" }));
    assert_eq!(run["uploads_purged"], 1, "{run}");
    let gone = server.http().get(&abandoned).send().expect("GET upload");
    assert_eq!(gone.status().as_u16(), 404, "the abandoned session");
    let kept = server.http().get(&live).send().expect("GET upload");
    assert_eq!(kept.status().as_u16(), 204, "the live session");
    server.fsck();
}
