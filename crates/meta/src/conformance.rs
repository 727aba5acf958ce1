//! The one test suite every [`MetaStore`] implementation passes.
//!
//! Each case is a `pub async fn` taking a fresh, empty store; it panics on the first
//! broken promise. [`meta_store_conformance!`](crate::meta_store_conformance) turns the whole
//! list into one `#[tokio::test]` per case for a given store, so SQLite and PostgreSQL are
//! held to exactly the same behaviour:
//!
//! ```no_run
//! berth_meta::meta_store_conformance!(sqlite, async {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let store = berth_meta::SqliteMetaStore::open(&dir.path().join("meta.db"))
//!         .await
//!         .expect("open");
//!     (store, dir) // the second value is kept alive until the case ends
//! });
//! ```
//!
//! This is test support compiled into the library so that other crates (wrappers adding
//! metrics or fault injection) can run it against their own stores; it panics by design.

use crate::prelude::*;
use crate::{ManifestRecord, MetaError, NewManifest, Referrer, UploadLease, UploadRecord};
use berth_oci::{Digest, RepoName, Tag};
use bytes::Bytes;
use std::sync::Arc;

/// The store under test, shared by the tasks of the concurrent cases.
pub type Store = Arc<dyn MetaStore>;

/// Both traits on one database, as the identity cases need (repositories come from
/// [`MetaStore`], their settings from [`IdentityStore`](crate::IdentityStore)).
pub trait Both: MetaStore + crate::IdentityStore {}
impl<T: MetaStore + crate::IdentityStore> Both for T {}

/// The store under test in the identity cases.
pub type FullStore = Arc<dyn Both>;

/// The identity cases (`IdentityStore`), in their own file; same macro, same runs.
pub mod identity;

/// The garbage-collection cases, in their own file, run by the same macro.
mod gc;
pub use gc::*;

/// The job-lease cases ([`LeaseStore`](crate::LeaseStore)), run by the same macro.
mod lease;
pub use lease::*;

/// The registered-key and signature-fact cases, run with the identity cases.
mod signatures;

/// The trust-data cases ([`TrustStore`](crate::TrustStore)), run by the same macro.
mod trust;
pub use trust::*;

/// Environment variable holding the URL of the PostgreSQL server the tests use.
pub const PG_URL_ENV: &str = "BERTH_TEST_PG_URL";

/// The PostgreSQL test URL from [`PG_URL_ENV`]. Panics with instructions when it is unset:
/// a test that needs PostgreSQL fails rather than passing without it.
pub fn pg_test_url() -> String {
    match std::env::var(PG_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{PG_URL_ENV} is not set: these tests need a PostgreSQL server. Start one and \
             export {PG_URL_ENV} with `eval \"$(cargo xtask peers)\"` \
             (by default postgres://registry:registry@127.0.0.1:15432/registry)"
        ),
    }
}

/// A schema name no other test run uses, for PostgreSQL tests to isolate themselves.
pub fn unique_schema(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; mixing in a counter keeps names within
    // one process distinct.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{prefix}_{:016x}", h.finish())
}

/// Links one blob through `store`, for [`assert_linked`] through another handle on the
/// same database (the file opened again, a second replica).
pub async fn link_one(store: &dyn MetaStore) -> (RepoName, Digest) {
    let repo = RepoName::parse("library/app").expect("name");
    let digest = Digest::sha256_of(b"layer");
    store.blob_link(&repo, &digest, 5).await.expect("blob_link");
    (repo, digest)
}

/// `store` sees the link [`link_one`] made.
pub async fn assert_linked(store: &dyn MetaStore, (repo, digest): &(RepoName, Digest)) {
    let size = store
        .blob_in_repo(repo, digest)
        .await
        .expect("blob_in_repo");
    assert_eq!(size, Some(5));
}

/// Expands to a module `$name` with one `#[tokio::test]` per conformance case. `$make` is
/// a future (typically an `async` block) resolving to `(store, guard)`: a fresh store
/// implementing [`MetaStore`](crate::MetaStore) and a value kept alive until the case ends
/// (a temporary directory, or `()`). The calling crate needs `tokio` with its macros.
#[macro_export]
macro_rules! meta_store_conformance {
    ($name:ident, $make:expr) => {
        $crate::meta_store_conformance!(@cases $name, $make;
            ping_and_kind,
            blob_link_creates_repo_and_is_idempotent,
            blob_presence_is_per_repository,
            blob_mount,
            blob_unlink,
            catalog_orders_bytewise_and_pages,
            tags_list_unknown_and_empty_repositories,
            tags_list_orders_bytewise_and_pages,
            manifest_roundtrip_keeps_bytes,
            manifest_blob_size_must_match,
            manifest_reput_moves_tag,
            manifest_put_missing_blob_writes_nothing,
            manifest_put_in_unknown_repo_writes_nothing,
            manifest_put_rechecks_on_reput,
            index_children,
            manifest_delete_removes_its_tags,
            manifests_are_per_repository,
            tag_delete,
            referrers_by_subject_and_artifact_type,
            upload_lifecycle,
            upload_is_found_only_in_its_repository,
            all_blobs_and_manifests,
            concurrent_manifest_put_same_manifest,
            concurrent_manifest_put_same_tag,
            concurrent_upload_advance_one_wins,
            concurrent_blob_link_new_repository,
            concurrent_writes_fail_alone,
            gc_claim_and_complete,
            gc_collects_only_garbage,
            gc_grace_keeps_young_things,
            gc_index_and_referrers,
            gc_dry_run_changes_nothing,
            gc_link_claim,
            gc_orphans,
            gc_stale_uploads,
            gc_lease_settings_and_runs,
            gc_candidates_follow_cascades,
            gc_manifest_claim,
            gc_keeps_what_signed_targets_name,
            lease_acquire_renew_release,
            lease_expiry_hands_over,
            leases_are_per_name,
            concurrent_lease_acquire_one_wins,
            replicas_beat_and_leave,
            trust_files_versions_and_lookups,
            trust_put_is_all_or_nothing,
            concurrent_trust_puts_one_wins,
            trust_changefeed_and_delete,
            trust_signed_targets_and_signers,
            signature_policies_by_scope,
        ; // identity cases: the store must also implement `IdentityStore`
            accounts_share_one_namespace,
            user_update_and_delete,
            directory_ids_are_stored_and_unique,
            organisations_members_and_teams,
            team_delete_cascades,
            repository_settings_and_default_visibility,
            repository_delete_takes_its_rows,
            namespaces_belong_to_accounts_by_identity,
            grants_roundtrip,
            access_for_loads_the_decision_inputs,
            tokens_lifecycle,
            refresh_tokens_end_with_their_parent,
            signing_keys_rotation,
            audit_paging_and_filters,
            hostile_strings_round_trip,
            registered_keys_and_signature_facts,
            identity_revision_follows_access_changes,
            login_failures_count_in_a_window,
        );
    };
    (@cases $name:ident, $make:expr; $($case:ident),* $(,)?; $($icase:ident),* $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _guard) = $make.await;
                    let store: $crate::conformance::Store = ::std::sync::Arc::new(store);
                    $crate::conformance::$case(store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $icase() {
                    let (store, _guard) = $make.await;
                    let store: $crate::conformance::FullStore = ::std::sync::Arc::new(store);
                    $crate::conformance::identity::$icase(store).await;
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap_or_else(|e| panic!("test repository name {s:?}: {e}"))
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap_or_else(|e| panic!("test tag {s:?}: {e}"))
}

/// A blob digest standing for `content`.
fn blob(content: &str) -> Digest {
    Digest::sha256_of(content.as_bytes())
}

fn descriptor(media_type: &str, d: &Digest) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{d}","size":{}}}"#,
        size_of(d)
    )
}

