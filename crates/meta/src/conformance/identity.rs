//! Conformance cases of [`IdentityStore`]: accounts, organisations, teams, grants,
//! repository settings, tokens, signing keys and the audit log. Run by the same
//! [`meta_store_conformance!`](crate::meta_store_conformance) as the registry cases.

pub use super::signatures::registered_keys_and_signature_facts;
use super::FullStore;
use crate::identity::*;
use crate::MetaError;
use berth_auth::rbac::{
    decide, Decision, GrantTarget, NamespaceKind, Permission, Restriction, RestrictionEntry,
    RestrictionTarget, Role, TeamRef, Visibility,
};
use berth_auth::secret::{SecretHash, SecretId};
use berth_oci::{Digest, RepoName};
use serde_json::json;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap_or_else(|e| panic!("test repository name {s:?}: {e}"))
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        name: name.to_string(),
        full_name: format!("{name} full"),
        email: Some(format!("{name}@example.test")),
        password: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_string()),
        origin: Origin::Local,
        active: true,
        is_system_admin: false,
        is_service_account: false,
        claim_namespace: false,
    }
}

pub(super) async fn user(store: &FullStore, name: &str) -> UserRecord {
    store
        .user_create(&new_user(name))
        .await
        .unwrap_or_else(|e| panic!("user_create {name}: {e}"))
}

async fn org(store: &FullStore, name: &str, settings: OrgSettings) -> OrgRecord {
    store
        .org_create(name, &format!("{name} Inc."), &settings, false)
        .await
        .unwrap_or_else(|e| panic!("org_create {name}: {e}"))
}

async fn team(store: &FullStore, org: &str, name: &str) -> TeamRecord {
    store
        .team_create(org, name, None)
        .await
        .unwrap_or_else(|e| panic!("team_create {org}/{name}: {e}"))
}

/// Creates `name` through the registry path (a blob link), as a first push does.
async fn link(store: &FullStore, name: &str) {
    store
        .blob_link(&repo(name), &Digest::sha256_of(name.as_bytes()), 3)
        .await
        .unwrap_or_else(|e| panic!("blob_link {name}: {e}"));
}

/// Store calls a case expects to succeed, each panicking with what failed.
trait Must {
    /// The settings of repository `r`, which must exist.
    async fn settings_of(&self, r: &str) -> RepoSettings;
    /// Creates organisation `name` with default settings.
    async fn create_org(&self, name: &str) -> Result<OrgRecord, MetaError>;
    async fn add_member(&self, org: &str, team: &str, user: AccountId);
    async fn create_token(&self, t: &NewToken) -> TokenRecord;
    /// Sets a user's `active` and `is_system_admin` flags (`None` leaves one as it is).
    async fn set_flags(&self, user: AccountId, flags: [Option<bool>; 2]) -> UserRecord;
    /// Creates token `n` of `kind` for `user` (see [`new_token`]).
    async fn issue(&self, n: u8, user: AccountId, kind: TokenKind) -> TokenRecord;
    /// The names of a [`repos_list`](AccessStore::repos_list) page.
    async fn repo_names(&self, ns: Option<&str>, last: Option<&str>, n: u32) -> Vec<String>;
    async fn grant_namespace(&self, org: &str, team: &str, role: Role);
}

impl Must for FullStore {
    async fn settings_of(&self, r: &str) -> RepoSettings {
        let got = self.repo_settings(&repo(r)).await;
        let got = got.unwrap_or_else(|e| panic!("repo_settings {r}: {e}"));
        got.unwrap_or_else(|| panic!("repository {r} has no settings"))
    }

    async fn create_org(&self, name: &str) -> Result<OrgRecord, MetaError> {
        self.org_create(name, "", &OrgSettings::default(), false)
            .await
    }

    async fn add_member(&self, org: &str, team: &str, user: AccountId) {
        let added = self.team_member_add(org, team, user).await;
        added.unwrap_or_else(|e| panic!("team_member_add {org}/{team} {user}: {e}"))
    }

    async fn create_token(&self, t: &NewToken) -> TokenRecord {
        let made = self.token_create(t).await;
        made.unwrap_or_else(|e| panic!("token_create {}: {e}", t.id))
    }

    async fn set_flags(&self, user: AccountId, flags: [Option<bool>; 2]) -> UserRecord {
        let [active, is_system_admin] = flags;
        let patch = UserPatch {
            active,
            is_system_admin,
            ..UserPatch::default()
        };
        let done = self.user_update(user, &patch).await;
        done.unwrap_or_else(|e| panic!("user_update {user}: {e}"))
    }

    async fn issue(&self, n: u8, user: AccountId, kind: TokenKind) -> TokenRecord {
        self.create_token(&new_token(n, user, kind)).await
    }

    async fn repo_names(&self, ns: Option<&str>, last: Option<&str>, n: u32) -> Vec<String> {
        let list = self.repos_list(ns, last, n).await;
        let list = list.unwrap_or_else(|e| panic!("repos_list {ns:?} after {last:?}: {e}"));
        names(&list, |r| r.name.as_str())
    }

    async fn grant_namespace(&self, org: &str, team: &str, role: Role) {
        let done = self.grant_namespace_set(org, team, role).await;
        done.unwrap_or_else(|e| panic!("grant_namespace_set {org}/{team}: {e}"))
    }
}

fn team_ref(org: &str, team: &str) -> TeamRef {
    TeamRef {
        org: org.to_string(),
        team: team.to_string(),
    }
}

