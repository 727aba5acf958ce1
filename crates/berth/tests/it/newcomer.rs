//! What a newcomer trips on (issue 11), each tried as a new user would: the README's tour
//! run line by line with the Docker engine, a start that cannot bind, a data directory that
//! cannot be written, a log filter with a typo, logs written to a file.

use berth_testkit::e2e::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

fn berth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env_remove("BERTH_ADMIN_PASSWORD")
        .env_remove("BERTH_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    c
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `needle` in the file `log` while `child` runs; the log's text.
fn wait_for_line(child: &mut std::process::Child, log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("berth exited ({st}) before {needle:?}:\n{text}");
        }
        assert!(Instant::now() < deadline, "no {needle:?} in 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The generated password `berth serve` prints once on first start.
fn printed_password(log: &str) -> Option<String> {
    let marker = "with the generated password: ";
    let i = log.find(marker)?;
    Some(
        log[i + marker.len()..]
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The README's tour
// ---------------------------------------------------------------------------------------

/// The tour's code block, as the README has it.
fn tour_block() -> Vec<String> {
    let readme = include_str!("../../../../README.md");
    let at = readme
        .find("## A five-minute tour with docker")
        .expect("the README has its tour");
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("the tour's code block") + "```sh\n".len();
    let end = start + rest[start..].find("```").expect("the block is closed");
    rest[start..end].lines().map(str::to_string).collect()
}

/// A line split into its command and its comment (`  # ...`).
fn split_comment(line: &str) -> (&str, &str) {
    match line.find(" #") {
        Some(i) => (line[..i].trim(), line[i + 2..].trim()),
        None => (line.trim(), ""),
    }
}

/// Runs every line of the README's tour, as written but for what a test must choose: the
/// port (a free one instead of 5000, through `BERTH_LISTEN`), the binary (the one this
/// test built instead of `cargo run --release`, and no `cargo build`), passwords on
/// standard input (`docker login`) or in `-u` (`curl`) instead of a prompt, and
/// `busybox:latest` loaded from an archive instead of pulled from the internet. The server
/// is started in the background as the tour says, the test waits for its "listening" line
/// as the tour tells the reader to, and takes the administrator's password from what the
/// first start prints. A line that fails fails the test; so does a README that drifts
/// from these commands (each substitution must apply).
#[test]
fn readme_tour_runs_line_by_line() {
    let docker_host = require_env("DOCKER_HOST");
    let client = ClientEnv::new();
    let cwd = tempfile::Builder::new()
        .prefix("berth-tour-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let local = format!("berth-tour-busybox-{}", unique());
    let bin = env!("CARGO_BIN_EXE_berth");
    let mut server: Option<Killed> = None;
    let mut password: Option<String> = None;
    let log = cwd.path().join("serve.log");
    // Removes the tour's images from the shared engine, even when the test fails.
    let _cleanup = DockerImages {
        env: &client,
        refs: vec![format!("{local}:latest"), format!("{host}/admin/busybox:1")],
    };
    let image = Image::random(1, 8, "amd64");
    let archive = client.path("busybox.tar");
    image.write_docker_archive(&archive, &format!("{local}:latest"));
    let mut ran = vec![];
    for line in tour_block() {
        let (command, comment) = split_comment(&line);
        if command.is_empty() {
            continue;
        }
        if command == "cargo build --release -p berth" {
            ran.push("build");
            continue;
        }
        let mut command = command
            .replace("cargo run --release -p berth --", bin)
            .replace("127.0.0.1:5000", &host);
        if let Some(c) = command.strip_suffix('&') {
            // The server, in the background; then what the tour says: wait for the line.
            let mut cmd = client.cmd("sh");
            cmd.arg("-c")
                .arg(format!("exec {}", c.trim()))
                .current_dir(cwd.path())
                .env("BERTH_LISTEN", &host)
                .env_remove("BERTH_ADMIN_PASSWORD")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let mut child = Killed(cmd.spawn().unwrap());
            let text = wait_for_line(
                &mut child.0,
                &log,
                &format!("berth listening on http://{host}"),
            );
            password = Some(printed_password(&text).expect("the first start prints a password"));
            server = Some(child);
            ran.push("serve");
            continue;
        }
        let pw = password
            .clone()
            .expect("the server starts before it is used");
        let mut input = None;
        if command.starts_with("docker login ") {
            command.push_str(" --password-stdin");
            input = Some(pw.clone());
            ran.push("login");
        }
        if command.starts_with("curl ") && command.contains("-u admin ") {
            command = command.replace("-u admin ", &format!("-u admin:{pw} "));
        }
        if command == "docker pull busybox:latest" {
            // No internet in the test: the same tag, loaded from an archive.
            run_ok(
                client.docker().args(["load", "-i"]).arg(&archive),
                CLIENT_TIMEOUT,
            );
            ran.push("pull busybox");
            continue;
        }
        let command = command.replace("busybox:latest", &format!("{local}:latest"));
        let mut cmd = client.cmd("sh");
        cmd.arg("-c")
            .arg(&command)
            .current_dir(cwd.path())
            .env("DOCKER_HOST", &docker_host);
        let out = run_input(&mut cmd, input.as_deref(), CLIENT_TIMEOUT);
        assert!(
            out.status.success(),
            "README line failed: {line}\nran: {command}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server log ---\n{}",
            out.stdout,
            out.stderr,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // A comment that shows the answer is checked against it.
        if comment.starts_with('{') {
            let shown = &comment[..comment.find("};").map_or(comment.len(), |i| i + 1)];
            let want: serde_json::Value = serde_json::from_str(shown).unwrap();
            let got: serde_json::Value = serde_json::from_str(out.stdout.trim())
                .unwrap_or_else(|e| panic!("{command}: {e}: {}", out.stdout));
            assert_eq!(got, want, "{line}");
        }
        if command.contains("/health") {
            assert!(out.stdout.contains("\"healthy\":true"), "{}", out.stdout);
        }
        if command.contains("docker rmi") {
            ran.push("rmi and pull");
        }
        if command.ends_with(" fsck") {
            ran.push("fsck");
        }
        if command.contains("docker push") {
            ran.push("push");
        }
    }
    assert_eq!(
        ran,
        [
            "build",
            "serve",
            "login",
            "pull busybox",
            "push",
            "rmi and pull",
            "fsck"
        ],
        "the tour's steps"
    );
    drop(server);
}

// ---------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------

/// A start that cannot bind (the port is taken, a malformed `BERTH_LISTEN`) creates
/// nothing, so the next start that binds still creates the administrator and prints its
/// one-time password.
#[test]
fn a_start_that_cannot_bind_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (how, listen) in [("port in use", taken.as_str()), ("bad address", "nonsense")] {
        let out = run(
            berth()
                .args(["serve", "--data-dir"])
                .arg(&data)
                .env("BERTH_LISTEN", listen),
            Duration::from_secs(60),
        );
        assert!(!out.status.success(), "{how}: started");
        assert!(
            out.stderr.contains(&format!("listening on {listen}")),
            "{how}: {}",
            out.stderr
        );
        assert!(
            printed_password(&out.stderr).is_none(),
            "{how}: {}",
            out.stderr
        );
        assert!(!data.exists(), "{how}: the data directory was created");
    }
    let log = dir.path().join("serve.log");
    let mut child = Killed(
        berth()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let text = wait_for_line(&mut child.0, &log, "berth listening on");
    assert!(printed_password(&text).is_some(), "{text}");
}

/// Runs `cmd` as an unprivileged user when the test runs as root (root writes anywhere,
/// so only another user sees the permissions).
fn unprivileged(cmd: Command) -> Command {
    if !is_root() {
        return cmd;
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(Stdio::null());
    c
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A data directory `berth serve` cannot write (here: another user's, mode 755) is
/// refused at start with a message naming it, instead of a server that listens and answers
/// every write with 500 (`attempt to write a readonly database`).
#[test]
fn an_unwritable_data_dir_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    // A registry made by its owner...
    let log = dir.path().join("first.log");
    {
        let mut child = Killed(
            berth()
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .env("BERTH_ADMIN_PASSWORD", "unwritable-admin")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for_line(&mut child.0, &log, "berth listening on");
    }
    // Readable by all, writable by the owner only; when the test is not root, not even
    // by the owner (the server then runs as the test's user).
    let (dir_mode, file_mode) = if is_root() {
        (0o755, 0o644)
    } else {
        (0o555, 0o444)
    };
    for p in [data.join("blobs"), data.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    }
    std::fs::set_permissions(
        data.join("berth.db"),
        std::fs::Permissions::from_mode(file_mode),
    )
    .unwrap();
    // ...started by a user who may read it but not write it.
    let mut cmd = berth();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    let out = run(&mut unprivileged(cmd), Duration::from_secs(60));
    // Writable again, so the temporary directory can be removed.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!out.status.success(), "started:\n{}", out.stderr);
    assert!(
        out.stderr.contains("is not writable") && out.stderr.contains(data.to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("listening on http"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// `log.level = "infoo"` (or `BERTH_LOG=infoo`) is refused with a message naming it,
/// instead of a server that logs nothing at all.
#[test]
fn a_log_filter_with_a_typo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[log]\nlevel = \"infoo\"\n").unwrap();
    let data = dir.path().join("data");
    for cmd in [
        berth()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&config),
        berth()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("BERTH_LOG", "warn,berth_http=loud"),
    ] {
        let out = run(cmd, Duration::from_secs(60));
        assert!(!out.status.success(), "started:\n{}", out.stderr);
        assert!(out.stderr.contains("log.level"), "{}", out.stderr);
        assert!(!data.exists());
    }
}

/// Logs written to a file carry no colour codes, print an optional field as its value
/// (`source=127.0.0.1`, not `Some(127.0.0.1)`), and every line of a request names its
/// id, the caller's own `X-Request-Id` when it sent one.
#[test]
fn logs_to_a_file_are_plain_and_name_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Killed(
        berth()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("BERTH_ADMIN_PASSWORD", "plain-logs-admin")
            .env("BERTH_LOG", "info,berth_http=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let text = wait_for_line(&mut child.0, &log, "berth listening on http://");
    let host: String = text[text.find("berth listening on http://").unwrap() + 26..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    let r = reqwest::blocking::Client::new()
        .get(format!("http://{host}/v2/"))
        .basic_auth("nobody", Some("wrong-password"))
        .header("x-request-id", "newcomer-req-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "newcomer-req-1");
    let text = wait_for_line(&mut child.0, &log, "request done");
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    assert!(!text.contains("Some("), "{text}");
    let refused = text
        .lines()
        .find(|l| l.contains("login refused"))
        .unwrap_or_else(|| panic!("no refused login:\n{text}"));
    assert!(refused.contains("source=127.0.0.1"), "{refused}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("newcomer-req-1"))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines {
        assert!(l.contains("id=newcomer-req-1"), "{l}");
    }
}
