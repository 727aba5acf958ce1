//! schemathesis against the real binary: it reads `/api/v0/openapi.json` from a running
//! `berth serve`, generates requests from the document (valid and invalid ones, and
//! sequences that create then use objects) as the first administrator (Basic), and fails
//! on any 5xx, any answer the document does not describe (status, content type, headers,
//! body schema), a valid request refused or an invalid one accepted.
//!
//! Not run: schemathesis's `ignored_auth` check, which sends wrong passwords for the
//! administrator; past ten of them Berth's login rate limit answers 429 for that account,
//! by design. Authentication is covered by the authorization matrix
//! (`crates/http/tests/api_v0_matrix.tsv`).
//!
//! Needs `schemathesis` on PATH (`cargo xtask ci` installs it from PyPI); fails without it.

use berth_testkit::e2e::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn schemathesis_finds_nothing() {
    let bin = require_tool(
        "schemathesis",
        "pip install schemathesis (cargo xtask ci installs it)",
    );
    let server = Server::start(Backend::Embedded);
    let (user, password) = server.admin_creds();
    let work = tempfile::tempdir().expect("tempdir");
    let out = run(
        Command::new(bin)
            .current_dir(work.path())
            .env("NO_COLOR", "1")
            .args(["run", &server.url("/api/v0/openapi.json")])
            .args(["--auth", &format!("{user}:{password}")])
            .args(["--checks", "all", "--exclude-checks", "ignored_auth"])
            // Deleting a repository's trust data leaves its trust view, which says
            // `signed: false` (200): the stateful phase expects a GET after a DELETE of the
            // same path to be 404. That route is in the authorization matrix and the notary
            // end-to-end test.
            // Likewise, a repository without a policy of its own still has one that applies
            // (its namespace's or the default). A signing key's PEM is valid or not by its
            // DER, which no schema can say: any string the schema allows may be refused
            // (400); that route is in the matrix and the signature end-to-end test.
            .args([
                "--exclude-name",
                "DELETE /api/v0/repositories/{repository}/trust",
                "--exclude-name",
                "DELETE /api/v0/repositories/{repository}/policy",
                "--exclude-name",
                "POST /api/v0/users/{user}/keys",
            ])
            // At most 25 cases per operation and phase, and two minutes in all (the
            // coverage phase alone takes 15 s on an idle two-core machine, much longer on a
            // busy one; a run cut short by the budget still checks what it sent).
            // One worker: hypothesis's lambda descriptions call `ast.parse`, which CPython
            // 3.11 does not allow from two threads at once ("AST constructor recursion depth
            // mismatch").
            .args([
                "--max-examples",
                "25",
                "--max-time",
                "120",
                "--workers",
                "1",
            ])
            .args(["--request-timeout", "30"])
            // Hypothesis's health checks judge the generator (the repository-name pattern
            // filters many drawn strings; a busy machine is slow), not the server.
            .args(["--suppress-health-check", "filter_too_much,too_slow"])
            .args(["--no-shrink", "--output-truncate", "true"])
            // A fixed seed: the same cases every run, so a finding reproduces and a run
            // does not trip over hypothesis's own occasional internal errors at random
            // (one was "tuple index out of range" in its optimiser). Change it on purpose
            // to explore other cases.
            .args(["--seed", "20261207"]),
        Duration::from_secs(175),
    );
    assert!(
        out.status.success(),
        "schemathesis found problems ({}):\n{}\n{}\nberth log tail:\n{}",
        out.status,
        out.stdout,
        out.stderr,
        tail(&server.log(), 40)
    );
    assert!(
        out.stdout.contains("passed"),
        "schemathesis ran nothing:\n{}",
        out.stdout
    );
    // The server stayed healthy, and nothing it answered was an internal error.
    assert!(
        !server.log().contains("internal error"),
        "berth logged an internal error:\n{}",
        tail(&server.log(), 80)
    );
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