fn expect_conflict<T: std::fmt::Debug>(r: Result<T, MetaError>, what: &str) {
    match r {
        Err(MetaError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn expect_not_found<T: std::fmt::Debug>(r: Result<T, MetaError>, what: &str) {
    match r {
        Err(MetaError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn expect_invalid<T: std::fmt::Debug>(r: Result<T, MetaError>, what: &str) {
    match r {
        Err(MetaError::Invalid(_)) => {}
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

fn secret_id(n: u8) -> SecretId {
    SecretId::parse(&format!(
        "{:016x}",
        0xabc0_0000_0000_0000_u64 + u64::from(n)
    ))
    .expect("id")
}

fn secret_hash(n: u8) -> SecretHash {
    SecretHash::from_hex(&format!("{n:02x}").repeat(32)).expect("hash")
}

fn new_token(n: u8, user: AccountId, kind: TokenKind) -> NewToken {
    NewToken {
        id: secret_id(n),
        kind,
        user_id: user,
        description: format!("token {n}"),
        hash: secret_hash(n),
        expires_at: None,
        restriction: None,
        parent: (kind == TokenKind::Refresh).then_some(TokenParent::Password { epoch: 0 }),
    }
}

fn refresh_of(n: u8, user: AccountId, parent: TokenParent) -> NewToken {
    NewToken {
        parent: Some(parent),
        ..new_token(n, user, TokenKind::Refresh)
    }
}

async fn revoked(store: &FullStore, n: u8) -> bool {
    let token = store.token_get(&secret_id(n)).await.expect("token_get");
    token.unwrap_or_else(|| panic!("token {n} is gone")).revoked
}

fn names<T>(v: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
    v.iter().map(|x| f(x).to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// Cases

/// Users and organisations share one namespace of names; names are lowercase; lookups by
/// id and name agree; listings page by name and keep the kinds apart.
pub async fn accounts_share_one_namespace(store: FullStore) {
    let alice = user(&store, "alice").await;
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.origin, Origin::Local);
    assert!(alice.active && !alice.is_system_admin && !alice.is_service_account);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert!(alice.password.as_deref().unwrap().starts_with("$argon2id$"));
    assert!(alice.created_at > 0 && alice.updated_at == alice.created_at);
    assert!(
        !format!("{alice:?}").contains("argon2"),
        "Debug hides the hash"
    );

    expect_conflict(store.user_create(&new_user("alice")).await, "user twice");
    expect_conflict(store.create_org("alice").await, "org named like a user");
    let acme = org(&store, "acme", OrgSettings::default()).await;
    assert_eq!(acme.settings, OrgSettings::default());
    expect_conflict(
        store.user_create(&new_user("acme")).await,
        "user named like an org",
    );
    expect_conflict(store.create_org("acme").await, "org twice");
    expect_invalid(store.user_create(&new_user("Bob")).await, "upper-case user");
    expect_invalid(store.create_org("ACME2").await, "upper-case org");
    expect_invalid(store.user_create(&new_user("")).await, "empty name");

    let by_id = store.user_get(UserKey::Id(alice.id)).await.expect("get");
    let by_name = store.user_get(UserKey::Name("alice")).await.expect("get");
    assert_eq!(by_id.as_ref(), Some(&alice));
    assert_eq!(by_name.as_ref(), Some(&alice));
    assert_eq!(
        store.user_get(UserKey::Name("acme")).await.expect("get"),
        None
    );
    assert_eq!(
        store.user_get(UserKey::Id(acme.id)).await.expect("get"),
        None
    );
    assert_eq!(
        store.user_get(UserKey::Name("nobody")).await.expect("get"),
        None
    );
    assert_eq!(store.org_get("alice").await.expect("org_get"), None);
    assert_eq!(store.org_get("acme").await.expect("org_get"), Some(acme));

    for n in ["carol", "bob", "dave"] {
        user(&store, n).await;
    }
    org(&store, "beta", OrgSettings::default()).await;
    let page1 = store.users_list(None, 2).await.expect("users_list");
    assert_eq!(names(&page1, |u| &u.name), ["alice", "bob"]);
    let page2 = store.users_list(Some("bob"), 10).await.expect("users_list");
    assert_eq!(names(&page2, |u| &u.name), ["carol", "dave"]);
    let orgs = store.orgs_list(None, 10).await.expect("orgs_list");
    assert_eq!(names(&orgs, |o| &o.name), ["acme", "beta"]);
    let orgs = store.orgs_list(Some("acme"), 10).await.expect("orgs_list");
    assert_eq!(names(&orgs, |o| &o.name), ["beta"]);
}

/// A directory account keeps the immutable identifier of its directory entry: stored at
/// creation or adopted later by a patch of its origin, read back by every read, and
/// unique (two accounts never stand for one entry); a patch without an origin keeps it.
pub async fn directory_ids_are_stored_and_unique(store: FullStore) {
    let dir = |name: &str, id: Option<&str>| Origin::Directory {
        dn: format!("uid={name},ou=people,dc=example,dc=test"),
        id: id.map(str::to_string),
    };
    let mut nu = new_user("sam");
    nu.password = None;
    nu.origin = dir("sam", Some("0b6f5c1e-1111-4c3a-9d7e-000000000001"));
    let sam = store.user_create(&nu).await.expect("user_create");
    assert_eq!(sam.origin, nu.origin);
    let got = store.user_get(UserKey::Id(sam.id)).await.expect("get");
    assert_eq!(got.map(|u| u.origin), Some(nu.origin.clone()));
    let listed = store.users_list(None, 10).await.expect("list");
    assert_eq!(listed[0].origin, nu.origin);
    // An account from before the column: no id, adopted by a patch of its origin.
    let mut old = new_user("ola");
    old.origin = dir("ola", None);
    let ola = store.user_create(&old).await.expect("user_create");
    assert_eq!(ola.origin, dir("ola", None));
    let adopted = store
        .user_update(
            ola.id,
            &UserPatch {
                origin: Some(dir("ola", Some("AQIDBA=="))),
                ..UserPatch::default()
            },
        )
        .await
        .expect("adopt");
    assert_eq!(adopted.origin, dir("ola", Some("AQIDBA==")));
    let other = store.set_flags(ola.id, [Some(false), None]).await;
    assert_eq!(other.origin, dir("ola", Some("AQIDBA==")), "kept");
    // One entry, one account.
    let mut twin = new_user("sam2");
    twin.origin = dir("sam2", Some("0b6f5c1e-1111-4c3a-9d7e-000000000001"));
    assert!(matches!(
        store.user_create(&twin).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(matches!(
        store
            .user_update(
                ola.id,
                &UserPatch {
                    origin: Some(dir("ola", Some("0b6f5c1e-1111-4c3a-9d7e-000000000001"))),
                    ..UserPatch::default()
                },
            )
            .await,
        Err(MetaError::Conflict(_))
    ));
    // Many accounts without an id.
    for name in ["nia", "noa"] {
        let mut n = new_user(name);
        n.origin = dir(name, None);
        store.user_create(&n).await.expect("no id");
    }
}

/// A patch changes what it names and nothing else; deleting a user takes their
/// memberships and tokens.
pub async fn user_update_and_delete(store: FullStore) {
    let u = user(&store, "erin").await;
    let other = user(&store, "frank").await;
    let changed = store
        .user_update(
            u.id,
            &UserPatch {
                email: Some(None),
                password: Some(None),
                origin: Some(Origin::Directory {
                    dn: "uid=erin,ou=people,dc=example,dc=test".into(),
                    id: None,
                }),
                is_system_admin: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("user_update");
    assert_eq!(changed.full_name, u.full_name, "untouched");
    assert_eq!(changed.email, None);
    assert_eq!(changed.password, None);
    assert_eq!(
        changed.origin,
        Origin::Directory {
            dn: "uid=erin,ou=people,dc=example,dc=test".into(),
            id: None,
        }
    );
    assert!(changed.is_system_admin && changed.active && !changed.is_service_account);
    assert!(changed.updated_at >= u.updated_at);
    let again = store
        .user_update(
            u.id,
            &UserPatch {
                full_name: Some("Erin E.".into()),
                email: Some(Some("e@example.test".into())),
                active: Some(false),
                is_service_account: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("user_update");
    assert_eq!(again.full_name, "Erin E.");
    assert_eq!(again.email.as_deref(), Some("e@example.test"));
    assert!(!again.active && again.is_service_account && again.is_system_admin);
    assert_eq!(again.origin, changed.origin, "origin kept");
    assert_eq!(
        store.user_get(UserKey::Id(u.id)).await.expect("get"),
        Some(again)
    );
    expect_not_found(
        store.user_update(999_999, &UserPatch::default()).await,
        "update of a missing user",
    );

    org(&store, "team-org", OrgSettings::default()).await;
    team(&store, "team-org", "devs").await;
    store.add_member("team-org", "devs", u.id).await;
    store.issue(1, u.id, TokenKind::Access).await;
    store.issue(2, other.id, TokenKind::Access).await;

    assert!(store.user_delete(u.id).await.expect("user_delete"));
    assert!(!store.user_delete(u.id).await.expect("user_delete twice"));
    assert_eq!(store.user_get(UserKey::Id(u.id)).await.expect("get"), None);
    assert!(store
        .org_members("team-org")
        .await
        .expect("org_members")
        .is_empty());
    assert!(store
        .team_members("team-org", "devs")
        .await
        .expect("team_members")
        .is_empty());
    assert_eq!(
        store.token_get(&secret_id(1)).await.expect("token_get"),
        None
    );
    assert!(store
        .token_get(&secret_id(2))
        .await
        .expect("token_get")
        .is_some());
    // The name is free again.
    user(&store, "erin").await;
}

/// Organisation settings, owners and members; teams, their directory groups and members;
/// a team member is an organisation member; leaving the organisation leaves its teams.
pub async fn organisations_members_and_teams(store: FullStore) {
    let ben = org_settings_and_members(&store).await;
    let cyd = teams_and_their_members(&store, &ben).await;
    leaving_and_deleting_the_org(&store, &ben, &cyd).await;
}

/// Settings of `acme`, its owner `ann` and member `ben` (returned).
async fn org_settings_and_members(store: &FullStore) -> UserRecord {
    let o = org(store, "acme", OrgSettings::default()).await;
    let (ann, ben) = (user(store, "ann").await, user(store, "ben").await);
    let settings = OrgSettings {
        members_can_create: true,
        default_visibility: Visibility::Public,
    };
    let updated = store
        .org_update("acme", &settings)
        .await
        .expect("org_update");
    assert_eq!(updated.settings, settings);
    assert_eq!((updated.id, updated.created_at), (o.id, o.created_at));
    expect_not_found(store.org_update("nope", &settings).await, "missing org");
    expect_not_found(store.org_update("ann", &settings).await, "a user is no org");

    store
        .org_member_set("acme", ann.id, true)
        .await
        .expect("set owner");
    store
        .org_member_set("acme", ben.id, false)
        .await
        .expect("set member");
    expect_not_found(
        store.org_member_set("nope", ann.id, false).await,
        "missing org",
    );
    expect_not_found(
        store.org_member_set("acme", 999_999, false).await,
        "missing user",
    );
    expect_not_found(
        store.org_member_set("acme", o.id, false).await,
        "an org is no user",
    );
    let members = store.org_members("acme").await.expect("org_members");
    assert_eq!(
        members,
        vec![
            Member {
                user_id: ann.id,
                name: "ann".into(),
                is_owner: true
            },
            Member {
                user_id: ben.id,
                name: "ben".into(),
                is_owner: false
            },
        ]
    );
    store
        .org_member_set("acme", ann.id, false)
        .await
        .expect("demote");
    assert!(!store.org_members("acme").await.expect("members")[0].is_owner);
    expect_not_found(store.org_members("nope").await, "members of a missing org");
    ben
}

/// Teams of `acme`, their directory groups and members; `cyd` (returned) joins two.
async fn teams_and_their_members(store: &FullStore, ben: &UserRecord) -> UserRecord {
    let devs = store
        .team_create("acme", "devs", Some("cn=devs,ou=groups,dc=example,dc=test"))
        .await
        .expect("team_create");
    assert_eq!(devs.org, "acme");
    assert_eq!(
        devs.directory_group.as_deref(),
        Some("cn=devs,ou=groups,dc=example,dc=test")
    );
    team(store, "acme", "ops").await;
    expect_conflict(store.team_create("acme", "devs", None).await, "team twice");
    expect_not_found(
        store.team_create("nope", "devs", None).await,
        "team of no org",
    );
    expect_not_found(
        store.team_create("ann", "devs", None).await,
        "team of a user",
    );
    expect_invalid(
        store.team_create("acme", "Devs", None).await,
        "upper-case team",
    );
    org(store, "other", OrgSettings::default()).await;
    team(store, "other", "devs").await; // same name, other organisation
    assert_eq!(
        store.team_get("acme", "devs").await.expect("team_get"),
        Some(devs.clone())
    );
    assert_eq!(
        store.team_get("acme", "nope").await.expect("team_get"),
        None
    );
    let teams = store.teams_list("acme").await.expect("teams_list");
    assert_eq!(names(&teams, |t| &t.name), ["devs", "ops"]);
    assert!(store
        .team_set_directory_group("acme", "ops", Some("ops-group"))
        .await
        .expect("set group"));
    assert!(store
        .team_set_directory_group("acme", "devs", None)
        .await
        .expect("clear group"));
    assert!(!store
        .team_set_directory_group("acme", "nope", None)
        .await
        .expect("missing team"));
    let teams = store.teams_list("acme").await.expect("teams_list");
    assert_eq!(teams[0].directory_group, None);
    assert_eq!(teams[1].directory_group.as_deref(), Some("ops-group"));

    let cyd = user(store, "cyd").await;
    store.add_member("acme", "devs", cyd.id).await;
    store.add_member("acme", "devs", cyd.id).await;
    store.add_member("acme", "ops", cyd.id).await;
    store.add_member("acme", "devs", ben.id).await;
    expect_not_found(
        store.team_member_add("acme", "nope", cyd.id).await,
        "no team",
    );
    expect_not_found(
        store.team_member_add("acme", "devs", 999_999).await,
        "no user",
    );
    let m = store
        .team_members("acme", "devs")
        .await
        .expect("team_members");
    assert_eq!(names(&m, |m| &m.name), ["ben", "cyd"]);
    expect_not_found(
        store.team_members("acme", "nope").await,
        "members of no team",
    );
    let members = store.org_members("acme").await.expect("org_members");
    assert_eq!(names(&members, |m| &m.name), ["ann", "ben", "cyd"]);

    let subject = store
        .subject_for(UserKey::Name("cyd"))
        .await
        .expect("subject_for")
        .expect("a subject");
    let u = subject.user.expect("user");
    assert_eq!(
        u.teams,
        vec![team_ref("acme", "devs"), team_ref("acme", "ops")]
    );
    cyd
}

/// Leaving a team, the organisation (and so its teams), deleting the organisation.
async fn leaving_and_deleting_the_org(store: &FullStore, ben: &UserRecord, cyd: &UserRecord) {
    assert!(store
        .team_member_remove("acme", "ops", cyd.id)
        .await
        .expect("remove"));
    assert!(!store
        .team_member_remove("acme", "ops", cyd.id)
        .await
        .expect("remove twice"));
    assert!(store
        .org_member_remove("acme", cyd.id)
        .await
        .expect("leave"));
    assert!(!store
        .org_member_remove("acme", cyd.id)
        .await
        .expect("leave twice"));
    assert!(!store
        .org_member_remove("nope", cyd.id)
        .await
        .expect("no org"));
    let m = store
        .team_members("acme", "devs")
        .await
        .expect("team_members");
    assert_eq!(
        names(&m, |m| &m.name),
        ["ben"],
        "leaving the org leaves its teams"
    );

    assert!(store.org_delete("acme").await.expect("org_delete"));
    assert!(!store.org_delete("acme").await.expect("org_delete twice"));
    assert!(!store.org_delete("ann").await.expect("a user is no org"));
    assert_eq!(
        store.team_get("acme", "devs").await.expect("team_get"),
        None
    );
    let subject = store
        .subject_for(UserKey::Id(ben.id))
        .await
        .expect("subject_for")
        .expect("subject");
    let u = subject.user.expect("user");
    assert!(u.orgs.is_empty() && u.teams.is_empty());
    assert!(store
        .team_get("other", "devs")
        .await
        .expect("get")
        .is_some());
}

/// Deleting a team removes its memberships and grants, and nothing of other teams.
pub async fn team_delete_cascades(store: FullStore) {
    org(&store, "acme", OrgSettings::default()).await;
    let u = user(&store, "uma").await;
    link(&store, "acme/app").await;
    for t in ["devs", "ops"] {
        team(&store, "acme", t).await;
        store.add_member("acme", t, u.id).await;
        store
            .grant_repo_set("acme", t, &repo("acme/app"), Role::ReadWrite)
            .await
            .expect("grant repo");
        store.grant_namespace("acme", t, Role::ReadOnly).await;
    }
    assert_eq!(store.grants_of_org("acme").await.expect("grants").len(), 4);
    assert!(store
        .team_delete("acme", "devs")
        .await
        .expect("team_delete"));
    assert!(!store.team_delete("acme", "devs").await.expect("twice"));
    assert!(!store.team_delete("nope", "devs").await.expect("no org"));
    let grants = store.grants_of_org("acme").await.expect("grants");
    assert_eq!(grants.len(), 2);
    assert!(grants.iter().all(|g| g.team == team_ref("acme", "ops")));
    assert_eq!(store.grants_of_user(u.id).await.expect("grants").len(), 2);
    let s = store
        .subject_for(UserKey::Id(u.id))
        .await
        .expect("subject")
        .expect("some");
    assert_eq!(s.user.expect("user").teams, vec![team_ref("acme", "ops")]);
    // A new team of the same name starts empty.
    team(&store, "acme", "devs").await;
    assert!(store
        .team_members("acme", "devs")
        .await
        .expect("members")
        .is_empty());
    assert_eq!(store.grants_of_org("acme").await.expect("grants").len(), 2);
}

/// New repositories take their namespace's default visibility (private without one);
/// visibility can be read and changed; creation through the management path records its
/// creator; listings page and filter by namespace exactly.
pub async fn repository_settings_and_default_visibility(store: FullStore) {
    let pubns = OrgSettings {
        members_can_create: false,
        default_visibility: Visibility::Public,
    };
    org(&store, "open", pubns).await;
    org(&store, "closed", OrgSettings::default()).await;
    let owner = user(&store, "olga").await;
    link(&store, "open/a").await;
    link(&store, "closed/a").await;
    link(&store, "olga/a").await;
    link(&store, "nobody/a").await;
    for (r, want) in [
        ("open/a", Visibility::Public),
        ("closed/a", Visibility::Private),
        ("olga/a", Visibility::Private),
        ("nobody/a", Visibility::Private),
    ] {
        assert_eq!(store.settings_of(r).await.visibility, want, "{r}");
    }
    assert_eq!(
        store.repo_settings(&repo("open/none")).await.expect("get"),
        None
    );
    let s = store.settings_of("open/a").await;
    assert_eq!(
        s.created_by, None,
        "a push-created repository has no recorded creator"
    );

    let made = store
        .repo_create(&repo("open/b"), Some(owner.id), None)
        .await
        .expect("repo_create");
    assert_eq!(made.visibility, Visibility::Public);
    assert_eq!(made.created_by, Some(owner.id));
    assert_eq!(
        store.repo_settings(&repo("open/b")).await.unwrap(),
        Some(made)
    );
    let made = store
        .repo_create(&repo("open/c"), None, Some(Visibility::Private))
        .await
        .expect("repo_create");
    assert_eq!(
        made.visibility,
        Visibility::Private,
        "explicit beats the default"
    );
    expect_conflict(
        store.repo_create(&repo("open/a"), None, None).await,
        "existing repository",
    );
    assert!(store.repo_exists(&repo("open/b")).await.expect("exists"));

    assert!(store
        .repo_set_visibility(&repo("closed/a"), Visibility::Public)
        .await
        .expect("set"));
    assert_eq!(
        store.settings_of("closed/a").await.visibility,
        Visibility::Public
    );
    assert!(!store
        .repo_set_visibility(&repo("closed/none"), Visibility::Public)
        .await
        .expect("set missing"));

    // The creator's account going away keeps the repository.
    assert!(store.user_delete(owner.id).await.expect("delete"));
    let s = store.settings_of("open/b").await;
    assert_eq!(s.created_by, None);
    repository_listing_pages(&store).await;
    visible_listing_matches_repos_list(&store).await;
}

/// Listing by namespace: neighbours that sort next to it, pages, cursors.
async fn repository_listing_pages(store: &FullStore) {
    // Neighbours that sort between "open/" and "open0" or right next to "open".
    for n in [
        "open", "open-x/a", "open.x/a", "open_x", "opem/z", "opena/a",
    ] {
        link(store, n).await;
    }
    let all = store.repos_list(None, None, 100).await.expect("repos_list");
    assert_eq!(all.len(), 12);
    let open = store
        .repos_list(Some("open"), None, 100)
        .await
        .expect("list");
    assert_eq!(
        names(&open, |r| r.name.as_str()),
        ["open", "open/a", "open/b", "open/c"]
    );
    let p1 = store.repos_list(Some("open"), None, 2).await.expect("list");
    assert_eq!(names(&p1, |r| r.name.as_str()), ["open", "open/a"]);
    let p2 = store
        .repos_list(Some("open"), Some("open/a"), 2)
        .await
        .expect("list");
    assert_eq!(names(&p2, |r| r.name.as_str()), ["open/b", "open/c"]);
    let p3 = store
        .repos_list(Some("open"), Some("open/c"), 2)
        .await
        .expect("list");
    assert!(p3.is_empty());
    // A cursor before the namespace starts at its first name; one among the names that
    // sort between `open` and `open/` (`open-x/a`) continues with `open/a`.
    assert_eq!(
        store.repo_names(Some("open"), Some("olga/a"), 100).await,
        ["open", "open/a", "open/b", "open/c"]
    );
    assert_eq!(
        store.repo_names(Some("open"), Some("open-x/a"), 100).await,
        ["open/a", "open/b", "open/c"]
    );
    let p = store
        .repos_list(None, Some("olga/a"), 3)
        .await
        .expect("list");
    assert_eq!(
        names(&p, |r| r.name.as_str()),
        ["opem/z", "open", "open-x/a"]
    );
}

/// The listing of what a caller may see matches repos_list for each part of the scope.
async fn visible_listing_matches_repos_list(store: &FullStore) {
    // The listing of what a caller may see: each part of the scope, alone and together,
    // gives exactly the rows repos_list gives for it, in order and page by page.
    let every = store.repos_list(None, None, 100).await.expect("list");
    let public: Vec<&str> = every
        .iter()
        .filter(|r| r.visibility == Visibility::Public)
        .map(|r| r.name.as_str())
        .collect();
    assert!(!public.is_empty() && public.len() < every.len());
    let visible = |scope: VisibleScope, ns: Option<&'static str>| {
        let store = store.clone();
        async move {
            let mut out = Vec::new();
            let mut last: Option<String> = None;
            loop {
                let page = store
                    .repos_visible(&scope, ns, last.as_deref(), 2)
                    .await
                    .expect("repos_visible");
                out.extend(page.iter().map(|r| r.name.as_str().to_string()));
                if page.len() < 2 {
                    return out;
                }
                last = out.last().cloned();
            }
        }
    };
    let public_only = VisibleScope {
        public: true,
        ..VisibleScope::default()
    };
    assert_eq!(visible(public_only.clone(), None).await, public);
    let open_ns = VisibleScope {
        namespaces: vec!["open".into()],
        ..VisibleScope::default()
    };
    assert_eq!(
        visible(open_ns, None).await,
        ["open", "open/a", "open/b", "open/c"]
    );
    let named = VisibleScope {
        repos: vec!["open/b".into(), "closed/a".into(), "nowhere/x".into()],
        ..VisibleScope::default()
    };
    assert_eq!(visible(named, None).await, ["closed/a", "open/b"]);
    let all_parts = VisibleScope {
        public: true,
        namespaces: vec!["open".into(), "opena".into()],
        repos: vec!["open/b".into(), "opem/z".into()],
    };
    let mut want: Vec<String> = public.iter().map(|s| s.to_string()).collect();
    want.extend(
        ["open", "open/a", "open/b", "open/c", "opena/a", "opem/z"]
            .iter()
            .map(|s| s.to_string()),
    );
    want.sort();
    want.dedup();
    assert_eq!(visible(all_parts.clone(), None).await, want);
    let in_open: Vec<String> = want
        .iter()
        .filter(|n| n.as_str() == "open" || n.starts_with("open/"))
        .cloned()
        .collect();
    assert_eq!(visible(all_parts, Some("open")).await, in_open);
    assert!(visible(VisibleScope::default(), None).await.is_empty());
}

fn expect_namespace_held<T: std::fmt::Debug>(r: Result<T, MetaError>, what: &str) {
    match r {
        Err(MetaError::NamespaceHeld(_)) => {}
        other => panic!("{what}: expected NamespaceHeld, got {other:?}"),
    }
}

/// Decides `p` for `who` on `r` from the store's inputs.
async fn decision(store: &FullStore, who: Option<&str>, r: &str, p: Permission) -> Decision {
    let ctx = store
        .access_for(who.map(UserKey::Name), &repo(r))
        .await
        .expect("access_for");
    decide(&ctx.subject, &ctx.repository, &ctx.grants, p)
}

/// Issue 10: repositories belong to their namespace's account by identity. A repository
/// pushed where no account exists (`library/...` by an administrator) or left by a deleted
/// user or organisation is owned by nobody; an account created later with that name does
/// not get it: creating one is refused (`NamespaceHeld`), whether user, service account
/// or organisation, unless the creation claims the namespace; then the new account owns
/// exactly the repositories nobody owned.
pub async fn namespaces_belong_to_accounts_by_identity(store: FullStore) {
    let ownerless = |kind: NamespaceKind| assert_eq!(kind, NamespaceKind::Unknown);
    // An administrator's push into a namespace without an account.
    link(&store, "library/base").await;
    link(&store, "library").await;
    let s = store.settings_of("library/base").await;
    ownerless(s.namespace);
    ownerless(
        store
            .repository_for_access(&repo("library/base"))
            .await
            .unwrap()
            .namespace,
    );

    // An organisation owner's service account named after it is refused, and so is every
    // other kind of account; the name stays free.
    org(&store, "acme", OrgSettings::default()).await;
    let olive = user(&store, "olive").await;
    store
        .org_member_set("acme", olive.id, true)
        .await
        .expect("owner");
    let service = NewUser {
        password: None,
        email: None,
        is_service_account: true,
        ..new_user("library")
    };
    expect_namespace_held(store.user_create(&service).await, "service account library");
    expect_namespace_held(
        store.user_create(&new_user("library")).await,
        "user library",
    );
    expect_namespace_held(store.create_org("library").await, "organisation library");
    assert_eq!(
        store.user_get(UserKey::Name("library")).await.unwrap(),
        None
    );
    assert_eq!(store.org_get("library").await.unwrap(), None);
    // Nobody but a system administrator may touch the repository.
    for p in [Permission::Push, Permission::Admin] {
        assert_eq!(
            decision(&store, Some("olive"), "library/base", p).await,
            Decision::Invisible
        );
    }

    // A taken name is still `Conflict`; names next to a held one are free.
    expect_conflict(store.create_org("acme").await, "existing organisation");
    link(&store, "held-x/a").await;
    link(&store, "heldx").await;
    link(&store, "held.x/a").await;
    user(&store, "held").await;

    // A repository created where an account exists belongs to it.
    link(&store, "acme/app").await;
    link(&store, "olive/app").await;
    assert_eq!(
        store.settings_of("acme/app").await.namespace,
        NamespaceKind::Organization {
            members_can_create: false
        }
    );
    let made = store
        .repo_create(&repo("olive/made"), Some(olive.id), None)
        .await
        .expect("repo_create");
    assert_eq!(made.namespace, NamespaceKind::User);
    assert_eq!(
        decision(&store, Some("olive"), "olive/app", Permission::Admin).await,
        Decision::Allowed
    );
    deleted_accounts_leave_their_namespace(&store, &olive).await;
}

/// A deleted account leaves its repositories to nobody, until a new account of the name claims them.
async fn deleted_accounts_leave_their_namespace(store: &FullStore, olive: &UserRecord) {
    let ownerless = |kind: NamespaceKind| assert_eq!(kind, NamespaceKind::Unknown);
    // A deleted user's repositories are owned by nobody, and a new account of the name
    // does not get them.
    assert!(store.user_delete(olive.id).await.expect("delete"));
    for r in ["olive/app", "olive/made"] {
        ownerless(store.settings_of(r).await.namespace);
    }
    let mut service = NewUser {
        password: None,
        email: None,
        is_service_account: true,
        ..new_user("olive")
    };
    expect_namespace_held(store.user_create(&service).await, "a deleted user's name");
    // A deleted organisation's too.
    assert!(store.org_delete("acme").await.expect("delete"));
    ownerless(store.settings_of("acme/app").await.namespace);
    expect_namespace_held(
        store.create_org("acme").await,
        "a deleted organisation's name",
    );
    expect_namespace_held(
        store.user_create(&new_user("acme")).await,
        "a deleted organisation's name as a user",
    );
    let listed = store
        .repos_list(Some("acme"), None, 10)
        .await
        .expect("list");
    assert_eq!(names(&listed, |r| r.name.as_str()), ["acme/app"]);
    ownerless(listed[0].namespace);

    // Claiming: the new account owns what nobody owned, and nothing else.
    service.claim_namespace = true;
    let olive2 = store.user_create(&service).await.expect("claim olive");
    assert_ne!(olive2.id, olive.id);
    for r in ["olive/app", "olive/made"] {
        assert_eq!(store.settings_of(r).await.namespace, NamespaceKind::User);
    }
    assert_eq!(
        decision(store, Some("olive"), "olive/app", Permission::Admin).await,
        Decision::Allowed
    );
    let claimed = store
        .org_create("acme", "", &OrgSettings::default(), true)
        .await
        .expect("claim acme");
    assert_eq!(claimed.name, "acme");
    assert!(matches!(
        store.settings_of("acme/app").await.namespace,
        NamespaceKind::Organization { .. }
    ));
    let lib = store
        .user_create(&NewUser {
            claim_namespace: true,
            ..new_user("library")
        })
        .await
        .expect("claim library");
    for r in ["library", "library/base"] {
        assert_eq!(store.settings_of(r).await.namespace, NamespaceKind::User);
    }
    assert_eq!(
        decision(store, Some("library"), "library/base", Permission::Admin).await,
        Decision::Allowed
    );
    // The neighbours stayed ownerless.
    ownerless(store.settings_of("held-x/a").await.namespace);
    assert!(store.user_delete(lib.id).await.expect("delete"));
    // Claiming a name whose namespace holds nothing is plain creation.
    store
        .user_create(&NewUser {
            claim_namespace: true,
            ..new_user("empty")
        })
        .await
        .expect("claim nothing");
}

/// Rows as a store before migration 0004 (`owner_id`) kept them, for the migration tests
/// of both backends: run after migrations 0001 to 0003, then the store is opened (which
/// runs 0004) and [`owners_after_0004`] checks the result.
pub const BEFORE_0004: &[&str] = &[
    "INSERT INTO accounts (name, kind, created_at, updated_at) VALUES ('alice', 'user', 0, 0)",
    "INSERT INTO accounts (name, kind, created_at, updated_at) VALUES ('acme', 'org', 0, 0)",
    "INSERT INTO repositories (name, created_at) VALUES ('alice/app', 0), ('acme', 0), \
     ('acme/a/b', 0), ('ghost/app', 0), ('alicex/app', 0), ('alice-x', 0)",
];

/// Brings the empty database or schema behind `pool` to the state before migration 0004,
/// for the migration tests of both backends: runs migrations 0001 to 0003 of `dialect`
/// ("sqlite" or "postgres", copied into `scratch`, an empty directory), then
/// [`BEFORE_0004`]. The caller closes the pool and opens the store, which runs 0004.
pub async fn schema_before_0004<DB>(pool: &sqlx::Pool<DB>, dialect: &str, scratch: &std::path::Path)
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'p> &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
{
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    for f in ["0001_initial.sql", "0002_identity.sql", "0003_gc.sql"] {
        std::fs::copy(src.join(f), scratch.join(f)).expect("copy a migration");
    }
    sqlx::migrate::Migrator::new(scratch)
        .await
        .expect("migrations 0001-0003")
        .run(pool)
        .await
        .expect("migrate to 0003");
    for stmt in BEFORE_0004 {
        sqlx::query(stmt).execute(pool).await.expect(stmt);
    }
}

/// After migration 0004 over [`BEFORE_0004`]: a repository whose namespace has an account
/// belongs to it; the others to nobody, and their namespace is held.
pub async fn owners_after_0004(store: FullStore) {
    let kind = |r: &'static str| {
        let store = store.clone();
        async move { store.settings_of(r).await.namespace }
    };
    let org = NamespaceKind::Organization {
        members_can_create: false,
    };
    assert_eq!(kind("alice/app").await, NamespaceKind::User);
    assert_eq!(kind("acme").await, org);
    assert_eq!(kind("acme/a/b").await, org);
    for r in ["ghost/app", "alicex/app", "alice-x"] {
        assert_eq!(kind(r).await, NamespaceKind::Unknown, "{r}");
    }
    expect_namespace_held(store.user_create(&new_user("ghost")).await, "ghost");
    user(&store, "bob").await;
}

/// Deleting a repository removes its manifests, tags, links, uploads and grants; other
/// repositories keep theirs.
pub async fn repository_delete_takes_its_rows(store: FullStore) {
    org(&store, "acme", OrgSettings::default()).await;
    team(&store, "acme", "devs").await;
    link(&store, "acme/gone").await;
    link(&store, "acme/kept").await;
    for r in ["acme/gone", "acme/kept"] {
        store
            .grant_repo_set("acme", "devs", &repo(r), Role::Admin)
            .await
            .expect("grant");
    }
    let up = crate::UploadRecord {
        id: "up-gone".into(),
        repo: repo("acme/gone"),
        offset: 0,
        hash_state: vec![1],
        store_state: String::new(),
        created_at: 1,
        updated_at: 1,
    };
    store.upload_create(&up).await.expect("upload_create");
    // Trust data of both repositories: the deleted one's goes with it (a deletion in the
    // changefeed), the other's stays.
    for r in ["acme/gone", "acme/kept"] {
        let files = vec![
            crate::TrustFile::new("root", 1, b"root".to_vec()),
            crate::TrustFile::new("timestamp", 1, b"ts".to_vec()),
        ];
        let signed = crate::Signed {
            targets: vec![crate::SignedTarget {
                tag: "v1".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
                role: "targets".into(),
                key_ids: vec!["k1".into()],
                expires_at: 1,
            }],
            signers: vec![crate::TrustSigner {
                key_id: "k1".into(),
                account: 0,
            }],
        };
        store
            .trust_put(r, files, Some(signed))
            .await
            .expect("trust_put");
        let key = crate::TrustKey {
            role: "timestamp".into(),
            key_id: "k".into(),
            public: vec![1],
            sealed: vec![2],
        };
        store.trust_key_add(r, key).await.expect("trust_key_add");
    }
    let revision = store.policy_revision().await.expect("revision");
    assert!(store
        .repo_delete(&repo("acme/gone"))
        .await
        .expect("repo_delete"));
    // Signature policy decisions about it are stale.
    assert!(store.policy_revision().await.expect("revision") > revision);
    // (files, keys, signed targets) of each repository's trust data.
    let mut left = vec![];
    for r in ["acme/gone", "acme/kept"] {
        let files = store.trust_current_all(r).await.expect("trust files");
        let keys = store.trust_keys(r).await.expect("keys").len();
        let signed = store.trust_signed(r, None).await.expect("signed").len();
        let signers = store.trust_signers(r).await.expect("signers").len();
        left.push((files.len(), keys, signed, signers));
    }
    assert_eq!(left, [(0, 0, 0, 0), (2, 1, 1, 1)]);
    let feed = store
        .trust_changes(Some("acme/gone"), 0, 10, false)
        .await
        .expect("feed");
    let kinds: Vec<&str> = feed.iter().map(|c| c.category.as_str()).collect();
    assert_eq!(kinds, ["update", "deletion"]);
    assert!(!store.repo_delete(&repo("acme/gone")).await.expect("twice"));
    assert!(!store.repo_exists(&repo("acme/gone")).await.expect("exists"));
    assert_eq!(
        store
            .upload_get(&repo("acme/gone"), "up-gone")
            .await
            .expect("get"),
        None
    );
    let d = Digest::sha256_of(b"acme/gone");
    assert_eq!(
        store
            .blob_in_repo(&repo("acme/gone"), &d)
            .await
            .expect("blob"),
        None
    );
    let g = store.grants_of_org("acme").await.expect("grants");
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].target, GrantTarget::Repository("acme/kept".into()));
    // Recreated, it starts with no grant.
    link(&store, "acme/gone").await;
    assert!(store
        .grants_on_repo(&repo("acme/gone"))
        .await
        .expect("grants")
        .is_empty());
}

/// Team grants on a repository and on the namespace: set, replace, list, remove.
pub async fn grants_roundtrip(store: FullStore) {
    org(&store, "acme", OrgSettings::default()).await;
    org(&store, "zeta", OrgSettings::default()).await;
    let u = user(&store, "gus").await;
    team(&store, "acme", "devs").await;
    team(&store, "acme", "ops").await;
    team(&store, "zeta", "devs").await;
    link(&store, "acme/app").await;
    link(&store, "acme/db").await;
    link(&store, "zeta/app").await;

    type Refusal = fn(Result<(), MetaError>, &str);
    let refused: [(&str, &str, Refusal, &str); 3] = [
        (
            "devs",
            "zeta/app",
            expect_invalid,
            "grant outside the team's namespace",
        ),
        (
            "devs",
            "acme/none",
            expect_not_found,
            "grant on a missing repository",
        ),
        (
            "nope",
            "acme/app",
            expect_not_found,
            "grant of a missing team",
        ),
    ];
    for (team, r, expect, what) in refused {
        expect(
            store
                .grant_repo_set("acme", team, &repo(r), Role::Admin)
                .await,
            what,
        );
    }
    expect_not_found(
        store.grant_namespace_set("acme", "nope", Role::Admin).await,
        "namespace grant of a missing team",
    );

    let set = |t: &'static str, r: &'static str, role| {
        let store = store.clone();
        async move {
            store
                .grant_repo_set("acme", t, &repo(r), role)
                .await
                .expect("grant_repo_set")
        }
    };
    set("devs", "acme/app", Role::ReadOnly).await;
    set("devs", "acme/app", Role::ReadWrite).await; // replaces
    set("devs", "acme/db", Role::Admin).await;
    set("ops", "acme/app", Role::ReadOnly).await;
    store.grant_namespace("acme", "ops", Role::ReadOnly).await;
    store.grant_namespace("acme", "ops", Role::Admin).await;
    store
        .grant_repo_set("zeta", "devs", &repo("zeta/app"), Role::Admin)
        .await
        .expect("zeta");

    let g = |t: &str, target: GrantTarget, role| berth_auth::rbac::Grant {
        team: team_ref("acme", t),
        target,
        role,
    };
    let repo_t = |r: &str| GrantTarget::Repository(r.to_string());
    assert_eq!(
        store.grants_of_org("acme").await.expect("grants_of_org"),
        vec![
            g("ops", GrantTarget::Namespace, Role::Admin),
            g("devs", repo_t("acme/app"), Role::ReadWrite),
            g("ops", repo_t("acme/app"), Role::ReadOnly),
            g("devs", repo_t("acme/db"), Role::Admin),
        ]
    );
    assert_eq!(
        store
            .grants_on_repo(&repo("acme/app"))
            .await
            .expect("on repo"),
        vec![
            g("ops", GrantTarget::Namespace, Role::Admin),
            g("devs", repo_t("acme/app"), Role::ReadWrite),
            g("ops", repo_t("acme/app"), Role::ReadOnly),
        ]
    );
    assert!(store
        .grants_of_user(u.id)
        .await
        .expect("of user")
        .is_empty());
    store.add_member("acme", "devs", u.id).await;
    assert_eq!(
        store.grants_of_user(u.id).await.expect("of user"),
        vec![
            g("devs", repo_t("acme/app"), Role::ReadWrite),
            g("devs", repo_t("acme/db"), Role::Admin),
        ]
    );

    assert!(store
        .grant_repo_remove("acme", "devs", &repo("acme/app"))
        .await
        .expect("remove"));
    assert!(!store
        .grant_repo_remove("acme", "devs", &repo("acme/app"))
        .await
        .expect("remove twice"));
    assert!(!store
        .grant_repo_remove("acme", "nope", &repo("acme/app"))
        .await
        .expect("no team"));
    assert!(store
        .grant_namespace_remove("acme", "ops")
        .await
        .expect("remove ns"));
    assert!(!store
        .grant_namespace_remove("acme", "ops")
        .await
        .expect("remove ns twice"));
    assert_eq!(store.grants_of_org("acme").await.expect("grants").len(), 2);
    assert_eq!(store.grants_of_org("zeta").await.expect("grants").len(), 1);
}

/// `access_for` returns what `decide` needs in one call, and the decisions made from it
/// are the expected ones; `subject_for` and `repository_for_access` agree with it.
pub async fn access_for_loads_the_decision_inputs(store: FullStore) {
    org(
        &store,
        "acme",
        OrgSettings {
            members_can_create: true,
            default_visibility: Visibility::Private,
        },
    )
    .await;
    let (owner, dev, outsider) = (
        user(&store, "owner").await,
        user(&store, "dev").await,
        user(&store, "out").await,
    );
    store
        .org_member_set("acme", owner.id, true)
        .await
        .expect("owner");
    team(&store, "acme", "devs").await;
    team(&store, "acme", "readers").await;
    store.add_member("acme", "devs", dev.id).await;
    store.add_member("acme", "readers", dev.id).await;
    link(&store, "acme/app").await;
    link(&store, "acme/other").await;
    link(&store, "acme/public").await;
    store
        .repo_set_visibility(&repo("acme/public"), Visibility::Public)
        .await
        .expect("public");
    store
        .grant_repo_set("acme", "devs", &repo("acme/app"), Role::ReadWrite)
        .await
        .expect("grant");
    store
        .grant_repo_set("acme", "devs", &repo("acme/other"), Role::Admin)
        .await
        .expect("grant");
    store
        .grant_namespace("acme", "readers", Role::ReadOnly)
        .await;
    access_for_loads_the_context(&store, &dev).await;
    decisions_from_loaded_inputs(&store).await;
    unknown_and_changed_subjects(&store, &dev, &outsider).await;
}

/// access_for by name and by id, subject_for and repository_for_access agree.
async fn access_for_loads_the_context(store: &FullStore, dev: &UserRecord) {
    let ctx = store
        .access_for(Some(UserKey::Name("dev")), &repo("acme/app"))
        .await
        .expect("access_for");
    let u = ctx.subject.user.as_ref().expect("user");
    assert_eq!((u.id.clone(), u.name.as_str()), (dev.id.to_string(), "dev"));
    assert!(u.active && !u.is_system_admin);
    assert_eq!(u.orgs.len(), 1);
    assert_eq!(
        (u.orgs[0].org.as_str(), u.orgs[0].is_owner),
        ("acme", false)
    );
    assert_eq!(
        u.teams,
        vec![team_ref("acme", "devs"), team_ref("acme", "readers")]
    );
    assert_eq!(ctx.subject.restriction, None);
    assert_eq!(ctx.repository.name, repo("acme/app"));
    assert_eq!(ctx.repository.visibility, Some(Visibility::Private));
    assert_eq!(
        ctx.repository.namespace,
        NamespaceKind::Organization {
            members_can_create: true
        }
    );
    assert_eq!(
        ctx.grants,
        vec![
            berth_auth::rbac::Grant {
                team: team_ref("acme", "readers"),
                target: GrantTarget::Namespace,
                role: Role::ReadOnly,
            },
            berth_auth::rbac::Grant {
                team: team_ref("acme", "devs"),
                target: GrantTarget::Repository("acme/app".into()),
                role: Role::ReadWrite,
            },
        ],
        "only the grants that apply to this repository"
    );
    // The same, by id; and subject_for agrees.
    let by_id = store
        .access_for(Some(UserKey::Id(dev.id)), &repo("acme/app"))
        .await
        .expect("access_for");
    assert_eq!(by_id, ctx);
    assert_eq!(
        store
            .subject_for(UserKey::Id(dev.id))
            .await
            .expect("subject"),
        Some(ctx.subject.clone())
    );
    assert_eq!(
        store
            .repository_for_access(&repo("acme/app"))
            .await
            .expect("repository"),
        ctx.repository
    );
}

/// Asserts the decision for `who` and `p` on `r` from what access_for loads.
async fn check_access(
    store: &FullStore,
    who: Option<UserKey<'static>>,
    r: &'static str,
    p: Permission,
    want: Decision,
) {
    let ctx = store.access_for(who, &repo(r)).await.expect("access_for");
    assert_eq!(
        decide(&ctx.subject, &ctx.repository, &ctx.grants, p),
        want,
        "{who:?} {p:?} on {r}"
    );
}

/// The decisions that access_for's inputs give.
async fn decisions_from_loaded_inputs(store: &FullStore) {
    let check = |who, r, p, want| check_access(store, who, r, p, want);
    check(
        Some(UserKey::Name("dev")),
        "acme/app",
        Permission::Push,
        Decision::Allowed,
    )
    .await;
    check(
        Some(UserKey::Name("dev")),
        "acme/app",
        Permission::Delete,
        Decision::Denied,
    )
    .await;
    check(
        Some(UserKey::Name("dev")),
        "acme/other",
        Permission::Delete,
        Decision::Allowed,
    )
    .await;
    check(
        Some(UserKey::Name("dev")),
        "acme/new",
        Permission::Push,
        Decision::Allowed,
    )
    .await;
    check(
        Some(UserKey::Name("owner")),
        "acme/app",
        Permission::Admin,
        Decision::Allowed,
    )
    .await;
    check(
        Some(UserKey::Name("out")),
        "acme/app",
        Permission::Pull,
        Decision::Invisible,
    )
    .await;
    check(
        Some(UserKey::Name("out")),
        "acme/public",
        Permission::Pull,
        Decision::Allowed,
    )
    .await;
    check(
        Some(UserKey::Name("out")),
        "acme/public",
        Permission::Push,
        Decision::Denied,
    )
    .await;
    check(
        Some(UserKey::Name("out")),
        "out/mine",
        Permission::Push,
        Decision::Allowed,
    )
    .await;
    check(None, "acme/public", Permission::Pull, Decision::Allowed).await;
    check(
        None,
        "acme/app",
        Permission::Pull,
        Decision::NeedsAuthentication,
    )
    .await;
    check(
        Some(UserKey::Name("ghost")),
        "acme/app",
        Permission::Pull,
        Decision::NeedsAuthentication,
    )
    .await;
}

/// Anonymous and unknown callers, one's own namespace; deactivation and admin flags.
async fn unknown_and_changed_subjects(store: &FullStore, dev: &UserRecord, outsider: &UserRecord) {
    let check = |who, r, p, want| check_access(store, who, r, p, want);
    let anon = store
        .access_for(None, &repo("acme/app"))
        .await
        .expect("anon");
    assert_eq!(anon.subject.user, None);
    assert!(anon.grants.is_empty());
    let ghost = store
        .access_for(Some(UserKey::Name("ghost")), &repo("ghost/x"))
        .await
        .expect("ghost");
    assert_eq!(ghost.subject.user, None);
    assert_eq!(ghost.repository.visibility, None);
    assert_eq!(ghost.repository.namespace, NamespaceKind::Unknown);
    let mine = store
        .access_for(Some(UserKey::Id(outsider.id)), &repo("out/x"))
        .await
        .expect("own namespace");
    assert_eq!(mine.repository.namespace, NamespaceKind::User);
    assert_eq!(mine.repository.visibility, None);
    assert_eq!(
        store.subject_for(UserKey::Name("acme")).await.expect("org"),
        None
    );

    // Deactivation and admin flags reach the subject.
    store.set_flags(dev.id, [Some(false), None]).await;
    store.set_flags(outsider.id, [None, Some(true)]).await;
    check(
        Some(UserKey::Name("dev")),
        "acme/app",
        Permission::Pull,
        Decision::NeedsAuthentication,
    )
    .await;
    check(
        Some(UserKey::Name("out")),
        "acme/app",
        Permission::Delete,
        Decision::Allowed,
    )
    .await;
}

/// Tokens store their hash, expiry and restriction as given; use, revocation and
/// listing behave; ids are unique and owners must exist.
pub async fn tokens_lifecycle(store: FullStore) {
    let u = user(&store, "tina").await;
    let other = user(&store, "tom").await;
    let restriction = Restriction {
        entries: vec![
            RestrictionEntry {
                target: RestrictionTarget::Repository("acme/app-*".into()),
                max_role: Role::ReadOnly,
            },
            RestrictionEntry {
                target: RestrictionTarget::Namespace("tina".into()),
                max_role: Role::Admin,
            },
        ],
    };
    let mut t1 = new_token(1, u.id, TokenKind::Access);
    t1.expires_at = Some(2_000_000_000_000);
    t1.restriction = Some(restriction.clone());
    let rec = store.create_token(&t1).await;
    assert_eq!(rec.id, t1.id);
    assert_eq!(rec.hash, secret_hash(1));
    assert_eq!(rec.expires_at, Some(2_000_000_000_000));
    assert_eq!(rec.restriction.as_ref(), Some(&restriction));
    assert!(!rec.revoked && rec.last_used_at.is_none());
    assert!(rec.usable_at(1_999_999_999_999));
    assert!(!rec.usable_at(2_000_000_000_000), "expired at its expiry");
    assert_eq!(
        store.token_get(&t1.id).await.expect("get"),
        Some(rec.clone())
    );
    expect_conflict(store.token_create(&t1).await, "token id twice");
    expect_not_found(
        store
            .token_create(&new_token(9, 999_999, TokenKind::Access))
            .await,
        "token of a missing user",
    );
    let org_acc = org(&store, "torg", OrgSettings::default()).await;
    expect_not_found(
        store
            .token_create(&new_token(8, org_acc.id, TokenKind::Access))
            .await,
        "token of an organisation",
    );

    let r2 = store.issue(2, u.id, TokenKind::Refresh).await;
    assert_eq!(r2.kind, TokenKind::Refresh);
    assert!(r2.usable_at(i64::MAX), "no expiry");
    store.issue(3, u.id, TokenKind::Access).await;
    store.issue(4, other.id, TokenKind::Access).await;
    let list = store
        .tokens_list(u.id, TokenKind::Access)
        .await
        .expect("list");
    let mut ids: Vec<_> = list.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec![secret_id(1), secret_id(3)]);
    let list = store
        .tokens_list(u.id, TokenKind::Refresh)
        .await
        .expect("list");
    assert_eq!(list, vec![r2.clone()]);
    assert_eq!(store.token_get(&secret_id(7)).await.expect("get"), None);

    assert!(store
        .token_touch(&t1.id, 1_700_000_000_123)
        .await
        .expect("touch"));
    assert!(!store
        .token_touch(&secret_id(7), 1)
        .await
        .expect("touch missing"));
    let got = store.token_get(&t1.id).await.expect("get").expect("some");
    assert_eq!(got.last_used_at, Some(1_700_000_000_123));

    assert!(store.token_revoke(&t1.id).await.expect("revoke"));
    assert!(store.token_revoke(&t1.id).await.expect("revoke twice"));
    assert!(!store
        .token_revoke(&secret_id(7))
        .await
        .expect("revoke missing"));
    let got = store.token_get(&t1.id).await.expect("get").expect("some");
    assert!(got.revoked && !got.usable_at(0));
    assert_eq!(
        got.restriction.as_ref(),
        Some(&restriction),
        "kept when revoked"
    );

    assert_eq!(store.tokens_revoke_all(u.id).await.expect("revoke all"), 2);
    assert_eq!(store.tokens_revoke_all(u.id).await.expect("again"), 0);
    assert!(
        store
            .token_get(&secret_id(2))
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store
            .token_get(&secret_id(4))
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

/// A refresh token never outlives the credential it was issued against: one issued
/// against an access token expires no later than it and is revoked with it; one issued at
/// a password login is revoked when the password changes or the account is deactivated
/// (and reactivating does not bring it back); one issued under a stale password epoch or
/// against a revoked token is born revoked. Parents are checked: a refresh token needs
/// one, an access token has none, a parent token is an access token of the same user.
pub async fn refresh_tokens_end_with_their_parent(store: FullStore) {
    let u = user(&store, "rita").await;
    let other = user(&store, "rob").await;
    assert_eq!(u.credential_epoch, 0, "a new user starts at epoch 0");

    // Against an access token with a 5-second life: the refresh token's 90 days shrink.
    let mut parent = new_token(1, u.id, TokenKind::Access);
    parent.expires_at = Some(1_700_000_005_000);
    store.create_token(&parent).await;
    let mut child = refresh_of(2, u.id, TokenParent::Token(secret_id(1)));
    child.expires_at = Some(1_700_000_000_000 + 90 * 86_400_000);
    let rec = store.create_token(&child).await;
    assert_eq!(
        rec.expires_at,
        Some(1_700_000_005_000),
        "expires with its parent"
    );
    assert_eq!(rec.parent, Some(TokenParent::Token(secret_id(1))));
    assert_eq!(
        store.token_get(&secret_id(2)).await.unwrap(),
        Some(rec.clone()),
        "stored as returned"
    );
    // A refresh token without expiry under a parent that has one takes the parent's.
    let rec = store
        .token_create(&refresh_of(3, u.id, TokenParent::Token(secret_id(1))))
        .await
        .expect("child without expiry");
    assert_eq!(rec.expires_at, Some(1_700_000_005_000));
    // Revoking the parent revokes its children, and nothing else.
    let pw_child = store
        .create_token(&refresh_of(4, u.id, TokenParent::Password { epoch: 0 }))
        .await;
    assert!(!pw_child.revoked);
    assert!(store.token_revoke(&secret_id(1)).await.expect("revoke"));
    assert!(revoked(&store, 2).await && revoked(&store, 3).await);
    assert!(
        !revoked(&store, 4).await,
        "a password session is not the token's"
    );
    // Issued against a revoked parent: born revoked.
    let late = store
        .token_create(&refresh_of(5, u.id, TokenParent::Token(secret_id(1))))
        .await
        .expect("child of a revoked parent");
    assert!(late.revoked && revoked(&store, 5).await);

    // The parent must be an access token of the same user.
    store.issue(6, other.id, TokenKind::Access).await;
    type Refusal = fn(Result<TokenRecord, MetaError>, &str);
    let child_of = |parent: u8| refresh_of(7, u.id, TokenParent::Token(secret_id(parent)));
    let refused: [(NewToken, Refusal, &str); 5] = [
        (child_of(6), expect_not_found, "a parent of another user"),
        (child_of(99), expect_not_found, "a missing parent"),
        (child_of(4), expect_invalid, "a refresh token as a parent"),
        (
            NewToken {
                parent: None,
                ..new_token(7, u.id, TokenKind::Refresh)
            },
            expect_invalid,
            "a refresh token without a parent",
        ),
        (
            NewToken {
                parent: Some(TokenParent::Password { epoch: 0 }),
                ..new_token(7, u.id, TokenKind::Access)
            },
            expect_invalid,
            "an access token with a parent",
        ),
    ];
    for (token, expect, what) in refused {
        expect(store.token_create(&token).await, what);
    }
    assert_eq!(store.token_get(&secret_id(7)).await.unwrap(), None);
    credential_changes_end_sessions(&store, &u, &other).await;
}

/// A password change or a deactivation ends the sessions of the password, and only those; deleting the user takes every token.
async fn credential_changes_end_sessions(store: &FullStore, u: &UserRecord, other: &UserRecord) {
    // A password change moves the epoch and ends the password's sessions, and only those.
    store.issue(8, u.id, TokenKind::Access).await;
    store
        .token_create(&refresh_of(9, u.id, TokenParent::Token(secret_id(8))))
        .await
        .expect("child of 8");
    store
        .create_token(&refresh_of(
            10,
            other.id,
            TokenParent::Password { epoch: 0 },
        ))
        .await;
    let same = store
        .user_update(
            u.id,
            &UserPatch {
                full_name: Some("Rita R.".into()),
                password: Some(u.password.clone()),
                active: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("no credential change");
    assert_eq!(same.credential_epoch, 0, "the same hash, still active");
    assert!(!revoked(store, 4).await);
    let changed = store
        .user_update(
            u.id,
            &UserPatch {
                password: Some(Some(
                    "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into(),
                )),
                ..UserPatch::default()
            },
        )
        .await
        .expect("password change");
    assert_eq!(changed.credential_epoch, 1);
    assert_eq!(
        store
            .user_get(UserKey::Id(u.id))
            .await
            .unwrap()
            .map(|u| u.credential_epoch),
        Some(1)
    );
    assert!(revoked(store, 4).await, "the old password's session ends");
    assert!(
        !revoked(store, 9).await,
        "an access token's session is not the password's"
    );
    assert!(!revoked(store, 10).await, "another user's session");
    // Issued after the change but for a login under the old epoch: born revoked.
    let stale = store
        .create_token(&refresh_of(11, u.id, TokenParent::Password { epoch: 0 }))
        .await;
    assert!(stale.revoked);
    let fresh = store
        .create_token(&refresh_of(12, u.id, TokenParent::Password { epoch: 1 }))
        .await;
    assert!(!fresh.revoked && fresh.parent == Some(TokenParent::Password { epoch: 1 }));

    // Deactivation ends the password's sessions too; reactivation does not revive them.
    let off = store.set_flags(u.id, [Some(false), None]).await;
    assert_eq!(off.credential_epoch, 2);
    assert!(revoked(store, 12).await);
    let on = store
        .user_update(
            u.id,
            &UserPatch {
                active: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("reactivate");
    assert_eq!(on.credential_epoch, 2, "reactivation is no new credential");
    assert!(revoked(store, 12).await);
    // Listings show refresh tokens with their parents.
    let list = store
        .tokens_list(u.id, TokenKind::Refresh)
        .await
        .expect("list");
    assert_eq!(list.len(), 7);
    assert!(list
        .iter()
        .all(|t| t.parent.is_some() && t.kind == TokenKind::Refresh));

    // Deleting the user takes every token.
    assert!(store.user_delete(u.id).await.expect("delete"));
    assert_eq!(store.token_get(&secret_id(9)).await.unwrap(), None);
    assert!(!revoked(store, 10).await);
}

/// Several keys, newest first; retiring keeps a key for verification.
pub async fn signing_keys_rotation(store: FullStore) {
    assert!(store.signing_keys().await.expect("keys").is_empty());
    let pem1 = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let k1 = store.signing_key_add("KID1:ABCD", pem1).await.expect("add");
    assert_eq!(
        (k1.kid.as_str(), k1.pem.as_str(), k1.retired),
        ("KID1:ABCD", pem1, false)
    );
    expect_conflict(store.signing_key_add("KID1:ABCD", "x").await, "kid twice");
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let k2 = store
        .signing_key_add("KID2:EFGH", "pem2")
        .await
        .expect("add");
    assert!(store.signing_key_retire("KID1:ABCD").await.expect("retire"));
    assert!(!store
        .signing_key_retire("nope")
        .await
        .expect("retire missing"));
    let keys = store.signing_keys().await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], k2);
    assert_eq!(keys[1].kid, "KID1:ABCD");
    assert_eq!(keys[1].pem, pem1);
    assert!(keys[1].retired);
    assert!(
        !format!("{:?}", keys[1]).contains("AAAA"),
        "Debug hides the key"
    );
    // Resealing replaces the stored form only from the form the caller read.
    assert!(store
        .signing_key_reseal("KID1:ABCD", pem1, "sealed:1")
        .await
        .expect("reseal"));
    assert!(!store
        .signing_key_reseal("KID1:ABCD", pem1, "sealed:2")
        .await
        .expect("reseal from a form no longer stored"));
    assert!(!store
        .signing_key_reseal("nope", pem1, "sealed:3")
        .await
        .expect("reseal missing"));
    let keys = store.signing_keys().await.expect("keys");
    assert_eq!(
        (keys[1].pem.as_str(), keys[1].retired, &keys[0]),
        ("sealed:1", true, &k2)
    );
}

/// Appends keep their order; queries page newest first and filter by actor, action, time
/// range and literal target prefix.
pub async fn audit_paging_and_filters(store: FullStore) {
    let actions = [
        "login.success",
        "push",
        "login.failure",
        "token.issue",
        "push",
    ];
    let mut ids = Vec::new();
    for i in 0..25_i64 {
        let e = NewAuditEvent {
            at: 1_000 + i * 10,
            actor: if i % 5 == 0 { None } else { Some(i % 3) },
            source: Some(format!("192.0.2.{i}")),
            action: actions[(i as usize) % actions.len()].to_string(),
            target: if i % 2 == 0 {
                format!("acme/app{i}")
            } else {
                format!("acme_x/{i}")
            },
            detail: json!({"i": i, "nested": {"ok": true}}),
        };
        ids.push(store.audit_append(&e).await.expect("append"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");

    let all = AuditFilter::default();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit_query(&all, before, 10).await.expect("query");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|e| e.id);
        seen.extend(page);
    }
    assert_eq!(seen.len(), 25);
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(
        seen.iter().map(|e| e.id).collect::<Vec<_>>(),
        want,
        "newest first"
    );
    let last = &seen[0];
    assert_eq!(last.at, 1_240);
    assert_eq!(last.source.as_deref(), Some("192.0.2.24"));
    assert_eq!(last.detail, json!({"i": 24, "nested": {"ok": true}}));
    assert_eq!(last.action, "push");
    assert_eq!(seen[24].actor, None);
    assert_eq!(seen[23].actor, Some(1));

    let q = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .audit_query(&f, None, 100)
                .await
                .expect("query")
                .into_iter()
                .map(|e| (e.at - 1_000) / 10)
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(
        q(AuditFilter {
            action: Some("push".into()),
            ..AuditFilter::default()
        })
        .await,
        [24, 21, 19, 16, 14, 11, 9, 6, 4, 1]
    );
    assert_eq!(
        q(AuditFilter {
            actor: Some(2),
            ..AuditFilter::default()
        })
        .await,
        [23, 17, 14, 11, 8, 2]
    );
    assert_eq!(
        q(AuditFilter {
            since: Some(1_050),
            until: Some(1_100),
            ..AuditFilter::default()
        })
        .await,
        [9, 8, 7, 6, 5]
    );
    // `_` is no wildcard: "acme_" matches "acme_x/..." but not "acme/app...".
    let odd: Vec<i64> = (0..25).rev().filter(|i| i % 2 == 1).collect();
    assert_eq!(
        q(AuditFilter {
            target_prefix: Some("acme_".into()),
            ..AuditFilter::default()
        })
        .await,
        odd
    );
    assert!(q(AuditFilter {
        target_prefix: Some("acme%".into()),
        ..AuditFilter::default()
    })
    .await
    .is_empty());
    assert_eq!(
        q(AuditFilter {
            target_prefix: Some("acme/app1".into()),
            ..AuditFilter::default()
        })
        .await,
        [18, 16, 14, 12, 10]
    );
    assert_eq!(
        q(AuditFilter {
            actor: Some(1),
            action: Some("push".into()),
            since: Some(1_000),
            until: Some(1_200),
            target_prefix: Some("acme".into()),
        })
        .await,
        [19, 16, 4, 1]
    );
    let page = store
        .audit_query(
            &AuditFilter {
                action: Some("push".into()),
                ..AuditFilter::default()
            },
            Some(ids[14]),
            3,
        )
        .await
        .expect("query");
    assert_eq!(
        page.iter().map(|e| (e.at - 1_000) / 10).collect::<Vec<_>>(),
        [11, 9, 6]
    );
    audit_retention(&store).await;
}

/// Retention: the oldest events go first, at most `max` per call, nothing newer.
async fn audit_retention(store: &FullStore) {
    let all = AuditFilter::default();
    // Retention: the oldest events go first, at most `max` per call, nothing newer.
    assert_eq!(
        store.audit_prune(1_000 + 10 * 10, 3).await.expect("prune"),
        3
    );
    assert_eq!(
        store
            .audit_prune(1_000 + 10 * 10, 100)
            .await
            .expect("prune"),
        7
    );
    assert_eq!(
        store
            .audit_prune(1_000 + 10 * 10, 100)
            .await
            .expect("prune"),
        0
    );
    let left = store.audit_query(&all, None, 100).await.expect("query");
    assert_eq!(left.len(), 15);
    assert!(
        left.iter().all(|e| e.at >= 1_100),
        "an event past retention is left"
    );
}

/// SQL metacharacters, quotes, NULs-free Unicode and strings longer than 255 characters
/// are stored and read back exactly in every free-text field, and match nothing they
/// should not.
pub async fn hostile_strings_round_trip(store: FullStore) {
    let nasty = "x'); DROP TABLE accounts; -- \" \\ % _ ` $1 ?1 :a @a \u{e9}\u{1f600}";
    let long: String = "a'b\"c%d_e\\".repeat(40); // 400 characters
    assert!(long.chars().count() > 255);
    let name = format!("o'brien\"; drop table accounts;--{}", "z".repeat(300));
    let mut nu = new_user(&name);
    nu.full_name = nasty.to_string();
    nu.email = Some(long.clone());
    nu.password = Some(long.clone());
    nu.origin = Origin::Directory {
        dn: format!("cn={nasty},ou=people"),
        id: Some(nasty.to_string()),
    };
    let u = store.user_create(&nu).await.expect("user_create");
    let got = store
        .user_get(UserKey::Name(&name))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got, u);
    assert_eq!(got.name, name);
    assert_eq!(got.full_name, nasty);
    assert_eq!(got.email.as_deref(), Some(long.as_str()));
    assert_eq!(got.origin, nu.origin);
    assert_eq!(
        store.users_list(None, 10).await.expect("list").len(),
        1,
        "nothing was dropped"
    );
    // A LIKE-style pattern is just a name.
    assert_eq!(
        store.user_get(UserKey::Name("o%")).await.expect("get"),
        None
    );

    let oname = format!("org'; --{}", "q".repeat(260));
    store
        .org_create(&oname, &long, &OrgSettings::default(), false)
        .await
        .expect("org_create");
    assert_eq!(
        store.org_get(&oname).await.unwrap().unwrap().full_name,
        long
    );
    let tname = format!("team\"'`{}", "t".repeat(270));
    let t = store
        .team_create(&oname, &tname, Some(&long))
        .await
        .expect("team_create");
    assert_eq!(store.team_get(&oname, &tname).await.unwrap(), Some(t));
    store.add_member(&oname, &tname, u.id).await;
    store.grant_namespace(&oname, &tname, Role::ReadOnly).await;
    let s = store
        .subject_for(UserKey::Id(u.id))
        .await
        .expect("subject")
        .expect("some")
        .user
        .expect("user");
    assert_eq!(s.name, name);
    assert_eq!(s.orgs[0].org, oname);
    assert_eq!(s.teams, vec![team_ref(&oname, &tname)]);
    let g = store.grants_of_user(u.id).await.expect("grants");
    assert_eq!(g[0].team, team_ref(&oname, &tname));

    let mut tok = new_token(5, u.id, TokenKind::Access);
    tok.description = long.clone();
    tok.restriction = Some(Restriction {
        entries: vec![RestrictionEntry {
            target: RestrictionTarget::Repository(nasty.to_string()),
            max_role: Role::ReadOnly,
        }],
    });
    store.create_token(&tok).await;
    let got = store.token_get(&tok.id).await.unwrap().unwrap();
    assert_eq!(got.description, long);
    assert_eq!(got.restriction, tok.restriction);

    let kid = format!("{nasty}{long}");
    store.signing_key_add(&kid, &long).await.expect("key");
    assert_eq!(store.signing_keys().await.unwrap()[0].kid, kid);

    let e = NewAuditEvent {
        at: 5,
        actor: Some(u.id),
        source: Some(long.clone()),
        action: nasty.to_string(),
        target: format!("{nasty}{long}"),
        detail: json!({ "why": nasty, "long": long }),
    };
    store.audit_append(&e).await.expect("append");
    let got = store
        .audit_query(
            &AuditFilter {
                action: Some(nasty.to_string()),
                target_prefix: Some(nasty.to_string()),
                ..AuditFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, e.target);
    assert_eq!(got[0].source, e.source);
    assert_eq!(got[0].detail, e.detail);
}

/// The identity revision moves with every change an access decision depends on (an
/// account deactivated, a team joined, a grant, a visibility, a token revoked), and not
/// with one it does not depend on (a full name).
pub async fn identity_revision_follows_access_changes(store: FullStore) {
    let alice = user(&store, "alice").await;
    org(&store, "acme", OrgSettings::default()).await;
    store.team_create("acme", "qa", None).await.unwrap();
    let repo = RepoName::parse("acme/app").unwrap();
    store.repo_create(&repo, None, None).await.unwrap();
    let token = store
        .token_create(&new_token(1, alice.id, TokenKind::Access))
        .await
        .unwrap();
    let mut r = store.identity_revision().await.unwrap();
    let name_only = UserPatch {
        full_name: Some("Alice A.".into()),
        ..UserPatch::default()
    };
    store.user_update(alice.id, &name_only).await.unwrap();
    assert_eq!(store.identity_revision().await.unwrap(), r, "a full name");
    store.team_member_add("acme", "qa", alice.id).await.unwrap();
    r = moved(&store, r, "team joined").await;
    store
        .grant_repo_set("acme", "qa", &repo, Role::ReadWrite)
        .await
        .unwrap();
    r = moved(&store, r, "grant").await;
    store
        .repo_set_visibility(&repo, Visibility::Public)
        .await
        .unwrap();
    r = moved(&store, r, "visibility").await;
    store.token_revoke(&token.id).await.unwrap();
    r = moved(&store, r, "token revoked").await;
    let deactivate = UserPatch {
        active: Some(false),
        ..UserPatch::default()
    };
    store.user_update(alice.id, &deactivate).await.unwrap();
    moved(&store, r, "deactivated").await;
}

/// The identity revision, which must have moved past `before` (after `what`).
async fn moved(store: &FullStore, before: i64, what: &str) -> i64 {
    let now = store.identity_revision().await.unwrap();
    assert!(now > before, "{what} did not move the identity revision");
    now
}

/// Login failures: counted per key within a window that starts at the first, started
/// again after it (old rows deleted), read by key, cleared.
pub async fn login_failures_count_in_a_window(store: FullStore) {
    let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let both = keys(&["u:alice", "s:10.0.0.1"]);
    store
        .login_failures_add(&both, 1_000, 60_000)
        .await
        .unwrap();
    store
        .login_failures_add(&keys(&["u:alice"]), 2_000, 60_000)
        .await
        .unwrap();
    let asked = keys(&["u:alice", "s:10.0.0.1", "s:10.0.0.2"]);
    let mut got = store.login_failures(&asked, 0).await.unwrap();
    got.sort();
    assert_eq!(
        got,
        [
            ("s:10.0.0.1".to_string(), 1, 1_000),
            ("u:alice".to_string(), 2, 1_000)
        ]
    );
    store
        .login_failures_add(&keys(&["u:alice"]), 70_000, 60_000)
        .await
        .unwrap();
    let got = store.login_failures(&both, 0).await.unwrap();
    assert_eq!(got, [("u:alice".to_string(), 1, 70_000)]);
    assert!(store
        .login_failures(&both, 70_000)
        .await
        .unwrap()
        .is_empty());
    store.login_failures_clear("u:alice").await.unwrap();
    assert!(store.login_failures(&both, 0).await.unwrap().is_empty());
}