/// The size the suite links each blob with: derived from the digest so that it is stable.
fn size_of(d: &Digest) -> u64 {
    u64::from(d.hex().as_bytes()[0]) * 1000 + 7
}

async fn link(store: &Store, r: &RepoName, d: &Digest) {
    store
        .blob_link(r, d, size_of(d))
        .await
        .unwrap_or_else(|e| panic!("blob_link {r} {d}: {e}"));
}

/// An image manifest over `config` and `layers`; `salt` makes otherwise equal manifests
/// distinct.
fn image(config: &Digest, layers: &[Digest], salt: &str) -> NewManifest {
    let layers_json: Vec<String> = layers
        .iter()
        .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l))
        .collect();
    let text = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{},\"layers\":[{}],\
         \"annotations\":{{\"salt\":\"{salt}\"}}}}\n",
        descriptor(OCI_CONFIG, config),
        layers_json.join(",")
    );
    let bytes = Bytes::from(text);
    let mut blobs = vec![config.clone()];
    blobs.extend(layers.iter().cloned());
    NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: OCI_MANIFEST.to_string(),
        artifact_type: None,
        subject: None,
        annotations: Some(format!(r#"{{"salt":"{salt}"}}"#)),
        bytes,
        blob_sizes: blobs.iter().map(size_of).collect(),
        blobs,
        children: vec![],
    }
}

/// An image index over `children`.
fn index(children: &[Digest], salt: &str) -> NewManifest {
    let entries: Vec<String> = children
        .iter()
        .map(|c| descriptor(OCI_MANIFEST, c))
        .collect();
    let text = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{}],\
         \"annotations\":{{\"salt\":\"{salt}\"}}}}",
        entries.join(",")
    );
    let bytes = Bytes::from(text);
    NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: OCI_INDEX.to_string(),
        artifact_type: None,
        subject: None,
        annotations: None,
        bytes,
        blobs: vec![],
        blob_sizes: vec![],
        children: children.to_vec(),
    }
}

/// A manifest referring to `subject`, of `artifact_type`, with config blob `config`.
fn referrer(subject: &Digest, artifact_type: &str, config: &Digest, salt: &str) -> NewManifest {
    let text = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"artifactType\":\"{artifact_type}\",\
         \"config\":{},\"layers\":[],\"subject\":{},\"annotations\":{{\"salt\":\"{salt}\"}}}}",
        descriptor("application/vnd.oci.empty.v1+json", config),
        descriptor(OCI_MANIFEST, subject)
    );
    let bytes = Bytes::from(text);
    NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: OCI_MANIFEST.to_string(),
        artifact_type: Some(artifact_type.to_string()),
        subject: Some(subject.clone()),
        annotations: Some(format!(r#"{{"salt":"{salt}"}}"#)),
        bytes,
        blobs: vec![config.clone()],
        blob_sizes: vec![size_of(config)],
        children: vec![],
    }
}

async fn put(store: &Store, r: &RepoName, m: &NewManifest, t: Option<&str>) {
    let t = t.map(tag);
    store
        .manifest_put(r, m, t.as_ref())
        .await
        .unwrap_or_else(|e| panic!("manifest_put {r} {}: {e}", m.digest));
}

/// Links every blob of `m` in `r`, then puts it.
async fn push(store: &Store, r: &RepoName, m: &NewManifest, t: Option<&str>) {
    for b in &m.blobs {
        link(store, r, b).await;
    }
    put(store, r, m, t).await;
}

async fn tags(store: &Store, r: &RepoName) -> Option<Vec<String>> {
    store
        .tags_list(r, None, 1000)
        .await
        .unwrap_or_else(|e| panic!("tags_list {r}: {e}"))
}

async fn manifest(store: &Store, r: &RepoName, d: &Digest) -> Option<ManifestRecord> {
    let got = store.manifest_get(r, d).await;
    got.unwrap_or_else(|e| panic!("manifest_get {r} {d}: {e}"))
}

async fn tagged(store: &Store, r: &RepoName, t: &Tag) -> Option<ManifestRecord> {
    let got = store.manifest_by_tag(r, t).await;
    got.unwrap_or_else(|e| panic!("manifest_by_tag {r}:{t}: {e}"))
}

async fn delete_tag(store: &Store, r: &RepoName, t: &Tag) -> bool {
    let deleted = store.tag_delete(r, t).await;
    deleted.unwrap_or_else(|e| panic!("tag_delete {r}:{t}: {e}"))
}

async fn delete_manifest(store: &Store, r: &RepoName, d: &Digest) -> bool {
    let deleted = store.manifest_delete(r, d).await;
    deleted.unwrap_or_else(|e| panic!("manifest_delete {r} {d}: {e}"))
}

async fn upload_of(store: &Store, r: &RepoName, id: &str) -> Option<UploadRecord> {
    let got = store.upload_get(r, id).await;
    got.unwrap_or_else(|e| panic!("upload_get {r} {id}: {e}"))
}

async fn lease_upload(
    store: &Store,
    r: &RepoName,
    id: &str,
    lease: &str,
    (now, until): (i64, i64),
) -> UploadLease {
    let got = store.upload_lease(r, id, lease, now, until).await;
    got.unwrap_or_else(|e| panic!("upload_lease {r} {id}: {e}"))
}

/// Every entry of a listing, walked in pages of `page_size`: `page(last)` answers one
/// page after `last`, which must be no longer than `page_size`.
async fn walk_pages<F, Fut>(page_size: u32, mut page: F) -> Vec<String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut got = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let entries = page(last.clone()).await;
        assert!(entries.len() <= page_size as usize);
        if entries.is_empty() {
            return got;
        }
        last = entries.last().cloned();
        got.extend(entries);
    }
}

/// Images `a` and `b` of one config, each with one layer of `layers`.
fn two_images(layers: [&str; 2]) -> (NewManifest, NewManifest) {
    let config = blob("cfg");
    let [a, b] = layers.map(blob);
    (image(&config, &[a], "a"), image(&config, &[b], "b"))
}

async fn get_digest(store: &Store, r: &RepoName, d: &Digest) -> Option<Digest> {
    manifest(store, r, d).await.map(|m| m.digest)
}

async fn by_tag(store: &Store, r: &RepoName, t: &str) -> Option<Digest> {
    tagged(store, r, &tag(t)).await.map(|m| m.digest)
}

fn expect_missing_blob(res: Result<(), MetaError>, want: &Digest) {
    match res {
        Err(MetaError::MissingBlob(d)) => {
            assert_eq!(&d, want, "MissingBlob names the first missing blob")
        }
        other => panic!("expected MissingBlob({want}), got {other:?}"),
    }
}

fn expect_missing_manifest(res: Result<(), MetaError>, want: &Digest) {
    match res {
        Err(MetaError::MissingManifest(d)) => {
            assert_eq!(&d, want, "MissingManifest names the first missing child")
        }
        other => panic!("expected MissingManifest({want}), got {other:?}"),
    }
}

fn sorted_bytewise(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    // `String`'s order is byte order: what the stores promise.
    v.sort();
    v
}

