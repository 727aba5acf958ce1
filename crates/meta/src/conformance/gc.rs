//! Conformance cases of the garbage-collection methods: claims, the candidate queue and
//! what a pass deletes, tombstones, orphans, stale uploads, settings and runs.

use super::{image, index, link, manifest, put, referrer, repo, size_of, tag, Store};
use crate::gc::{BlobClaim, GcBatch, GcPass, GcRun};
use crate::{MetaError, NewManifest, Signed, SignedTarget, UploadRecord};
use berth_oci::{Digest, RepoName};

fn now() -> i64 {
    crate::convert::now_ms()
}

/// A pass for which everything is old enough.
fn everything() -> GcPass {
    GcPass {
        cutoff: now() + 3_600_000,
        now: now(),
        delete_untagged: true,
        referrers_follow_subject: true,
    }
}

/// A pass for which nothing is old enough.
fn nothing_old() -> GcPass {
    GcPass {
        cutoff: 0,
        ..everything()
    }
}

/// Runs passes from the start of the queue until nothing more is examined; the total.
async fn collect_all(store: &Store, pass: &GcPass) -> GcBatch {
    let mut total = GcBatch::default();
    let mut after = 0;
    loop {
        let b = store
            .gc_collect(pass, after, 7, false)
            .await
            .expect("gc_collect");
        if b.examined == 0 {
            return total;
        }
        after = b.cursor;
        total.examined += b.examined;
        total.manifests_deleted += b.manifests_deleted;
        total.links_deleted += b.links_deleted;
        total.blobs.extend(b.blobs);
    }
}

/// Links every blob of `blobs` into `r`.
async fn link_all(store: &Store, r: &RepoName, blobs: &[&Digest]) {
    for b in blobs {
        link(store, r, b).await;
    }
}

/// An untagged image in `r` of config `{name}-cfg` and layer `{name}-layer`, both linked:
/// (config, layer, manifest).
async fn one_image(store: &Store, r: &RepoName, name: &str) -> (Digest, Digest, NewManifest) {
    let (cfg, l) = (d(&format!("{name}-cfg")), d(&format!("{name}-layer")));
    link_all(store, r, &[&cfg, &l]).await;
    let m = image(&cfg, std::slice::from_ref(&l), name);
    put(store, r, &m, None).await;
    (cfg, l, m)
}

async fn in_repo(store: &Store, r: &RepoName, d: &Digest) -> Option<u64> {
    let size = store.blob_in_repo(r, d).await;
    size.unwrap_or_else(|e| panic!("blob_in_repo {r} {d}: {e}"))
}

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

/// A claim creates a row that is not served until the upload completes with the same
/// generation; a completion with another generation changes nothing.
pub async fn gc_claim_and_complete(store: Store) {
    let r = repo("gc/claim");
    let b = d("claimed");
    let BlobClaim::Claimed {
        generation,
        verified: false,
    } = store.blob_claim(&b).await.expect("claim")
    else {
        panic!("a new digest is claimable, and not verified");
    };
    assert_eq!(in_repo(&store, &r, &b).await, None);
    assert_eq!(store.blob_anywhere(&b).await.expect("anywhere"), None);
    assert!(
        store.all_blobs().await.expect("all").is_empty(),
        "a claim is not a stored blob"
    );
    match store
        .upload_complete(&r, &b, 42, generation ^ 2, None)
        .await
    {
        Err(MetaError::ClaimLost(x)) => assert_eq!(x, b),
        other => panic!("wrong generation must lose the claim, got {other:?}"),
    }
    assert_eq!(
        store.blob_claim(&b).await.expect("claim again"),
        BlobClaim::Claimed {
            generation,
            verified: false
        },
        "a second claim sees the same row"
    );
    store
        .upload_complete(&r, &b, 42, generation, None)
        .await
        .expect("complete");
    assert_eq!(in_repo(&store, &r, &b).await, Some(42));
    assert_eq!(store.all_blobs().await.expect("all"), vec![(b.clone(), 42)]);
    assert_eq!(
        store.blob_claim(&b).await.expect("claim a completed blob"),
        BlobClaim::Claimed {
            generation,
            verified: true
        },
        "bytes committed by an upload are verified"
    );
    // Completing an upload session removes it in the same transaction.
    let rec = UploadRecord {
        id: "u1".into(),
        repo: r.clone(),
        offset: 0,
        hash_state: vec![],
        store_state: String::new(),
        created_at: now(),
        updated_at: now(),
    };
    store.upload_create(&rec).await.expect("upload");
    let b2 = d("second");
    let BlobClaim::Claimed { generation, .. } = store.blob_claim(&b2).await.expect("claim") else {
        panic!("claimable");
    };
    store
        .upload_complete(&r, &b2, 3, generation, Some("u1"))
        .await
        .expect("complete");
    assert!(store.upload_get(&r, "u1").await.expect("get").is_none());
}

