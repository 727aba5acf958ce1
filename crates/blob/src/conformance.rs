//! The one test suite every [`BlobStore`] implementation passes, so that the layers above
//! can rely on the trait's documented behaviour and not on one store's habits.
//!
//! Each case is a `pub async fn` taking a [`Fixture`], which opens store instances over one
//! fresh storage location (a temporary directory, a unique S3 prefix); opening a second
//! instance plays a restarted process or another replica. The
//! [`blob_store_conformance!`](crate::blob_store_conformance) macro turns the cases into one
//! `#[tokio::test]` each:
//!
//! ```no_run
//! use berth_blob::conformance::Fixture;
//! use berth_blob::memory::MemoryBlobStore;
//!
//! berth_blob::blob_store_conformance!(memory, async {
//!     let store = MemoryBlobStore::new();
//!     Fixture::new((), move || Ok(store.clone()))
//! });
//! # fn main() {}
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`). Every case ends
//! by emptying the store through the trait (deleting the blobs it lists, aborting the
//! uploads it lists with no state) and checking that nothing is left, which exercises the
//! paths fsck and garbage collection use.
//!
//! Test code: failures panic, with a message saying what the store did wrong.

use crate::{BlobError, BlobStore, ByteStream, Existing, UploadState};
use berth_oci::Digest;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::any::Any;
use std::io;

const MIB: usize = 1 << 20;

/// Opens store instances over one storage location for the length of one test case.
pub struct Fixture {
    open: Box<dyn Fn() -> Result<Box<dyn BlobStore>, BlobError> + Send + Sync>,
    /// Whatever must live as long as the case, such as a temporary directory.
    _keep: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    /// `open` makes a new store instance over the same storage each time it is called;
    /// `keep` is dropped after the case (pass `()` if nothing needs keeping).
    pub fn new<S, K, F>(keep: K, open: F) -> Fixture
    where
        S: BlobStore,
        K: Send + Sync + 'static,
        F: Fn() -> Result<S, BlobError> + Send + Sync + 'static,
    {
        Fixture {
            open: Box::new(move || open().map(|s| Box::new(s) as Box<dyn BlobStore>)),
            _keep: Box::new(keep),
        }
    }

    /// A new store instance over this fixture's storage.
    pub fn open(&self) -> Box<dyn BlobStore> {
        match (self.open)() {
            Ok(store) => store,
            Err(e) => panic!("opening the store under test failed: {e}"),
        }
    }
}

/// Expands to a module `$name` with one `#[tokio::test]` per conformance case, each given
/// the [`Fixture`](crate::conformance::Fixture) that the async expression `$fixture`
/// evaluates to (evaluated afresh for every case, inside the module, which sees the
/// caller's items through `use super::*`).
#[macro_export]
macro_rules! blob_store_conformance {
    ($name:ident, $fixture:expr) => {
        $crate::blob_store_conformance!(@module $name, $fixture, [
            missing_blob,
            single_append_commit,
            multi_append,
            failed_append_then_retry,
            failed_append_after_a_part,
            resume_in_new_instance,
            append_replayed_from_older_state,
            commit_existing_dedups,
            commit_replaces_unverified,
            abort,
            zero_length_blob,
            range_edges,
            listing,
            delete_blob,
            concurrent_same_content,
            invalid_upload_ids,
            unknown_upload,
            delete_foreign_spares_data,
            ping_and_kind,
        ]);
    };
    (@module $name:ident, $fixture:expr, [$($case:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture: $crate::conformance::Fixture = $fixture.await;
                    $crate::conformance::$case(&fixture).await;
                }
            )*
        }
    };
}

/// Deterministic pseudo-random bytes (splitmix64), different for every `seed`.
pub fn test_bytes(seed: u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// `data` as a request body of `chunk`-byte pieces (shared, not copied).
pub fn body(data: &Bytes, chunk: usize) -> ByteStream {
    stream::iter(chunks(data, chunk).into_iter().map(Ok)).boxed()
}

/// A body that delivers `data` and then fails, like a client that went away.
pub fn failing_body(data: &Bytes, chunk: usize) -> ByteStream {
    let failure = io::Error::new(io::ErrorKind::ConnectionReset, "client went away");
    stream::iter(chunks(data, chunk).into_iter().map(Ok))
        .chain(stream::once(async move { Err(failure) }))
        .boxed()
}

fn chunks(data: &Bytes, chunk: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let end = (at + chunk).min(data.len());
        out.push(data.slice(at..end));
        at = end;
    }
    out
}

