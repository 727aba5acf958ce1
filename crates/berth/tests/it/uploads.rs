//! Upload integrity under concurrency (issue 10, item 2), on both store pairs (and, on
//! PostgreSQL + S3, across two replicas): a request racing another on the same upload
//! session never rewrites acknowledged bytes, nothing is committed under a digest its bytes
//! do not hash to, and a deduplicating commit never trusts bytes it did not verify.

use berth_testkit::e2e::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

both_backends!(
    racing_patch_keeps_acknowledged_bytes,
    concurrent_upload_stress,
    sha512_chunked_upload
);

/// A client that opens a connection per request: a request refused before its body was
/// read (a busy session) makes the server close the connection, which a pooled client
/// would otherwise try to reuse.
fn client(server: &Server) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&server.basic()).expect("header"),
    );
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .default_headers(headers)
        .build()
        .expect("client")
}

fn open_upload(server: &Server, repo: &str) -> String {
    let r = client(server)
        .post(server.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202, "POST: {:?}", r.text());
    path_of(r.headers()["location"].to_str().expect("location"))
}

/// Sends a PATCH's headers (the whole `body` announced) and the first `send` bytes, and
/// leaves the request in flight.
fn start_patch(server: &Server, loc: &str, body: &[u8], send: usize) -> TcpStream {
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Range: 0-{}\r\nConnection: close\r\n",
        body.len() - 1
    );
    let s = start_request(&server.host, &server.basic(), &head, body, send);
    // Let the server take the request in and start writing it.
    std::thread::sleep(Duration::from_millis(700));
    s
}

/// Sends the rest of the body and returns the response's status.
fn finish_patch(mut s: TcpStream, body: &[u8], sent: usize) -> u16 {
    s.write_all(&body[sent..]).expect("rest of body");
    s.flush().unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

fn patch_status(server: &Server, loc: &str, data: &[u8], offset: usize) -> u16 {
    patch_chunk(&client(server), server.url(loc), data, offset)
        .send()
        .expect("PATCH")
        .status()
        .as_u16()
}

fn put_status(server: &Server, loc: &str, digest: &str) -> u16 {
    let sep = if loc.contains('?') { '&' } else { '?' };
    client(server)
        .put(server.url(&format!("{loc}{sep}digest={digest}")))
        .send()
        .expect("PUT")
        .status()
        .as_u16()
}

fn blob_bytes(server: &Server, repo: &str, digest: &str) -> Vec<u8> {
    let r = server.get(&format!("/v2/{repo}/blobs/{digest}"), None);
    assert_eq!(r.status, 200, "GET blob {digest}");
    r.body
}

/// The replica a second request goes to: another process on the same stores when the
/// backend is shared, else the same server.
fn second(server: &Server) -> Option<Server> {
    (server.backend == Backend::Scaled).then(|| server.replica())
}

/// A PATCH that arrives while another PATCH of the same session is still writing (from
/// the same stale offset) is refused before it writes a byte; the first one's bytes are
/// the ones acknowledged, committed and served, and a later push of the same digest from
/// another repository deduplicates onto correct bytes. Once with a shorter racing body
/// (before the fix: acknowledged bytes lost, the session answering 500), once with a
/// longer one (before the fix: a blob committed under a digest its bytes do not match).
fn racing_patch_keeps_acknowledged_bytes(backend: Backend) {
    let server = Server::start(backend);
    let replica = second(&server);
    let other = replica.as_ref().unwrap_or(&server);
    let mut rng = Rng::new();
    let repo = format!("race/{}", unique());
    for racer_len in [64 * 1024, 3 * 1024 * 1024] {
        let first = rng.bytes(1024 * 1024);
        let racer = rng.bytes(racer_len);
        let loc = open_upload(&server, &repo);
        let half = first.len() / 2;
        let slow = start_patch(&server, &loc, &first, half);
        // The racer, from the same offset 0, while the first is half way.
        let racer_status = std::thread::scope(|s| {
            let r = s.spawn(|| patch_status(other, &loc, &racer, 0));
            std::thread::sleep(Duration::from_millis(500));
            let first_status = finish_patch(slow, &first, half);
            assert_eq!(first_status, 202, "the first PATCH is acknowledged");
            r.join().expect("racer")
        });
        assert_eq!(
            racer_status, 416,
            "the racing PATCH does not continue where the session stands"
        );
        let d = sha256_digest(&first);
        assert_eq!(
            put_status(other, &loc, &d),
            201,
            "the session still holds the acknowledged bytes"
        );
        assert_eq!(
            blob_bytes(&server, &repo, &d),
            first,
            "served bytes are the acknowledged ones"
        );
        // Another tenant pushing the same content deduplicates onto correct bytes.
        let repo2 = format!("tenant/{}", unique());
        let r = client(&server)
            .post(server.url(&format!("/v2/{repo2}/blobs/uploads/?digest={d}")))
            .body(first.clone())
            .send()
            .expect("POST");
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(blob_bytes(other, &repo2, &d), first);
    }
    // Two PUTs completing one session at once: one commits, the other is refused.
    let data = rng.bytes(200_000);
    let d = sha256_digest(&data);
    let loc = open_upload(&server, &repo);
    assert_eq!(patch_status(&server, &loc, &data, 0), 202);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let srv = if i % 2 == 0 { &server } else { other };
                let (loc, d) = (&loc, &d);
                s.spawn(move || put_status(srv, loc, d))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("put")).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "exactly one PUT commits: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [201, 404, 416].contains(s)),
        "the others are refused: {statuses:?}"
    );
    assert_eq!(blob_bytes(&server, &repo, &d), data);
    server.fsck();
}

