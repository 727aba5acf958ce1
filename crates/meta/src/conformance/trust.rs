//! Conformance cases of the trust data ([`TrustStore`](crate::TrustStore)): every version
//! kept and found by version and checksum, updates all or nothing with versions strictly
//! rising, one winner among racing updates, the changefeed, deletion, the held keys.

use super::Store;
use crate::{MetaError, TrustFile, TrustKey};

/// The four base roles at `version`, their bytes naming the role and version.
fn update(version: i64, roles: &[&str]) -> Vec<TrustFile> {
    roles
        .iter()
        .map(|r| TrustFile::new(r, version, format!("{{\"{r}\":{version}}}").into_bytes()))
        .collect()
}

const BASE: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// Stores `files` of `repo`, which must succeed.
async fn put(store: &Store, repo: &str, files: Vec<TrustFile>) {
    let what = format!(
        "{repo}: {:?}",
        files
            .iter()
            .map(|f| (&f.role, f.version))
            .collect::<Vec<_>>()
    );
    store
        .trust_put(repo, files, None)
        .await
        .unwrap_or_else(|e| panic!("trust_put {what}: {e}"));
}

async fn current(store: &Store, repo: &str, role: &str) -> Option<i64> {
    let f = store
        .trust_current(repo, role)
        .await
        .expect("trust_current");
    f.map(|f| f.version)
}

/// Every version is kept; the current one is the highest; lookups by version and by
/// checksum find the stored bytes; repositories are apart.
pub async fn trust_files_versions_and_lookups(store: Store) {
    assert!(store
        .trust_current_all("a/b")
        .await
        .expect("all")
        .is_empty());
    put(&store, "a/b", update(1, &BASE)).await;
    let next = update(2, &["targets", "snapshot", "timestamp"]);
    store
        .trust_put("a/b", next.clone(), None)
        .await
        .expect("put v2");
    let all = store.trust_current_all("a/b").await.expect("all");
    let versions: Vec<(&str, i64)> = all.iter().map(|f| (f.role.as_str(), f.version)).collect();
    assert_eq!(
        versions,
        [
            ("root", 1),
            ("snapshot", 2),
            ("targets", 2),
            ("timestamp", 2)
        ]
    );
    assert_eq!(all[2].data, next[0].data, "bytes as stored");
    let v1 = store
        .trust_version("a/b", "targets", 1)
        .await
        .expect("version");
    assert_eq!(v1.expect("targets v1").data, b"{\"targets\":1}");
    let old = update(1, &["targets"]).remove(0);
    let found = store.trust_checksum("a/b", "targets", &old.sha256).await;
    assert_eq!(found.expect("checksum").expect("found").version, 1);
    assert!(store
        .trust_version("a/b", "targets", 3)
        .await
        .expect("v3")
        .is_none());
    assert_eq!(
        current(&store, "a/c", "root").await,
        None,
        "another repository"
    );
}

/// An update with one stale version writes nothing, not even its newer files.
pub async fn trust_put_is_all_or_nothing(store: Store) {
    put(&store, "a/b", update(1, &BASE)).await;
    let before = store.trust_last_change().await.expect("last change");
    let mut stale = update(2, &["snapshot", "timestamp"]);
    stale.extend(update(1, &["targets"]));
    let err = store
        .trust_put("a/b", stale, None)
        .await
        .expect_err("a stale version");
    assert!(matches!(err, MetaError::Conflict(_)), "{err:?}");
    assert_eq!(current(&store, "a/b", "snapshot").await, Some(1));
    assert_eq!(current(&store, "a/b", "timestamp").await, Some(1));
    assert_eq!(store.trust_last_change().await.expect("last"), before);
    // A version below the current one is as stale as an equal one.
    put(&store, "a/b", update(3, &["targets"])).await;
    let err = store.trust_put("a/b", update(2, &["targets"]), None).await;
    assert!(matches!(err, Err(MetaError::Conflict(_))), "{err:?}");
}