fn concat(parts: &[&Bytes]) -> Bytes {
    let mut all = BytesMut::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    all.freeze()
}

/// Reads a blob (or a range of it) whole; returns the announced size and the bytes.
pub async fn read(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<(u64, u64)>,
) -> (u64, Bytes) {
    let got = store
        .get(digest, range)
        .await
        .unwrap_or_else(|e| panic!("get {digest} {range:?}: {e}"));
    let mut all = BytesMut::new();
    let mut stream = got.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("reading {digest} {range:?}: {e}"));
        all.extend_from_slice(&chunk);
    }
    (got.size, all.freeze())
}

/// Checks that `digest` is committed with exactly `want`, by size and by sha256, whole and
/// in ranges (first byte, middle, last byte).
pub async fn assert_blob(store: &dyn BlobStore, digest: &Digest, want: &Bytes) {
    let len = want.len() as u64;
    assert_eq!(
        store.stat(digest).await.expect("stat"),
        Some(len),
        "stat of {digest}"
    );
    let (size, got) = read(store, digest, None).await;
    assert_eq!(size, len, "size announced by get of {digest}");
    assert_eq!(got.len() as u64, len, "bytes read from {digest}");
    assert_eq!(
        Digest::sha256_of(&got),
        Digest::sha256_of(want),
        "content of {digest}"
    );
    if len == 0 {
        return;
    }
    let mid = len / 2;
    let ranges = [
        (0, 1),
        (mid, (mid + 1000).min(len)),
        (len - 1, len),
        (0, len),
    ];
    for (s, e) in ranges {
        let (size, got) = read(store, digest, Some((s, e))).await;
        assert_eq!(
            size, len,
            "size announced by get of {digest} range {s}..{e}"
        );
        assert_eq!(
            Digest::sha256_of(&got),
            Digest::sha256_of(&want[s as usize..e as usize]),
            "content of {digest} range {s}..{e} ({} bytes read)",
            got.len()
        );
    }
}

/// Appends `data` at `offset`, checking the count; returns the new state.
async fn append(
    store: &dyn BlobStore,
    id: &str,
    state: &UploadState,
    offset: u64,
    data: &Bytes,
) -> UploadState {
    let (state, n) = store
        .upload_append(id, state, offset, body(data, 64 * 1024))
        .await
        .unwrap_or_else(|e| panic!("append of {} bytes at {offset} to {id}: {e}", data.len()));
    assert_eq!(n, data.len() as u64, "bytes counted by append to {id}");
    state
}

/// Uploads `pieces` as one append each and commits them; returns the digest.
pub async fn upload(store: &dyn BlobStore, id: &str, pieces: &[&Bytes]) -> Digest {
    let mut state = store.upload_start(id).await.expect("upload_start");
    let mut offset = 0u64;
    for p in pieces {
        state = append(store, id, &state, offset, p).await;
        offset += p.len() as u64;
    }
    commit(store, id, &state, pieces).await
}

/// Commits the upload `id`, which holds `pieces`, under their digest.
async fn commit(store: &dyn BlobStore, id: &str, state: &UploadState, pieces: &[&Bytes]) -> Digest {
    let want = concat(pieces);
    let digest = Digest::sha256_of(&want);
    store
        .upload_commit(id, state, want.len() as u64, &digest, Existing::Keep)
        .await
        .unwrap_or_else(|e| panic!("commit of {id} as {digest}: {e}"));
    digest
}

/// Everything a listing of the store gives (`what` names it), sorted.
async fn sorted<T: Ord>(listing: BoxStream<'static, Result<T, BlobError>>, what: &str) -> Vec<T> {
    let mut all: Vec<T> = listing.try_collect().await.expect(what);
    all.sort();
    all
}

async fn blobs(store: &dyn BlobStore) -> Vec<(Digest, u64)> {
    sorted(store.list(), "list").await
}

async fn uploads(store: &dyn BlobStore) -> Vec<(String, u64)> {
    sorted(store.list_uploads(), "list_uploads").await
}

async fn upload_ids(store: &dyn BlobStore) -> Vec<String> {
    uploads(store).await.into_iter().map(|(id, _)| id).collect()
}

