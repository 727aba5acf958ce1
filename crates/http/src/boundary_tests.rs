//! Keeps the crate's boundary (ARCHITECTURE.md, crates/http): `http` reaches the stores only
//! through `core`, and only `error` chooses an error status.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn http_calls_core_only_and_error_chooses_every_error_status() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 10, "{files:?}");
    // Split so this file does not find itself.
    let store_calls = [
        concat!(".me", "ta()"),
        concat!(".blo", "bs()"),
        concat!(".iden", "tity()"),
        concat!("Meta", "Store"),
        concat!("Identity", "Store"),
        concat!("Blob", "Store"),
    ];
    let error_statuses = [
        "BAD_REQUEST",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "CONFLICT",
        "PAYLOAD_TOO_LARGE",
        "RANGE_NOT_SATISFIABLE",
        "TOO_MANY_REQUESTS",
        "INTERNAL_SERVER_ERROR",
        "SERVICE_UNAVAILABLE",
    ];
    let mut found = Vec::new();
    for f in &files {
        let name = f.strip_prefix(&src).unwrap().display().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for s in store_calls {
                if line.contains(s) {
                    found.push(format!("{name}:{}: store access {s}: {line}", n + 1));
                }
            }
            if name != "error.rs" {
                for s in error_statuses {
                    if line.contains(&format!("StatusCode::{s}")) {
                        found.push(format!("{name}:{}: error status {s}: {line}", n + 1));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