fn upload(id: &str, r: &RepoName) -> UploadRecord {
    UploadRecord {
        id: id.to_string(),
        repo: r.clone(),
        offset: 0,
        hash_state: vec![0, 1, 2, 0xff, 0x80, 0],
        store_state: r#"{"kind":"fs","path":"uploads/é"}"#.to_string(),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

// ---------------------------------------------------------------------------------------
// Cases

/// The store answers and names its kind.
pub async fn ping_and_kind(store: Store) {
    store.ping().await.expect("ping");
    assert!(
        ["sqlite", "postgres"].contains(&store.kind()),
        "kind {:?}",
        store.kind()
    );
}

/// Linking creates the repository, records the size and can be repeated.
pub async fn blob_link_creates_repo_and_is_idempotent(store: Store) {
    let r = repo("library/ubuntu");
    let d = blob("layer");
    assert!(!store.repo_exists(&r).await.expect("repo_exists"));
    assert_eq!(
        store.blob_in_repo(&r, &d).await.expect("blob_in_repo"),
        None
    );
    assert_eq!(store.blob_anywhere(&d).await.expect("blob_anywhere"), None);

    store.blob_link(&r, &d, 1234).await.expect("blob_link");
    assert!(store.repo_exists(&r).await.expect("repo_exists"));
    assert_eq!(
        store.blob_in_repo(&r, &d).await.expect("blob_in_repo"),
        Some(1234)
    );
    assert_eq!(
        store.blob_anywhere(&d).await.expect("blob_anywhere"),
        Some(1234)
    );

    store
        .blob_link(&r, &d, 1234)
        .await
        .expect("second blob_link");
    assert_eq!(
        store.blob_in_repo(&r, &d).await.expect("blob_in_repo"),
        Some(1234)
    );
    assert_eq!(
        store.catalog(None, 100).await.expect("catalog"),
        vec!["library/ubuntu".to_string()]
    );
    assert_eq!(
        store.all_blobs().await.expect("all_blobs"),
        vec![(d.clone(), 1234)]
    );

    // A large size survives the round trip.
    let big = blob("big");
    store
        .blob_link(&r, &big, 5 << 40)
        .await
        .expect("blob_link big");
    assert_eq!(
        store.blob_in_repo(&r, &big).await.expect("blob_in_repo"),
        Some(5 << 40)
    );
}

/// A blob linked in one repository is not present in another, but exists anywhere.
pub async fn blob_presence_is_per_repository(store: Store) {
    let (a, b) = (repo("team/a"), repo("team/b"));
    let d = blob("shared");
    link(&store, &a, &d).await;
    assert_eq!(
        store.blob_in_repo(&b, &d).await.expect("blob_in_repo"),
        None
    );
    assert!(!store.repo_exists(&b).await.expect("repo_exists"));
    assert_eq!(
        store.blob_anywhere(&d).await.expect("blob_anywhere"),
        Some(size_of(&d))
    );
    link(&store, &b, &d).await;
    assert_eq!(
        store.blob_in_repo(&b, &d).await.expect("blob_in_repo"),
        Some(size_of(&d))
    );
    assert_eq!(
        store.all_blobs().await.expect("all_blobs").len(),
        1,
        "one blob row for two links"
    );
}

/// Mounting links only what the source repository links, and changes nothing otherwise.
pub async fn blob_mount(store: Store) {
    let (from, to) = (repo("src/app"), repo("dst/app"));
    let d = blob("mounted");
    let absent = blob("absent");
    link(&store, &from, &d).await;

    assert_eq!(
        store
            .blob_mount(&to, &from, &absent)
            .await
            .expect("mount absent"),
        None
    );
    assert!(
        !store.repo_exists(&to).await.expect("repo_exists"),
        "a failed mount creates no repository"
    );
    assert_eq!(
        store
            .blob_mount(&to, &repo("nowhere"), &d)
            .await
            .expect("mount from unknown"),
        None
    );
    assert!(!store.repo_exists(&to).await.expect("repo_exists"));
    assert!(!store
        .repo_exists(&repo("nowhere"))
        .await
        .expect("repo_exists"));

    assert_eq!(
        store.blob_mount(&to, &from, &d).await.expect("mount"),
        Some(size_of(&d))
    );
    assert!(store.repo_exists(&to).await.expect("repo_exists"));
    assert_eq!(
        store.blob_in_repo(&to, &d).await.expect("blob_in_repo"),
        Some(size_of(&d))
    );
    assert_eq!(
        store.blob_mount(&to, &from, &d).await.expect("mount again"),
        Some(size_of(&d))
    );

    // A mount is a link of its own: unlinking the source leaves it.
    assert!(store.blob_unlink(&from, &d).await.expect("unlink"));
    assert_eq!(
        store.blob_in_repo(&to, &d).await.expect("blob_in_repo"),
        Some(size_of(&d))
    );
    assert_eq!(
        store
            .blob_mount(&repo("third"), &from, &d)
            .await
            .expect("mount"),
        None
    );
}

/// Unlinking removes one link; the blob row stays for garbage collection.
pub async fn blob_unlink(store: Store) {
    let (a, b) = (repo("a"), repo("b"));
    let d = blob("x");
    link(&store, &a, &d).await;
    link(&store, &b, &d).await;
    assert!(!store
        .blob_unlink(&a, &blob("other"))
        .await
        .expect("unlink absent"));
    assert!(!store
        .blob_unlink(&repo("unknown"), &d)
        .await
        .expect("unlink in unknown repo"));

    assert!(store.blob_unlink(&a, &d).await.expect("unlink"));
    assert!(!store.blob_unlink(&a, &d).await.expect("unlink twice"));
    assert_eq!(
        store.blob_in_repo(&a, &d).await.expect("blob_in_repo"),
        None
    );
    assert_eq!(
        store.blob_anywhere(&d).await.expect("blob_anywhere"),
        Some(size_of(&d))
    );

    assert!(store.blob_unlink(&b, &d).await.expect("unlink"));
    assert_eq!(
        store.blob_anywhere(&d).await.expect("blob_anywhere"),
        None,
        "no repository links it"
    );
    assert_eq!(
        store.all_blobs().await.expect("all_blobs"),
        vec![(d.clone(), size_of(&d))],
        "the blob row outlives its links"
    );
    assert!(
        store.repo_exists(&a).await.expect("repo_exists"),
        "the repository stays"
    );

    // It can be linked again.
    link(&store, &a, &d).await;
    assert_eq!(
        store.blob_in_repo(&a, &d).await.expect("blob_in_repo"),
        Some(size_of(&d))
    );
}

/// Repository names in byte order (not a locale's), paged with `last` and `n`.
pub async fn catalog_orders_bytewise_and_pages(store: Store) {
    // '-' < '.' < '/' < '0' < '_' < 'a' in bytes; most locales ignore punctuation instead.
    let names = [
        "b", "a_b", "a/b/c", "a", "a0", "a-b", "a.b", "ab", "a/b", "a__b", "a--b", "z9", "0",
        "a-0", "a/0",
    ];
    assert!(store.catalog(None, 10).await.expect("catalog").is_empty());
    for n in names {
        link(&store, &repo(n), &blob(n)).await;
    }
    let want = sorted_bytewise(&names);
    assert_eq!(store.catalog(None, 1000).await.expect("catalog"), want);
    assert_eq!(
        store.catalog(None, 0).await.expect("catalog n=0"),
        Vec::<String>::new()
    );
    assert_eq!(
        store.catalog(None, 3).await.expect("catalog n=3"),
        want[..3].to_vec()
    );

    for page_size in [1u32, 2, 4, 7] {
        let got = walk_pages(page_size, |last| {
            let store = store.clone();
            async move {
                let page = store.catalog(last.as_deref(), page_size).await;
                page.expect("catalog page")
            }
        })
        .await;
        assert_eq!(got, want, "pages of {page_size}");
    }

    // `last` need not be a repository.
    let after =
        |s: &str| -> Vec<String> { want.iter().filter(|n| n.as_str() > s).cloned().collect() };
    for last in ["", "a.", "a/", "a/b/", "a0", "a_", "A", "zz"] {
        assert_eq!(
            store.catalog(Some(last), 1000).await.expect("catalog"),
            after(last),
            "after {last:?}"
        );
    }
}

/// Tags of an unknown repository are `None`; of a repository without tags, empty.
pub async fn tags_list_unknown_and_empty_repositories(store: Store) {
    let r = repo("empty/repo");
    assert_eq!(
        store.tags_list(&r, None, 10).await.expect("tags_list"),
        None
    );
    assert_eq!(
        store.tags_list(&r, Some("a"), 10).await.expect("tags_list"),
        None
    );
    assert_eq!(store.tags_list(&r, None, 0).await.expect("tags_list"), None);

    link(&store, &r, &blob("only a blob")).await;
    assert_eq!(
        store.tags_list(&r, None, 10).await.expect("tags_list"),
        Some(vec![])
    );
    assert_eq!(
        store.tags_list(&r, Some("a"), 10).await.expect("tags_list"),
        Some(vec![])
    );
    assert_eq!(
        store.tags_list(&r, None, 0).await.expect("tags_list"),
        Some(vec![])
    );

    // Untagged manifests are not tags.
    push(&store, &r, &image(&blob("cfg"), &[], "untagged"), None).await;
    assert_eq!(tags(&store, &r).await, Some(vec![]));

    // A repository created by an upload exists too.
    let u = repo("upload/only");
    store
        .upload_create(&upload("u-1", &u))
        .await
        .expect("upload_create");
    assert_eq!(
        store.tags_list(&u, None, 10).await.expect("tags_list"),
        Some(vec![])
    );
}

/// Tags in byte order (upper case before `_` before lower case), paged with `last` and `n`.
pub async fn tags_list_orders_bytewise_and_pages(store: Store) {
    let r = repo("tagged");
    let names = [
        "latest", "a", "B", "_x", "a-b", "a.b", "a0", "a_b", "aB", "ab", "A", "Z", "v1.10", "v1.9",
        "V2", "0", "a-0",
    ];
    let m = image(&blob("cfg"), &[blob("l")], "tags");
    push(&store, &r, &m, Some(names[0])).await;
    for n in &names[1..] {
        put(&store, &r, &m, Some(n)).await;
    }
    // Tags of another repository do not leak in.
    push(&store, &repo("other"), &m, Some("zzz")).await;

    let want = sorted_bytewise(&names);
    assert_eq!(tags(&store, &r).await, Some(want.clone()));
    assert_eq!(
        store.tags_list(&r, None, 0).await.expect("tags_list"),
        Some(vec![])
    );
    assert_eq!(
        store.tags_list(&r, None, 2).await.expect("tags_list"),
        Some(want[..2].to_vec())
    );

    for page_size in [1u32, 3, 5] {
        let got = walk_pages(page_size, |last| {
            let (store, r) = (store.clone(), r.clone());
            async move {
                let page = store.tags_list(&r, last.as_deref(), page_size).await;
                page.expect("tags_list").expect("repository exists")
            }
        })
        .await;
        assert_eq!(got, want, "pages of {page_size}");
    }
    let after =
        |s: &str| -> Vec<String> { want.iter().filter(|n| n.as_str() > s).cloned().collect() };
    for last in ["", "A", "Z", "_", "a", "a-", "a.", "aA", "v1.1", "zzz"] {
        assert_eq!(
            store
                .tags_list(&r, Some(last), 1000)
                .await
                .expect("tags_list"),
            Some(after(last)),
            "after {last:?}"
        );
    }
}

/// A manifest comes back byte for byte, by digest and by tag.
/// A manifest whose descriptor gives a linked blob another size than the stored one is
/// refused (`BlobSizeMismatch`, nothing written), by the query that checks the link.
pub async fn manifest_blob_size_must_match(store: Store) {
    let r = repo("sizes/app");
    let (cfg, layer) = (blob("size cfg"), blob("size layer"));
    link(&store, &r, &cfg).await;
    link(&store, &r, &layer).await;
    let mut m = image(&cfg, std::slice::from_ref(&layer), "sizes");
    m.blob_sizes[1] += 1;
    match store.manifest_put(&r, &m, None).await {
        Err(MetaError::BlobSizeMismatch {
            digest,
            declared,
            stored,
        }) => {
            assert_eq!(digest, layer);
            assert_eq!((declared, stored), (size_of(&layer) + 1, size_of(&layer)));
        }
        other => panic!("expected BlobSizeMismatch, got {other:?}"),
    }
    assert_eq!(
        manifest(&store, &r, &m.digest).await,
        None,
        "nothing written"
    );
    let good = image(&cfg, &[layer], "sizes");
    store
        .manifest_put(&r, &good, None)
        .await
        .expect("sizes that match");
}

pub async fn manifest_roundtrip_keeps_bytes(store: Store) {
    let r = repo("library/app");
    let cfg = blob("cfg");
    link(&store, &r, &cfg).await;
    // Odd whitespace, key order, non-ASCII and a large body: nothing may be re-serialised.
    let padding = "x".repeat(1 << 20);
    let text = format!(
        "{{ \"schemaVersion\" : 2,\n\t\"config\": {},\n  \"layers\":[ ],\"annotations\":{{\"note\":\"héllo ✓\",\"pad\":\"{padding}\"}} }}\r\n",
        descriptor(OCI_CONFIG, &cfg)
    );
    let bytes = Bytes::from(text);
    let m = NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: "application/vnd.docker.distribution.manifest.v2+json".to_string(),
        artifact_type: None,
        subject: None,
        annotations: None,
        bytes: bytes.clone(),
        blobs: vec![cfg.clone()],
        blob_sizes: vec![size_of(&cfg)],
        children: vec![],
    };
    assert_eq!(manifest(&store, &r, &m.digest).await, None);
    put(&store, &r, &m, Some("v1")).await;

    let got = manifest(&store, &r, &m.digest)
        .await
        .expect("manifest stored");
    assert_eq!(got.digest, m.digest);
    assert_eq!(got.media_type, m.media_type);
    assert!(got.bytes == bytes, "bytes differ from those received");

    let by_tag = tagged(&store, &r, &tag("v1")).await.expect("tag stored");
    assert_eq!(by_tag, got);
    assert_eq!(tagged(&store, &r, &tag("v2")).await, None);
    assert_eq!(manifest(&store, &r, &blob("nothing")).await, None);
    assert_eq!(tags(&store, &r).await, Some(vec!["v1".to_string()]));
    assert_eq!(
        store.catalog(None, 10).await.expect("catalog"),
        vec!["library/app".to_string()]
    );
}

/// Re-putting a stored manifest succeeds; a tag given with it moves to it.
pub async fn manifest_reput_moves_tag(store: Store) {
    let r = repo("app");
    let (a, b) = two_images(["l1", "l2"]);
    push(&store, &r, &a, Some("latest")).await;
    push(&store, &r, &b, Some("latest")).await;
    assert_eq!(by_tag(&store, &r, "latest").await, Some(b.digest.clone()));
    assert_eq!(
        get_digest(&store, &r, &a.digest).await,
        Some(a.digest.clone()),
        "the old manifest stays"
    );

    put(&store, &r, &a, None).await;
    assert_eq!(
        by_tag(&store, &r, "latest").await,
        Some(b.digest.clone()),
        "a put without tag moves nothing"
    );
    put(&store, &r, &a, Some("latest")).await;
    assert_eq!(by_tag(&store, &r, "latest").await, Some(a.digest.clone()));
    put(&store, &r, &a, Some("latest")).await;
    put(&store, &r, &a, Some("stable")).await;
    assert_eq!(by_tag(&store, &r, "stable").await, Some(a.digest.clone()));
    assert_eq!(
        tags(&store, &r).await,
        Some(vec!["latest".to_string(), "stable".to_string()])
    );
    assert_eq!(store.all_manifests().await.expect("all_manifests").len(), 2);
}

/// A manifest with a blob the repository does not link is refused and leaves no trace:
/// no manifest, no tag, no referrer entry.
pub async fn manifest_put_missing_blob_writes_nothing(store: Store) {
    let r = repo("app");
    let (cfg, l1, l2, l3) = (blob("cfg"), blob("l1"), blob("l2"), blob("l3"));
    link(&store, &r, &cfg).await;
    link(&store, &r, &l3).await;
    // Linked elsewhere only: still missing here.
    link(&store, &repo("elsewhere"), &l1).await;
    let subject = blob("subject");
    let mut m = image(&cfg, &[l1.clone(), l2.clone(), l3.clone()], "m");
    m.subject = Some(subject.clone());
    m.artifact_type = Some("application/example".to_string());

    expect_missing_blob(store.manifest_put(&r, &m, Some(&tag("v1"))).await, &l1);
    assert_eq!(get_digest(&store, &r, &m.digest).await, None);
    assert_eq!(by_tag(&store, &r, "v1").await, None);
    assert_eq!(tags(&store, &r).await, Some(vec![]));
    assert!(store
        .referrers(&r, &subject, None)
        .await
        .expect("referrers")
        .is_empty());
    assert!(store
        .all_manifests()
        .await
        .expect("all_manifests")
        .is_empty());

    link(&store, &r, &l1).await;
    expect_missing_blob(store.manifest_put(&r, &m, Some(&tag("v1"))).await, &l2);

    // An existing tag is not moved by a refused put.
    let ok = image(&cfg, &[], "ok");
    put(&store, &r, &ok, Some("v1")).await;
    expect_missing_blob(store.manifest_put(&r, &m, Some(&tag("v1"))).await, &l2);
    assert_eq!(by_tag(&store, &r, "v1").await, Some(ok.digest.clone()));

    // Blobs are checked before children.
    let mut both = index(&[blob("no such child")], "both");
    both.blobs = vec![blob("no such blob")];
    expect_missing_blob(
        store.manifest_put(&r, &both, None).await,
        &blob("no such blob"),
    );

    link(&store, &r, &l2).await;
    put(&store, &r, &m, Some("v1")).await;
    assert_eq!(by_tag(&store, &r, "v1").await, Some(m.digest.clone()));
    assert_eq!(
        store
            .referrers(&r, &subject, None)
            .await
            .expect("referrers")
            .len(),
        1
    );
}

/// A refused put into a repository that does not exist does not create it.
pub async fn manifest_put_in_unknown_repo_writes_nothing(store: Store) {
    let r = repo("never/created");
    let cfg = blob("cfg");
    link(&store, &repo("other"), &cfg).await;
    let m = image(&cfg, &[], "m");
    expect_missing_blob(store.manifest_put(&r, &m, Some(&tag("v1"))).await, &cfg);
    let child = image(&cfg, &[], "child");
    expect_missing_manifest(
        store
            .manifest_put(&r, &index(std::slice::from_ref(&child.digest), "i"), None)
            .await,
        &child.digest,
    );
    assert!(!store.repo_exists(&r).await.expect("repo_exists"));
    assert_eq!(
        store.tags_list(&r, None, 10).await.expect("tags_list"),
        None
    );
    assert_eq!(
        store.catalog(None, 10).await.expect("catalog"),
        vec!["other".to_string()]
    );

    // An index with no children needs nothing, and creates the repository.
    let empty = index(&[], "empty");
    put(&store, &r, &empty, Some("empty")).await;
    assert!(store.repo_exists(&r).await.expect("repo_exists"));
    assert_eq!(
        by_tag(&store, &r, "empty").await,
        Some(empty.digest.clone())
    );
}

/// Re-putting checks the references again: a stored manifest whose blob was since
/// unlinked cannot be pushed (or tagged) again until the blob is back.
pub async fn manifest_put_rechecks_on_reput(store: Store) {
    let r = repo("app");
    let (cfg, layer) = (blob("cfg"), blob("layer"));
    let m = image(&cfg, std::slice::from_ref(&layer), "m");
    push(&store, &r, &m, Some("v1")).await;
    assert!(store.blob_unlink(&r, &layer).await.expect("unlink"));
    assert_eq!(
        get_digest(&store, &r, &m.digest).await,
        Some(m.digest.clone()),
        "unlinking deletes no manifest"
    );
    expect_missing_blob(store.manifest_put(&r, &m, Some(&tag("v2"))).await, &layer);
    assert_eq!(by_tag(&store, &r, "v2").await, None);
    link(&store, &r, &layer).await;
    put(&store, &r, &m, Some("v2")).await;
    assert_eq!(by_tag(&store, &r, "v2").await, Some(m.digest.clone()));
}

/// An index needs its children in the same repository.
pub async fn index_children(store: Store) {
    let r = repo("multi");
    let cfg = blob("cfg");
    let amd64 = image(&cfg, &[blob("amd64")], "amd64");
    let arm64 = image(&cfg, &[blob("arm64")], "arm64");
    let idx = index(&[amd64.digest.clone(), arm64.digest.clone()], "idx");

    push(&store, &r, &amd64, None).await;
    expect_missing_manifest(
        store.manifest_put(&r, &idx, Some(&tag("latest"))).await,
        &arm64.digest,
    );
    assert_eq!(get_digest(&store, &r, &idx.digest).await, None);
    assert_eq!(by_tag(&store, &r, "latest").await, None);

    // A child in another repository does not count.
    push(&store, &repo("elsewhere"), &arm64, None).await;
    expect_missing_manifest(
        store.manifest_put(&r, &idx, Some(&tag("latest"))).await,
        &arm64.digest,
    );

    push(&store, &r, &arm64, None).await;
    put(&store, &r, &idx, Some("latest")).await;
    let got = tagged(&store, &r, &tag("latest"))
        .await
        .expect("index tagged");
    assert_eq!(got.digest, idx.digest);
    assert_eq!(got.media_type, OCI_INDEX);
    assert!(got.bytes == idx.bytes);

    // An index of indexes.
    let outer = index(&[idx.digest.clone(), amd64.digest.clone()], "outer");
    put(&store, &r, &outer, Some("outer")).await;

    // Deleting a child does not delete its parents; a parent cannot be re-pushed without it.
    assert!(delete_manifest(&store, &r, &arm64.digest).await);
    assert_eq!(
        get_digest(&store, &r, &idx.digest).await,
        Some(idx.digest.clone())
    );
    expect_missing_manifest(store.manifest_put(&r, &idx, None).await, &arm64.digest);
}

/// Deleting a manifest deletes every tag pointing at it, and only those.
pub async fn manifest_delete_removes_its_tags(store: Store) {
    let r = repo("app");
    let (a, b) = two_images(["la", "lb"]);
    push(&store, &r, &a, Some("v1")).await;
    put(&store, &r, &a, Some("v1.0")).await;
    put(&store, &r, &a, Some("latest")).await;
    push(&store, &r, &b, Some("v2")).await;

    assert!(!delete_manifest(&store, &r, &blob("absent")).await);
    assert!(!delete_manifest(&store, &repo("unknown"), &a.digest).await);
    assert!(delete_manifest(&store, &r, &a.digest).await);
    assert!(!delete_manifest(&store, &r, &a.digest).await);

    assert_eq!(get_digest(&store, &r, &a.digest).await, None);
    for t in ["v1", "v1.0", "latest"] {
        assert_eq!(
            by_tag(&store, &r, t).await,
            None,
            "tag {t} survived its manifest"
        );
    }
    assert_eq!(tags(&store, &r).await, Some(vec!["v2".to_string()]));
    assert_eq!(by_tag(&store, &r, "v2").await, Some(b.digest.clone()));
    // Blobs stay linked: unlinking them is the caller's (or garbage collection's) business.
    assert_eq!(
        store
            .blob_in_repo(&r, &blob("la"))
            .await
            .expect("blob_in_repo"),
        Some(size_of(&blob("la")))
    );

    // It can be pushed again.
    put(&store, &r, &a, Some("v1")).await;
    assert_eq!(by_tag(&store, &r, "v1").await, Some(a.digest.clone()));
    assert!(delete_manifest(&store, &r, &a.digest).await);
    assert_eq!(tags(&store, &r).await, Some(vec!["v2".to_string()]));
}

/// The same manifest in two repositories is two independent records.
pub async fn manifests_are_per_repository(store: Store) {
    let (a, b) = (repo("a/app"), repo("b/app"));
    let m = image(&blob("cfg"), &[blob("l")], "m");
    push(&store, &a, &m, Some("v1")).await;
    assert_eq!(get_digest(&store, &b, &m.digest).await, None);
    assert_eq!(by_tag(&store, &b, "v1").await, None);
    assert_eq!(manifest(&store, &repo("unknown"), &m.digest).await, None);

    push(&store, &b, &m, Some("v1")).await;
    assert!(delete_manifest(&store, &a, &m.digest).await);
    assert_eq!(
        get_digest(&store, &b, &m.digest).await,
        Some(m.digest.clone())
    );
    assert_eq!(by_tag(&store, &b, "v1").await, Some(m.digest.clone()));
    assert!(!delete_tag(&store, &a, &tag("v1")).await);
    assert!(delete_tag(&store, &b, &tag("v1")).await);
}

/// Deleting a tag keeps its manifest.
pub async fn tag_delete(store: Store) {
    let r = repo("app");
    let m = image(&blob("cfg"), &[], "m");
    push(&store, &r, &m, Some("v1")).await;
    put(&store, &r, &m, Some("v2")).await;
    assert!(!delete_tag(&store, &r, &tag("v3")).await);
    assert!(!delete_tag(&store, &repo("unknown"), &tag("v1")).await);
    assert!(delete_tag(&store, &r, &tag("v1")).await);
    assert!(!delete_tag(&store, &r, &tag("v1")).await);
    assert_eq!(by_tag(&store, &r, "v1").await, None);
    assert_eq!(tags(&store, &r).await, Some(vec!["v2".to_string()]));
    assert_eq!(
        get_digest(&store, &r, &m.digest).await,
        Some(m.digest.clone())
    );
}

/// Referrers: by subject, optionally by artifact type, ordered by digest, per repository.
pub async fn referrers_by_subject_and_artifact_type(store: Store) {
    let r = repo("app");
    let cfg = blob("empty config");
    let target = image(&blob("cfg"), &[], "target");
    push(&store, &r, &target, Some("v1")).await;
    let subject = target.digest.clone();
    // The subject need not exist.
    let ghost = blob("not pushed");

    const SIG: &str = "application/vnd.example.signature";
    const SBOM: &str = "application/vnd.example.sbom";
    let mut ours = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { SIG } else { SBOM };
        let m = referrer(&subject, kind, &cfg, &format!("r{i}"));
        push(&store, &r, &m, None).await;
        ours.push(m);
    }
    let on_ghost = referrer(&ghost, SIG, &cfg, "ghost");
    push(&store, &r, &on_ghost, None).await;
    // The same subject in another repository does not count here.
    push(
        &store,
        &repo("other"),
        &referrer(&subject, SIG, &cfg, "other"),
        None,
    )
    .await;
    // A manifest without artifact type.
    let mut plain = referrer(&subject, SIG, &cfg, "plain");
    plain.artifact_type = None;
    push(&store, &r, &plain, None).await;

    let entry = |m: &NewManifest| Referrer {
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        artifact_type: m.artifact_type.clone(),
        size: m.bytes.len() as u64,
        annotations: m.annotations.clone(),
    };
    let mut all: Vec<Referrer> = ours.iter().chain([&plain]).map(entry).collect();
    all.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
    assert_eq!(
        store
            .referrers(&r, &subject, None)
            .await
            .expect("referrers"),
        all
    );

    let sigs: Vec<Referrer> = all
        .iter()
        .filter(|e| e.artifact_type.as_deref() == Some(SIG))
        .cloned()
        .collect();
    assert_eq!(sigs.len(), 3);
    assert_eq!(
        store
            .referrers(&r, &subject, Some(SIG))
            .await
            .expect("referrers"),
        sigs
    );
    assert!(store
        .referrers(&r, &subject, Some("application/none"))
        .await
        .expect("referrers")
        .is_empty());
    assert_eq!(
        store.referrers(&r, &ghost, None).await.expect("referrers"),
        vec![entry(&on_ghost)]
    );
    assert!(store
        .referrers(&r, &blob("nothing"), None)
        .await
        .expect("referrers")
        .is_empty());
    assert!(store
        .referrers(&repo("unknown"), &subject, None)
        .await
        .expect("referrers")
        .is_empty());
    assert_eq!(
        store
            .referrers(&repo("other"), &subject, None)
            .await
            .expect("referrers")
            .len(),
        1
    );

    // A deleted referrer is gone from the list.
    assert!(delete_manifest(&store, &r, &ours[0].digest).await);
    let left = store
        .referrers(&r, &subject, None)
        .await
        .expect("referrers");
    assert_eq!(left.len(), all.len() - 1);
    assert!(left.iter().all(|e| e.digest != ours[0].digest));
}