/// What `list_foreign` lists, sorted.
pub async fn foreign(store: &dyn BlobStore) -> Vec<String> {
    sorted(store.list_foreign(), "list_foreign").await
}

/// The store holds `want` under `digest`, no other blob and no upload (after what `after`
/// names); then it is emptied for the next test.
async fn assert_only_blob(store: &dyn BlobStore, digest: &Digest, want: &Bytes, after: &str) {
    assert_blob(store, digest, want).await;
    let only = vec![(digest.clone(), want.len() as u64)];
    assert_eq!(blobs(store).await, only, "blobs after {after}");
    let none = Vec::<String>::new();
    assert_eq!(upload_ids(store).await, none, "upload left after {after}");
    drain(store).await;
}

/// Empties the store through the trait, as fsck and GC would, and checks nothing is left.
pub async fn drain(store: &dyn BlobStore) {
    for (digest, _) in blobs(store).await {
        assert!(
            store.delete(&digest).await.expect("delete"),
            "delete of listed {digest}"
        );
    }
    for id in upload_ids(store).await {
        store
            .upload_abort(&id, &UploadState::default())
            .await
            .unwrap_or_else(|e| panic!("abort of listed upload {id} without state: {e}"));
    }
    assert_eq!(blobs(store).await, vec![], "blobs left after deleting all");
    assert_eq!(
        upload_ids(store).await,
        Vec::<String>::new(),
        "uploads left after aborting all"
    );
    assert_eq!(
        foreign(store).await,
        Vec::<String>::new(),
        "foreign keys left"
    );
}