/// What is referenced stays; what the last tag or manifest let go is collected, blobs by
/// tombstone first; a tombstoned blob is neither served, mounted nor claimable until it is
/// forgotten, after which a claim starts a new generation.
pub async fn gc_collects_only_garbage(store: Store) {
    let r = repo("gc/app");
    let (cfg, l1, l2) = (d("cfg"), d("layer-1"), d("layer-2"));
    link_all(&store, &r, &[&cfg, &l1, &l2]).await;
    let m = image(&cfg, std::slice::from_ref(&l1), "a");
    put(&store, &r, &m, Some("v1")).await;
    // l2 is linked but nothing references it.
    let before = store.blob_claim(&l2).await.expect("claim");
    let first = collect_all(&store, &everything()).await;
    assert_eq!(first.manifests_deleted, 0);
    assert_eq!(first.links_deleted, 1, "only the unreferenced link goes");
    assert_eq!(first.blobs, vec![(l2.clone(), size_of(&l2))]);
    assert_eq!(in_repo(&store, &r, &l2).await, None);
    assert_eq!(
        store.blob_claim(&l2).await.expect("claim"),
        BlobClaim::Deleting
    );
    assert!(store.blob_link(&r, &l2, 1).await.is_err(), "no revival");
    assert_eq!(store.blob_mount_any(&r, &l2).await.expect("mount"), None);
    assert_eq!(
        store.gc_tombstones(10).await.expect("tombstones"),
        vec![(l2.clone(), size_of(&l2))]
    );
    assert!(!store
        .all_blobs()
        .await
        .expect("all")
        .iter()
        .any(|(x, _)| x == &l2));
    assert_eq!(
        store
            .gc_forget(std::slice::from_ref(&l2))
            .await
            .expect("forget"),
        1
    );
    assert!(store
        .gc_tombstones(10)
        .await
        .expect("tombstones")
        .is_empty());
    let BlobClaim::Claimed { generation, .. } = store.blob_claim(&l2).await.expect("claim") else {
        panic!("claimable once forgotten");
    };
    let BlobClaim::Claimed {
        generation: before, ..
    } = before
    else {
        panic!("claimed before");
    };
    assert_ne!(generation, before, "a new generation");
    // Still tagged: nothing else goes, however often GC runs (but the claim made just
    // now and never completed is old enough for this pass).
    let again = collect_all(&store, &everything()).await;
    assert_eq!(again.manifests_deleted, 0);
    assert_eq!(again.blobs, vec![(l2.clone(), 0)], "the abandoned claim");
    assert!(manifest(&store, &r, &m.digest).await.is_some());
    assert_eq!(in_repo(&store, &r, &l1).await, Some(size_of(&l1)));
    // Untagged: the manifest, then its links, then its blobs.
    assert!(store.tag_delete(&r, &tag("v1")).await.expect("untag"));
    let second = collect_all(&store, &everything()).await;
    assert_eq!(second.manifests_deleted, 1);
    assert_eq!(second.links_deleted, 2);
    let mut gone: Vec<Digest> = second.blobs.iter().map(|(x, _)| x.clone()).collect();
    gone.sort();
    let mut want = vec![cfg.clone(), l1.clone()];
    want.sort();
    assert_eq!(gone, want, "config and layer");
    assert!(manifest(&store, &r, &m.digest).await.is_none());
    assert_eq!(store.forget_all().await, 3);
}