/// Upload sessions: create, read, compare-and-swap advance, delete.
pub async fn upload_lifecycle(store: Store) {
    let r = repo("uploads/here");
    let rec = upload("8c5d1b0e-upload", &r);
    assert_eq!(upload_of(&store, &r, &rec.id).await, None);
    assert_eq!(store.upload_count().await.expect("upload_count"), 0);
    store.upload_create(&rec).await.expect("upload_create");
    assert_eq!(store.upload_count().await.expect("upload_count"), 1);
    assert!(
        store.repo_exists(&r).await.expect("repo_exists"),
        "an upload creates its repository"
    );
    assert_eq!(upload_of(&store, &r, &rec.id).await, Some(rec.clone()));
    assert!(
        store.upload_create(&rec).await.is_err(),
        "an upload id is unique"
    );

    let mut next = rec.clone();
    next.offset = 5 << 20;
    next.hash_state = vec![9; 300];
    next.store_state = "part 1".to_string();
    next.updated_at = rec.updated_at + 1500;
    next.created_at = 42; // not part of an advance
    assert!(
        matches!(
            store.upload_advance(&next, 0, "nobody").await,
            Err(MetaError::UploadConflict(_))
        ),
        "an advance needs the lease"
    );
    take_lease(&store, &r, &rec.id, "lease-1").await;
    store
        .upload_advance(&next, 0, "lease-1")
        .await
        .expect("upload_advance");
    let got = upload_of(&store, &r, &rec.id).await.expect("upload exists");
    assert_eq!(got.offset, next.offset);
    assert_eq!(got.hash_state, next.hash_state);
    assert_eq!(got.store_state, next.store_state);
    assert_eq!(got.updated_at, next.updated_at);
    assert_eq!(
        got.created_at, rec.created_at,
        "created_at is not changed by an advance"
    );

    // A stale expected offset loses, even under the lease.
    take_lease(&store, &r, &rec.id, "lease-2").await;
    let mut stale = rec.clone();
    stale.offset = 10;
    match store.upload_advance(&stale, 0, "lease-2").await {
        Err(MetaError::UploadConflict(id)) => assert_eq!(id, rec.id),
        other => panic!("expected UploadConflict, got {other:?}"),
    }
    assert_eq!(
        upload_of(&store, &r, &rec.id).await.map(|u| u.offset),
        Some(next.offset),
        "a lost advance changes nothing"
    );

    // The advance released the first lease; the second is still held.
    let now = crate::convert::now_ms();
    assert!(matches!(
        lease_upload(&store, &r, &rec.id, "lease-3", (now, now + 60_000)).await,
        UploadLease::Busy { offset } if offset == next.offset
    ));
    assert!(store
        .upload_renew(&rec.id, "lease-2", now + 60_000)
        .await
        .expect("renew"));
    assert!(!store
        .upload_renew(&rec.id, "lease-3", now + 60_000)
        .await
        .expect("renew"));
    let mut again = next.clone();
    again.offset = next.offset + 1;
    store
        .upload_advance(&again, next.offset, "lease-2")
        .await
        .expect("second advance");
    // An expired lease is taken over; a released one is free.
    take_lease(&store, &r, &rec.id, "lease-4").await;
    store
        .upload_renew(&rec.id, "lease-4", now - 1)
        .await
        .expect("renew");
    take_lease(&store, &r, &rec.id, "lease-5").await;
    store
        .upload_release(&rec.id, "lease-4")
        .await
        .expect("a release of a lost lease changes nothing");
    assert!(matches!(
        lease_upload(&store, &r, &rec.id, "lease-6", (now, now + 1)).await,
        UploadLease::Busy { .. }
    ));
    store
        .upload_release(&rec.id, "lease-5")
        .await
        .expect("release");
    take_lease(&store, &r, &rec.id, "lease-7").await;

    assert!(store.upload_delete(&rec.id).await.expect("upload_delete"));
    assert_eq!(store.upload_count().await.expect("upload_count"), 0);
    assert!(!store
        .upload_delete(&rec.id)
        .await
        .expect("upload_delete twice"));
    assert_eq!(upload_of(&store, &r, &rec.id).await, None);
    assert!(matches!(
        store.upload_advance(&again, again.offset, "lease-7").await,
        Err(MetaError::UploadConflict(_))
    ));
    assert_eq!(
        lease_upload(&store, &r, &rec.id, "lease-8", (now, now + 1)).await,
        UploadLease::Missing
    );
    assert!(!store
        .upload_delete("never-existed")
        .await
        .expect("upload_delete"));
}

