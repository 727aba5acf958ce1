//! Keeps ARCHITECTURE.md honest: every workspace member has a heading there.

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