fn digest_of_text(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

/// stat, get and delete of a blob that was never stored.
pub async fn missing_blob(fx: &Fixture) {
    let s = fx.open();
    let d = digest_of_text("never stored");
    assert_eq!(s.stat(&d).await.expect("stat"), None);
    assert!(
        matches!(s.get(&d, None).await, Err(BlobError::NotFound)),
        "get of a missing blob"
    );
    assert!(
        matches!(s.get(&d, Some((0, 1))).await, Err(BlobError::NotFound)),
        "ranged get of a missing blob"
    );
    assert!(
        !s.delete(&d).await.expect("delete"),
        "delete of a missing blob"
    );
    drain(&*s).await;
}

/// One append, commit, then stat, get and ranged gets.
pub async fn single_append_commit(fx: &Fixture) {
    let s = fx.open();
    let data = test_bytes(1, 300 * 1024 + 7);
    let d = upload(&*s, "single-1", &[&data]).await;
    assert_only_blob(&*s, &d, &data, "commit").await;
}

/// Appends of 1 byte, 4 KiB, 5 MiB + 1 and 12 MiB: S3 parts and tails on every path.
pub async fn multi_append(fx: &Fixture) {
    let s = fx.open();
    let pieces = [
        test_bytes(2, 1),
        test_bytes(3, 4096),
        test_bytes(4, 5 * MIB + 1),
        test_bytes(5, 12 * MIB),
    ];
    let refs: Vec<&Bytes> = pieces.iter().collect();
    let d = upload(&*s, "multi-1", &refs).await;
    assert_blob(&*s, &d, &concat(&refs)).await;
    drain(&*s).await;
}

/// A body that fails part way must fail the append; a retry at the same offset must
/// leave exactly the right bytes.
async fn failed_then_retry(fx: &Fixture, id: &str, first: usize, partial: usize, retry: usize) {
    let s = fx.open();
    let a = test_bytes(10, first);
    let b = test_bytes(11, retry);
    let junk = test_bytes(12, partial);
    let mut state = s.upload_start(id).await.expect("upload_start");
    state = append(&*s, id, &state, 0, &a).await;
    let failed = s
        .upload_append(id, &state, a.len() as u64, failing_body(&junk, 256 * 1024))
        .await;
    assert!(
        matches!(failed, Err(BlobError::Source(_))),
        "append with a failing body must fail with Source, got {:?}",
        failed.map(|(_, n)| n)
    );
    assert_eq!(
        upload_ids(&*s).await,
        vec![id.to_string()],
        "upload gone after a failed append"
    );
    state = append(&*s, id, &state, a.len() as u64, &b).await;
    let d = commit(&*s, id, &state, &[&a, &b]).await;
    assert_blob(&*s, &d, &concat(&[&a, &b])).await;
    drain(&*s).await;
}

/// Failure of a small append: the retry is shorter than what the failed one wrote.
pub async fn failed_append_then_retry(fx: &Fixture) {
    failed_then_retry(fx, "failed-1", 1000, 3 * MIB, 1234).await;
}

/// Failure after the store may have sent a whole part (S3).
pub async fn failed_append_after_a_part(fx: &Fixture) {
    failed_then_retry(fx, "failed-2", 6 * MIB, 10 * MIB, 2 * MIB + 5).await;
}

/// An upload started by one instance is continued and committed by another, with only the
/// [`UploadState`] and offset the caller kept.
pub async fn resume_in_new_instance(fx: &Fixture) {
    let a = test_bytes(20, 6 * MIB + 3);
    let b = test_bytes(21, MIB);
    let c = test_bytes(22, 3 * MIB);
    let id = "resume-1";
    let state = {
        let first = fx.open();
        let mut state = first.upload_start(id).await.expect("upload_start");
        state = append(&*first, id, &state, 0, &a).await;
        append(&*first, id, &state, a.len() as u64, &b).await
    };
    let second = fx.open();
    assert_eq!(
        upload_ids(&*second).await,
        vec![id.to_string()],
        "upload seen after restart"
    );
    let offset = (a.len() + b.len()) as u64;
    let state = append(&*second, id, &state, offset, &c).await;
    let d = commit(&*second, id, &state, &[&a, &b, &c]).await;
    assert_blob(&*fx.open(), &d, &concat(&[&a, &b, &c])).await;
    drain(&*second).await;
}

/// The caller lost the state of its last append (it crashed before saving it) and the
/// client retries from the previous offset: the store must still produce the right bytes.
pub async fn append_replayed_from_older_state(fx: &Fixture) {
    let s = fx.open();
    let id = "replay-1";
    let a = test_bytes(30, 6 * MIB);
    let lost = test_bytes(31, 9 * MIB);
    let b = test_bytes(32, 3 * MIB);
    let c = test_bytes(33, 7 * MIB);
    let mut state = s.upload_start(id).await.expect("upload_start");
    state = append(&*s, id, &state, 0, &a).await;
    let _lost_state = append(&*s, id, &state, a.len() as u64, &lost).await;
    state = append(&*s, id, &state, a.len() as u64, &b).await;
    state = append(&*s, id, &state, (a.len() + b.len()) as u64, &c).await;
    let d = commit(&*s, id, &state, &[&a, &b, &c]).await;
    assert_blob(&*s, &d, &concat(&[&a, &b, &c])).await;
    drain(&*s).await;
}

/// Committing a digest that exists (pushed to another repository) keeps one blob and
/// removes the upload.
pub async fn commit_existing_dedups(fx: &Fixture) {
    let s = fx.open();
    let data = test_bytes(40, 100_000);
    let d = upload(&*s, "dedup-1", &[&data]).await;
    let d2 = upload(&*s, "dedup-2", &[&data]).await;
    assert_eq!(d, d2);
    // A commit retried after it succeeded is harmless too.
    s.upload_commit(
        "dedup-2",
        &UploadState::default(),
        data.len() as u64,
        &d,
        Existing::Keep,
    )
    .await
    .expect("repeated commit");
    assert_only_blob(&*s, &d, &data, "dedup").await;
}

/// A commit with [`Existing::Replace`] puts its own bytes in place of whatever is stored
/// under the digest (bytes nobody verified), and a retry of it succeeds.
pub async fn commit_replaces_unverified(fx: &Fixture) {
    let s = fx.open();
    let good = test_bytes(41, 70_000);
    let d = Digest::sha256_of(&good);
    // Junk stored under the digest, as a corrupting writer of an older version left it.
    let junk = test_bytes(42, 50_000);
    let st = s.upload_start("junk").await.expect("upload_start");
    let st = append(&*s, "junk", &st, 0, &junk).await;
    s.upload_commit("junk", &st, junk.len() as u64, &d, Existing::Keep)
        .await
        .expect("commit junk");
    let st = s.upload_start("good").await.expect("upload_start");
    let st = append(&*s, "good", &st, 0, &good).await;
    s.upload_commit("good", &st, good.len() as u64, &d, Existing::Replace)
        .await
        .expect("replacing commit");
    assert_blob(&*s, &d, &good).await;
    s.upload_commit("good", &st, good.len() as u64, &d, Existing::Replace)
        .await
        .expect("retried replacing commit");
    assert_only_blob(&*s, &d, &good, "a retried replacing commit").await;
}

/// Abort removes the upload; appending afterwards finds no upload; abort is idempotent.
pub async fn abort(fx: &Fixture) {
    let s = fx.open();
    let id = "abort-1";
    let data = test_bytes(50, 6 * MIB + 100);
    let mut state = s.upload_start(id).await.expect("upload_start");
    state = append(&*s, id, &state, 0, &data).await;
    state = append(&*s, id, &state, data.len() as u64, &data.slice(..100)).await;
    s.upload_abort(id, &state).await.expect("abort");
    assert_eq!(
        upload_ids(&*s).await,
        Vec::<String>::new(),
        "upload left after abort"
    );
    let after = s
        .upload_append(
            id,
            &state,
            (data.len() + 100) as u64,
            body(&data.slice(..10), 10),
        )
        .await;
    assert!(
        matches!(after, Err(BlobError::UploadNotFound(_))),
        "append after abort: {:?}",
        after.map(|(_, n)| n)
    );
    s.upload_abort(id, &state).await.expect("second abort");
    s.upload_abort("never-started", &UploadState::default())
        .await
        .expect("abort of an unknown upload");
    assert_eq!(blobs(&*s).await, vec![], "abort committed something");
    drain(&*s).await;
}

/// The empty blob, with and without an (empty) append.
pub async fn zero_length_blob(fx: &Fixture) {
    let s = fx.open();
    let empty = Bytes::new();
    let d = upload(&*s, "empty-1", &[]).await;
    assert_eq!(d, Digest::sha256_of(b""));
    assert_blob(&*s, &d, &empty).await;
    let (size, got) = read(&*s, &d, Some((0, 0))).await;
    assert_eq!((size, got.len()), (0, 0));
    assert!(s.delete(&d).await.expect("delete"));
    let d = upload(&*s, "empty-2", &[&empty, &empty]).await;
    assert_blob(&*s, &d, &empty).await;
    drain(&*s).await;
}

/// Empty ranges are empty; ranges past the end are refused with `Range`.
pub async fn range_edges(fx: &Fixture) {
    let s = fx.open();
    let data = test_bytes(60, 5000);
    let d = upload(&*s, "range-1", &[&data]).await;
    let (size, got) = read(&*s, &d, Some((4000, 4000))).await;
    assert_eq!((size, got.len()), (5000, 0), "empty range");
    for bad in [(10, 5), (0, 5001), (4999, 6000), (6000, 7000)] {
        let r = s.get(&d, Some(bad)).await.map(|r| r.size);
        assert!(matches!(r, Err(BlobError::Range)), "range {bad:?}: {r:?}");
    }
    drain(&*s).await;
}

/// list, list_uploads and list_foreign see exactly what they should.
pub async fn listing(fx: &Fixture) {
    let s = fx.open();
    let mut want = Vec::new();
    for (i, len) in [10usize, 2000, 70_000].into_iter().enumerate() {
        let data = test_bytes(70 + i as u64, len);
        let d = upload(&*s, &format!("list-{i}"), &[&data]).await;
        want.push((d, len as u64));
    }
    want.sort();
    assert_eq!(blobs(&*s).await, want);
    let empty_state = s.upload_start("open-empty").await.expect("upload_start");
    let st = s.upload_start("open-data").await.expect("upload_start");
    // Big enough for S3 to hold a part; `drain` aborts it knowing nothing but its id.
    append(&*s, "open-data", &st, 0, &test_bytes(80, 6 * MIB)).await;
    let listed = uploads(&*s).await;
    let ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["open-data", "open-empty"]);
    for (id, age) in &listed {
        assert!(*age < 120, "age of fresh upload {id}: {age}s");
    }
    assert_eq!(foreign(&*s).await, Vec::<String>::new());
    s.upload_abort("open-empty", &empty_state)
        .await
        .expect("abort");
    assert_eq!(upload_ids(&*s).await, ["open-data"]);
    drain(&*s).await;
}