/// An upload is found, and advanced, only through its own repository.
pub async fn upload_is_found_only_in_its_repository(store: Store) {
    let (a, b) = (repo("a"), repo("b"));
    link(&store, &b, &blob("b exists")).await;
    let rec = upload("up-1", &a);
    store.upload_create(&rec).await.expect("upload_create");
    assert_eq!(upload_of(&store, &b, &rec.id).await, None);
    assert_eq!(upload_of(&store, &repo("c"), &rec.id).await, None);

    let now = crate::convert::now_ms();
    assert_eq!(
        lease_upload(&store, &b, &rec.id, "l", (now, now + 60_000)).await,
        UploadLease::Missing
    );
    let mut wrong = rec.clone();
    wrong.repo = b.clone();
    wrong.offset = 7;
    assert!(matches!(
        store.upload_advance(&wrong, 0, "l").await,
        Err(MetaError::UploadConflict(_))
    ));
    assert_eq!(upload_of(&store, &a, &rec.id).await, Some(rec.clone()));

    // Two sessions in one repository are independent.
    let other = upload("up-2", &a);
    store.upload_create(&other).await.expect("upload_create");
    assert!(store.upload_delete(&rec.id).await.expect("upload_delete"));
    assert_eq!(upload_of(&store, &a, &other.id).await, Some(other));
}

