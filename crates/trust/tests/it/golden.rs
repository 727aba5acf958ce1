//! Files written by the real notary client (captured with `notary` 0.7 against the
//! reference notary-server, by `tests/golden/capture.sh`): our canonical JSON and key ids
//! must be the Go client's, or their signatures would not verify here.

use berth_trust::metadata::{FileMeta, Root, Snapshot, Targets, Timestamp};
use berth_trust::verify::{canonical_key_id, check_threshold};
use berth_trust::{KeyType, SignedFile};
use std::path::PathBuf;

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/localhost-5000-golden-app")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const GUN: &str = "localhost:5000/golden/app";
/// A day after the files were captured (unix seconds): their certificates are valid then.
const CAPTURED: i64 = 1_796_688_000;

#[test]
fn the_go_clients_signatures_verify_over_our_canonical_json() {
    let root: SignedFile<Root> = SignedFile::parse(&read("root.json")).unwrap();
    let r = &root.signed;
    // Each base role by the root's keys, as the client checks them.
    let targets: SignedFile<Targets> = SignedFile::parse(&read("targets.json")).unwrap();
    let snapshot: SignedFile<Snapshot> = SignedFile::parse(&read("snapshot.json")).unwrap();
    let timestamp: SignedFile<Timestamp> = SignedFile::parse(&read("timestamp.json")).unwrap();
    for (role, canonical, sigs) in [
        ("root", &root.canonical, &root.signatures),
        ("targets", &targets.canonical, &targets.signatures),
        ("snapshot", &snapshot.canonical, &snapshot.signatures),
        ("timestamp", &timestamp.canonical, &timestamp.signatures),
    ] {
        let entry = &r.roles[role];
        check_threshold(
            role,
            canonical,
            sigs,
            &r.keys,
            &entry.keyids,
            entry.threshold,
        )
        .unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    // The delegations by the keys their parent declares: a certificate of each kind.
    let d = &targets.signed.delegations;
    for (file, role, keytype) in [
        (
            "targets-releases.json",
            "targets/releases",
            KeyType::EcdsaX509,
        ),
        ("targets-ops.json", "targets/ops", KeyType::RsaX509),
    ] {
        let f: SignedFile<Targets> = SignedFile::parse(&read(file)).unwrap();
        let entry = d.roles.iter().find(|e| e.name == role).unwrap();
        assert_eq!(d.keys[&entry.keyids[0]].keytype, keytype);
        check_threshold(
            role,
            &f.canonical,
            &f.signatures,
            &d.keys,
            &entry.keyids,
            entry.threshold,
        )
        .unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    // A byte changed in the signed part is no longer signed.
    let mut tampered = targets.canonical.clone();
    let at = tampered.iter().position(|&b| b == b'1').unwrap();
    tampered[at] = b'2';
    let entry = &r.roles["targets"];
    assert!(check_threshold(
        "targets",
        &tampered,
        &targets.signatures,
        &r.keys,
        &entry.keyids,
        1
    )
    .is_err());
}

#[test]
fn key_ids_are_the_go_clients() {
    let root: SignedFile<Root> = SignedFile::parse(&read("root.json")).unwrap();
    let r = &root.signed;
    let root_key = &r.roles["root"].keyids[0];
    assert_eq!(r.keys[root_key].keytype, KeyType::EcdsaX509);
    for (id, key) in &r.keys {
        assert_eq!(&key.key_id(), id, "the id of {:?} as listed", key.keytype);
        assert_eq!(
            canonical_key_id(key).as_ref(),
            Some(id),
            "re-encoded as Go's PEM"
        );
    }
    // The root certificate is the GUN's.
    let verdict = berth_trust::verify::valid_root_cert(&r.keys[root_key], GUN, CAPTURED, true);
    assert_eq!(verdict, Ok(()));
    assert!(berth_trust::verify::valid_root_cert(
        &r.keys[root_key],
        "localhost:5000/other",
        CAPTURED,
        true
    )
    .is_err());
    // The same key as `ecdsa` and as `ecdsa-x509` has two ids and one SPKI.
    let cert = &r.keys[root_key];
    let bare = berth_trust::PublicKey::new(KeyType::Ecdsa, cert.spki().unwrap());
    assert_ne!(bare.key_id(), cert.key_id());
    assert_eq!(bare.spki().unwrap(), cert.spki().unwrap());
}

#[test]
fn hashes_in_snapshot_and_timestamp_are_over_the_stored_bytes() {
    let snapshot: SignedFile<Snapshot> = SignedFile::parse(&read("snapshot.json")).unwrap();
    let timestamp: SignedFile<Timestamp> = SignedFile::parse(&read("timestamp.json")).unwrap();
    assert_eq!(
        timestamp.signed.meta["snapshot"],
        FileMeta::of(&read("snapshot.json"))
    );
    for (role, file) in [
        ("root", "root.json"),
        ("targets", "targets.json"),
        ("targets/releases", "targets-releases.json"),
        ("targets/ops", "targets-ops.json"),
    ] {
        let meta = &snapshot.signed.meta[role];
        let ours = FileMeta::of(&read(file));
        assert_eq!(meta.length, ours.length, "{role}");
        assert_eq!(meta.sha256(), ours.sha256(), "{role}");
    }
}