/// delete then stat is `None`, get is `NotFound`, a second delete says `false`.
pub async fn delete_blob(fx: &Fixture) {
    let s = fx.open();
    let keep = test_bytes(90, 1000);
    let gone = test_bytes(91, 1000);
    let dk = upload(&*s, "del-1", &[&keep]).await;
    let dg = upload(&*s, "del-2", &[&gone]).await;
    assert!(s.delete(&dg).await.expect("delete"));
    assert_eq!(s.stat(&dg).await.expect("stat"), None);
    assert!(matches!(s.get(&dg, None).await, Err(BlobError::NotFound)));
    assert!(!s.delete(&dg).await.expect("second delete"));
    assert_eq!(blobs(&*s).await, vec![(dk.clone(), 1000)]);
    assert_blob(&*s, &dk, &keep).await;
    drain(&*s).await;
}

/// Two uploads of the same content under two ids, at the same time.
pub async fn concurrent_same_content(fx: &Fixture) {
    let s = fx.open();
    let data = test_bytes(100, 9 * MIB + 17);
    let pieces = [&data];
    let (d1, d2) = tokio::join!(
        upload(&*s, "same-1", &pieces),
        upload(&*s, "same-2", &pieces)
    );
    assert_eq!(d1, d2);
    assert_only_blob(&*s, &d1, &data, "two commits of one digest").await;
}

