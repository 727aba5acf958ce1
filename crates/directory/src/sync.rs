//! The directory sync as a pure function: from a directory snapshot, the sync policy and
//! Berth's current accounts, the list of changes that makes Berth agree with the directory.
//!
//! The scheduled worker in `core` reads the snapshot (network), reads the accounts (metadata
//! store), calls [`plan`] and applies the result in one transaction; nothing here does IO,
//! so every rule is tested by tables and properties. The rules:
//!
//! - Local accounts are never changed, whatever the directory says; a directory user whose
//!   name is taken by a local account is reported in [`SyncPlan::conflicts`].
//! - A directory user is *eligible* when present, not disabled and, under
//!   [`CreateUsers::MappedGroups`], in at least one mapped group. Eligible users without an
//!   account are created; directory accounts of users that are not eligible (deleted,
//!   disabled, out of every mapped group) are deactivated; inactive directory accounts of
//!   eligible users are reactivated.
//! - Team memberships are managed for mapped teams only and for directory accounts only: a
//!   membership someone granted by hand in an unmapped team stays. An account that is not
//!   eligible keeps no mapped team.
//! - The plan of a state that already agrees with the snapshot is empty, so applying a plan
//!   twice changes nothing the second time.
//! - A snapshot with no user at all is refused while Berth has active directory accounts,
//!   unless the policy allows it (see [`SyncPolicy::allow_empty_directory`]).
//! - A mapping whose group matches no group of the snapshot (a typo, a renamed or deleted
//!   group, a wrong group base) says nothing about who is in the team: the plan warns
//!   ([`SyncPlan::warnings`]) and leaves that team alone (no membership added or removed,
//!   and no active member deactivated for being in no mapped group), as the sync already
//!   does for a team whose organisation is missing.
//! - A directory account belongs to the directory entry it was made for, known by the
//!   entry's immutable identifier ([`DirectoryUser::id`]), not by its name: when the entry
//!   of that name now has another identifier (the person left, and the name was given to
//!   someone else), the account is treated as that of a user no longer in the directory
//!   (deactivated, out of every mapped team, profile untouched, never reactivated) and the
//!   plan warns; the new person gets no account under that name until an administrator
//!   renames or deletes the old one. An account with no identifier yet (made before Berth
//!   kept them) adopts its entry's identifier ([`SyncPlan::adopt_ids`]).

use crate::config::{CreateUsers, SyncPolicy, TeamRef};
use crate::snapshot::{DirectorySnapshot, DirectoryUser};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where a Berth account comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Created in Berth, with a Berth password. The sync never touches it.
    Local,
    /// Created by the directory sync; the directory decides whether it is active and which
    /// mapped teams it is in.
    Directory,
}

/// What the sync needs to know about one Berth account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BerthUser {
    /// The account name (compared with directory usernames case-insensitively).
    pub username: String,
    /// Local or directory account.
    pub origin: Origin,
    /// Whether the account may log in and its tokens work.
    pub active: bool,
    /// Every team the account is in, mapped or not.
    pub teams: BTreeSet<TeamRef>,
    /// The account's e-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// The account's display name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// The immutable identifier of the directory entry the account was made for (`None`:
    /// not known yet, or a local account).
    #[serde(default)]
    pub directory_id: Option<String>,
}

/// A directory account that learns the immutable identifier of its entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdAdoption {
    /// The account name.
    pub username: String,
    /// The entry's identifier.
    pub id: String,
}

/// New profile attributes of a directory account, as the directory now has them. `None`:
/// unchanged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProfileUpdate {
    /// The account name.
    pub username: String,
    /// The new e-mail address.
    pub email: Option<String>,
    /// The new display name.
    pub full_name: Option<String>,
}

/// An account to create from the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// The directory username (lowercased).
    pub username: String,
    /// The directory entry it comes from.
    pub dn: String,
    /// That entry's immutable identifier, when the directory gives one.
    #[serde(default)]
    pub id: Option<String>,
    /// E-mail address from the directory.
    pub email: Option<String>,
    /// Display name from the directory.
    pub full_name: Option<String>,
}

/// A user's membership of a team.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Membership {
    /// The account name.
    pub username: String,
    /// The team.
    pub team: TeamRef,
}