/// `all_blobs` lists every blob row, `all_manifests` every manifest with its repository.
pub async fn all_blobs_and_manifests(store: Store) {
    assert!(store.all_blobs().await.expect("all_blobs").is_empty());
    assert!(store
        .all_manifests()
        .await
        .expect("all_manifests")
        .is_empty());
    let (a, b) = (repo("a"), repo("b"));
    let ma = image(&blob("cfg"), &[blob("l1")], "a");
    let mb = image(&blob("cfg"), &[blob("l2")], "b");
    push(&store, &a, &ma, Some("v1")).await;
    push(&store, &b, &ma, None).await;
    push(&store, &b, &mb, None).await;
    let unlinked = blob("unlinked later");
    link(&store, &a, &unlinked).await;
    assert!(store.blob_unlink(&a, &unlinked).await.expect("unlink"));

    let mut want: Vec<(Digest, u64)> = [blob("cfg"), blob("l1"), blob("l2"), unlinked]
        .into_iter()
        .map(|d| {
            let s = size_of(&d);
            (d, s)
        })
        .collect();
    want.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    let mut got = store.all_blobs().await.expect("all_blobs");
    got.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    assert_eq!(got, want);

    let mut got: Vec<(String, Digest, bool)> = store
        .all_manifests()
        .await
        .expect("all_manifests")
        .into_iter()
        .map(|(r, m)| {
            let same = [&ma, &mb]
                .iter()
                .any(|x| x.digest == m.digest && x.bytes == m.bytes);
            (r.as_str().to_string(), m.digest, same)
        })
        .collect();
    got.sort_by(|x, y| (x.0.as_str(), x.1.as_str()).cmp(&(y.0.as_str(), y.1.as_str())));
    let mut want = vec![
        ("a".to_string(), ma.digest.clone(), true),
        ("b".to_string(), ma.digest.clone(), true),
        ("b".to_string(), mb.digest.clone(), true),
    ];
    want.sort_by(|x, y| (x.0.as_str(), x.1.as_str()).cmp(&(y.0.as_str(), y.1.as_str())));
    assert_eq!(got, want);
}

