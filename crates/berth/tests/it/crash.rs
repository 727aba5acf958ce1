//! Crash safety: the server is killed with SIGKILL while a request body is still arriving —
//! half way through a large chunk of a chunked upload, and half way through a manifest PUT.
//! After a restart nothing half-written is visible, the upload resumes from its last
//! acknowledged offset, everything acknowledged before the crash is intact, and `berth fsck`
//! is clean. Runs on both store pairs.

use berth_testkit::e2e::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

both_backends!(killed_mid_chunk_and_mid_manifest);

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 8 * MIB;

/// Sends request headers (with the administrator's credentials) and the first `send` bytes
/// of a `body` that the headers announce whole, and leaves the connection open: a request
/// in flight when the crash comes.
fn send_part(server: &Server, head: &str, body: &[u8], send: usize) -> TcpStream {
    let s = start_request(&server.host, &server.basic(), head, body, send);
    // Give the server time to take in what was sent (and write it to the stores).
    std::thread::sleep(Duration::from_millis(500));
    s
}

fn patch(server: &Server, loc: &str, data: &[u8], offset: usize) -> String {
    let r = patch_chunk(server.http(), server.url(loc), data, offset)
        .send()
        .expect("PATCH");
    assert_eq!(
        r.status().as_u16(),
        202,
        "PATCH at {offset}: {:?}",
        r.text()
    );
    path_of(r.headers()["location"].to_str().unwrap())
}

fn manifest_for(config: &str, layer: &str, layer_size: usize) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#
    )
    .into_bytes()
}

fn killed_mid_chunk_and_mid_manifest(backend: Backend) {
    let mut server = Server::start(backend);
    let mut rng = Rng::new();
    let repo = format!("crash/{}", unique());

    // Acknowledged before the crash: a small blob, and an image manifest tagged v1.
    let config = server.push_blob(&repo, b"{}");
    let small = rng.bytes(100_000);
    let small_d = server.push_blob(&repo, &small);
    let m1 = manifest_for(&config, &small_d, small.len());
    server.push_manifest(&repo, "v1", &m1);

    // A large chunked upload: three chunks acknowledged, the fourth half sent at the crash.
    let big = rng.bytes(6 * CHUNK);
    let big_d = sha256_digest(&big);
    let r = server
        .http()
        .post(server.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mut loc = path_of(r.headers()["location"].to_str().unwrap());
    for i in 0..3 {
        loc = patch(&server, &loc, &big[i * CHUNK..(i + 1) * CHUNK], i * CHUNK);
    }
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Range: {}-{}\r\n",
        3 * CHUNK,
        4 * CHUNK - 1
    );
    let in_flight = send_part(&server, &head, &big[3 * CHUNK..4 * CHUNK], CHUNK / 2);
    server.restart();
    drop(in_flight);

    // The upload stands at the last acknowledged byte and finishes from there.
    let r = server.http().get(server.url(&loc)).send().unwrap();
    assert_eq!(r.status().as_u16(), 204, "upload status after restart");
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", 3 * CHUNK - 1)
    );
    for i in 3..6 {
        loc = patch(&server, &loc, &big[i * CHUNK..(i + 1) * CHUNK], i * CHUNK);
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = server
        .http()
        .put(server.url(&format!("{loc}{sep}digest={big_d}")))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "finish after restart: {:?}",
        r.text()
    );
    server.assert_blob(&repo, &big_d, &big);
    server.assert_blob(&repo, &small_d, &small);

    // A manifest PUT cut in half by the crash leaves no manifest and no tag.
    let m2 = manifest_for(&config, &big_d, big.len());
    let m2_d = sha256_digest(&m2);
    let head = format!("PUT /v2/{repo}/manifests/v2 HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\n");
    let in_flight = send_part(&server, &head, &m2, m2.len() / 2);
    server.restart();
    drop(in_flight);
    server
        .get(&format!("/v2/{repo}/manifests/v2"), Some(OCI_MANIFEST))
        .expect(404);
    server
        .get(&format!("/v2/{repo}/manifests/{m2_d}"), Some(OCI_MANIFEST))
        .expect(404);
    assert_eq!(server.tags(&repo), vec!["v1".to_string()]);
    // What was acknowledged is all there, byte for byte.
    let r = server.get(&format!("/v2/{repo}/manifests/v1"), Some(OCI_MANIFEST));
    r.expect(200);
    assert!(r.body == m1, "manifest v1 changed across the crash");
    server.assert_blob(&repo, &small_d, &small);
    server.assert_blob(&repo, &big_d, &big);
    server.fsck();

    // And the same manifest goes in whole afterwards.
    server.push_manifest(&repo, "v2", &m2);
    server.fsck();
}

/// A body that ends before its `Content-Length` is refused and leaves nothing behind; a body
/// longer than its `Content-Length` is cut at the announced length (the rest is not part of
/// the request) and verified as such.
/// `POST path` as the administrator with the `extra` header lines, announcing `announced`
/// body bytes and sending `data` (then closing the sending side when `close_write`): the
/// whole answer.
fn post_raw(
    server: &Server,
    path: &str,
    extra: &str,
    announced: usize,
    data: &[u8],
    close_write: bool,
) -> String {
    let mut s = TcpStream::connect(&server.host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {announced}\r\n{extra}\r\n",
        server.host,
        server.basic()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(data).unwrap();
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp
}

#[test]
fn body_shorter_or_longer_than_content_length() {
    let server = Server::start(Backend::Embedded);
    let repo = format!("body/{}", unique());
    let data = b"0123456789".to_vec();
    let d = sha256_digest(&data);

    let post = format!("/v2/{repo}/blobs/uploads/?digest={d}");
    // (case, extra header lines, announced length, close the write side, error code)
    for (case, extra, announced, close_write, code) in [
        ("short body", "", 20, true, "BLOB_UPLOAD_INVALID"),
        (
            "long body",
            "Connection: close\r\n",
            5,
            false,
            "DIGEST_INVALID",
        ),
    ] {
        let resp = post_raw(&server, &post, extra, announced, &data, close_write);
        assert!(resp.starts_with("HTTP/1.1 400"), "{case}: {resp}");
        assert!(resp.contains(code), "{case}: {resp}");
        server
            .head(&format!("/v2/{repo}/blobs/{d}"), None)
            .expect(404);
    }
    server.fsck();
}