/// The changes that make Berth agree with the directory. Apply in this order: create,
/// reactivate, deactivate, add memberships, remove memberships. Every list is sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlan {
    /// Accounts to create (origin directory, active, no team yet: their teams are in
    /// `add_memberships`).
    pub create: Vec<NewUser>,
    /// Directory accounts to deactivate.
    pub deactivate: Vec<String>,
    /// Directory accounts to reactivate.
    pub reactivate: Vec<String>,
    /// Mapped-team memberships to add (including those of created accounts).
    pub add_memberships: Vec<Membership>,
    /// Mapped-team memberships to remove.
    pub remove_memberships: Vec<Membership>,
    /// Profile attributes (e-mail, display name) of directory accounts that changed in the
    /// directory. An attribute the directory does not give (absent, or not configured) is
    /// left as it is.
    #[serde(default)]
    pub update_profiles: Vec<ProfileUpdate>,
    /// Directory accounts without a stored entry identifier that adopt the one of the
    /// entry of their name.
    #[serde(default)]
    pub adopt_ids: Vec<IdAdoption>,
    /// Directory usernames that are local accounts in Berth and were therefore left alone.
    /// A report for the administrator, not a change.
    pub conflicts: Vec<String>,
    /// What the administrator should fix (a mapped group that matches no directory group).
    /// A report, not a change.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl SyncPlan {
    /// Whether the plan changes nothing (conflicts are a report, not a change).
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.deactivate.is_empty()
            && self.reactivate.is_empty()
            && self.add_memberships.is_empty()
            && self.remove_memberships.is_empty()
            && self.update_profiles.is_empty()
            && self.adopt_ids.is_empty()
    }

    /// Applies the plan to an in-memory list of accounts: the reference meaning of a plan,
    /// which the metadata store's transaction must agree with.
    pub fn apply(&self, users: &mut Vec<BerthUser>) {
        for n in &self.create {
            users.push(BerthUser {
                username: n.username.clone(),
                origin: Origin::Directory,
                active: true,
                teams: BTreeSet::new(),
                email: n.email.clone(),
                full_name: n.full_name.clone(),
                directory_id: n.id.clone(),
            });
        }
        fn find<'a>(users: &'a mut [BerthUser], name: &str) -> Option<&'a mut BerthUser> {
            users.iter_mut().find(|u| {
                u.origin == Origin::Directory && u.username.to_lowercase() == name.to_lowercase()
            })
        }
        for name in &self.reactivate {
            if let Some(u) = find(users, name) {
                u.active = true;
            }
        }
        for name in &self.deactivate {
            if let Some(u) = find(users, name) {
                u.active = false;
            }
        }
        for m in &self.add_memberships {
            if let Some(u) = find(users, &m.username) {
                u.teams.insert(m.team.clone());
            }
        }
        for m in &self.remove_memberships {
            if let Some(u) = find(users, &m.username) {
                u.teams.remove(&m.team);
            }
        }
        for a in &self.adopt_ids {
            if let Some(u) = find(users, &a.username) {
                u.directory_id.get_or_insert_with(|| a.id.clone());
            }
        }
        for p in &self.update_profiles {
            if let Some(u) = find(users, &p.username) {
                if let Some(e) = &p.email {
                    u.email = Some(e.clone());
                }
                if let Some(n) = &p.full_name {
                    u.full_name = Some(n.clone());
                }
            }
        }
    }
}

/// Why no plan was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The snapshot has no user while Berth has active directory accounts.
    #[error("the directory returned no users while {active_directory_accounts} directory accounts are active; refusing to deactivate them all (set sync.allow_empty_directory to allow)")]
    EmptyDirectory {
        /// How many active directory accounts the plan would have deactivated.
        active_directory_accounts: usize,
    },
}

