//! Three replicas on one PostgreSQL database and one S3 bucket: what one replica changes is
//! served by the others within the documented bound (`core::access::IDENTITY_CHECK`, one
//! second), for passwords (Basic), bearer tokens already issued, and anonymous callers. A
//! password changed on A is refused on B and C; a user deactivated on A loses access on
//! every replica, with the bearer token it already holds too; a repository made private on
//! B is invisible anonymously on C, with an anonymous token fetched while it was public
//! too. Each delay is measured and printed. Login failures spread over replicas meet one
//! limit. Behind nginx (round-robin), the Docker engine,
//! skopeo and crane push and pull, a chunked upload spans all three, and pushes survive a
//! replica killed in their middle.

use berth_testkit::e2e::*;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

const PW: &str = "replica-user-password-1";
const NEW_PW: &str = "replica-user-password-2";

/// The documented bound plus a poll's slack.
const BOUND: Duration = Duration::from_millis(2500);

/// Polls `check` on each of `servers` at once until each answers `want`, at most
/// [`BOUND`]; how long after the change the first request that saw it was sent (the last
/// of the servers'): a request's own time (a password hashed) is not the change's delay.
fn within(
    what: &str,
    servers: &[&Server],
    want: u16,
    check: impl Fn(&Server) -> u16 + Sync,
) -> Duration {
    let t = Instant::now();
    let took = std::thread::scope(|scope| {
        let polls: Vec<_> = servers
            .iter()
            .map(|s| {
                let check = &check;
                scope.spawn(move || loop {
                    let sent = t.elapsed();
                    let got = check(s);
                    if got == want {
                        return sent;
                    }
                    assert!(
                        sent < BOUND,
                        "{what}: {} still answers {got} {sent:?} after the change",
                        s.host
                    );
                    std::thread::sleep(Duration::from_millis(20));
                })
            })
            .collect();
        polls
            .into_iter()
            .map(|p| p.join().expect("poll"))
            .max()
            .unwrap_or_default()
    });
    eprintln!("{what}: applied on every other replica after {took:?}");
    took
}

