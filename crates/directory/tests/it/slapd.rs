//! The directory client and the sync plan against a real OpenLDAP server, started by
//! `berth_testkit::Slapd` with both of its sample directories: the plain one (`uid`,
//! `groupOfNames`) and the Active-Directory-like one (`sAMAccountName`, `memberOf`,
//! `userAccountControl`). Each test owns its server (free port, fresh directory), changes
//! the directory with `ldapmodify` / `ldapdelete` as a person would, and stops the server
//! at the end to see the client report it unreachable.
//!
//! Needs Debian's slapd and ldap-utils (`cargo xtask peers` installs them). Without them
//! the tests fail: they never skip.

use crate::{m, memberships, strs, team};
use berth_directory::snapshot::normalize_dn;
use berth_directory::{
    plan, BerthUser, CreateUsers, DirectoryClient, DirectoryConfig, DirectoryError,
    DirectorySnapshot, GroupMapping, MembershipMode, Origin, Secret, SyncPolicy,
};
use berth_testkit::{Directory, Slapd};
use std::collections::BTreeSet;
use std::process::Command;

fn admin_password() -> String {
    berth_testkit::slapd::ADMIN_PASSWORD.into()
}

fn usernames(snapshot: &DirectorySnapshot) -> Vec<&str> {
    snapshot.users.iter().map(|u| u.username.as_str()).collect()
}

/// The refusals every directory must give, whatever its schema.
async fn refusals(client: &DirectoryClient, user: &str, password: &str) {
    let err = client.authenticate(user, "wrong-pw").await.unwrap_err();
    assert!(matches!(err, DirectoryError::BadCredentials), "{err}");
    let err = client.authenticate(user, "").await.unwrap_err();
    assert!(matches!(err, DirectoryError::EmptyPassword), "{err}");
    let err = client.authenticate("nobody", password).await.unwrap_err();
    assert!(matches!(err, DirectoryError::UserNotFound), "{err}");
    // Filter metacharacters are escaped: these would match every user if pasted raw.
    for evil in [
        "*",
        "*)(uid=*",
        "*)(sAMAccountName=*",
        "al*",
        "alice)(|(cn=*",
    ] {
        let err = client.authenticate(evil, password).await.unwrap_err();
        assert!(matches!(err, DirectoryError::UserNotFound), "{evil}: {err}");
    }
    for err in [
        client.authenticate(user, "wrong-pw").await.unwrap_err(),
        client.authenticate("nobody", password).await.unwrap_err(),
    ] {
        assert!(err.is_login_refused() && !err.is_unreachable(), "{err}");
    }
}

/// After the server is gone, both operations say so, distinctly from a refusal.
async fn unreachable(slapd: &Slapd, client: &DirectoryClient) {
    slapd.stop();
    let err = client.snapshot().await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let err = client.authenticate("alice", "alice-pw").await.unwrap_err();
    assert!(err.is_unreachable() && !err.is_login_refused(), "{err}");
}