/// What one session slot of the stress test uploads.
struct Slot {
    repo: String,
    content: usize,
    loc: Option<String>,
}

/// Many workers PATCH (mostly the right bytes, sometimes junk, with racing offsets), PUT,
/// DELETE and monolithically push the same few contents on the same sessions, on two
/// replicas where the backend allows; no request answers 5xx, every blob a PUT or POST
/// committed is served with bytes that hash to its digest, and `berth fsck` (which hashes
/// every stored blob) is clean.
fn concurrent_upload_stress(backend: Backend) {
    const WORKERS: usize = 8;
    const OPS: usize = 50;
    let server = Server::start(backend);
    let replica = second(&server);
    let servers: Vec<&Server> = match &replica {
        Some(r) => vec![&server, r],
        None => vec![&server],
    };
    let mut rng = Rng::new();
    let contents: Vec<Vec<u8>> = [150_000, 400_000, 90_000]
        .iter()
        .map(|&n| rng.bytes(n))
        .collect();
    let digests: Vec<String> = contents.iter().map(|c| sha256_digest(c)).collect();
    let repos: Vec<String> = (0..2).map(|i| format!("stress{i}/{}", unique())).collect();
    let slots: Vec<Mutex<Slot>> = (0..6)
        .map(|i| {
            Mutex::new(Slot {
                repo: repos[i % 2].clone(),
                content: i % contents.len(),
                loc: None,
            })
        })
        .collect();
    let committed: Arc<Mutex<BTreeMap<(String, String), usize>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (servers, contents, digests, slots, committed, bad) =
                (&servers, &contents, &digests, &slots, &committed, &bad);
            let repos = &repos;
            s.spawn(move || {
                let mut rng = Rng::new();
                for _ in 0..OPS {
                    let srv = servers[(rng.next_u64() as usize) % servers.len()];
                    let slot_i = (rng.next_u64() as usize) % slots.len();
                    let (repo, content, loc) = {
                        let mut slot = slots[slot_i].lock().unwrap();
                        if slot.loc.is_none() {
                            slot.loc = Some(open_upload(srv, &slot.repo));
                        }
                        (slot.repo.clone(), slot.content, slot.loc.clone().unwrap())
                    };
                    let data = &contents[content];
                    let digest = &digests[content];
                    let dice = rng.next_u64() % 100;
                    let status = if dice < 55 {
                        // PATCH from the offset the session reports (racing other workers).
                        let r = client(srv)
                            .get(srv.url(&loc))
                            .send()
                            .expect("upload status");
                        if r.status().as_u16() != 204 {
                            slots[slot_i].lock().unwrap().loc = None;
                            continue;
                        }
                        let range = r.headers()["range"].to_str().unwrap().to_string();
                        let end: usize = range.trim_start_matches("0-").parse().unwrap();
                        // Chunks are at least 2 bytes, so "0-0" means offset 0.
                        let offset = if end == 0 { 0 } else { end + 1 };
                        if offset + 2 > data.len() {
                            put_status(srv, &loc, digest)
                        } else {
                            let len =
                                (2 + (rng.next_u64() as usize) % 60_000).min(data.len() - offset);
                            let chunk = if rng.next_u64().is_multiple_of(10) {
                                rng.bytes(len)
                            } else {
                                data[offset..offset + len].to_vec()
                            };
                            patch_status(srv, &loc, &chunk, offset)
                        }
                    } else if dice < 80 {
                        let st = put_status(srv, &loc, digest);
                        if st == 201 {
                            *committed
                                .lock()
                                .unwrap()
                                .entry((repo.clone(), digest.clone()))
                                .or_default() += 1;
                        }
                        st
                    } else if dice < 90 {
                        let st = client(srv)
                            .delete(srv.url(&loc))
                            .send()
                            .expect("DELETE")
                            .status()
                            .as_u16();
                        slots[slot_i].lock().unwrap().loc = None;
                        st
                    } else {
                        // Another tenant pushing the same content in one request.
                        let other = &repos[(slot_i + 1) % repos.len()];
                        let st = client(srv)
                            .post(srv.url(&format!("/v2/{other}/blobs/uploads/?digest={digest}")))
                            .body(data.clone())
                            .send()
                            .expect("POST")
                            .status()
                            .as_u16();
                        if st == 201 {
                            *committed
                                .lock()
                                .unwrap()
                                .entry((other.clone(), digest.clone()))
                                .or_default() += 1;
                        }
                        st
                    };
                    if status >= 500 {
                        bad.lock()
                            .unwrap()
                            .push(format!("worker {w}: {status} on {loc}"));
                    }
                    if matches!(status, 201 | 404) {
                        let mut slot = slots[slot_i].lock().unwrap();
                        if slot.loc.as_deref() == Some(&loc) {
                            slot.loc = None;
                        }
                    }
                }
            });
        }
    });
    let bad = bad.lock().unwrap();
    assert!(bad.is_empty(), "server errors: {bad:?}");
    let committed = committed.lock().unwrap();
    assert!(!committed.is_empty(), "the stress test committed nothing");
    for (repo, digest) in committed.keys() {
        let i = digests.iter().position(|d| d == digest).expect("known");
        let got = blob_bytes(&server, repo, digest);
        assert_eq!(
            sha256_digest(&got),
            *digest,
            "{repo}@{digest} hashes to its name"
        );
        assert_eq!(got, contents[i]);
    }
    eprintln!(
        "stress: {} (repository, digest) pairs committed, {} commits",
        committed.len(),
        committed.values().sum::<usize>()
    );
    server.fsck();
}

/// A chunked upload completed with a `sha512:` digest (issue 10, item 20), with and
/// without `?digest-algorithm=sha512` on the POST, over 5 MiB so that S3 stages a part.
fn sha512_chunked_upload(backend: Backend) {
    use sha2::Digest as _;
    let server = Server::start(backend);
    let mut rng = Rng::new();
    let repo = format!("sha512/{}", unique());
    let data = rng.bytes(6 * 1024 * 1024 + 17);
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    for query in ["?digest-algorithm=sha512", ""] {
        let r = client(&server)
            .post(server.url(&format!("/v2/{repo}/blobs/uploads/{query}")))
            .send()
            .expect("POST");
        assert_eq!(r.status().as_u16(), 202);
        let loc = path_of(r.headers()["location"].to_str().expect("location"));
        let half = data.len() / 2;
        assert_eq!(patch_status(&server, &loc, &data[..half], 0), 202);
        assert_eq!(patch_status(&server, &loc, &data[half..], half), 202);
        assert_eq!(put_status(&server, &loc, &d), 201, "POST{query}");
        assert_eq!(blob_bytes(&server, &repo, &d), data);
    }
    server.fsck();
}