impl dyn crate::MetaStore {
    /// Forgets every tombstoned blob (test helper); how many.
    async fn forget_all(&self) -> u64 {
        let t: Vec<Digest> = self
            .gc_tombstones(1000)
            .await
            .expect("tombstones")
            .into_iter()
            .map(|(x, _)| x)
            .collect();
        self.gc_forget(&t).await.expect("forget")
    }
}

/// Nothing younger than the cutoff is collected, and its candidates stay queued for a
/// later pass.
pub async fn gc_grace_keeps_young_things(store: Store) {
    let r = repo("gc/young");
    let (cfg, l, m) = one_image(&store, &r, "young").await;
    let young = collect_all(&store, &nothing_old()).await;
    assert_eq!(
        (
            young.manifests_deleted,
            young.links_deleted,
            young.blobs.len()
        ),
        (0, 0, 0)
    );
    let old = collect_all(&store, &everything()).await;
    assert_eq!(old.manifests_deleted, 1, "the untagged manifest");
    assert_eq!(old.blobs.len(), 2);
    assert_eq!(store.forget_all().await, 2);
    // A re-put claims a manifest again.
    link_all(&store, &r, &[&cfg, &l]).await;
    put(&store, &r, &m, None).await;
    let pass = GcPass {
        cutoff: now() - 60_000,
        ..everything()
    };
    assert_eq!(collect_all(&store, &pass).await.manifests_deleted, 0);
}

/// An index keeps its children; a referrer follows its subject (or, when told so, stays);
/// a tagged referrer keeps its subject; untagged deletion can be turned off.
pub async fn gc_index_and_referrers(store: Store) {
    let r = repo("gc/multi");
    let (cfg, l, sig) = (d("m-cfg"), d("m-layer"), d("m-sig"));
    link_all(&store, &r, &[&cfg, &l, &sig]).await;
    let child = image(&cfg, std::slice::from_ref(&l), "child");
    put(&store, &r, &child, None).await;
    let idx = index(std::slice::from_ref(&child.digest), "idx");
    put(&store, &r, &idx, Some("latest")).await;
    let sign = referrer(&idx.digest, "application/example.sig", &sig, "s");
    put(&store, &r, &sign, None).await;
    // The index is the child's parent (what signature policies look up); nothing is the
    // index's.
    let parents = |m: &NewManifest| {
        let (store, r, digest) = (store.clone(), r.clone(), m.digest.to_string());
        async move {
            store
                .manifest_parents(r.as_str(), &digest)
                .await
                .expect("parents")
        }
    };
    assert_eq!(parents(&child).await, [idx.digest.to_string()]);
    assert!(parents(&idx).await.is_empty());
    let keep_all = GcPass {
        delete_untagged: false,
        ..everything()
    };
    assert_eq!(collect_all(&store, &keep_all).await.manifests_deleted, 0);
    assert_eq!(
        collect_all(&store, &everything()).await.manifests_deleted,
        0
    );
    for m in [&child, &idx, &sign] {
        assert!(manifest(&store, &r, &m.digest).await.is_some());
    }
    // Untagged: the index, its child, and the referrer following its subject.
    assert!(store.tag_delete(&r, &tag("latest")).await.expect("untag"));
    let b = collect_all(&store, &everything()).await;
    assert_eq!(b.manifests_deleted, 3, "index, child, referrer");
    assert!(manifest(&store, &r, &sign.digest).await.is_none());
    store.forget_all().await;
    // A tagged referrer keeps its (untagged) subject.
    link_all(&store, &r, &[&cfg, &l]).await;
    link(&store, &r, &sig).await;
    put(&store, &r, &child, None).await;
    let sign2 = referrer(&child.digest, "application/example.sig", &sig, "t");
    put(&store, &r, &sign2, Some("sig")).await;
    assert_eq!(
        collect_all(&store, &everything()).await.manifests_deleted,
        0
    );
    // Told not to follow: an untagged referrer stays when its subject goes.
    let other = referrer(&child.digest, "application/example.sbom", &sig, "u");
    put(&store, &r, &other, None).await;
    assert!(store.tag_delete(&r, &tag("sig")).await.expect("untag"));
    let stay = GcPass {
        referrers_follow_subject: false,
        ..everything()
    };
    assert_eq!(
        collect_all(&store, &stay).await.manifests_deleted,
        1,
        "the subject, once its tagged referrer lost its tag; the referrers stay"
    );
    assert!(manifest(&store, &r, &child.digest).await.is_none());
    assert!(manifest(&store, &r, &other.digest).await.is_some());
}