const TASKS: usize = 16;

/// Several tasks putting the same manifest with the same tag all succeed, and one
/// manifest results.
pub async fn concurrent_manifest_put_same_manifest(store: Store) {
    let r = repo("race/same");
    let m = image(&blob("cfg"), &[blob("l1"), blob("l2")], "same");
    for b in &m.blobs {
        link(&store, &r, b).await;
    }
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, r, m) = (Arc::clone(&store), r.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            store.manifest_put(&r, &m, Some(&tag("latest"))).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("concurrent manifest_put");
    }
    assert_eq!(by_tag(&store, &r, "latest").await, Some(m.digest.clone()));
    assert_eq!(tags(&store, &r).await, Some(vec!["latest".to_string()]));
    assert_eq!(store.all_manifests().await.expect("all_manifests").len(), 1);

    // The same race on an index into a repository that does not exist yet.
    let fresh = repo("race/fresh");
    let idx = index(&[], "fresh");
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (store, fresh, idx) = (Arc::clone(&store), fresh.clone(), idx.clone());
        let t = tag(&format!("t{i}"));
        tasks.push(tokio::spawn(async move {
            store.manifest_put(&fresh, &idx, Some(&t)).await
        }));
    }
    for t in tasks {
        t.await
            .expect("task")
            .expect("concurrent manifest_put into a new repository");
    }
    assert_eq!(tags(&store, &fresh).await.map(|t| t.len()), Some(TASKS));
}

