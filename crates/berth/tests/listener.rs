//! What a stranger can do to the listener, against the real binary over raw sockets:
//! made-up method names and paths growing `/metrics`.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "listener-admin-pw-7c1e";

fn start(dir: &Path, envs: &[(&str, &str)], extra: &[&str]) -> Process {
    let mut all = vec![("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(envs);
    let data = dir.join("data");
    let mut args = vec!["--data-dir".as_ref(), data.as_os_str()];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    Process::spawn(&args, &all, &dir.join("berth.log"))
}

/// A raw HTTP/1.1 connection.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

/// A response read off a [`Conn`].
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl Conn {
    fn open(host: &str) -> Conn {
        Conn {
            s: TcpStream::connect(host).expect("connect"),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: berth\r\n\r\n").as_bytes());
        self.response(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no answer to GET {path} within 30s"))
    }

    /// Reads one response (its body by `Content-Length`); `None` when nothing complete
    /// came within `wait`. Panics when the server closes the connection first.
    fn response(&mut self, wait: Duration) -> Option<Resp> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 65536];
        loop {
            // Heads are short: the search stays at the start of a large body.
            let start = &self.buf[..self.buf.len().min(64 << 10)];
            if let Some(end) = find(start, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("not a response: {head}"));
                let mut r = Resp {
                    status,
                    head,
                    body: vec![],
                };
                let len: usize = r
                    .header("content-length")
                    .map(|v| v.parse().expect("content-length"))
                    .unwrap_or_else(|| panic!("no content-length in\n{}", r.head));
                if self.buf.len() >= end + 4 + len {
                    r.body = self.buf[end + 4..end + 4 + len].to_vec();
                    self.buf.drain(..end + 4 + len);
                    return Some(r);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("connection closed before a complete response"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("reading a response: {e}"),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The series in a `/metrics` text: name and labels, without the value.
fn series(host: &str) -> BTreeSet<String> {
    let mut c = Conn::open(host);
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    String::from_utf8(r.body)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
        .collect()
}

fn label_values<'a>(all: &'a BTreeSet<String>, label: &str) -> BTreeSet<&'a str> {
    let key = format!("{label}=\"");
    all.iter()
        .filter_map(|s| {
            let i = s.find(&key)? + key.len();
            Some(&s[i..i + s[i..].find('"')?])
        })
        .collect()
}

#[test]
fn made_up_methods_and_paths_add_no_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[], &[]);
    let mut rng = Rng::new();
    let mut word = |n: usize| -> String {
        (0..n)
            .map(|_| (b'A' + (rng.next_u64() % 26) as u8) as char)
            .collect()
    };
    let paths = |w: &str| {
        [
            "/v2/".to_string(),
            format!("/v2/acme/{}/manifests/latest", w.to_lowercase()),
            "/health".to_string(),
            "/api/v0/users".to_string(),
            format!("/api/v0/users/{}", w.to_lowercase()),
            format!("/{}/{}", w.to_lowercase(), w),
            format!("/api/v0/{}", w.to_lowercase()),
        ]
    };
    let request = |method: &str, path: &str| {
        let mut c = Conn::open(&p.host);
        c.send(
            format!("{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let r = c.response(Duration::from_secs(30)).expect("answered");
        assert!(r.status < 500, "{method} {path}: {}", r.head);
    };
    // Every kind of request once, so the closed set's series exist.
    for path in paths("warmup") {
        request(&format!("X{}", word(8)), &path);
        request("GET", &path);
    }
    series(&p.host);
    let before = series(&p.host);
    for i in 0..1000 {
        let w = word(3 + i % 10);
        let path = &paths(&w)[i % 7];
        request(&format!("X{w}"), path);
    }
    let after = series(&p.host);
    let new: Vec<_> = after.difference(&before).collect();
    assert!(
        new.is_empty(),
        "{} new series after 1000 made-up requests, such as {:?}",
        new.len(),
        &new[..new.len().min(5)]
    );
    // Every label value is from the closed sets.
    let methods = label_values(&after, "method");
    let allowed = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
    ];
    assert!(
        methods.iter().all(|m| allowed.contains(m)),
        "method labels: {methods:?}"
    );
    let routes = label_values(&after, "route");
    // The management API's routes are named by their pattern, not "other".
    assert!(routes.contains("/api/v0/users"), "{routes:?}");
    assert!(routes.contains("/api/v0/users/{user}"), "{routes:?}");
    assert!(routes.contains("not_found"), "{routes:?}");
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("warmup") && !r.contains("acme/")),
        "a route label from a request's path: {routes:?}"
    );
}

