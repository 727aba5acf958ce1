//! The trust service over a real SQLite store: an update signed with a root certificate
//! that openssl made, a replay refused, and the re-signing job renewing a timestamp before
//! it expires (and only then).

use berth_core::jobs::CancellationToken;
use berth_core::trust::{Lookup, RoleName, ServerRole, Trust, TrustError};
use berth_core::Kek;
use berth_oci::RepoName;
use berth_trust::metadata::{Common, Delegations, FileMeta, RoleKeys, Root, Targets, Timestamp};
use berth_trust::{canonical, KeyType, PublicKey, ServerKey, SignedFile};
use chrono::{Duration, Utc};
use p256::ecdsa::SigningKey;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

const GUN: &str = "registry.test/team/app";

/// A self-signed P-256 certificate for `cn` made by openssl, as an `ecdsa-x509` key, and
/// its private key.
fn root_cert(dir: &std::path::Path, cn: &str) -> (PublicKey, SigningKey) {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes", "-keyout", "root.key", "-out", "root.crt", "-days", "30",
        ])
        // A leaf, as Notary requires of a root key (openssl's default is a CA).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        // A GUN holds `/`, which a subject string escapes.
        .args(["-subj", &format!("/CN={}", cn.replace('/', "\\/"))])
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(status.success());
    use p256::pkcs8::DecodePrivateKey;
    let key = std::fs::read_to_string(dir.join("root.key")).unwrap();
    let key = SigningKey::from_pkcs8_pem(&key).unwrap();
    let chain =
        berth_trust::x509::CertChain::from_pem(&std::fs::read(dir.join("root.crt")).unwrap())
            .unwrap();
    (PublicKey::new(KeyType::EcdsaX509, chain.to_go_pem()), key)
}

/// `signed` signed by `key` (listed as `id`), as the Go clients write a file.
fn sign(signed: &impl serde::Serialize, key: &SigningKey, id: &str) -> Vec<u8> {
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    let value = serde_json::to_value(signed).unwrap();
    let sig: p256::ecdsa::Signature = key.sign(&canonical::to_vec(&value).unwrap());
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
    let file = serde_json::json!({"signed": value,
        "signatures": [{"keyid": id, "method": "ecdsa", "sig": sig}]});
    canonical::to_vec(&file).unwrap()
}

fn common(kind: &str, days: i64) -> Common {
    Common {
        kind: kind.into(),
        expires: Utc::now() + Duration::days(days),
        version: 1,
    }
}

#[tokio::test]
async fn updates_are_stored_and_timestamps_renewed_before_expiry() {
    // Trust data belongs to a repository (a first signing creates it, as a push does).
    use berth_meta::AccessStore;
    let repo = RepoName::parse("team/app").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let meta = berth_meta::SqliteMetaStore::open(&path).await.unwrap();
    meta.repo_create(&repo, None, None).await.unwrap();
    let trust = Arc::new(Trust::new(Arc::new(meta), Kek::generate(), vec![]));
    // The server's keys, asked for as a client does before its first publish.
    let timestamp = trust
        .key(&repo, ServerRole::Timestamp, false)
        .await
        .unwrap();
    let snapshot = trust.key(&repo, ServerRole::Snapshot, false).await.unwrap();
    assert_eq!(
        trust
            .key(&repo, ServerRole::Timestamp, false)
            .await
            .unwrap(),
        timestamp,
        "the pending key again"
    );
    let (root_key, root_signer) = root_cert(dir.path(), GUN);
    let targets_signer = SigningKey::random(&mut rand::rngs::OsRng);
    let targets_key = ServerKey::from_signing(targets_signer.clone())
        .public()
        .clone();
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (role, key) in [
        ("root", &root_key),
        ("targets", &targets_key),
        ("snapshot", &snapshot),
        ("timestamp", &timestamp),
    ] {
        keys.insert(key.key_id(), key.clone());
        roles.insert(
            role.to_string(),
            RoleKeys {
                keyids: vec![key.key_id()],
                threshold: 1,
            },
        );
    }
    let root = Root {
        common: common("Root", 3650),
        consistent_snapshot: false,
        keys,
        roles,
    };
    let mut tags = BTreeMap::new();
    tags.insert("v1".to_string(), FileMeta::of(b"manifest"));
    let targets = Targets {
        common: common("Targets", 1095),
        targets: tags,
        delegations: Delegations::default(),
    };
    let mut uploads = BTreeMap::new();
    uploads.insert(
        "root".to_string(),
        sign(&root, &root_signer, &root_key.key_id()),
    );
    uploads.insert(
        "targets".to_string(),
        sign(&targets, &targets_signer, &targets_key.key_id()),
    );
    trust.update(&repo, GUN, &uploads, 0).await.unwrap();
    let replay = trust.update(&repo, GUN, &uploads, 0).await;
    assert!(matches!(replay, Err(TrustError::Version)), "{replay:?}");

    let current = |role: &'static str| {
        let trust = trust.clone();
        let repo = repo.clone();
        async move {
            let f = trust
                .get(&repo, &RoleName::parse(role).unwrap(), &Lookup::Current)
                .await
                .unwrap();
            (f.version, f.data)
        }
    };
    assert_eq!(current("timestamp").await.0, 1);
    let cancel = CancellationToken::new();
    // A timestamp lives 14 days: not due within a week, due within a month.
    assert_eq!(
        trust
            .resign_expiring(Duration::days(7), &cancel)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        trust
            .resign_expiring(Duration::days(30), &cancel)
            .await
            .unwrap(),
        1
    );
    let (version, bytes) = current("timestamp").await;
    assert_eq!(version, 2);
    let renewed: SignedFile<Timestamp> = SignedFile::parse(&bytes).unwrap();
    assert!(renewed.expires() > Utc::now() + Duration::days(13));
    // It names the current snapshot, which had years left and was not signed again.
    let (snapshot_version, snapshot_bytes) = current("snapshot").await;
    assert_eq!(snapshot_version, 1);
    assert_eq!(
        renewed.signed.meta["snapshot"],
        FileMeta::of(&snapshot_bytes)
    );
    // The status view shows the roles and the signed tag.
    let status = trust.status(&repo).await.unwrap();
    assert!(status.signed);
    assert_eq!(status.targets.len(), 1);
    assert_eq!(status.targets[0].tag, "v1");
    let roles: Vec<(&str, i64)> = status
        .roles
        .iter()
        .map(|r| (r.role.as_str(), r.version))
        .collect();
    assert_eq!(
        roles,
        [
            ("root", 1),
            ("targets", 1),
            ("snapshot", 1),
            ("timestamp", 2)
        ]
    );
}