#[tokio::test]
async fn openldap_directory() {
    let slapd = Slapd::start(Directory::OpenLdap);
    let policy = SyncPolicy {
        create_users: CreateUsers::MappedGroups,
        teams: vec![
            GroupMapping {
                group: "developers".into(),
                team: team("acme/devs"),
            },
            GroupMapping {
                group: "CN=admins, OU=groups, DC=example, DC=org".into(),
                team: team("acme/admins"),
            },
        ],
        allow_empty_directory: false,
    };
    let config = DirectoryConfig {
        url: slapd.url(),
        bind_dn: slapd.admin_dn(),
        bind_password: Secret::new(admin_password()),
        user_base: "ou=people,dc=example,dc=org".into(),
        group_base: "ou=groups,dc=example,dc=org".into(),
        sync: policy.clone(),
        ..DirectoryConfig::default()
    };
    let client = DirectoryClient::new(config.clone()).unwrap();
    client.check().await.unwrap();

    // Login.
    let alice = client.authenticate("alice", "alice-pw").await.unwrap();
    assert_eq!(alice.dn, "uid=alice,ou=people,dc=example,dc=org");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.full_name.as_deref(), Some("Alice Liddell"));
    assert!(!alice.disabled);
    let again = client.authenticate("ALICE", "alice-pw").await.unwrap();
    assert_eq!(again.username, "alice");
    refusals(&client, "bob", "bob-pw").await;
    // A wrong service password is a configuration problem, not a refused login.
    let mut wrong = config.clone();
    wrong.bind_password = Secret::new("not-the-password");
    let err = DirectoryClient::new(wrong)
        .unwrap()
        .authenticate("alice", "alice-pw")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryError::ServiceBindRefused { code: 49, .. }),
        "{err}"
    );

    // Snapshot, by `member` and by `memberOf`: the same memberships.
    let snap = client.snapshot().await.unwrap();
    assert_eq!(usernames(&snap), ["alice", "bob", "carol"]);
    let want = vec![
        ("admins".to_string(), strs(&["alice", "carol"])),
        ("developers".to_string(), strs(&["alice", "bob"])),
    ];
    assert_eq!(memberships(&snap), want);
    let mut by_member_of = config.clone();
    by_member_of.membership = MembershipMode::UserMemberOf;
    let snap_mo = DirectoryClient::new(by_member_of.clone())
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(memberships(&snap_mo), want);
    assert_eq!(snap_mo.users, snap.users);
    // One user's part of the directory, in both membership modes.
    let member_of_client = DirectoryClient::new(by_member_of).unwrap();
    for c in [&client, &member_of_client] {
        let one = c.user_snapshot("ALICE").await.unwrap();
        assert_eq!(one.users, [snap.user("alice").unwrap().clone()]);
        assert_eq!(
            memberships(&one),
            [
                ("admins".to_string(), strs(&["alice"])),
                ("developers".to_string(), strs(&["alice"])),
            ]
        );
        let one = c.user_snapshot("bob").await.unwrap();
        assert_eq!(
            memberships(&one),
            [("developers".to_string(), strs(&["bob"]))]
        );
        assert_eq!(
            c.user_snapshot("nobody").await.unwrap(),
            DirectorySnapshot::default()
        );
        assert_eq!(
            c.user_snapshot("*").await.unwrap(),
            DirectorySnapshot::default()
        );
    }

    // The first sync creates the three users in their teams; a local `root` stays as it is.
    let root = BerthUser {
        username: "root".into(),
        origin: Origin::Local,
        active: true,
        teams: [team("acme/admins")].into(),
        email: None,
        full_name: None,
        directory_id: None,
    };
    let mut berth = vec![root.clone()];
    let first = plan(&snap, &policy, &berth).unwrap();
    let created: Vec<&str> = first.create.iter().map(|n| n.username.as_str()).collect();
    assert_eq!(created, ["alice", "bob", "carol"]);
    assert_eq!(
        first.add_memberships,
        [
            m("alice", "acme/admins"),
            m("alice", "acme/devs"),
            m("bob", "acme/devs"),
            m("carol", "acme/admins"),
        ]
    );
    first.apply(&mut berth);
    assert!(plan(&snap, &policy, &berth).unwrap().is_empty());

    // Alice leaves developers, bob leaves the company.
    slapd.modify(
        "dn: cn=developers,ou=groups,dc=example,dc=org\nchangetype: modify\n\
         delete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n",
    );
    slapd.delete("uid=bob,ou=people,dc=example,dc=org");
    let err = client.authenticate("bob", "bob-pw").await.unwrap_err();
    assert!(matches!(err, DirectoryError::UserNotFound), "{err}");
    let snap2 = client.snapshot().await.unwrap();
    assert_eq!(usernames(&snap2), ["alice", "carol"]);
    let second = plan(&snap2, &policy, &berth).unwrap();
    assert!(second.create.is_empty() && second.reactivate.is_empty());
    assert_eq!(second.deactivate, ["bob"]);
    assert_eq!(
        second.remove_memberships,
        [m("alice", "acme/devs"), m("bob", "acme/devs")]
    );
    assert!(second.add_memberships.is_empty());
    second.apply(&mut berth);
    assert!(berth.contains(&root));
    assert!(plan(&snap2, &policy, &berth).unwrap().is_empty());

    unreachable(&slapd, &client).await;
}