/// Several tasks putting different manifests under one tag all succeed; the tag ends on one
/// of them and every manifest is stored.
pub async fn concurrent_manifest_put_same_tag(store: Store) {
    let r = repo("race/tag");
    let cfg = blob("cfg");
    link(&store, &r, &cfg).await;
    let manifests: Vec<NewManifest> = (0..TASKS)
        .map(|i| image(&cfg, &[], &format!("m{i}")))
        .collect();
    let mut tasks = Vec::new();
    for m in &manifests {
        let (store, r, m) = (Arc::clone(&store), r.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            store.manifest_put(&r, &m, Some(&tag("latest"))).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("concurrent manifest_put");
    }
    let winner = by_tag(&store, &r, "latest").await.expect("tag exists");
    assert!(manifests.iter().any(|m| m.digest == winner));
    for m in &manifests {
        assert_eq!(
            get_digest(&store, &r, &m.digest).await,
            Some(m.digest.clone())
        );
    }
}

/// Requests racing for one session's write lease and then advancing from offset 0: the
/// others find it busy while one holds it; exactly one advances, and the session holds its
/// state.
pub async fn concurrent_upload_advance_one_wins(store: Store) {
    let r = repo("race/upload");
    let rec = upload("race-upload", &r);
    store.upload_create(&rec).await.expect("upload_create");
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        let r = r.clone();
        let mut next = rec.clone();
        next.offset = 1000 + i as u64;
        next.hash_state = vec![u8::try_from(i).unwrap_or(0); 8];
        next.store_state = format!("state {i}");
        next.updated_at = rec.updated_at + 1;
        tasks.push(tokio::spawn(async move {
            let token = format!("lease {i}");
            let now = crate::convert::now_ms();
            let got = store
                .upload_lease(&r, &next.id, &token, now, now + 60_000)
                .await;
            let adv = store.upload_advance(&next, 0, &token).await;
            (next, got, adv)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (next, got, adv) = t.await.expect("task");
        match got.expect("upload_lease") {
            UploadLease::Held(cur) if cur.offset == 0 => {
                adv.expect("the holder advances");
                winners.push(next);
            }
            // Taken after the winner advanced (and released): a stale offset loses.
            UploadLease::Held(_) | UploadLease::Busy { .. } => match adv {
                Err(MetaError::UploadConflict(id)) => assert_eq!(id, rec.id),
                other => panic!("an advance without the lease: {other:?}"),
            },
            UploadLease::Missing => panic!("the session is there"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one request takes the lease");
    let got = upload_of(&store, &r, &rec.id).await.expect("upload exists");
    assert_eq!(got.offset, winners[0].offset);
    assert_eq!(got.hash_state, winners[0].hash_state);
    assert_eq!(got.store_state, winners[0].store_state);
}

/// Takes the write lease of a session for a minute, or panics.
async fn take_lease(store: &Store, r: &RepoName, id: &str, token: &str) -> UploadRecord {
    let now = crate::convert::now_ms();
    match lease_upload(store, r, id, token, (now, now + 60_000)).await {
        UploadLease::Held(rec) => rec,
        other => panic!("lease {token} not taken: {other:?}"),
    }
}

/// Many tasks linking blobs into one new repository at once: all succeed, one repository.
pub async fn concurrent_blob_link_new_repository(store: Store) {
    let r = repo("race/link");
    let shared = blob("shared");
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (store, r, shared) = (Arc::clone(&store), r.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            store.blob_link(&r, &shared, size_of(&shared)).await?;
            let own = blob(&format!("own {i}"));
            store.blob_link(&r, &own, size_of(&own)).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("concurrent blob_link");
    }
    assert_eq!(
        store.catalog(None, 10).await.expect("catalog"),
        vec!["race/link".to_string()]
    );
    assert_eq!(store.all_blobs().await.expect("all_blobs").len(), TASKS + 1);
    for i in 0..TASKS {
        let own = blob(&format!("own {i}"));
        assert_eq!(
            store.blob_in_repo(&r, &own).await.expect("blob_in_repo"),
            Some(size_of(&own))
        );
    }
}

/// Writes racing each other, some of which fail: each failure writes nothing and costs
/// nothing to the writes that succeed (a store may commit concurrent writes together).
pub async fn concurrent_writes_fail_alone(store: Store) {
    let r = repo("race/mixed");
    let cfg = blob("cfg");
    link(&store, &r, &cfg).await;
    let missing = blob("never linked");
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (store, r) = (Arc::clone(&store), r.clone());
        let m = if i % 2 == 0 {
            image(&cfg, &[], &format!("good {i}"))
        } else {
            image(&cfg, std::slice::from_ref(&missing), &format!("bad {i}"))
        };
        tasks.push(tokio::spawn(async move {
            let res = store
                .manifest_put(&r, &m, Some(&tag(&format!("t{i}"))))
                .await;
            (i, m, res)
        }));
    }
    // Uploads racing for one id: one is created, the others fail on the duplicate.
    let mut uploads = Vec::new();
    for _ in 0..TASKS / 2 {
        let store = Arc::clone(&store);
        let rec = upload("same-id", &r);
        uploads.push(tokio::spawn(async move { store.upload_create(&rec).await }));
    }
    for t in tasks {
        let (i, m, res) = t.await.expect("task");
        if i % 2 == 0 {
            res.unwrap_or_else(|e| panic!("good put {i}: {e}"));
            assert_eq!(
                by_tag(&store, &r, &format!("t{i}")).await,
                Some(m.digest.clone())
            );
        } else {
            expect_missing_blob(res, &missing);
            assert_eq!(get_digest(&store, &r, &m.digest).await, None);
            assert_eq!(by_tag(&store, &r, &format!("t{i}")).await, None);
        }
    }
    let mut created = 0;
    for t in uploads {
        if t.await.expect("task").is_ok() {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one upload_create of an id succeeds");
    assert!(upload_of(&store, &r, "same-id").await.is_some());
    assert_eq!(tags(&store, &r).await.map(|t| t.len()), Some(TASKS / 2));
}

/// Reference rows, which no trait method exposes yet (garbage collection will read them):
/// written with their manifest, never by a refused put, never twice, and deleted with
/// their manifest. `refs` lists `(manifest, kind, referenced)` rows of the store, sorted.
#[cfg(test)]
pub(crate) async fn references_follow_their_manifest<F, Fut>(store: Store, refs: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<(String, String, String)>>,
{
    let row = |m: &Digest, kind: &str, d: &Digest| (m.to_string(), kind.to_string(), d.to_string());
    let r = repo("refs");
    let (cfg, l1, l2) = (blob("cfg"), blob("l1"), blob("l2"));
    // A layer listed twice is referenced once.
    let m = image(&cfg, &[l1.clone(), l2.clone(), l1.clone()], "m");
    push(&store, &r, &m, Some("v1")).await;
    let mut want = vec![
        row(&m.digest, "blob", &cfg),
        row(&m.digest, "blob", &l1),
        row(&m.digest, "blob", &l2),
    ];
    want.sort();
    assert_eq!(refs().await, want);

    let refused = image(&cfg, &[blob("missing")], "refused");
    expect_missing_blob(
        store.manifest_put(&r, &refused, None).await,
        &blob("missing"),
    );
    assert_eq!(refs().await, want, "a refused put writes no reference");

    let idx = index(std::slice::from_ref(&m.digest), "idx");
    put(&store, &r, &idx, Some("idx")).await;
    put(&store, &r, &m, Some("v2")).await;
    put(&store, &r, &idx, None).await;
    let mut with_index = want.clone();
    with_index.push(row(&idx.digest, "manifest", &m.digest));
    with_index.sort();
    assert_eq!(refs().await, with_index, "re-puts add nothing");

    assert!(delete_manifest(&store, &r, &m.digest).await);
    assert_eq!(
        refs().await,
        vec![row(&idx.digest, "manifest", &m.digest)],
        "a deleted manifest's references go with it; others' stay"
    );
    assert!(delete_manifest(&store, &r, &idx.digest).await);
    assert!(refs().await.is_empty());
}