/// Computes the changes that make `current` agree with `snapshot` under `policy`.
pub fn plan(
    snapshot: &DirectorySnapshot,
    policy: &SyncPolicy,
    current: &[BerthUser],
) -> Result<SyncPlan, SyncError> {
    let active_directory_accounts = current
        .iter()
        .filter(|u| u.origin == Origin::Directory && u.active)
        .count();
    if snapshot.users.is_empty() && active_directory_accounts > 0 && !policy.allow_empty_directory {
        return Err(SyncError::EmptyDirectory {
            active_directory_accounts,
        });
    }

    let TeamMapping {
        unmanaged,
        mapped_teams,
        granted,
        mut warnings,
    } = team_mapping(snapshot, policy);
    let no_teams = BTreeSet::new();
    let teams_of = |name: &str| granted.get(name).unwrap_or(&no_teams);

    let accounts: BTreeMap<String, &BerthUser> = current
        .iter()
        .map(|u| (u.username.to_lowercase(), u))
        .collect();
    let directory = directory_entries(snapshot, &accounts, &mut warnings);
    let eligible = |name: &str| -> bool {
        directory.get(name).is_some_and(|u| {
            !u.disabled
                && match policy.create_users {
                    CreateUsers::All => true,
                    CreateUsers::MappedGroups => !teams_of(name).is_empty(),
                }
        })
    };

    let mut out = SyncPlan {
        warnings: snapshot.warnings.iter().cloned().chain(warnings).collect(),
        ..SyncPlan::default()
    };
    for (name, du) in &directory {
        match accounts.get(name) {
            Some(account) if account.origin == Origin::Local => out.conflicts.push(name.clone()),
            Some(_) => {}
            None if eligible(name) => {
                out.create.push(NewUser {
                    username: name.clone(),
                    dn: du.dn.clone(),
                    id: du.id.clone(),
                    email: du.email.clone(),
                    full_name: du.full_name.clone(),
                });
                for team in teams_of(name).iter().filter(|t| mapped_teams.contains(*t)) {
                    out.add_memberships.push(Membership {
                        username: name.clone(),
                        team: (*team).clone(),
                    });
                }
            }
            None => {}
        }
    }
    for (name, account) in &accounts {
        if account.origin != Origin::Directory {
            continue;
        }
        // An active member of a team left alone stays active while the directory still
        // has them: whether they are in its group cannot be told.
        let in_unmanaged = account.teams.iter().any(|t| unmanaged.contains(t));
        let present = directory.get(name).is_some_and(|u| !u.disabled);
        let keep = eligible(name) || (account.active && in_unmanaged && present);
        if let Some(du) = directory.get(name) {
            profile_changes(account, du, &mut out);
        }
        if keep && !account.active {
            out.reactivate.push(account.username.clone());
        }
        if !keep && account.active {
            out.deactivate.push(account.username.clone());
        }
        let wanted: &BTreeSet<&TeamRef> = if keep { teams_of(name) } else { &no_teams };
        for team in wanted.iter().filter(|t| mapped_teams.contains(*t)) {
            if !account.teams.contains(*team) {
                out.add_memberships.push(Membership {
                    username: account.username.clone(),
                    team: (*team).clone(),
                });
            }
        }
        for team in &account.teams {
            if mapped_teams.contains(team) && !wanted.contains(team) {
                out.remove_memberships.push(Membership {
                    username: account.username.clone(),
                    team: team.clone(),
                });
            }
        }
    }
    out.add_memberships.sort();
    out.remove_memberships.sort();
    Ok(out)
}

/// What the policy's team mappings say about this snapshot.
struct TeamMapping<'a> {
    /// Teams whose mapping matches no group: left as they are.
    unmanaged: BTreeSet<&'a TeamRef>,
    /// Teams whose membership the sync manages.
    mapped_teams: BTreeSet<&'a TeamRef>,
    /// Lower-case user name -> the mapped teams its groups grant (managed or not: both
    /// make a user eligible).
    granted: BTreeMap<String, BTreeSet<&'a TeamRef>>,
    warnings: Vec<String>,
}

/// The team mappings of `policy` applied to the groups of `snapshot`.
fn team_mapping<'a>(snapshot: &'a DirectorySnapshot, policy: &'a SyncPolicy) -> TeamMapping<'a> {
    // A mapping that matches no group tells nothing about who should be in its team: that
    // team is left alone (an empty group does match, and empties its team).
    let mut unmanaged: BTreeSet<&TeamRef> = BTreeSet::new();
    let mut warnings = Vec::new();
    for m in &policy.teams {
        if !snapshot.groups.iter().any(|g| m.matches(g)) {
            warnings.push(format!(
                "mapped group {:?} matches no directory group; team {} is left as it is",
                m.group, m.team
            ));
            unmanaged.insert(&m.team);
        }
    }
    let mapped_teams: BTreeSet<&TeamRef> = policy
        .teams
        .iter()
        .map(|m| &m.team)
        .filter(|t| !unmanaged.contains(t))
        .collect();
    let mut granted: BTreeMap<String, BTreeSet<&TeamRef>> = BTreeMap::new();
    for group in &snapshot.groups {
        let teams: Vec<&TeamRef> = policy
            .teams
            .iter()
            .filter(|m| m.matches(group))
            .map(|m| &m.team)
            .collect();
        if teams.is_empty() {
            continue;
        }
        for member in &group.members {
            granted
                .entry(member.to_lowercase())
                .or_default()
                .extend(teams.iter().copied());
        }
    }
    TeamMapping {
        unmanaged,
        mapped_teams,
        granted,
        warnings,
    }
}