#[tokio::test]
async fn active_directory_like_directory() {
    const BASE: &str = "DC=corp,DC=example,DC=com";
    let slapd = Slapd::start(Directory::ActiveDirectory);
    let users = format!("CN=Users,{BASE}");
    let policy = SyncPolicy {
        create_users: CreateUsers::MappedGroups,
        teams: vec![
            GroupMapping {
                group: "registry-developers".into(),
                team: team("corp/devs"),
            },
            GroupMapping {
                group: format!("CN=Registry Admins,{users}"),
                team: team("corp/admins"),
            },
        ],
        allow_empty_directory: false,
    };
    let config = DirectoryConfig {
        url: slapd.url(),
        bind_dn: slapd.admin_dn(),
        bind_password: Secret::new(admin_password()),
        user_base: users.clone(),
        // OpenLDAP has no AD shorthand `objectCategory=person`; the class is enough here.
        user_filter: "(objectClass=user)".into(),
        group_base: BASE.into(),
        group_name_attribute: "sAMAccountName".into(),
        sync: policy.clone(),
        ..DirectoryConfig::active_directory()
    };
    assert_eq!(config.membership, MembershipMode::UserMemberOf);
    let client = DirectoryClient::new(config.clone()).unwrap();

    // Login by sAMAccountName, bind by DN.
    let alice = client.authenticate("alice", "alice-pw").await.unwrap();
    // slapd answers with its own spelling of attribute types (`cn=`), as servers may.
    assert_eq!(
        normalize_dn(&alice.dn),
        normalize_dn(&format!("CN=Alice Liddell,{users}"))
    );
    assert_eq!(alice.full_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(alice.email.as_deref(), Some("alice@corp.example.com"));
    refusals(&client, "bob", "bob-pw").await;

    // Snapshot by memberOf (the AD default) and by member: the same memberships.
    let snap = client.snapshot().await.unwrap();
    assert_eq!(usernames(&snap), ["alice", "bob", "carol"]);
    let want = vec![
        ("registry-admins".to_string(), strs(&["alice", "carol"])),
        ("registry-developers".to_string(), strs(&["alice", "bob"])),
    ];
    assert_eq!(memberships(&snap), want);
    let mut by_member = config.clone();
    by_member.membership = MembershipMode::GroupMember;
    let snap_m = DirectoryClient::new(by_member.clone())
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(memberships(&snap_m), want);
    let member_client = DirectoryClient::new(by_member).unwrap();
    for c in [&client, &member_client] {
        let one = c.user_snapshot("carol").await.unwrap();
        assert_eq!(one.users, [snap.user("carol").unwrap().clone()]);
        assert_eq!(
            memberships(&one),
            [("registry-admins".to_string(), strs(&["carol"]))]
        );
        assert_eq!(
            c.user_snapshot("nobody").await.unwrap(),
            DirectorySnapshot::default()
        );
    }

    let mut berth: Vec<BerthUser> = Vec::new();
    let first = plan(&snap, &policy, &berth).unwrap();
    assert_eq!(first.create.len(), 3);
    first.apply(&mut berth);
    let teams_of = |berth: &[BerthUser], name: &str| -> BTreeSet<String> {
        let u = berth.iter().find(|u| u.username == name).unwrap();
        u.teams.iter().map(|t| t.to_string()).collect()
    };
    assert_eq!(
        teams_of(&berth, "alice"),
        ["corp/admins".to_string(), "corp/devs".to_string()].into()
    );

    // Carol's account is disabled (userAccountControl 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE),
    // alice leaves Registry Admins, bob is deleted.
    slapd.modify(&format!(
        "dn: CN=Carol Danvers,{users}\nchangetype: modify\n\
         replace: userAccountControl\nuserAccountControl: 514\n"
    ));
    let err = client.authenticate("carol", "carol-pw").await.unwrap_err();
    assert!(matches!(err, DirectoryError::AccountDisabled), "{err}");
    slapd.modify(&format!(
        "dn: CN=Registry Admins,{users}\nchangetype: modify\n\
         delete: member\nmember: CN=Alice Liddell,{users}\n"
    ));
    slapd.delete(&format!("CN=Bob Builder,{users}"));

    let snap2 = client.snapshot().await.unwrap();
    assert_eq!(usernames(&snap2), ["alice", "carol"]);
    assert!(snap2.user("carol").unwrap().disabled);
    let second = plan(&snap2, &policy, &berth).unwrap();
    assert_eq!(second.deactivate, ["bob", "carol"]);
    assert_eq!(
        second.remove_memberships,
        [
            m("alice", "corp/admins"),
            m("bob", "corp/devs"),
            m("carol", "corp/admins"),
        ]
    );
    assert!(second.create.is_empty() && second.add_memberships.is_empty());
    second.apply(&mut berth);
    assert!(plan(&snap2, &policy, &berth).unwrap().is_empty());

    // Carol comes back: reactivated and back in her team.
    slapd.modify(&format!(
        "dn: CN=Carol Danvers,{users}\nchangetype: modify\n\
         replace: userAccountControl\nuserAccountControl: 512\n"
    ));
    let third = plan(&client.snapshot().await.unwrap(), &policy, &berth).unwrap();
    assert_eq!(third.reactivate, ["carol"]);
    assert_eq!(third.add_memberships, [m("carol", "corp/admins")]);

    unreachable(&slapd, &client).await;
}

/// The sample directory's server with an OU of its own added over LDAP: the data a test
/// needs beyond the shared LDIF, so the shared files stay as they are.
fn plain_config(slapd: &Slapd, base: &str, teams: Vec<GroupMapping>) -> DirectoryConfig {
    DirectoryConfig {
        url: slapd.url(),
        bind_dn: slapd.admin_dn(),
        bind_password: Secret::new(admin_password()),
        user_base: base.into(),
        group_base: base.into(),
        sync: SyncPolicy {
            create_users: CreateUsers::MappedGroups,
            teams,
            allow_empty_directory: false,
        },
        ..DirectoryConfig::default()
    }
}

/// Item 14: a mapping whose group DN uses the `\,` escape matched nothing when the server
/// returned `\2C` (and the other way round), and `member` values spelled differently from
/// the entry DNs lost their members. Users and a group with commas in their names, the
/// member values and the mappings each spelled another way.
#[tokio::test]
async fn escaped_dns_match_in_every_spelling() {
    let slapd = Slapd::start(Directory::OpenLdap);
    let base = "ou=escaped,dc=example,dc=org";
    slapd.modify(&format!(
        "dn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: escaped\n\n\
         dn: cn=Doe\\, Jane,{base}\nchangetype: add\nobjectClass: inetOrgPerson\n\
         cn: Doe, Jane\nsn: Doe\nuid: jane\nuserPassword: jane-pw\n\n\
         dn: cn=Roe\\2C Rick,{base}\nchangetype: add\nobjectClass: inetOrgPerson\n\
         cn: Roe, Rick\nsn: Roe\nuid: rick\nuserPassword: rick-pw\n\n\
         dn: cn=Smith\\2C Team,{base}\nchangetype: add\nobjectClass: groupOfNames\n\
         cn: Smith, Team\nmember: cn=Doe\\2C Jane,{base}\n\
         member: CN=Roe\\, Rick, OU=escaped, DC=example, DC=org\n"
    ));
    let teams = vec![
        GroupMapping {
            group: format!("cn=Smith\\, Team,{base}"),
            team: team("a/one"),
        },
        GroupMapping {
            group: "CN=Smith\\2C Team,OU=Escaped,DC=Example,DC=Org".into(),
            team: team("a/two"),
        },
        GroupMapping {
            group: "cn=\"Smith, Team\", ou=escaped, dc=example, dc=org".into(),
            team: team("a/three"),
        },
    ];
    let config = plain_config(&slapd, base, teams);
    let mut by_member_of = config.clone();
    by_member_of.membership = MembershipMode::UserMemberOf;
    for config in [config, by_member_of] {
        let client = DirectoryClient::new(config.clone()).unwrap();
        let snap = client.snapshot().await.unwrap();
        assert_eq!(usernames(&snap), ["jane", "rick"]);
        assert_eq!(
            memberships(&snap),
            [("Smith, Team".to_string(), strs(&["jane", "rick"]))],
            "{:?}",
            config.membership
        );
        let got = plan(&snap, &config.sync, &[]).unwrap();
        assert!(got.warnings.is_empty(), "{:?}", got.warnings);
        let mut want = Vec::new();
        for u in ["jane", "rick"] {
            for t in ["a/one", "a/three", "a/two"] {
                want.push(m(u, t));
            }
        }
        assert_eq!(got.add_memberships, want, "{:?}", config.membership);
        let one = client.user_snapshot("jane").await.unwrap();
        assert_eq!(
            memberships(&one),
            [("Smith, Team".to_string(), strs(&["jane"]))]
        );
        let jane = client.authenticate("jane", "jane-pw").await.unwrap();
        assert_eq!(
            normalize_dn(&jane.dn),
            normalize_dn(&format!("CN=Doe\\2c Jane,{base}"))
        );
    }
}

/// Item 18: errors said `directory search failed (result code 32): ` with nothing after the
/// colon. They now carry the result's name, the server's diagnostic (or say there was
/// none), and the base or DN involved.
#[tokio::test]
async fn errors_name_the_result_the_diagnostic_and_the_dn() {
    let slapd = Slapd::start(Directory::OpenLdap);
    let mut missing = plain_config(&slapd, "ou=missing,dc=example,dc=org", vec![]);
    missing.group_base = "ou=groups,dc=example,dc=org".into();
    let client = DirectoryClient::new(missing).unwrap();
    for err in [
        client.snapshot().await.unwrap_err(),
        client.authenticate("alice", "alice-pw").await.unwrap_err(),
        client.user_snapshot("alice").await.unwrap_err(),
    ] {
        let text = err.to_string();
        for want in [
            "search of \"ou=missing,dc=example,dc=org\"",
            "noSuchObject (result code 32)",
            "the deepest existing entry is \"dc=example,dc=org\"",
        ] {
            assert!(text.contains(want), "{want:?} not in {text:?}");
        }
        assert!(!text.trim_end().ends_with(':'), "{text}");
        assert!(!err.is_unreachable() && !err.is_login_refused(), "{text}");
    }

    // A base that is no DN: the server's own diagnostic is passed on.
    let mut bad = plain_config(&slapd, "ou=people,dc=example,dc=org", vec![]);
    bad.group_base = "ou=groups,,dc=example".into();
    let text = DirectoryClient::new(bad)
        .unwrap()
        .snapshot()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("invalidDNSyntax (result code 34): invalid DN")
            && text.contains("\"ou=groups,,dc=example\""),
        "{text}"
    );

    // A wrong service password names the bind DN and the result.
    let mut wrong = plain_config(&slapd, "ou=people,dc=example,dc=org", vec![]);
    wrong.bind_password = Secret::new("not-the-password");
    let text = DirectoryClient::new(wrong)
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("as \"cn=admin,dc=example,dc=org\": invalidCredentials (result code 49)"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
}

/// Item 19, nested groups: a member of a group that is a member of a mapped group is in
/// the mapped group (AD administrators expect it). slapd has no in-chain matching rule,
/// so this is the recursive expansion, with a cycle, in both membership modes, for the
/// full snapshot and for one user's.
#[tokio::test]
async fn nested_groups_are_expanded_with_cycles_cut() {
    let slapd = Slapd::start(Directory::OpenLdap);
    let base = "ou=nested,dc=example,dc=org";
    // platform > backend > dbas (three levels), and loop-a <-> loop-b (a cycle).
    let user = |uid: &str| {
        format!(
            "dn: uid={uid},{base}\nchangetype: add\nobjectClass: inetOrgPerson\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {uid}-pw\n\n"
        )
    };
    let group = |cn: &str, members: &[String]| {
        let m: String = members.iter().map(|d| format!("member: {d}\n")).collect();
        format!("dn: cn={cn},{base}\nchangetype: add\nobjectClass: groupOfNames\ncn: {cn}\n{m}\n")
    };
    let u = |uid: &str| format!("uid={uid},{base}");
    let g = |cn: &str| format!("cn={cn},{base}");
    let mut ldif =
        format!("dn: {base}\nchangetype: add\nobjectClass: organizationalUnit\nou: nested\n\n");
    for uid in ["dina", "bert", "pia", "lou", "lea"] {
        ldif.push_str(&user(uid));
    }
    ldif.push_str(&group("dbas", &[u("dina")]));
    ldif.push_str(&group("backend", &[u("bert"), g("dbas")]));
    ldif.push_str(&group("platform", &[u("pia"), g("backend")]));
    ldif.push_str(&group("loop-a", &[u("lou")]));
    ldif.push_str(&group("loop-b", &[u("lea"), g("loop-a")]));
    slapd.modify(&ldif);
    slapd.modify(&format!(
        "dn: cn=loop-a,{base}\nchangetype: modify\nadd: member\nmember: {}\n",
        g("loop-b")
    ));
    let teams = vec![
        GroupMapping {
            group: "platform".into(),
            team: team("acme/platform"),
        },
        GroupMapping {
            group: "loop-a".into(),
            team: team("acme/loop"),
        },
    ];
    let mut config = plain_config(&slapd, base, teams);
    config.nested_groups = true;
    let mut by_member_of = config.clone();
    by_member_of.membership = MembershipMode::UserMemberOf;
    let want = crate::nested_memberships();
    for config in [config.clone(), by_member_of] {
        let client = DirectoryClient::new(config.clone()).unwrap();
        let snap = client.snapshot().await.unwrap();
        assert_eq!(memberships(&snap), want, "{:?}", config.membership);
        // dina (two levels down) gets the platform team, lou the loop's.
        let p = plan(&snap, &config.sync, &[]).unwrap();
        assert!(
            p.add_memberships.contains(&m("dina", "acme/platform")),
            "{p:?}"
        );
        assert!(p.add_memberships.contains(&m("lou", "acme/loop")), "{p:?}");
        // One user's part of the directory agrees (a first login).
        let one = client.user_snapshot("dina").await.unwrap();
        assert_eq!(
            memberships(&one),
            [
                ("backend".to_string(), strs(&["dina"])),
                ("dbas".to_string(), strs(&["dina"])),
                ("platform".to_string(), strs(&["dina"])),
            ],
            "{:?}",
            config.membership
        );
        let one = client.user_snapshot("lea").await.unwrap();
        assert_eq!(one.groups.len(), 2, "{:?}", config.membership);
    }
    // Without nested_groups (the OpenLDAP default) only direct members count.
    let mut flat = config.clone();
    flat.nested_groups = false;
    let snap = DirectoryClient::new(flat)
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(
        snap.group("platform").unwrap().members,
        ["pia".to_string()].into()
    );
}

/// Sends `signal` to the test's own slapd (the process the test kit started, checked to be
/// that slapd before it is signalled).
fn signal(slapd: &Slapd, signal: &str) {
    let pid = slapd.pid().expect("slapd is running").to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("slapd") && cmdline.contains(&format!(":{}", slapd.port())),
        "pid {pid} is not this test's slapd: {cmdline:?}"
    );
    let out = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(&pid)
        .output()
        .expect("kill");
    assert!(out.status.success(), "kill -{signal} {pid}");
    // Wait until the state shows it (T: stopped).
    let stopped = signal == "STOP";
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .chars()
            .next();
        if (state == Some('T')) == stopped {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("slapd {pid} did not take SIG{signal}");
}

/// Item 19, circuit breaker: a frozen directory (accepting connections, answering nothing)
/// made every uncached login wait the full timeout. After `circuit_breaker_failures`
/// timeouts in a row, operations fail at once as unreachable (so logins go straight to the
/// cached hash) until `circuit_breaker_secs` have passed; then one trial closes it.
#[tokio::test]
async fn circuit_breaker_stops_waiting_for_a_frozen_directory() {
    let slapd = Slapd::start(Directory::OpenLdap);
    let mut config = plain_config(&slapd, "ou=people,dc=example,dc=org", vec![]);
    config.operation_timeout_secs = 1;
    config.connect_timeout_secs = 1;
    config.circuit_breaker_failures = 2;
    config.circuit_breaker_secs = 3;
    let client = DirectoryClient::new(config).unwrap();
    client.authenticate("alice", "alice-pw").await.unwrap();

    signal(&slapd, "STOP");
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let err = client.authenticate("alice", "alice-pw").await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    }
    // Open: no waiting, for logins, snapshots and checks alike.
    let started = std::time::Instant::now();
    for err in [
        client.authenticate("bob", "bob-pw").await.unwrap_err(),
        client.snapshot().await.unwrap_err(),
        client.check().await.unwrap_err(),
    ] {
        assert!(
            err.is_unreachable() && err.to_string().contains("circuit breaker"),
            "{err}"
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_millis(200),
        "waited {:?} with the circuit open",
        started.elapsed()
    );
    assert_eq!(client.status().healthy, Some(false));

    // The directory thaws; after the open period one trial succeeds and closes it.
    signal(&slapd, "CONT");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    client.authenticate("alice", "alice-pw").await.unwrap();
    client.authenticate("bob", "bob-pw").await.unwrap();
    assert_eq!(client.status().healthy, Some(true));
}

/// Item 19, login by `userPrincipalName` or e-mail: with `login_attributes`, the login
/// name may be either; the user (and account name) is still the `sAMAccountName`'s.
/// Without it, as before, only the username logs in.
#[tokio::test]
async fn login_by_user_principal_name_or_mail() {
    const BASE: &str = "DC=corp,DC=example,DC=com";
    let slapd = Slapd::start(Directory::ActiveDirectory);
    let users = format!("CN=Users,{BASE}");
    let config = DirectoryConfig {
        url: slapd.url(),
        bind_dn: slapd.admin_dn(),
        bind_password: Secret::new(admin_password()),
        user_base: users.clone(),
        user_filter: "(objectClass=user)".into(),
        group_base: BASE.into(),
        group_name_attribute: "sAMAccountName".into(),
        ..DirectoryConfig::active_directory()
    };
    let plain = DirectoryClient::new(config.clone()).unwrap();
    let err = plain
        .authenticate("alice@corp.example.com", "alice-pw")
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::UserNotFound), "{err}");

    let mut with_upn = config.clone();
    with_upn.login_attributes = vec!["userPrincipalName".into(), "mail".into()];
    let client = DirectoryClient::new(with_upn).unwrap();
    for login in ["alice", "ALICE@corp.example.com", "alice@CORP.example.com"] {
        let alice = client.authenticate(login, "alice-pw").await.unwrap();
        assert_eq!(alice.username, "alice", "{login}");
        let one = client.user_snapshot(login).await.unwrap();
        assert_eq!(usernames(&one), ["alice"], "{login}");
        assert_eq!(one.groups.len(), 2, "{login}");
    }
    let err = client
        .authenticate("alice@corp.example.com", "bob-pw")
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::BadCredentials), "{err}");
    // A mail shared by two entries is ambiguous, never a guess.
    slapd.modify(&format!(
        "dn: CN=Bob Builder,{users}\nchangetype: modify\nreplace: mail\nmail: alice@corp.example.com\n"
    ));
    let err = client
        .authenticate("alice@corp.example.com", "alice-pw")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryError::AmbiguousUser { count: 2 }),
        "{err}"
    );
    // Filter metacharacters stay escaped in every attribute.
    let err = client.authenticate("*", "alice-pw").await.unwrap_err();
    assert!(matches!(err, DirectoryError::UserNotFound), "{err}");
}
