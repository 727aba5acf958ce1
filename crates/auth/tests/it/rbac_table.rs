//! The access decision checked against `rbac_decisions.tsv`, a table a person can read
//! and review: every subject x repository x permission, with the expected answer.

use berth_auth::rbac::*;
use berth_auth::scope::Action;
use berth_oci::RepoName;
use std::collections::BTreeSet;

const TABLE: &str = include_str!("../rbac_decisions.tsv");

fn team(org: &str, team: &str) -> TeamRef {
    TeamRef {
        org: org.into(),
        team: team.into(),
    }
}

fn user(name: &str, orgs: &[(&str, bool)], teams: &[(&str, &str)]) -> User {
    User {
        id: format!("id-{name}"),
        name: name.into(),
        is_system_admin: false,
        active: true,
        orgs: orgs
            .iter()
            .map(|(o, owner)| OrgMembership {
                org: o.to_string(),
                is_owner: *owner,
            })
            .collect(),
        teams: teams.iter().map(|(o, t)| team(o, t)).collect(),
    }
}

fn restricted(u: User, target: RestrictionTarget, max_role: Role) -> Subject {
    Subject {
        user: Some(u),
        restriction: Some(Restriction {
            entries: vec![RestrictionEntry { target, max_role }],
        }),
        token: None,
    }
}

fn subject(name: &str) -> Subject {
    let acme = |t: &str| user(name, &[("acme", false)], &[("acme", t)]);
    let sysadmin = || User {
        is_system_admin: true,
        ..user("root", &[], &[])
    };
    let alice = || user("alice", &[("open", false)], &[]);
    match name {
        "anonymous" => Subject::anonymous(),
        "deactivated" => Subject::user(User {
            active: false,
            ..acme("writers")
        }),
        "member" => Subject::user(user(name, &[("acme", false)], &[])),
        "reader" => Subject::user(acme("readers")),
        "writer" => Subject::user(acme("writers")),
        "repo-admin" => Subject::user(acme("admins")),
        "ns-reader" => Subject::user(acme("ns-readers")),
        "ns-writer" => Subject::user(acme("ns-writers")),
        "owner" => Subject::user(user(name, &[("acme", true)], &[])),
        "alice" => Subject::user(alice()),
        "foreign-team" => Subject::user(user(name, &[("open", false)], &[("open", "evil")])),
        "sysadmin" => Subject::user(sysadmin()),
        "token-ro" => restricted(
            acme("writers"),
            RestrictionTarget::Repository("acme/private".into()),
            Role::ReadOnly,
        ),
        "token-alice" => restricted(
            alice(),
            RestrictionTarget::Namespace("alice".into()),
            Role::ReadOnly,
        ),
        "token-sysadmin" => restricted(
            sysadmin(),
            RestrictionTarget::Repository("acme/pub*".into()),
            Role::ReadWrite,
        ),
        other => panic!("unknown subject {other:?} in the table"),
    }
}

fn repository(name: &str) -> Repository {
    let acme = NamespaceKind::Organization {
        members_can_create: false,
    };
    let (visibility, namespace) = match name {
        "acme/public" => (Some(Visibility::Public), acme),
        "acme/private" => (Some(Visibility::Private), acme),
        "acme/new" => (None, acme),
        "open/new" => (
            None,
            NamespaceKind::Organization {
                members_can_create: true,
            },
        ),
        "alice/private" => (Some(Visibility::Private), NamespaceKind::User),
        "alice/public" => (Some(Visibility::Public), NamespaceKind::User),
        "alice/new" => (None, NamespaceKind::User),
        "ghost/new" => (None, NamespaceKind::Unknown),
        other => panic!("unknown repository {other:?} in the table"),
    };
    Repository {
        name: RepoName::parse(name).unwrap(),
        visibility,
        namespace,
    }
}