/// A dry run reports what a real pass would do, cascades included, and changes nothing.
pub async fn gc_dry_run_changes_nothing(store: Store) {
    let r = repo("gc/dry");
    let (_, l, m) = one_image(&store, &r, "dry").await;
    let dry = store
        .gc_collect(&everything(), 0, 10_000, true)
        .await
        .expect("dry run");
    assert_eq!(dry.manifests_deleted, 1);
    assert_eq!(dry.links_deleted, 2);
    assert_eq!(dry.blobs.len(), 2);
    assert!(manifest(&store, &r, &m.digest).await.is_some());
    assert_eq!(in_repo(&store, &r, &l).await, Some(size_of(&l)));
    assert!(store
        .gc_tombstones(10)
        .await
        .expect("tombstones")
        .is_empty());
    let real = collect_all(&store, &everything()).await;
    assert_eq!(
        (real.manifests_deleted, real.links_deleted, real.blobs.len()),
        (1, 2, 2)
    );
}

/// A HEAD's claim refreshes a stale link, and answers `None` once GC removed it.
pub async fn gc_link_claim(store: Store) {
    let r = repo("gc/head");
    let b = d("head");
    link(&store, &r, &b).await;
    assert_eq!(
        store.link_claim(&r, &b, 0).await.expect("fresh"),
        Some(size_of(&b))
    );
    assert_eq!(
        store
            .link_claim(&r, &b, now() + 60_000)
            .await
            .expect("stale"),
        Some(size_of(&b))
    );
    // Just claimed: a pass with a cutoff before now keeps it.
    let pass = GcPass {
        cutoff: now() - 30_000,
        ..everything()
    };
    assert_eq!(collect_all(&store, &pass).await.links_deleted, 0);
    assert_eq!(collect_all(&store, &everything()).await.links_deleted, 1);
    assert_eq!(
        store
            .link_claim(&r, &b, now() + 60_000)
            .await
            .expect("gone"),
        None
    );
    assert_eq!(store.link_claim(&r, &b, 0).await.expect("gone"), None);
}

/// Storage verification: an unknown digest is tombstoned only once it was first seen
/// before the cutoff, and never when a row (a claim) exists.
pub async fn gc_orphans(store: Store) {
    let o = d("orphan");
    assert!(!store
        .gc_orphan(&o, now() - 60_000)
        .await
        .expect("first sight"));
    assert!(store
        .gc_orphan(&o, now() + 60_000)
        .await
        .expect("old enough"));
    assert_eq!(
        store.blob_claim(&o).await.expect("claim"),
        BlobClaim::Deleting
    );
    assert_eq!(
        store
            .gc_forget(std::slice::from_ref(&o))
            .await
            .expect("forget"),
        1
    );
    let known = d("known");
    link(&store, &repo("gc/orphans"), &known).await;
    assert!(!store
        .gc_orphan(&known, now() + 60_000)
        .await
        .expect("known"));
    assert!(!store
        .gc_orphan(&known, now() + 60_000)
        .await
        .expect("known"));
}

