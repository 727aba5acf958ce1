//! Properties of the access decision over random subjects, grants and repositories:
//! grants only ever add, system administrators may do everything, a deactivated user is
//! anonymous, and nobody is told "denied" about a repository they cannot see.

use berth_auth::rbac::*;
use berth_oci::RepoName;
use proptest::prelude::*;

const ORGS: [&str; 3] = ["acme", "open", "alice"];
const TEAMS: [&str; 3] = ["t1", "t2", "t3"];
const REPOS: [&str; 5] = ["acme/app", "acme/lib", "open/app", "alice/app", "ghost/app"];

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::ReadOnly),
        Just(Role::ReadWrite),
        Just(Role::Admin)
    ]
}

fn team_ref() -> impl Strategy<Value = TeamRef> {
    (0..ORGS.len(), 0..TEAMS.len()).prop_map(|(o, t)| TeamRef {
        org: ORGS[o].into(),
        team: TEAMS[t].into(),
    })
}

fn grant() -> impl Strategy<Value = Grant> {
    (team_ref(), proptest::option::of(0..REPOS.len()), role()).prop_map(|(team, r, role)| Grant {
        team,
        target: match r {
            Some(i) => GrantTarget::Repository(REPOS[i].into()),
            None => GrantTarget::Namespace,
        },
        role,
    })
}

fn user() -> impl Strategy<Value = User> {
    (
        prop_oneof![Just("alice"), Just("bob")],
        any::<bool>(),
        proptest::collection::vec((0..ORGS.len(), any::<bool>()), 0..3),
        proptest::collection::vec(team_ref(), 0..4),
    )
        .prop_map(|(name, active, orgs, teams)| User {
            id: name.into(),
            name: name.into(),
            is_system_admin: false,
            active,
            orgs: orgs
                .into_iter()
                .map(|(o, is_owner)| OrgMembership {
                    org: ORGS[o].into(),
                    is_owner,
                })
                .collect(),
            teams,
        })
}

fn restriction() -> impl Strategy<Value = Option<Restriction>> {
    let entry = (
        prop_oneof![
            (0..REPOS.len()).prop_map(|i| RestrictionTarget::Repository(REPOS[i].into())),
            (0..ORGS.len()).prop_map(|i| RestrictionTarget::Namespace(ORGS[i].into())),
            Just(RestrictionTarget::Repository("acme/*".into())),
        ],
        role(),
    )
        .prop_map(|(target, max_role)| RestrictionEntry { target, max_role });
    proptest::option::of(
        proptest::collection::vec(entry, 0..3).prop_map(|entries| Restriction { entries }),
    )
}

/// A bearer token's `access` claim: some actions on some repositories.
fn token_access() -> impl Strategy<Value = Option<TokenAccess>> {
    let entry = (
        0..REPOS.len(),
        proptest::sample::subsequence(vec!["pull", "push", "delete", "*", "mount"], 0..4),
    );
    proptest::option::of(proptest::collection::vec(entry, 0..3).prop_map(|entries| {
        let mut t = TokenAccess::default();
        for (i, actions) in entries {
            t.grant(REPOS[i], actions);
        }
        t
    }))
}

fn subject() -> impl Strategy<Value = Subject> {
    (proptest::option::of(user()), restriction(), token_access()).prop_map(
        |(user, restriction, token)| Subject {
            user,
            restriction,
            token,
        },
    )
}