/// Ids outside `[A-Za-z0-9-]{1,64}` are unknown uploads, for every upload method.
pub async fn invalid_upload_ids(fx: &Fixture) {
    let s = fx.open();
    let d = digest_of_text("x");
    let st = UploadState::default();
    let long = "a".repeat(65);
    for id in [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/abs",
        "a.b",
        "a b",
        "ü",
        long.as_str(),
    ] {
        let start = s.upload_start(id).await;
        assert!(
            matches!(start, Err(BlobError::UploadNotFound(_))),
            "start {id:?}"
        );
        let app = s
            .upload_append(id, &st, 0, body(&Bytes::from_static(b"x"), 1))
            .await;
        assert!(
            matches!(app, Err(BlobError::UploadNotFound(_))),
            "append {id:?}"
        );
        let commit = s.upload_commit(id, &st, 0, &d, Existing::Keep).await;
        assert!(
            matches!(commit, Err(BlobError::UploadNotFound(_))),
            "commit {id:?}"
        );
        let abort = s.upload_abort(id, &st).await;
        assert!(
            matches!(abort, Err(BlobError::UploadNotFound(_))),
            "abort {id:?}"
        );
    }
    drain(&*s).await;
}

/// Appending to or committing an upload that was never started.
pub async fn unknown_upload(fx: &Fixture) {
    let s = fx.open();
    let st = UploadState::default();
    let app = s
        .upload_append("nobody", &st, 0, body(&Bytes::from_static(b"abc"), 1))
        .await;
    assert!(
        matches!(app, Err(BlobError::UploadNotFound(_))),
        "append: {:?}",
        app.map(|r| r.1)
    );
    let commit = s
        .upload_commit("nobody", &st, 0, &digest_of_text(""), Existing::Keep)
        .await;
    assert!(
        matches!(commit, Err(BlobError::UploadNotFound(_))),
        "commit: {commit:?}"
    );
    assert_eq!(s.stat(&digest_of_text("")).await.expect("stat"), None);
    drain(&*s).await;
}

/// `delete_foreign` never removes committed blobs or uploads, and a missing key is fine.
pub async fn delete_foreign_spares_data(fx: &Fixture) {
    let s = fx.open();
    let data = test_bytes(110, 3000);
    let d = upload(&*s, "foreign-1", &[&data]).await;
    let st = s.upload_start("foreign-2").await.expect("upload_start");
    append(&*s, "foreign-2", &st, 0, &data).await;
    let hex = d.hex();
    let blob_key = format!("blobs/sha256/{}/{hex}", &hex[..2]);
    let keys = [
        blob_key.as_str(),
        "blobs/sha256",
        "blobs",
        "uploads",
        "uploads/foreign-2",
        "uploads/foreign-2/upload",
        "../outside",
    ];
    for key in keys {
        // Refusing is right; succeeding is acceptable only if nothing was removed.
        let _ = s.delete_foreign(key).await;
    }
    assert_blob(&*s, &d, &data).await;
    assert_eq!(upload_ids(&*s).await, ["foreign-2"]);
    s.delete_foreign("no/such/key")
        .await
        .expect("delete_foreign of a missing key");
    drain(&*s).await;
}

/// `ping` succeeds on a healthy store, leaves nothing behind, and `kind` names the store.
pub async fn ping_and_kind(fx: &Fixture) {
    let s = fx.open();
    s.ping().await.expect("ping");
    assert!(!s.kind().is_empty());
    drain(&*s).await;
}