/// A bearer token for `scope` from `server`'s token service (`user` with `password`, or
/// anonymous).
fn token(server: &Server, scope: &str, creds: Option<(&str, &str)>) -> String {
    let url = server.url(&format!("/auth/token?service=berth&scope={scope}"));
    let mut req = server.http_anon().get(url);
    if let Some((u, p)) = creds {
        req = req.header("Authorization", basic_auth(u, p));
    }
    let r = req.send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn status(server: &Server, path: &str, auth: Option<String>) -> u16 {
    let mut req = server.http_anon().get(server.url(path));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().unwrap().status().as_u16()
}

fn api(server: &Server, method: Method, path: &str, auth: &str, body: serde_json::Value) -> u16 {
    let r = server
        .http_anon()
        .request(method, server.url(path))
        .header("Authorization", auth)
        .json(&body)
        .send()
        .unwrap();
    let code = r.status().as_u16();
    assert!(code < 300, "{path}: {code} {:?}", r.text());
    code
}

#[test]
fn changes_on_one_replica_apply_on_the_others_within_the_bound() {
    let a = Server::start(Backend::Scaled);
    let b = a.replica();
    let c = a.replica();
    a.admin_ok(&["org", "create", "acme"], None);
    a.create_user("dev", PW);
    a.admin_ok(&["team", "create", "acme", "devs"], None);
    a.admin_ok(&["team", "add", "acme", "devs", "dev"], None);
    let grant = [
        "team",
        "grant",
        "acme",
        "devs",
        "--namespace",
        "--role",
        "read-only",
    ];
    a.admin_ok(&grant, None);
    let image = Image::random(1, 1, "amd64");
    a.push_blob("acme/app", &image.config);
    a.push_blob("acme/app", &image.layers[0].gz);
    a.push_manifest("acme/app", "v1", &image.manifest);
    let tags = "/v2/acme/app/tags/list";
    let bearer = |t: &str| Some(format!("Bearer {t}"));

    // A password changed on A: the old one is refused on B and C.
    for s in [&b, &c] {
        assert_eq!(status(s, tags, Some(basic_auth("dev", PW))), 200);
    }
    api(
        &a,
        Method::PUT,
        "/api/v0/users/dev/password",
        &basic_auth("dev", PW),
        json!({"current_password": PW, "new_password": NEW_PW}),
    );
    within("password change", &[&b, &c], 401, |s| {
        status(s, tags, Some(basic_auth("dev", PW)))
    });
    assert_eq!(status(&b, tags, Some(basic_auth("dev", NEW_PW))), 200);

    // A user deactivated on A: refused everywhere, with the bearer token issued before.
    let held = token(&c, "repository:acme/app:pull", Some(("dev", NEW_PW)));
    for s in [&b, &c] {
        assert_eq!(status(s, tags, bearer(&held)), 200);
    }
    api(
        &a,
        Method::PATCH,
        "/api/v0/users/dev",
        &a.basic(),
        json!({"active": false}),
    );
    within("deactivation (Basic)", &[&b, &c], 401, |s| {
        status(s, tags, Some(basic_auth("dev", NEW_PW)))
    });
    within("deactivation (bearer token)", &[&b, &c], 401, |s| {
        status(s, tags, bearer(&held))
    });

    // A repository made private on B: invisible anonymously on C, with an anonymous token
    // fetched while it was public too.
    let public = json!({"visibility": "public"});
    api(
        &b,
        Method::PATCH,
        "/api/v0/repositories/acme%2Fapp",
        &a.basic(),
        public,
    );
    within("made public", &[&c], 200, |s| status(s, tags, None));
    let anonymous = token(&c, "repository:acme/app:pull", None);
    assert_eq!(status(&c, tags, bearer(&anonymous)), 200);
    let private = json!({"visibility": "private"});
    api(
        &b,
        Method::PATCH,
        "/api/v0/repositories/acme%2Fapp",
        &a.basic(),
        private,
    );
    within("made private (anonymous)", &[&c, &a], 401, |s| {
        status(s, tags, None)
    });
    within("made private (anonymous token)", &[&c, &a], 401, |s| {
        status(s, tags, bearer(&anonymous))
    });

    // Login failures count on every replica: ten wrong passwords spread over A and B stop
    // the account from this source on all three, the right password included.
    a.create_user("target", PW);
    for i in 0..10 {
        let s = if i % 2 == 0 { &a } else { &b };
        let wrong = Some(basic_auth("target", "not-the-password"));
        assert_eq!(status(s, "/v2/", wrong), 401, "attempt {i}");
    }
    for s in [&a, &b, &c] {
        assert_eq!(
            status(s, "/v2/", Some(basic_auth("target", PW))),
            429,
            "{}",
            s.host
        );
    }
}

/// Three replicas behind nginx (round-robin, no stickiness): crane, skopeo and the Docker
/// engine push and pull through it; a chunked upload whose requests land on all three
/// completes; replica B killed with SIGKILL in the middle of pushes: every push completes
/// or fails cleanly and succeeds when retried; every acknowledged image is served whole by
/// each surviving replica.
#[test]
fn three_replicas_behind_nginx_serve_every_client() {
    let a = Server::start(Backend::Scaled);
    let mut b = a.replica();
    let c = a.replica();
    let lb = Nginx::start(&[&a.host, &b.host, &c.host]);
    let (admin, password) = a.admin_creds();
    let env = ClientEnv::new();
    env.crane_login(&lb.host, admin, password);
    let at = |repo_tag: &str| format!("{}/{repo_tag}", lb.host);
    let mut pushed: Vec<(String, Image)> = Vec::new();

    // crane: an OCI layout pushed and read back through nginx.
    let image = Image::random(2, 64, "amd64");
    let layout = env.image_layout("crane", &[(&image, "v1")]);
    run_ok(
        env.crane()
            .arg("--insecure")
            .arg("push")
            .arg(&layout)
            .arg(at("lb/crane:v1")),
        CLIENT_TIMEOUT,
    );
    let digest = run_ok(
        env.crane()
            .args(["--insecure", "digest", &at("lb/crane:v1")]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(digest.stdout.trim(), image.manifest_digest);
    pushed.push(("lb/crane".into(), image));

    // skopeo: a copy in and a copy out.
    let image = Image::random(1, 64, "amd64");
    let layout = env.image_layout("skopeo", &[(&image, "v1")]);
    let creds = a.creds();
    env.skopeo_copy(
        &creds,
        &[],
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}", at("lb/skopeo:v1")),
    );
    let back = env.path("skopeo-back");
    env.skopeo_copy(
        &creds,
        &[],
        &format!("docker://{}", at("lb/skopeo:v1")),
        &format!("oci:{}:v1", back.display()),
    );
    pushed.push(("lb/skopeo".into(), image));

    // The Docker engine: push, remove, pull.
    env.docker_login(&lb.host, admin, password);
    let image = Image::random(1, 64, "amd64");
    let reference = at("lb/docker:v1");
    env.docker_load(&image, &reference, "docker.tar");
    run_ok(env.docker().args(["push", &reference]), CLIENT_TIMEOUT);
    run_ok(env.docker().args(["rmi", &reference]), CLIENT_TIMEOUT);
    run_ok(env.docker().args(["pull", &reference]), CLIENT_TIMEOUT);

    // A chunked upload: POST, three PATCHes and the PUT, each to the next replica.
    let data: Vec<u8> = (0..3 * 65536u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&data);
    let http = a.http();
    let r = http
        .post(format!("http://{}/v2/lb/chunked/blobs/uploads/", lb.host))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_string();
    for (i, chunk) in data.chunks(65536).enumerate() {
        let start = i * 65536;
        let url = if location.starts_with("http") {
            location.clone()
        } else {
            format!("http://{}{location}", lb.host)
        };
        let r = http
            .patch(url)
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "chunk {i}");
        location = r.headers()["location"].to_str().unwrap().to_string();
    }
    let url = if location.starts_with("http") {
        location.clone()
    } else {
        format!("http://{}{location}", lb.host)
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{url}{sep}digest={digest}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    let upstreams: std::collections::BTreeSet<String> = lb
        .access_log()
        .lines()
        .filter(|l| l.contains("/v2/lb/chunked/blobs/uploads/"))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect();
    assert_eq!(
        upstreams.len(),
        3,
        "the upload's requests went to {upstreams:?}"
    );
    for s in [&a, &b, &c] {
        s.assert_blob("lb/chunked", &digest, &data);
    }

    // B killed in the middle of pushes: each push completes, or fails and succeeds when
    // pushed again.
    let images: Vec<Image> = (0..6).map(|_| Image::random(2, 256, "amd64")).collect();
    let mut retried = 0;
    std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(400));
            b.kill();
        });
        for (i, image) in images.iter().enumerate() {
            let layout = env.image_layout(&format!("kill-{i}"), &[(image, "v1")]);
            let push = || {
                run(
                    env.crane()
                        .arg("--insecure")
                        .arg("push")
                        .arg(&layout)
                        .arg(at(&format!("lb/kill-{i}:v1"))),
                    CLIENT_TIMEOUT,
                )
            };
            if !push().status.success() {
                retried += 1;
                let again = push();
                assert!(again.status.success(), "push {i} again: {}", again.stderr);
            }
        }
        killer.join().unwrap();
    });
    eprintln!(
        "pushes while B was killed: {} of {} retried",
        retried,
        images.len()
    );
    for (i, image) in images.into_iter().enumerate() {
        pushed.push((format!("lb/kill-{i}"), image));
    }
    for (repo, image) in &pushed {
        for s in [&a, &c] {
            s.assert_has_image(repo, image);
        }
    }
}