/// The snapshot's users by lower-case name, without the entries whose name a directory
/// account of another entry holds (for the plan, that account's person is gone).
fn directory_entries<'a>(
    snapshot: &'a DirectorySnapshot,
    accounts: &BTreeMap<String, &BerthUser>,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, &'a DirectoryUser> {
    let mut directory: BTreeMap<String, &DirectoryUser> = BTreeMap::new();
    for u in &snapshot.users {
        directory.entry(u.username.to_lowercase()).or_insert(u);
    }
    // Directory accounts made for another entry than the one that now has their name: for
    // the plan, that name's entry is not in the directory (its person is gone).
    for (name, account) in accounts {
        if account.origin != Origin::Directory {
            continue;
        }
        if let Some(du) = directory.get(name) {
            if let (Some(had), Some(has)) = (&account.directory_id, &du.id) {
                if had != has {
                    warnings.push(format!(
                        "directory account {name} belongs to directory entry {had}, but the entry named {name} is now {has} ({}): the name was reused; the account is treated as departed and the new entry gets no account until the old one is renamed or deleted",
                        du.dn
                    ));
                    directory.remove(name);
                }
            }
        }
    }
    directory
}

/// The directory id to adopt and the profile fields to update for `account`, whose
/// directory entry is `du`.
fn profile_changes(account: &BerthUser, du: &DirectoryUser, out: &mut SyncPlan) {
    if let (None, Some(id)) = (&account.directory_id, &du.id) {
        out.adopt_ids.push(IdAdoption {
            username: account.username.clone(),
            id: id.clone(),
        });
    }
    let email = du
        .email
        .clone()
        .filter(|e| Some(e) != account.email.as_ref());
    let full_name = du
        .full_name
        .clone()
        .filter(|n| Some(n) != account.full_name.as_ref());
    if email.is_some() || full_name.is_some() {
        out.update_profiles.push(ProfileUpdate {
            username: account.username.clone(),
            email,
            full_name,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupMapping;
    use crate::snapshot::DirectoryGroup;
    use proptest::prelude::*;

    fn team(s: &str) -> TeamRef {
        TeamRef::parse(s).unwrap()
    }

    fn duser(name: &str, disabled: bool) -> DirectoryUser {
        DirectoryUser {
            dn: format!("uid={name},ou=people,dc=example,dc=org"),
            username: name.to_string(),
            id: None,
            email: Some(format!("{name}@example.org")),
            full_name: None,
            disabled,
        }
    }

    fn group(name: &str, members: &[&str]) -> DirectoryGroup {
        DirectoryGroup {
            dn: format!("cn={name},ou=groups,dc=example,dc=org"),
            name: name.to_string(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn account(name: &str, origin: Origin, active: bool, teams: &[&str]) -> BerthUser {
        BerthUser {
            username: name.to_string(),
            origin,
            active,
            teams: teams.iter().map(|t| team(t)).collect(),
            email: Some(format!("{name}@example.org")),
            full_name: None,
            directory_id: None,
        }
    }

    fn policy(create_users: CreateUsers) -> SyncPolicy {
        SyncPolicy {
            create_users,
            teams: vec![
                GroupMapping {
                    group: "developers".into(),
                    team: team("acme/devs"),
                },
                GroupMapping {
                    group: "cn=admins,ou=groups,dc=example,dc=org".into(),
                    team: team("acme/admins"),
                },
            ],
            allow_empty_directory: false,
        }
    }

    /// The sample directory: alice in developers and admins, bob in developers, carol in
    /// admins, dave in no group, eve disabled in developers.
    fn sample() -> DirectorySnapshot {
        DirectorySnapshot {
            users: vec![
                duser("alice", false),
                duser("bob", false),
                duser("carol", false),
                duser("dave", false),
                duser("eve", true),
            ],
            groups: vec![
                group("developers", &["alice", "bob", "eve"]),
                group("admins", &["alice", "carol"]),
                group("unmapped", &["dave"]),
            ],
            warnings: vec![],
        }
    }

    fn m(user: &str, t: &str) -> Membership {
        Membership {
            username: user.into(),
            team: team(t),
        }
    }

    fn names(v: &[NewUser]) -> Vec<&str> {
        v.iter().map(|n| n.username.as_str()).collect()
    }

    struct Case {
        name: &'static str,
        create_users: CreateUsers,
        current: Vec<BerthUser>,
        create: Vec<&'static str>,
        deactivate: Vec<&'static str>,
        reactivate: Vec<&'static str>,
        add: Vec<Membership>,
        remove: Vec<Membership>,
        conflicts: Vec<&'static str>,
    }

    fn case(name: &'static str, create_users: CreateUsers, current: Vec<BerthUser>) -> Case {
        Case {
            name,
            create_users,
            current,
            create: vec![],
            deactivate: vec![],
            reactivate: vec![],
            add: vec![],
            remove: vec![],
            conflicts: vec![],
        }
    }

    fn synced() -> Vec<BerthUser> {
        vec![
            account(
                "alice",
                Origin::Directory,
                true,
                &["acme/devs", "acme/admins"],
            ),
            account("bob", Origin::Directory, true, &["acme/devs"]),
            account("carol", Origin::Directory, true, &["acme/admins"]),
        ]
    }

    #[test]
    fn table() {
        use CreateUsers::*;
        use Origin::*;
        let cases = vec![
            Case {
                create: vec!["alice", "bob", "carol"],
                add: vec![
                    m("alice", "acme/admins"),
                    m("alice", "acme/devs"),
                    m("bob", "acme/devs"),
                    m("carol", "acme/admins"),
                ],
                ..case("empty berth, mapped groups only", MappedGroups, vec![])
            },
            Case {
                create: vec!["alice", "bob", "carol", "dave"],
                add: vec![
                    m("alice", "acme/admins"),
                    m("alice", "acme/devs"),
                    m("bob", "acme/devs"),
                    m("carol", "acme/admins"),
                ],
                ..case("empty berth, all users", All, vec![])
            },
            case("already synced", MappedGroups, synced()),
            Case {
                conflicts: vec!["bob"],
                ..case(
                    "local account with a directory name is left alone",
                    MappedGroups,
                    vec![
                        account("alice", Directory, true, &["acme/devs", "acme/admins"]),
                        account("bob", Local, false, &["acme/admins"]),
                        account("carol", Directory, true, &["acme/admins"]),
                    ],
                )
            },
            Case {
                deactivate: vec!["frank"],
                remove: vec![m("frank", "acme/devs")],
                ..case("user gone from the directory", MappedGroups, {
                    let mut s = synced();
                    s.push(account(
                        "frank",
                        Directory,
                        true,
                        &["acme/devs", "other/team"],
                    ));
                    s
                })
            },
            Case {
                deactivate: vec!["eve"],
                remove: vec![m("eve", "acme/devs")],
                ..case("user disabled in the directory", MappedGroups, {
                    let mut s = synced();
                    s.push(account("eve", Directory, true, &["acme/devs"]));
                    s
                })
            },
            Case {
                deactivate: vec!["dave"],
                ..case("user in no mapped group", MappedGroups, {
                    let mut s = synced();
                    s.push(account("dave", Directory, true, &[]));
                    s
                })
            },
            case("user in no mapped group, all users synced", All, {
                let mut s = synced();
                s.push(account("dave", Directory, true, &[]));
                s
            }),
            Case {
                reactivate: vec!["bob"],
                ..case(
                    "returning user is reactivated",
                    MappedGroups,
                    vec![
                        account("alice", Directory, true, &["acme/devs", "acme/admins"]),
                        account("bob", Directory, false, &["acme/devs"]),
                        account("carol", Directory, true, &["acme/admins"]),
                    ],
                )
            },
            Case {
                add: vec![m("bob", "acme/devs"), m("carol", "acme/admins")],
                remove: vec![m("bob", "acme/admins")],
                ..case(
                    "memberships follow the groups, unmapped teams stay",
                    MappedGroups,
                    vec![
                        account("alice", Directory, true, &["acme/devs", "acme/admins"]),
                        account("bob", Directory, true, &["acme/admins", "other/x"]),
                        account("carol", Directory, true, &["other/y"]),
                    ],
                )
            },
            Case {
                conflicts: vec!["alice"],
                ..case(
                    "usernames compare case-insensitively",
                    MappedGroups,
                    vec![
                        account("Alice", Local, true, &[]),
                        account("BOB", Directory, true, &["acme/devs"]),
                        account("carol", Directory, true, &["acme/admins"]),
                    ],
                )
            },
        ];
        for c in cases {
            let got = plan(&sample(), &policy(c.create_users), &c.current).unwrap();
            assert_eq!(names(&got.create), c.create, "{}: create", c.name);
            assert_eq!(got.deactivate, c.deactivate, "{}: deactivate", c.name);
            assert_eq!(got.reactivate, c.reactivate, "{}: reactivate", c.name);
            assert_eq!(got.add_memberships, c.add, "{}: add", c.name);
            assert_eq!(got.remove_memberships, c.remove, "{}: remove", c.name);
            assert_eq!(got.conflicts, c.conflicts, "{}: conflicts", c.name);
            // Applying the plan reaches a state whose plan is empty.
            let mut state = c.current.clone();
            got.apply(&mut state);
            let again = plan(&sample(), &policy(c.create_users), &state).unwrap();
            assert!(again.is_empty(), "{}: second plan {again:?}", c.name);
        }
    }

    /// Item 15: a typo in a mapped group name used to empty the team and deactivate every
    /// member whose only mapped group it was. Now the plan warns and leaves the team alone.
    #[test]
    fn mapping_that_matches_no_group_leaves_its_team_alone() {
        let typo = |group: &str| SyncPolicy {
            create_users: CreateUsers::MappedGroups,
            teams: vec![
                GroupMapping {
                    group: group.into(),
                    team: team("acme/devs"),
                },
                GroupMapping {
                    group: "cn=admins,ou=groups,dc=example,dc=org".into(),
                    team: team("acme/admins"),
                },
            ],
            allow_empty_directory: false,
        };
        // (mapped group, current state, deactivate, remove, add, warnings)
        type Row = (
            &'static str,
            Vec<BerthUser>,
            Vec<&'static str>,
            Vec<Membership>,
            Vec<Membership>,
            usize,
        );
        let rows: Vec<Row> = vec![
            // bob is only in acme/devs: he stays active and in the team.
            ("developpers", synced(), vec![], vec![], vec![], 1),
            (
                "cn=developpers,ou=groups,dc=example,dc=org",
                synced(),
                vec![],
                vec![],
                vec![],
                1,
            ),
            // A user gone from the directory or disabled is still deactivated (the
            // directory says so); the memberships of the team stay.
            (
                "developpers",
                {
                    let mut s = synced();
                    s.push(account("eve", Origin::Directory, true, &["acme/devs"]));
                    s.push(account("frank", Origin::Directory, true, &["acme/devs"]));
                    s
                },
                vec!["eve", "frank"],
                vec![],
                vec![],
                1,
            ),
            // The group spelled right: the team is managed as before.
            (
                "developers",
                {
                    let mut s = synced();
                    s.push(account("frank", Origin::Directory, true, &["acme/devs"]));
                    s
                },
                vec!["frank"],
                vec![m("frank", "acme/devs")],
                vec![],
                0,
            ),
        ];
        for (group, current, deactivate, remove, add, warnings) in rows {
            let p = typo(group);
            let got = plan(&sample(), &p, &current).unwrap();
            assert_eq!(got.deactivate, deactivate, "{group}");
            assert_eq!(got.remove_memberships, remove, "{group}");
            assert_eq!(got.add_memberships, add, "{group}");
            assert_eq!(got.warnings.len(), warnings, "{group}: {:?}", got.warnings);
            if warnings > 0 {
                assert!(got.warnings[0].contains(group) && got.warnings[0].contains("acme/devs"));
            }
            let mut state = current.clone();
            got.apply(&mut state);
            assert!(plan(&sample(), &p, &state).unwrap().is_empty(), "{group}");
        }
        // An existing group with no member is not a typo: it empties its team.
        let mut s = sample();
        s.groups[0].members.clear();
        let got = plan(&s, &policy(CreateUsers::MappedGroups), &synced()).unwrap();
        assert_eq!(got.deactivate, ["bob"]);
        assert!(got.warnings.is_empty());
    }

    /// Item 19: profile attributes follow the directory on every sync; an attribute the
    /// directory does not give is left alone.
    #[test]
    fn profiles_follow_the_directory() {
        let mut s = sample();
        s.users[0].email = Some("alice@new.example.org".into());
        s.users[0].full_name = Some("Alice Smith".into());
        s.users[1].email = None; // not given: bob keeps his
        s.users[2].full_name = Some("Carol D.".into());
        let mut current = synced();
        current[2].full_name = Some("Carol D.".into());
        current.push(account("eve", Origin::Directory, false, &[]));
        let got = plan(&s, &policy(CreateUsers::MappedGroups), &current).unwrap();
        assert_eq!(
            got.update_profiles,
            [ProfileUpdate {
                username: "alice".into(),
                email: Some("alice@new.example.org".into()),
                full_name: Some("Alice Smith".into()),
            }]
        );
        current[0].email = None;
        current[0].full_name = Some("Alice Smith".into());
        let got = plan(&s, &policy(CreateUsers::MappedGroups), &current).unwrap();
        assert_eq!(
            got.update_profiles,
            [ProfileUpdate {
                username: "alice".into(),
                email: Some("alice@new.example.org".into()),
                full_name: None,
            }]
        );
        let mut state = current.clone();
        got.apply(&mut state);
        assert_eq!(state[0].email.as_deref(), Some("alice@new.example.org"));
        assert!(plan(&s, &policy(CreateUsers::MappedGroups), &state)
            .unwrap()
            .is_empty());
    }

    /// Issue 10: an account belongs to the directory entry it was made for. `sam` left and
    /// the name was given to another person (another entry id): the old account is not
    /// handed over (not reactivated, no team, profile untouched, deactivated if active),
    /// the new person gets no account under that name, and the plan warns. An account with
    /// no stored id adopts the id of its entry; one with the entry's own id is kept.
    #[test]
    fn accounts_are_bound_to_their_entry() {
        let p = policy(CreateUsers::All);
        let with_id = |name: &str, id: &str| DirectoryUser {
            id: Some(id.into()),
            email: Some(format!("new-{name}@example.org")),
            ..duser(name, false)
        };
        let snap = DirectorySnapshot {
            users: vec![
                with_id("sam", "uuid-new-sam"),
                with_id("alice", "uuid-alice"),
                with_id("bob", "uuid-bob"),
            ],
            groups: vec![group("developers", &["sam", "alice", "bob"])],
            warnings: vec![],
        };
        let bound = |name: &str, id: Option<&str>, active| BerthUser {
            directory_id: id.map(str::to_string),
            ..account(name, Origin::Directory, active, &["acme/devs"])
        };
        for sam_active in [false, true] {
            let mut current = vec![
                bound("sam", Some("uuid-old-sam"), sam_active),
                bound("alice", Some("uuid-alice"), true),
                bound("bob", None, true),
            ];
            let got = plan(&snap, &p, &current).unwrap();
            assert!(got.create.is_empty(), "{got:?}");
            assert!(!got.reactivate.contains(&"sam".to_string()));
            assert_eq!(got.deactivate.contains(&"sam".to_string()), sam_active);
            assert!(got.add_memberships.iter().all(|m| m.username != "sam"));
            assert!(got.remove_memberships.contains(&m("sam", "acme/devs")));
            assert!(got.update_profiles.iter().all(|u| u.username != "sam"));
            assert_eq!(
                got.adopt_ids,
                [IdAdoption {
                    username: "bob".into(),
                    id: "uuid-bob".into()
                }]
            );
            assert!(
                got.warnings
                    .iter()
                    .any(|w| w.contains("sam") && w.contains("reused")),
                "{:?}",
                got.warnings
            );
            // Applying it settles: the next plan changes nothing (and still warns).
            got.apply(&mut current);
            let again = plan(&snap, &p, &current).unwrap();
            assert!(again.is_empty(), "{again:?}");
            assert_eq!(
                again
                    .warnings
                    .iter()
                    .filter(|w| w.contains("reused"))
                    .count(),
                1
            );
            assert!(current.iter().all(|u| u.username != "sam" || !u.active));
        }
        // Without ids on either side the name decides, as before.
        let snap = DirectorySnapshot {
            users: vec![duser("sam", false)],
            ..snap.clone()
        };
        let got = plan(&snap, &p, &[bound("sam", Some("uuid-old-sam"), false)]).unwrap();
        assert_eq!(got.reactivate, ["sam"]);
        // A new account carries its entry's id.
        let snap = DirectorySnapshot {
            users: vec![with_id("sam", "uuid-new-sam")],
            ..snap
        };
        let got = plan(&snap, &p, &[]).unwrap();
        assert_eq!(got.create[0].id.as_deref(), Some("uuid-new-sam"));
    }

    #[test]
    fn empty_directory_is_refused_unless_allowed() {
        let empty = DirectorySnapshot::default();
        let err = plan(&empty, &policy(CreateUsers::MappedGroups), &synced()).unwrap_err();
        assert_eq!(
            err,
            SyncError::EmptyDirectory {
                active_directory_accounts: 3
            }
        );
        let mut p = policy(CreateUsers::MappedGroups);
        p.allow_empty_directory = true;
        let got = plan(&empty, &p, &synced()).unwrap();
        assert_eq!(got.deactivate, ["alice", "bob", "carol"]);
        // Nothing to lose: an empty directory with no directory accounts is fine.
        let locals = [account("root", Origin::Local, true, &[])];
        assert!(plan(&empty, &policy(CreateUsers::All), &locals)
            .unwrap()
            .is_empty());
    }

    const NAMES: &[&str] = &["alice", "bob", "carol", "dave", "eve", "frank"];
    const TEAMS: &[&str] = &["acme/devs", "acme/admins", "other/x"];

    fn arb_snapshot() -> impl Strategy<Value = DirectorySnapshot> {
        let users = proptest::sample::subsequence(NAMES, 0..=NAMES.len())
            .prop_flat_map(|names| {
                let n = names.len();
                (Just(names), proptest::collection::vec(any::<bool>(), n))
            })
            .prop_map(|(names, disabled)| {
                names
                    .iter()
                    .zip(disabled)
                    .map(|(n, d)| duser(n, d))
                    .collect::<Vec<_>>()
            });
        let groups =
            proptest::collection::vec(proptest::sample::subsequence(NAMES, 0..=NAMES.len()), 3)
                .prop_map(|members| {
                    ["developers", "admins", "unmapped"]
                        .iter()
                        .zip(members)
                        .map(|(g, ms)| group(g, &ms))
                        .collect::<Vec<_>>()
                });
        (users, groups).prop_map(|(users, groups)| DirectorySnapshot {
            users,
            groups,
            warnings: vec![],
        })
    }

    fn arb_accounts() -> impl Strategy<Value = Vec<BerthUser>> {
        proptest::collection::btree_map(
            proptest::sample::select(NAMES),
            (
                any::<bool>(),
                any::<bool>(),
                proptest::sample::subsequence(TEAMS, 0..=TEAMS.len()),
            ),
            0..=NAMES.len(),
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(name, (local, active, teams))| {
                    let origin = if local {
                        Origin::Local
                    } else {
                        Origin::Directory
                    };
                    account(name, origin, active, &teams)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn local_accounts_never_change(
            snapshot in arb_snapshot(),
            current in arb_accounts(),
            all in any::<bool>(),
            allow_empty in any::<bool>(),
        ) {
            let mut p = policy(if all { CreateUsers::All } else { CreateUsers::MappedGroups });
            p.allow_empty_directory = allow_empty;
            let Ok(got) = plan(&snapshot, &p, &current) else { return Ok(()) };
            let locals: BTreeSet<String> = current
                .iter()
                .filter(|u| u.origin == Origin::Local)
                .map(|u| u.username.to_lowercase())
                .collect();
            let changed = got.create.iter().map(|n| &n.username)
                .chain(&got.deactivate)
                .chain(&got.reactivate)
                .chain(got.add_memberships.iter().map(|m| &m.username))
                .chain(got.remove_memberships.iter().map(|m| &m.username))
                .chain(got.update_profiles.iter().map(|p| &p.username));
            for name in changed {
                prop_assert!(!locals.contains(&name.to_lowercase()), "{name} is local: {got:?}");
            }
            // And applying the plan leaves every local account exactly as it was, and
            // reaches a fixed point.
            let mut state = current.clone();
            got.apply(&mut state);
            for before in current.iter().filter(|u| u.origin == Origin::Local) {
                prop_assert!(state.contains(before));
            }
            let again = plan(&snapshot, &p, &state).unwrap();
            prop_assert!(again.is_empty(), "second plan {again:?}");
        }
    }
}