/// Of updates racing with the same versions, exactly one is stored.
pub async fn concurrent_trust_puts_one_wins(store: Store) {
    put(&store, "a/b", update(1, &BASE)).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let files = vec![
                    TrustFile::new("targets", 2, format!("from {i}").into_bytes()),
                    TrustFile::new("timestamp", 2, format!("ts {i}").into_bytes()),
                ];
                store.trust_put("a/b", files, None).await
            })
        })
        .collect();
    let mut won = vec![];
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => won.push(()),
            Err(MetaError::Conflict(_)) => {}
            Err(e) => panic!("a racing update failed otherwise: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one update is stored");
    let targets = store
        .trust_current("a/b", "targets")
        .await
        .expect("current");
    let ts = store
        .trust_current("a/b", "timestamp")
        .await
        .expect("current");
    let winner = String::from_utf8(targets.expect("targets").data).expect("utf8");
    let ts = String::from_utf8(ts.expect("timestamp").data).expect("utf8");
    assert_eq!(
        winner.replace("from", "ts"),
        ts,
        "both files of the same update"
    );
}

/// A change per stored timestamp and per deletion, paged forwards and backwards, per
/// repository or for all; deletion takes the files (and the keys when asked).
pub async fn trust_changefeed_and_delete(store: Store) {
    put(&store, "a/b", update(1, &BASE)).await;
    put(&store, "c/d", update(1, &BASE)).await;
    put(&store, "a/b", update(2, &["timestamp"])).await;
    put(&store, "a/b", update(3, &["targets"])).await;
    let all = store.trust_changes(None, 0, 100, false).await.expect("all");
    let seen: Vec<(&str, i64, &str)> = all
        .iter()
        .map(|c| (c.repo.as_str(), c.version, c.category.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a/b", 1, "update"),
            ("c/d", 1, "update"),
            ("a/b", 2, "update")
        ]
    );
    assert_eq!(all[2].sha256, update(2, &["timestamp"])[0].sha256);
    // The repositories with a timestamp, paged by name.
    assert_eq!(store.trust_repos("", 1).await.expect("repos"), ["a/b"]);
    assert_eq!(store.trust_repos("a/b", 10).await.expect("repos"), ["c/d"]);
    let mine = store
        .trust_changes(Some("a/b"), all[0].id, 100, false)
        .await;
    assert_eq!(mine.expect("after").len(), 1);
    let last = store.trust_last_change().await.expect("last");
    assert_eq!(last, all[2].id);
    let back = store
        .trust_changes(None, last, 2, true)
        .await
        .expect("before");
    assert_eq!(
        back,
        all[..2].to_vec(),
        "the two before the last, oldest first"
    );

    let key = TrustKey {
        role: "timestamp".into(),
        key_id: "k1".into(),
        public: vec![1, 2],
        sealed: vec![3, 4, 5],
    };
    store.trust_key_add("a/b", key.clone()).await.expect("key");
    store
        .trust_key_add("c/d", key.clone())
        .await
        .expect("same id elsewhere");
    assert_eq!(
        store.trust_keys("a/b").await.expect("keys"),
        vec![key.clone()]
    );
    let dup = store.trust_key_add("a/b", key.clone()).await;
    assert!(dup.is_err(), "a key id is kept once per repository");

    assert!(store.trust_delete("a/b", false).await.expect("delete"));
    assert!(store
        .trust_current_all("a/b")
        .await
        .expect("all")
        .is_empty());
    assert!(!store.trust_delete("a/b", false).await.expect("again"));
    let last = store
        .trust_changes(Some("a/b"), 0, 100, false)
        .await
        .expect("feed");
    let deletion = last.last().expect("a deletion");
    assert_eq!(
        (deletion.category.as_str(), deletion.version),
        ("deletion", 2)
    );
    assert_eq!(
        store.trust_keys("a/b").await.expect("keys").len(),
        1,
        "kept"
    );
    assert!(store.trust_delete("c/d", true).await.expect("delete c/d"));
    assert!(store.trust_keys("c/d").await.expect("keys").is_empty());
    // Stored again after a deletion, from version 1.
    put(&store, "a/b", update(1, &BASE)).await;
}

