//! The directory client's integration tests, one test binary: against slapd (from
//! `berth-testkit`) and against Samba's Active Directory.

mod samba_ad;
mod slapd;

use berth_directory::{DirectorySnapshot, Membership, TeamRef};

/// Helpers both suites use.
pub fn team(s: &str) -> TeamRef {
    TeamRef::parse(s).unwrap()
}

/// `user` in team `t`, as a plan lists it.
pub fn m(user: &str, t: &str) -> Membership {
    Membership {
        username: user.into(),
        team: team(t),
    }
}

/// Each group of a snapshot with its members.
pub fn memberships(snapshot: &DirectorySnapshot) -> Vec<(String, Vec<String>)> {
    snapshot
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.members.iter().cloned().collect()))
        .collect()
}

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The groups of the nested sample both suites build, expanded: each with every member
/// reached through nesting (the loop cut).
pub fn nested_memberships() -> Vec<(String, Vec<String>)> {
    vec![
        ("backend".to_string(), strs(&["bert", "dina"])),
        ("dbas".to_string(), strs(&["dina"])),
        ("loop-a".to_string(), strs(&["lea", "lou"])),
        ("loop-b".to_string(), strs(&["lea", "lou"])),
        ("platform".to_string(), strs(&["bert", "dina", "pia"])),
    ]
}
