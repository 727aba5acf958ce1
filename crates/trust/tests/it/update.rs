//! `update::validate`: what a first push, later pushes, rotations and delegations store,
//! and each kind of tampering refused with Notary's error.

use berth_trust::metadata::{Root, Snapshot, Targets, Timestamp};
use berth_trust::testing::*;
use berth_trust::update::{validate, Current};
use berth_trust::{NewFile, RoleName, SignedFile, UpdateError};
use chrono::Duration;
use std::collections::BTreeMap;

fn uploads(parts: &[(&str, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    parts
        .iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect()
}

/// The current state after storing `files` over `current`.
fn apply(mut current: Current, files: &[NewFile]) -> Current {
    for f in files {
        match f.role.as_str() {
            "root" => current.root = Some(SignedFile::parse(&f.bytes).unwrap()),
            "snapshot" => current.snapshot = Some(SignedFile::parse(&f.bytes).unwrap()),
            "timestamp" => current.timestamp = Some(SignedFile::parse(&f.bytes).unwrap()),
            _ => {
                current
                    .targets
                    .insert(f.role.clone(), SignedFile::parse(&f.bytes).unwrap());
            }
        }
    }
    current
}

/// A repository initialised as the docker CLI does: root and targets uploaded, the
/// snapshot and timestamp made by the server.
fn initialised(repo: &Repo) -> Current {
    let files = validate(
        GUN,
        now(),
        &Current::default(),
        &uploads(&[
            ("root", sign(&repo.root(1), &[&repo.root])),
            (
                "targets",
                sign(
                    &repo.targets(1, &[("v1", b"manifest one")]),
                    &[&repo.targets],
                ),
            ),
        ]),
        &repo.held(),
    )
    .unwrap();
    apply(Current::default(), &files)
}

#[test]
fn a_first_push_stores_root_targets_and_the_servers_snapshot_and_timestamp() {
    let repo = Repo::default();
    let root = sign(&repo.root(1), &[&repo.root]);
    let targets = sign(
        &repo.targets(1, &[("v1", b"manifest one")]),
        &[&repo.targets],
    );
    let files = validate(
        GUN,
        now(),
        &Current::default(),
        &uploads(&[("root", root.clone()), ("targets.json", targets.clone())]),
        &repo.held(),
    )
    .unwrap();
    let roles: Vec<(&str, i64)> = files.iter().map(|f| (f.role.as_str(), f.version)).collect();
    assert_eq!(
        roles,
        [
            ("root", 1),
            ("targets", 1),
            ("snapshot", 1),
            ("timestamp", 1)
        ]
    );
    assert_eq!(
        files[0].bytes, root,
        "uploaded files are stored as received"
    );
    let snap: SignedFile<Snapshot> = SignedFile::parse(&files[2].bytes).unwrap();
    let meta = |role: &str| snap.signed.meta[role].clone();
    assert_eq!(meta("root"), berth_trust::metadata::FileMeta::of(&root));
    assert_eq!(
        meta("targets"),
        berth_trust::metadata::FileMeta::of(&targets)
    );
    assert_eq!(snap.signatures[0].keyid, repo.snapshot.id());
    let ts: SignedFile<Timestamp> = SignedFile::parse(&files[3].bytes).unwrap();
    assert_eq!(
        ts.signed.meta["snapshot"],
        berth_trust::metadata::FileMeta::of(&files[2].bytes)
    );
    assert_eq!(ts.expires(), now() + Duration::days(14));
    // The server's files verify with the keys the root lists.
    let root_file: SignedFile<Root> = SignedFile::parse(&root).unwrap();
    for (file_canonical, sigs, role) in [
        (&snap.canonical, &snap.signatures, "snapshot"),
        (&ts.canonical, &ts.signatures, "timestamp"),
    ] {
        let entry = &root_file.signed.roles[role];
        berth_trust::verify::check_threshold(
            role,
            file_canonical,
            sigs,
            &root_file.signed.keys,
            &entry.keyids,
            1,
        )
        .unwrap();
    }
}

#[test]
fn a_later_push_moves_snapshot_and_timestamp_one_version_on() {
    let repo = Repo::default();
    let current = initialised(&repo);
    let targets = sign(
        &repo.targets(2, &[("v1", b"one"), ("v2", b"two")]),
        &[&repo.targets],
    );
    let files = validate(
        GUN,
        now(),
        &current,
        &uploads(&[("targets", targets.clone())]),
        &repo.held(),
    )
    .unwrap();
    let roles: Vec<(&str, i64)> = files.iter().map(|f| (f.role.as_str(), f.version)).collect();
    assert_eq!(roles, [("targets", 2), ("snapshot", 2), ("timestamp", 2)]);
    let snap: SignedFile<Snapshot> = SignedFile::parse(&files[1].bytes).unwrap();
    assert_eq!(
        snap.signed.meta["targets"],
        berth_trust::metadata::FileMeta::of(&targets)
    );
    assert_eq!(
        snap.signed.meta["root"],
        current.snapshot.unwrap().signed.meta["root"]
    );
}

#[test]
fn a_notary_cli_update_with_its_own_snapshot_is_checked_against_the_written_files() {
    let repo = Repo::default();
    let root = sign(&repo.root(1), &[&repo.root]);
    let targets = sign(&repo.targets(1, &[]), &[&repo.targets]);
    let mut meta = BTreeMap::new();
    meta.insert(
        "root".to_string(),
        berth_trust::metadata::FileMeta::of(&root),
    );
    meta.insert(
        "targets".to_string(),
        berth_trust::metadata::FileMeta::of(&targets),
    );
    let snapshot = |meta| Snapshot {
        common: common("Snapshot", 1, now() + Duration::days(1095)),
        meta,
    };
    let held = berth_trust::HeldKeys {
        snapshot: vec![],
        timestamp: vec![repo.timestamp.held()],
    };
    let good = sign(&snapshot(meta.clone()), &[&repo.snapshot]);
    let parts = |snap: Vec<u8>| {
        uploads(&[
            ("root", root.clone()),
            ("targets", targets.clone()),
            ("snapshot", snap),
        ])
    };
    let files = validate(GUN, now(), &Current::default(), &parts(good.clone()), &held).unwrap();
    assert_eq!(files[2].bytes, good);
    // A snapshot whose hash of targets is not the uploaded file's.
    meta.insert(
        "targets".to_string(),
        berth_trust::metadata::FileMeta::of(b"other bytes"),
    );
    let bad = sign(&snapshot(meta), &[&repo.snapshot]);
    let err = validate(GUN, now(), &Current::default(), &parts(bad), &held).unwrap_err();
    assert!(matches!(err, UpdateError::BadSnapshot(_)), "{err:?}");
    // Without a snapshot, and the server holds no snapshot key.
    let err = validate(
        GUN,
        now(),
        &Current::default(),
        &uploads(&[("root", root.clone()), ("targets", targets.clone())]),
        &held,
    )
    .unwrap_err();
    assert_eq!(err.detail().unwrap()["Name"], "ErrBadHierarchy");
    assert_eq!(err.detail().unwrap()["Error"]["Missing"], "snapshot");
}

/// Each tampering refused with Notary's error name.
#[test]
fn tampering_is_refused_with_notarys_error() {
    let repo = Repo::default();
    let current = initialised(&repo);
    let held = repo.held();
    let check = |what: &str, parts: BTreeMap<String, Vec<u8>>, current: &Current, name: &str| {
        let err = validate(GUN, now(), current, &parts, &held).expect_err(what);
        assert_eq!(err.detail().unwrap()["Name"], name, "{what}: {err:?}");
    };

    check(
        "no root at all",
        uploads(&[("targets", sign(&repo.targets(1, &[]), &[&repo.targets]))]),
        &Current::default(),
        "ErrValidation",
    );

    // A new root that drops the old root key (and lowers nothing else) signed only by
    // its own new key: the previous root's threshold is not met.
    let rotated = Repo {
        root: Signer::cert(GUN),
        targets: repo.targets.clone(),
        snapshot: repo.snapshot.clone(),
        timestamp: repo.timestamp.clone(),
    };
    check(
        "rotation without the old root's signature",
        uploads(&[("root", sign(&rotated.root(2), &[&rotated.root]))]),
        &current,
        "ErrBadRoot",
    );
    // The same root signed by both passes.
    let both = validate(
        GUN,
        now(),
        &current,
        &uploads(&[("root", sign(&rotated.root(2), &[&rotated.root, &repo.root]))]),
        &held,
    );
    assert!(both.is_ok(), "{both:?}");
    // A root whose threshold asks for two keys it does not have.
    let mut lowered = repo.root(2);
    lowered.roles.get_mut("root").unwrap().threshold = 2;
    check(
        "threshold above the keys",
        uploads(&[("root", sign(&lowered, &[&repo.root]))]),
        &current,
        "ErrBadRoot",
    );
    check(
        "a root version jump",
        uploads(&[("root", sign(&repo.root(5), &[&repo.root]))]),
        &current,
        "ErrBadRoot",
    );

    let stranger = Signer::cert("registry.example:5000/other/app");
    let mut foreign = repo.root(1);
    foreign.keys.clear();
    foreign.keys.insert(stranger.id(), stranger.public.clone());
    for (name, s) in [
        ("targets", &repo.targets),
        ("snapshot", &repo.snapshot),
        ("timestamp", &repo.timestamp),
    ] {
        foreign.keys.insert(s.id(), s.public.clone());
        foreign.roles.get_mut(name).unwrap().keyids = vec![s.id()];
    }
    foreign.roles.get_mut("root").unwrap().keyids = vec![stranger.id()];
    check(
        "a root certificate for another GUN",
        uploads(&[
            ("root", sign(&foreign, &[&stranger])),
            ("targets", sign(&repo.targets(1, &[]), &[&repo.targets])),
        ]),
        &Current::default(),
        "ErrBadRoot",
    );

    check(
        "targets signed by an unknown key",
        uploads(&[("targets", sign(&repo.targets(2, &[]), &[&Signer::ecdsa()]))]),
        &current,
        "ErrBadTargets",
    );

    let mut modified: serde_json::Value =
        serde_json::from_slice(&sign(&repo.targets(2, &[("v1", b"x")]), &[&repo.targets])).unwrap();
    modified["signed"]["targets"]["v1"]["length"] = 9.into();
    check(
        "a signature over other bytes",
        uploads(&[("targets", serde_json::to_vec(&modified).unwrap())]),
        &current,
        "ErrBadTargets",
    );

    let mut expired = repo.targets(2, &[]);
    expired.common.expires = now() - Duration::seconds(1);
    check(
        "an expired role",
        uploads(&[("targets", sign(&expired, &[&repo.targets]))]),
        &current,
        "ErrBadTargets",
    );

    // Delegations: targets/releases limited to "v1/"; its child may not claim "v2/".
    let releases = Signer::ecdsa();
    let child = Signer::ecdsa();
    let mut top = repo.targets(2, &[]);
    delegate(&mut top, "targets/releases", &releases, &["v1/"]);
    let top = sign(&top, &[&repo.targets]);
    let mut rel: Targets = repo.targets(1, &[]);
    delegate(&mut rel, "targets/releases/qa", &child, &["v2/"]);
    let with_releases = |rel: &Targets| {
        uploads(&[
            ("targets", top.clone()),
            ("targets/releases", sign(rel, &[&releases])),
        ])
    };
    check(
        "a delegation claiming paths outside its parent",
        with_releases(&rel),
        &current,
        "ErrBadTargets",
    );
    check(
        "a delegation signing outside its paths",
        with_releases(&repo.targets(1, &[("v2/tag", b"m")])),
        &current,
        "ErrBadTargets",
    );
    let inside = with_releases(&repo.targets(1, &[("v1/tag", b"m")]));
    let ok = validate(GUN, now(), &current, &inside, &held);
    assert!(ok.is_ok(), "{ok:?}");
    check(
        "a delegation nobody declared",
        uploads(&[("targets/ops", sign(&repo.targets(1, &[]), &[&releases]))]),
        &current,
        "ErrBadTargets",
    );

    let mut bad_child = repo.targets(2, &[]);
    delegate(&mut bad_child, "targets/a/b", &child, &[""]);
    check(
        "a delegation to a grandchild",
        uploads(&[("targets", sign(&bad_child, &[&repo.targets]))]),
        &current,
        "ErrBadTargets",
    );

    let err = validate(
        GUN,
        now(),
        &current,
        &uploads(&[("Targets/../x", vec![])]),
        &held,
    )
    .unwrap_err();
    assert!(matches!(err, UpdateError::InvalidRole(_)));
    let err = validate(
        GUN,
        now(),
        &current,
        &uploads(&[("targets", b"{not json".to_vec())]),
        &held,
    )
    .unwrap_err();
    assert!(matches!(err, UpdateError::Malformed { .. }));
}

#[test]
fn role_names_follow_notarys_rules() {
    for ok in [
        "root",
        "targets",
        "targets/releases",
        "targets/a/b-c_d",
        "timestamp",
    ] {
        assert!(RoleName::parse(ok).is_some(), "{ok}");
    }
    for bad in [
        "",
        "Targets",
        "targets/",
        "targets//a",
        "targets/../root",
        "targets/A",
        "delegation",
        "targets/a b",
    ] {
        assert!(RoleName::parse(bad).is_none(), "{bad}");
    }
    assert!(RoleName::parse(&format!("targets/{}", "a".repeat(300))).is_none());
}

/// Go writes a nil slice or map as `null` (a targets file whose last delegation was
/// removed has `"roles": null`): read as empty.
#[test]
fn go_nil_collections_read_as_empty() {
    let repo = Repo::default();
    let mut signed = serde_json::to_value(repo.targets(1, &[])).unwrap();
    signed["targets"] = serde_json::Value::Null;
    signed["delegations"] = serde_json::json!({"keys": null, "roles": null});
    let file: SignedFile<Targets> =
        SignedFile::parse(&sign_value(signed, &[&repo.targets])).unwrap();
    assert!(file.signed.targets.is_empty() && file.signed.delegations.roles.is_empty());
}

/// Versions at the end of the integers are refused, not wrapped: the next root would need
/// a version past `i64::MAX`, and the server's next snapshot stays at it (a conflict).
#[test]
fn versions_at_the_limit_do_not_wrap() {
    let repo = Repo::default();
    let root = sign(&repo.root(i64::MAX), &[&repo.root]);
    let targets = sign(&repo.targets(1, &[]), &[&repo.targets]);
    let parts = uploads(&[("root", root), ("targets", targets)]);
    let files = validate(GUN, now(), &Current::default(), &parts, &repo.held()).unwrap();
    let current = apply(Current::default(), &files);
    let next = sign(&repo.root(1), &[&repo.root]);
    let err = validate(
        GUN,
        now(),
        &current,
        &uploads(&[("root", next)]),
        &repo.held(),
    );
    assert!(matches!(err, Err(UpdateError::BadRoot(_))), "{err:?}");
}