fn grants() -> Vec<Grant> {
    let repo = |t: &str, role| Grant {
        team: team("acme", t),
        target: GrantTarget::Repository("acme/private".into()),
        role,
    };
    let ns = |t: &str, role| Grant {
        team: team("acme", t),
        target: GrantTarget::Namespace,
        role,
    };
    vec![
        repo("readers", Role::ReadOnly),
        repo("writers", Role::ReadWrite),
        repo("admins", Role::Admin),
        ns("ns-readers", Role::ReadOnly),
        ns("ns-writers", Role::ReadWrite),
        Grant {
            team: team("open", "evil"),
            target: GrantTarget::Repository("acme/private".into()),
            role: Role::Admin,
        },
    ]
}

fn cell(d: Decision) -> &'static str {
    match d {
        Decision::Allowed => "allow",
        Decision::NeedsAuthentication => "401",
        Decision::Denied => "403",
        Decision::Invisible => "404",
    }
}

struct Row {
    line: usize,
    subject: String,
    repository: String,
    expected: [String; 4],
}

fn rows() -> Vec<Row> {
    let mut out = Vec::new();
    let mut header_seen = false;
    for (i, line) in TABLE.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if !header_seen {
            assert_eq!(
                f,
                ["subject", "repository", "pull", "push", "delete", "admin"]
            );
            header_seen = true;
            continue;
        }
        assert_eq!(f.len(), 6, "line {}: {line:?}", i + 1);
        out.push(Row {
            line: i + 1,
            subject: f[0].into(),
            repository: f[1].into(),
            expected: [f[2].into(), f[3].into(), f[4].into(), f[5].into()],
        });
    }
    out
}

#[test]
fn every_row_of_the_table_holds() {
    let grants = grants();
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in rows() {
        let s = subject(&row.subject);
        let r = repository(&row.repository);
        for (perm, want) in Permission::ALL.iter().zip(&row.expected) {
            let got = cell(decide(&s, &r, &grants, *perm));
            checked += 1;
            if got != want {
                failures.push(format!(
                    "line {}: {} {} {}: expected {want}, got {got}",
                    row.line,
                    row.subject,
                    row.repository,
                    perm.as_str()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 15 * 8 * 4);
}

#[test]
fn the_table_covers_every_subject_and_repository_once() {
    let rows = rows();
    let pairs: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.subject.clone(), r.repository.clone()))
        .collect();
    assert_eq!(
        pairs.len(),
        rows.len(),
        "a subject x repository pair is repeated"
    );
    let subjects: BTreeSet<&str> = rows.iter().map(|r| r.subject.as_str()).collect();
    let repos: BTreeSet<&str> = rows.iter().map(|r| r.repository.as_str()).collect();
    assert_eq!(
        pairs.len(),
        subjects.len() * repos.len(),
        "the table has holes"
    );
}

#[test]
fn token_grants_match_the_table() {
    // The token endpoint grants exactly the scope actions whose permission is allowed.
    let grants = grants();
    let asked = [Action::Pull, Action::Push, Action::Delete, Action::All];
    for row in rows() {
        let s = subject(&row.subject);
        let r = repository(&row.repository);
        let got = granted_actions(&s, &r, &grants, &asked);
        let want: Vec<Action> = asked
            .iter()
            .zip(&row.expected)
            .filter(|(_, e)| *e == "allow")
            .map(|(a, _)| a.clone())
            .collect();
        assert_eq!(got, want, "line {}", row.line);
    }
}

#[test]
fn catalog_shows_exactly_the_pullable_existing_repositories() {
    let grants = grants();
    let all: Vec<Repository> = [
        "acme/public",
        "acme/private",
        "acme/new",
        "open/new",
        "alice/private",
        "alice/public",
        "alice/new",
        "ghost/new",
    ]
    .iter()
    .map(|n| repository(n))
    .collect();
    for row in rows() {
        let s = subject(&row.subject);
        assert!(catalog_allowed(&s));
        let listed: Vec<&str> = catalog_filter(&s, &grants, &all)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let r = repository(&row.repository);
        let should = r.visibility.is_some() && row.expected[0] == "allow";
        assert_eq!(
            listed.contains(&row.repository.as_str()),
            should,
            "line {}: {} {}",
            row.line,
            row.subject,
            row.repository
        );
    }
}