fn repository() -> impl Strategy<Value = Repository> {
    (
        0..REPOS.len(),
        prop_oneof![
            Just(None),
            Just(Some(Visibility::Public)),
            Just(Some(Visibility::Private))
        ],
        any::<bool>(),
    )
        .prop_map(|(i, visibility, members_can_create)| {
            let name = RepoName::parse(REPOS[i]).unwrap();
            let namespace = match name.namespace() {
                "alice" => NamespaceKind::User,
                "ghost" => NamespaceKind::Unknown,
                _ => NamespaceKind::Organization { members_can_create },
            };
            Repository {
                name,
                visibility,
                namespace,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn adding_a_grant_never_removes_an_allowed_permission(
        s in subject(),
        r in repository(),
        grants in proptest::collection::vec(grant(), 0..6),
        extra in grant(),
    ) {
        let mut more = grants.clone();
        more.push(extra);
        for p in Permission::ALL {
            if decide(&s, &r, &grants, p) == Decision::Allowed {
                prop_assert_eq!(decide(&s, &r, &more, p), Decision::Allowed, "{:?}", p);
            }
        }
    }

    #[test]
    fn a_system_administrator_may_do_everything(
        u in user(),
        r in repository(),
        grants in proptest::collection::vec(grant(), 0..6),
    ) {
        let s = Subject::user(User { is_system_admin: true, active: true, ..u });
        for p in Permission::ALL {
            prop_assert_eq!(decide(&s, &r, &grants, p), Decision::Allowed);
        }
    }

    #[test]
    fn a_deactivated_user_is_anonymous(
        u in user(),
        admin in any::<bool>(),
        restriction in restriction(),
        r in repository(),
        grants in proptest::collection::vec(grant(), 0..6),
    ) {
        let s = Subject {
            user: Some(User { active: false, is_system_admin: admin, ..u }),
            restriction,
            token: None,
        };
        for p in Permission::ALL {
            prop_assert_eq!(
                decide(&s, &r, &grants, p),
                decide(&Subject::anonymous(), &r, &grants, p)
            );
        }
    }

    #[test]
    fn denied_only_when_visible_and_never_more_than_unrestricted(
        s in subject(),
        r in repository(),
        grants in proptest::collection::vec(grant(), 0..6),
    ) {
        let can_pull = decide(&s, &r, &grants, Permission::Pull) == Decision::Allowed;
        let unrestricted = Subject { restriction: None, token: None, ..s.clone() };
        for p in Permission::ALL {
            let d = decide(&s, &r, &grants, p);
            if d == Decision::Denied {
                prop_assert!(can_pull, "denied {:?} on a repository the caller cannot pull", p);
            }
            if d == Decision::Allowed {
                prop_assert_eq!(decide(&unrestricted, &r, &grants, p), Decision::Allowed);
            }
        }
    }

    #[test]
    fn a_bearer_token_allows_only_what_its_claim_lists(
        s in subject(),
        r in repository(),
        grants in proptest::collection::vec(grant(), 0..6),
        token in token_access(),
    ) {
        // Whatever the user may do, a token caller may do no more than the claim lists
        // (beyond what an anonymous caller may), and is never a system administrator.
        let Some(token) = token else { return Ok(()) };
        let s = Subject { token: None, ..s };
        let bearer = Subject { token: Some(token.clone()), ..s.clone() };
        prop_assert!(!bearer.is_system_admin());
        let only_claim = Subject {
            user: Some(User {
                id: "root".into(),
                name: "root".into(),
                is_system_admin: true,
                active: true,
                orgs: vec![],
                teams: vec![],
            }),
            restriction: None,
            token: Some(token),
        };
        for p in Permission::ALL {
            if decide(&bearer, &r, &grants, p) == Decision::Allowed {
                prop_assert_eq!(decide(&s, &r, &grants, p), Decision::Allowed);
                prop_assert_eq!(decide(&only_claim, &r, &grants, p), Decision::Allowed);
            }
        }
    }

    #[test]
    fn a_private_repository_looks_missing_to_who_cannot_pull_it(
        s in subject(),
        r in repository(),
        grants in proptest::collection::vec(grant(), 0..6),
    ) {
        // Someone who cannot pull a private repository, and cannot create repositories in
        // its namespace, gets the same answers whether or not it exists.
        let private = Repository { visibility: Some(Visibility::Private), ..r.clone() };
        let missing = Repository { visibility: None, ..r };
        let can_create = decide(&s, &missing, &grants, Permission::Push) == Decision::Allowed;
        if decide(&s, &private, &grants, Permission::Pull) != Decision::Allowed && !can_create {
            for p in Permission::ALL {
                prop_assert_eq!(
                    decide(&s, &private, &grants, p),
                    decide(&s, &missing, &grants, p)
                );
            }
        }
    }
}
