//! Keeps ARCHITECTURE.md honest: every workspace member has a heading there, and the
//! crate dependencies `cargo metadata` reports follow the graph it draws.

#[test]
fn every_crate_has_a_heading_in_architecture_md() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let members_line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.len() >= 6, "{members:?}");
    for m in members {
        assert!(
            arch.lines().any(|l| l.trim() == format!("## {m}")),
            "ARCHITECTURE.md has no `## {m}` heading"
        );
    }
}

/// The crate graph ARCHITECTURE.md draws, e.g. `berth -> http -> core -> {auth, directory,
/// blob, meta} -> oci`: one group of package names per layer, top first.
fn layers(arch: &str) -> Vec<Vec<String>> {
    let line = arch
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("berth -> "))
        .expect("ARCHITECTURE.md draws the crate graph on a line `berth -> http -> ...`");
    line.split("->")
        .map(|group| {
            group
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .split(',')
                .map(|n| match n.trim() {
                    "berth" => "berth".to_string(),
                    short => format!("berth-{short}"),
                })
                .collect()
        })
        .collect()
}

/// Edges inside one layer that ARCHITECTURE.md names (below the graph): the identity store
/// keeps records in auth's types.
const SIDEWAYS: &[(&str, &str)] = &[("berth-meta", "berth-auth")];

/// Crates outside the graph: test support (a dev-dependency only) and the workflows.
const TEST_SUPPORT: &str = "berth-testkit";
const XTASK: &str = "xtask";
/// What the test kit must not depend on: crates whose own tests depend on the kit.
const KIT_NEVER: &[&str] = &["berth-http", "berth"];

/// Dependencies a crate must never have, whatever the graph: `core` knows no HTTP type and
/// chooses no store; `http` names no database or object store client; the vocabulary and the
/// authorisation rules are pure (no runtime).
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("berth-oci", &["tokio"]),
    ("berth-auth", &["tokio"]),
    (
        "berth-core",
        &[
            "axum",
            "hyper",
            "http",
            "tower",
            "sqlx",
            "rusqlite",
            "object_store",
        ],
    ),
    ("berth-http", &["sqlx", "rusqlite", "object_store"]),
];

/// The dependencies of the workspace crates as `cargo metadata` reports them point down the
/// graph in ARCHITECTURE.md: each crate depends only on crates in lower layers (or on the
/// named sideways edges), nothing depends on the test kit except as a dev-dependency, the
/// kit depends on neither `http` nor `berth`, and every crate is in the graph.
#[test]
fn crate_dependencies_point_down_the_graph_in_architecture_md() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let layers = layers(&arch);
    let rank = |name: &str| layers.iter().position(|g| g.iter().any(|n| n == name));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(&root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let workspace: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let mut wrong = vec![];
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let deps = p["dependencies"].as_array().unwrap();
        for (krate, banned) in FORBIDDEN {
            if name == *krate {
                for d in deps.iter().filter(|d| d["kind"].is_null()) {
                    let dep = d["name"].as_str().unwrap();
                    if banned.contains(&dep) {
                        wrong.push(format!("{name} depends on {dep}"));
                    }
                }
            }
        }
        if name == TEST_SUPPORT {
            // The kit serves the tests of `http` and `berth`, so it never depends on them.
            for d in deps {
                let dep = d["name"].as_str().unwrap();
                if KIT_NEVER.contains(&dep) {
                    wrong.push(format!("{name} depends on {dep}, whose tests use it"));
                }
            }
            continue;
        }
        if name == XTASK {
            continue;
        }
        let Some(own) = rank(name) else {
            wrong.push(format!(
                "{name} is not in the crate graph of ARCHITECTURE.md"
            ));
            continue;
        };
        for d in deps {
            let dep = d["name"].as_str().unwrap();
            if !workspace.contains(&dep) {
                continue;
            }
            let dev = d["kind"].as_str() == Some("dev");
            if dev && dep == name {
                // A crate's tests turning on its own test-only feature (`conformance`).
                continue;
            }
            if dep == TEST_SUPPORT {
                if !dev {
                    wrong.push(format!("{name} depends on {dep} outside dev-dependencies"));
                }
                continue;
            }
            let ok = match rank(dep) {
                Some(r) => r > own || (r == own && SIDEWAYS.contains(&(name, dep))),
                None => false,
            };
            if !ok {
                wrong.push(format!(
                    "{name} -> {dep}{} points up or sideways in the graph",
                    if dev { " (dev)" } else { "" }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "crate dependencies against ARCHITECTURE.md's graph {layers:?}:\n{}",
        wrong.join("\n")
    );
}

/// One integration-test binary per crate: every `.rs` file under a crate's `tests/` is in
/// `tests/it/`, whose `main.rs` declares each of the others as a module.
#[test]
fn each_crate_has_one_integration_test_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut wrong = vec![];
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let tests = krate.unwrap().path().join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        // Data (golden files, tables) may sit anywhere under tests/; Rust files only in it/.
        let mut dirs: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        while let Some(p) = dirs.pop() {
            if p.is_dir() && p.file_name().unwrap() != "it" {
                dirs.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p.extension().is_some_and(|x| x == "rs") {
                wrong.push(format!("{} is outside tests/it/", p.display()));
            }
        }
        let it = tests.join("it");
        let Ok(main) = std::fs::read_to_string(it.join("main.rs")) else {
            wrong.push(format!("{} has no main.rs", it.display()));
            continue;
        };
        for e in std::fs::read_dir(&it).unwrap() {
            let p = e.unwrap().path();
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.extension().is_some_and(|x| x == "rs")
                && stem != "main"
                && !main.lines().any(|l| l.trim() == format!("mod {stem};"))
            {
                wrong.push(format!("{} is not declared in main.rs", p.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