/// Upload sessions not advanced since a time, oldest first.
pub async fn gc_stale_uploads(store: Store) {
    let r = repo("gc/uploads");
    for (id, at) in [("old1", 1_000), ("old2", 2_000), ("new", now())] {
        let rec = UploadRecord {
            id: id.into(),
            repo: r.clone(),
            offset: 0,
            hash_state: vec![1],
            store_state: "s".into(),
            created_at: at,
            updated_at: at,
        };
        store.upload_create(&rec).await.expect("create");
    }
    let stale = store
        .uploads_stale(now() - 60_000, 10)
        .await
        .expect("stale");
    let ids: Vec<&str> = stale.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["old1", "old2"]);
    assert_eq!(stale[0].repo, r);
    assert_eq!(
        store
            .uploads_stale(now() - 60_000, 1)
            .await
            .expect("stale")
            .len(),
        1
    );
}

/// Settings and run records (the GC run's lease is a job lease: see the lease cases).
pub async fn gc_lease_settings_and_runs(store: Store) {
    let s = store.gc_settings().await.expect("settings");
    assert_eq!((s.schedule, s.read_only_since), (None, None));
    store
        .gc_set_schedule(Some("0 3 * * *"))
        .await
        .expect("schedule");
    store
        .gc_set_read_only(Some((1234, "replica-1")))
        .await
        .expect("ro");
    let s = store.gc_settings().await.expect("settings");
    assert_eq!(s.schedule.as_deref(), Some("0 3 * * *"));
    assert_eq!(s.read_only_since, Some(1234));
    assert_eq!(s.read_only_by.as_deref(), Some("replica-1"));
    store.gc_set_read_only(None).await.expect("clear");
    store.gc_set_schedule(None).await.expect("clear");
    let s = store.gc_settings().await.expect("settings");
    assert_eq!((s.schedule, s.read_only_since), (None, None));

    let mut run = GcRun {
        holder: "a".into(),
        started_by: "cli".into(),
        mode: "online".into(),
        status: "running".into(),
        started_at: 1000,
        ..GcRun::default()
    };
    run.id = store.gc_run_save(&run).await.expect("insert");
    assert!(run.id > 0);
    run.status = "finished".into();
    run.finished_at = Some(2000);
    run.blobs_deleted = 3;
    run.blob_bytes = 1 << 40;
    run.errors = vec!["deleting x: gone \"quoted\"".into()];
    assert_eq!(store.gc_run_save(&run).await.expect("update"), run.id);
    let second = GcRun {
        started_at: 3000,
        dry_run: true,
        ..run.clone()
    };
    let second_id = store
        .gc_run_save(&GcRun {
            id: 0,
            ..second.clone()
        })
        .await
        .expect("insert");
    let runs = store.gc_runs(10).await.expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0],
        GcRun {
            id: second_id,
            ..second
        }
    );
    assert_eq!(runs[1], run);
    assert_eq!(store.gc_runs(1).await.expect("runs").len(), 1);
}

/// Deleting a repository queues what it held; a pass then frees blobs only it linked.
pub async fn gc_candidates_follow_cascades(store: Store) {
    let (a, b) = (repo("gc/a"), repo("gc/b"));
    let (shared, own) = (d("shared"), d("own"));
    link_all(&store, &a, &[&shared, &own]).await;
    link(&store, &b, &shared).await;
    let m = image(&shared, std::slice::from_ref(&own), "c");
    put(&store, &a, &m, Some("t")).await;
    let mb = image(&shared, &[], "cb");
    put(&store, &b, &mb, Some("t")).await;
    assert_eq!(collect_all(&store, &everything()).await.blobs.len(), 0);
    // Deleting the manifest (with its tag) by digest.
    assert!(store.manifest_delete(&a, &m.digest).await.expect("delete"));
    let after = collect_all(&store, &everything()).await;
    assert_eq!(after.links_deleted, 2);
    assert_eq!(
        after.blobs,
        vec![(own.clone(), size_of(&own))],
        "shared stays for b"
    );
    assert_eq!(in_repo(&store, &b, &shared).await, Some(size_of(&shared)));
}

