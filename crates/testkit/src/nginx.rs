//! nginx (Debian's) in front of several replicas: round-robin, no stickiness, request and
//! response bodies streamed, the client's `Host` passed on (so the token realm Berth
//! derives from it is nginx's address). Each test starts its own on a free port, with its
//! configuration, logs and temporary files in a directory of its own; the access log names
//! the replica (`$upstream_addr`) that answered each request.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx, stopped when dropped.
pub struct Nginx {
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// nginx on a free port of 127.0.0.1, balancing over `upstreams` (`host:port` each).
    pub fn start(upstreams: &[&str]) -> Nginx {
        let bin = Path::new("/usr/sbin/nginx");
        assert!(
            bin.exists(),
            "/usr/sbin/nginx not found: install Debian package nginx (`cargo xtask peers` does, as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-nginx-")
            .tempdir()
            .expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.path().display();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("        server {u} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             user root;\nevents {{ worker_connections 1024; }}\n\
             http {{\n    log_format up '$request_method $uri $status $upstream_addr';\n\
                 access_log {d}/access.log up;\n\
                 client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 client_max_body_size 0;\n    proxy_request_buffering off;\n\
                 proxy_buffering off;\n    proxy_http_version 1.1;\n\
                 upstream berth {{\n{servers}        keepalive 16;\n    }}\n\
                 server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
                         proxy_pass http://berth;\n\
                         proxy_set_header Host $http_host;\n\
                         proxy_set_header Connection \"\";\n\
                         proxy_read_timeout 300s;\n        }}\n    }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nginx");
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx not listening: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { host, dir, child }
    }

    /// The access log: one line per request, `METHOD URI STATUS UPSTREAM`.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.path("access.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