/// Signed targets by digest, signers kept by the first account to bring a key, and every
/// change of them moving the policy revision on.
pub async fn trust_signed_targets_and_signers(store: Store) {
    use crate::{Signed, SignedTarget, TrustSigner};
    let r = super::repo("sig/app");
    // A repository exists once a blob is linked (trust data belongs to one).
    super::link(&store, &r, &super::blob("sig-layer")).await;
    let target = |tag: &str, digest: &str, role: &str, keys: &[&str]| SignedTarget {
        tag: tag.into(),
        digest: digest.into(),
        role: role.into(),
        key_ids: keys.iter().map(|k| k.to_string()).collect(),
        expires_at: 42,
    };
    let signer = |key: &str, account: i64| TrustSigner {
        key_id: key.into(),
        account,
    };
    let before = store.policy_revision().await.expect("revision");
    let first = Signed {
        targets: vec![
            target("v1", "sha256:aa", "targets", &["t1"]),
            target("v1", "sha256:aa", "targets/releases", &["d1", "d2"]),
            target("v2", "sha256:bb", "targets", &["t1"]),
        ],
        signers: vec![signer("t1", 7), signer("d1", 8)],
    };
    store
        .trust_put(r.as_str(), update(1, &BASE), Some(first.clone()))
        .await
        .expect("put");
    assert_eq!(store.policy_revision().await.unwrap(), before + 1);
    assert_eq!(
        store.trust_signed(r.as_str(), None).await.unwrap(),
        first.targets
    );
    assert_eq!(
        store
            .trust_signed(r.as_str(), Some("sha256:aa"))
            .await
            .unwrap(),
        first.targets[..2]
    );
    // A later update replaces the targets; a key already known keeps its first signer.
    let next = Signed {
        targets: vec![target("v2", "sha256:cc", "targets", &["t1"])],
        signers: vec![signer("t1", 9), signer("d3", 9)],
    };
    store
        .trust_put(r.as_str(), update(2, &["targets"]), Some(next.clone()))
        .await
        .expect("put");
    assert_eq!(
        store.trust_signed(r.as_str(), None).await.unwrap(),
        next.targets
    );
    assert_eq!(
        store.trust_signers(r.as_str()).await.unwrap(),
        [signer("d1", 8), signer("d3", 9), signer("t1", 7)]
    );
    // An update that changes no targets role leaves them, and the revision.
    let revision = store.policy_revision().await.unwrap();
    store
        .trust_put(r.as_str(), update(3, &["timestamp"]), None)
        .await
        .expect("put");
    assert_eq!(store.policy_revision().await.unwrap(), revision);
    assert_eq!(store.trust_signed(r.as_str(), None).await.unwrap().len(), 1);
    // Deleting the trust data moves it on.
    assert!(store.trust_delete(r.as_str(), true).await.expect("delete"));
    assert!(store
        .trust_signed(r.as_str(), None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.policy_revision().await.unwrap(), revision + 1);
}

/// Policies by scope: set, replaced, read, deleted, each moving the revision on.
pub async fn signature_policies_by_scope(store: Store) {
    use crate::StoredPolicy;
    let policy = |scope: &str, mode: &str| StoredPolicy {
        scope: scope.into(),
        mode: mode.into(),
        formats: "dct,cosign".into(),
        all_of: true,
        signers: "team:acme/qa,user:alice".into(),
        updated_at: 0,
    };
    assert_eq!(store.policy_get("acme").await.unwrap(), None);
    let r0 = store.policy_revision().await.unwrap();
    store.policy_put(&policy("acme", "audit")).await.unwrap();
    store.policy_put(&policy("acme/app", "off")).await.unwrap();
    store.policy_put(&policy("acme", "enforce")).await.unwrap();
    assert_eq!(store.policy_revision().await.unwrap(), r0 + 3);
    let got = store.policy_get("acme").await.unwrap().expect("set");
    assert!(got.updated_at > 0);
    assert_eq!(
        got,
        StoredPolicy {
            updated_at: got.updated_at,
            ..policy("acme", "enforce")
        }
    );
    assert_eq!(
        store.policy_get("acme/app").await.unwrap().unwrap().mode,
        "off"
    );
    assert!(store.policy_delete("acme").await.unwrap());
    assert!(!store.policy_delete("acme").await.unwrap());
    assert_eq!(store.policy_get("acme").await.unwrap(), None);
    assert_eq!(store.policy_revision().await.unwrap(), r0 + 4);
    let bad = store.policy_put(&policy("acme", "sometimes")).await;
    assert!(bad.is_err(), "a mode the schema does not know");
}