/// Finding a manifest by digest claims it again once stale; once GC removed it, the
/// answer is `false`.
pub async fn gc_manifest_claim(store: Store) {
    let r = repo("gc/mclaim");
    let (cfg, l) = (d("mc-cfg"), d("mc-layer"));
    link_all(&store, &r, &[&cfg, &l]).await;
    let m = image(&cfg, std::slice::from_ref(&l), "mc");
    put(&store, &r, &m, None).await;
    assert!(store.manifest_claim(&r, &m.digest, 0).await.expect("fresh"));
    assert!(store
        .manifest_claim(&r, &m.digest, now() + 60_000)
        .await
        .expect("stale"));
    let pass = GcPass {
        cutoff: now() - 30_000,
        ..everything()
    };
    assert_eq!(collect_all(&store, &pass).await.manifests_deleted, 0);
    assert_eq!(
        collect_all(&store, &everything()).await.manifests_deleted,
        1
    );
    assert!(!store
        .manifest_claim(&r, &m.digest, now() + 60_000)
        .await
        .expect("gone"));
    assert!(!store.manifest_claim(&r, &m.digest, 0).await.expect("gone"));
}

/// A manifest a signed target names stays while the repository has the tag, even once a
/// push without trust moved the tag away; it may go once no target signs it, or once the
/// tag is gone.
pub async fn gc_keeps_what_signed_targets_name(store: Store) {
    let r = repo("gc/signed");
    let (_, _, signed) = one_image(&store, &r, "signed").await;
    let (_, _, other) = one_image(&store, &r, "other").await;
    let (_, _, third) = one_image(&store, &r, "third").await;
    let target = |t: &str, m: &NewManifest| SignedTarget {
        tag: t.into(),
        digest: m.digest.to_string(),
        role: "targets".into(),
        key_ids: vec!["k1".into()],
        expires_at: now() + 3_600_000,
    };
    let sign = |targets: Vec<SignedTarget>| {
        let (store, r) = (store.clone(), r.clone());
        async move {
            let signed = Signed {
                targets: targets.clone(),
                signers: vec![],
            };
            store
                .trust_put(r.as_str(), vec![], Some(signed))
                .await
                .expect("trust_put");
            assert_eq!(store.trust_signed(r.as_str(), None).await.unwrap(), targets);
        }
    };
    put(&store, &r, &signed, Some("v1")).await;
    put(&store, &r, &third, Some("v2")).await;
    sign(vec![target("v1", &signed), target("v2", &third)]).await;
    // Both tags pushed over without trust.
    put(&store, &r, &other, Some("v1")).await;
    put(&store, &r, &other, Some("v2")).await;
    let pass = collect_all(&store, &everything()).await;
    assert_eq!(pass.manifests_deleted, 0, "both kept for their signed tags");
    // v1 signed anew for the manifest it has now: the old one goes.
    sign(vec![target("v1", &other), target("v2", &third)]).await;
    let pass = collect_all(&store, &everything()).await;
    assert_eq!(pass.manifests_deleted, 1);
    assert!(manifest(&store, &r, &signed.digest).await.is_none());
    assert!(manifest(&store, &r, &third.digest).await.is_some());
    // The tag v2 gone: nothing keeps its signed manifest.
    assert!(store.tag_delete(&r, &tag("v2")).await.expect("untag"));
    let pass = collect_all(&store, &everything()).await;
    assert_eq!(pass.manifests_deleted, 1);
    assert!(manifest(&store, &r, &third.digest).await.is_none());
    assert!(
        manifest(&store, &r, &other.digest).await.is_some(),
        "still tagged v1"
    );
    // Trust data deleted: its signed targets with it.
    assert!(!store.trust_delete(r.as_str(), true).await.expect("delete"));
    assert!(store
        .trust_signed(r.as_str(), None)
        .await
        .unwrap()
        .is_empty());
}
