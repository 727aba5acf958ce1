//! Registry metadata: the store traits and their SQLite and PostgreSQL implementations.
//!
//! One trait per domain, each small enough to read at once: [`RegistryStore`]
//! (repositories, blob links, manifests, tags, referrers), [`UploadStore`] (upload
//! sessions), [`GcStore`] (claims, tombstones, the GC queue, lease, settings and runs), and
//! for identity [`AccountStore`], [`TeamStore`], [`AccessStore`], [`TokenStore`] and
//! [`AuditStore`]. [`MetaStore`] and [`IdentityStore`] gather them, so the rest of the
//! registry holds one `Arc<dyn MetaStore>` and one `Arc<dyn IdentityStore>`.
//!
//! The metadata store is the source of truth for what exists: which blobs a repository
//! links, which manifests it holds (their bytes included, stored exactly as received), tags,
//! the references from manifests to blobs and child manifests, subjects for the referrers
//! API, and upload sessions with their hash state. Blob storage is never listed to answer
//! a request.
//!
//! Writes that must be atomic are single methods: `manifest_put` checks that every
//! referenced blob and child manifest is present in the repository and writes the
//! manifest, its references and its tag in one transaction, so no half-written manifest is
//! ever visible.
//!
//! - [`sqlite`]: the embedded default (WAL, `synchronous=FULL`: a commit is durable).
//! - [`postgres`]: for replicas that share one database.
//! - `instrument`: [`Instrumented`], the wrapper that records the latency and errors of
//!   every call of every trait, and the `store_trait!` macro that declares a trait and
//!   its instrumented implementation at once.
//! - [`identity`]: the identity traits: accounts, organisations, teams, grants,
//!   repository settings, tokens, signing keys and the audit log, for identity and access.
//! - [`gc`]: the types of the garbage-collection methods (claims, tombstones, the
//!   candidate queue, settings, run records); `sqlite_gc` and `postgres_gc` hold
//!   their statements.
//! - [`lease`]: the [`LeaseStore`] trait: leases of background jobs (any name, holder,
//!   expiry, renewal), one table, one implementation for both backends.
//! - [`trust`]: the [`TrustStore`] trait: Docker Content Trust files (every version),
//!   the server's sealed keys and the changefeed, one implementation for both backends.
//! - [`policy`], [`signatures`]: signature policies, the keys users register and the
//!   facts of cosign and Notation signatures ([`PolicyStore`], [`SignatureStore`]).
//! - [`replicas`]: the [`ReplicaStore`] trait: each replica's heartbeat row.
//! - `conformance` (feature `conformance`, on only for tests): the one test suite both
//!   pass (every trait). It is not compiled into the binary.
//!
//! The private `shared` module holds the statements both dialects accept, written once:
//! their text (which SQLite's writer thread and per-thread readers run as PostgreSQL
//! does, with `$n` parameters numbered in the order they first appear), and whole reads
//! run on either sqlx pool. Each backend runs a one-statement write through one helper
//! (`SqliteMetaStore::execute`, `PgMetaStore::changed`). The private `convert` module holds the conversions both share (clock, sizes, values read
//! back from a database). Schemas live in `migrations/sqlite` and `migrations/postgres`,
//! applied when a store opens.

#[macro_use]
mod instrument;
#[macro_use]
mod shared;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod convert;
pub mod gc;
pub mod identity;
pub mod lease;
pub mod policy;
pub mod postgres;
mod postgres_gc;
mod postgres_identity;
pub mod replicas;
pub mod signatures;
pub mod sqlite;
mod sqlite_fast;
mod sqlite_gc;
mod sqlite_identity;
pub mod trust;

pub use gc::{BlobClaim, GcBatch, GcPass, GcRun, GcSettings};
pub use identity::{AccessStore, AccountStore, AuditStore, IdentityStore, TeamStore, TokenStore};
pub use instrument::Instrumented;
pub use lease::{Lease, LeaseStore};
pub use policy::{PolicyStore, StoredPolicy};
pub use replicas::{Replica, ReplicaStore};
pub use signatures::{
    CountedSignature, RegisteredKey, SignatureFact, SignatureStore, StaleSignature,
};
pub use trust::{Signed, SignedTarget, TrustChange, TrustFile, TrustKey, TrustSigner, TrustStore};

/// Every store trait, for the modules that call a `dyn MetaStore` or `dyn IdentityStore`
/// (a supertrait's methods need the supertrait in scope): `use berth_meta::prelude::*;`.
pub mod prelude {
    pub use crate::identity::{
        AccessStore, AccountStore, AuditStore, IdentityStore, TeamStore, TokenStore,
    };
    pub use crate::{
        GcStore, LeaseStore, MetaStore, PolicyStore, RegistryStore, ReplicaStore, SignatureStore,
        TrustStore, UploadStore,
    };
}
pub use postgres::PgMetaStore;
pub use sqlite::SqliteMetaStore;

use berth_oci::{Digest, RepoName, Tag};
use bytes::Bytes;

/// Errors of a metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest references a blob the repository does not link.
    #[error("blob {0} is not known in this repository")]
    MissingBlob(Digest),
    /// An index references a manifest the repository does not hold.
    #[error("manifest {0} is not known in this repository")]
    MissingManifest(Digest),
    /// A manifest's descriptor gives a blob another size than the stored blob has.
    #[error("the descriptor of blob {digest} gives size {declared}, the blob has {stored} bytes")]
    BlobSizeMismatch {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
    /// A compare-and-swap on an upload lost a race with another request.
    #[error("upload {0} was changed concurrently")]
    UploadConflict(String),
    /// A name or id that must be unique is taken (an account name, a team, a token id).
    #[error("{0} already exists")]
    Conflict(String),
    /// An account name whose namespace holds repositories that no account owns (pushed
    /// where no account existed, or left by a deleted account): taking the name would hand
    /// them over, so only a system administrator may, by claiming the namespace.
    #[error(
        "the namespace {0} holds repositories that belong to no account; only a system \
         administrator can create an account with this name, by claiming them \
         (claim_namespace)"
    )]
    NamespaceHeld(String),
    /// Something the operation needs does not exist (an organisation, a team, a user).
    #[error("{0} not found")]
    NotFound(String),
    /// A value the store refuses to keep (an upper-case account name, a grant outside the
    /// team's namespace).
    #[error("invalid: {0}")]
    Invalid(String),
    /// An upload's claim on a blob did not survive until its completion: garbage
    /// collection tombstoned (or removed and something re-created) the blob meanwhile, so
    /// the bytes the upload committed may be gone. Nothing was linked; upload again.
    #[error("blob {0} was garbage-collected while the upload committed it")]
    ClaimLost(Digest),
    #[error("metadata store error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        MetaError::Backend(e.to_string())
    }
}

/// An upload session: where it stands and what the blob store needs to continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Opaque id used in the upload URL.
    pub id: String,
    pub repo: RepoName,
    /// Bytes acknowledged so far.
    pub offset: u64,
    /// Serialised `berth_oci::Digester` at `offset`.
    pub hash_state: Vec<u8>,
    /// The blob store's `UploadState` at `offset`.
    pub store_state: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last acknowledged change.
    pub updated_at: i64,
}

/// What taking the write lease of an upload session found (see
/// [`MetaStore::upload_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadLease {
    /// The lease is the caller's until it advances, releases or lets it expire: the session
    /// as it stands, read under the lease.
    Held(UploadRecord),
    /// Another request holds an unexpired lease; the acknowledged offset.
    Busy { offset: u64 },
    /// No such session in the repository.
    Missing,
}

/// A manifest to store.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Digest of the `subject` descriptor, for the referrers API.
    pub subject: Option<Digest>,
    /// `annotations` of the manifest as a JSON object, for referrers responses.
    pub annotations: Option<String>,
    /// The bytes exactly as received.
    pub bytes: Bytes,
    /// Blobs that must be linked in the repository (config, non-foreign layers).
    pub blobs: Vec<Digest>,
    /// The size the manifest's descriptor gives each of `blobs` (same order and length):
    /// checked against the stored blob in the query that checks the link.
    pub blob_sizes: Vec<u64>,
    /// Manifests that must exist in the repository (an index's children).
    pub children: Vec<Digest>,
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// One entry of a referrers response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    /// JSON object text, if the manifest has annotations.
    pub annotations: Option<String>,
}

store_trait! {
    /// Registry content: repositories, blob links, manifests, tags and referrers. Every method
    /// is one transaction.
    pub trait RegistryStore {
        /// Checks the store answers.
        async fn ping(&self) -> Result<(), MetaError>;

        /// Whether the repository exists (has ever had a blob linked or a manifest pushed and
        /// has not been deleted).
        async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError>;

        /// Repository names in lexical (byte) order, strictly after `last`, at most `n`.
        async fn catalog(&self, last: Option<&str>, n: u32) -> Result<Vec<String>, MetaError>;

        /// Size of `digest` if it is linked in `repo`.
        async fn blob_in_repo(
            &self,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Option<u64>, MetaError>;

        /// Size of `digest` if any repository links it (it exists in blob storage).
        async fn blob_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError>;

        /// Records that blob storage holds `digest` of `size` bytes and links it in `repo`,
        /// creating the repository if needed. Idempotent.
        async fn blob_link(&self, repo: &RepoName, digest: &Digest, size: u64)
            -> Result<(), MetaError>;

        /// Links `digest` into `repo` if `from` links it; returns its size, or `None` if `from`
        /// does not have it (nothing is changed then).
        async fn blob_mount(
            &self,
            repo: &RepoName,
            from: &RepoName,
            digest: &Digest,
        ) -> Result<Option<u64>, MetaError>;

        /// Removes the link of `digest` from `repo`; `false` if it was not linked. The blob row
        /// itself stays until garbage collection.
        async fn blob_unlink(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError>;

        /// Stores a manifest and, if `tag` is given, points the tag at it, in one transaction.
        /// Fails with `MissingBlob` / `MissingManifest` (writing nothing) if a referenced blob is
        /// not linked in `repo` or a child manifest is not in `repo`. Re-putting an existing
        /// manifest is not an error.
        async fn manifest_put(
            &self,
            repo: &RepoName,
            m: &NewManifest,
            tag: Option<&Tag>,
        ) -> Result<(), MetaError>;

        /// The manifest `digest` in `repo`.
        async fn manifest_get(
            &self,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Option<ManifestRecord>, MetaError>;

        /// The manifest that `tag` points to in `repo`.
        async fn manifest_by_tag(
            &self,
            repo: &RepoName,
            tag: &Tag,
        ) -> Result<Option<ManifestRecord>, MetaError>;

        /// Deletes manifest `digest` from `repo` with every tag pointing at it; `false` if absent.
        async fn manifest_delete(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError>;

        /// Removes a tag (the manifest stays); `false` if absent.
        async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> Result<bool, MetaError>;

        /// Tags of `repo` in lexical order, strictly after `last`, at most `n`; `None` if the
        /// repository does not exist.
        async fn tags_list(
            &self,
            repo: &RepoName,
            last: Option<&str>,
            n: u32,
        ) -> Result<Option<Vec<String>>, MetaError>;

        /// Manifests in `repo` whose subject is `subject`, optionally only those of
        /// `artifact_type`, ordered by digest.
        async fn referrers(
            &self,
            repo: &RepoName,
            subject: &Digest,
            artifact_type: Option<&str>,
        ) -> Result<Vec<Referrer>, MetaError>;

        /// Every (repository, digest) that a stored manifest references or that is linked, and
        /// every blob digest the store records, for `berth fsck`: (digest, size) of all blob rows.
        async fn all_blobs(&self) -> Result<Vec<(Digest, u64)>, MetaError>;

        /// Every manifest (repository, digest) with its bytes, for `berth fsck` to re-check.
        async fn all_manifests(&self) -> Result<Vec<(RepoName, ManifestRecord)>, MetaError>;
    }
}

store_trait! {
    /// Upload sessions: their offset, hash state and store state, and the write lease that
    /// makes one request at a time their writer. Every method is one transaction.
    pub trait UploadStore {
        /// Creates an upload session (creating the repository if needed).
        async fn upload_create(&self, rec: &UploadRecord) -> Result<(), MetaError>;

        /// The upload session `id` of `repo`, if any.
        async fn upload_get(
            &self,
            repo: &RepoName,
            id: &str,
        ) -> Result<Option<UploadRecord>, MetaError>;

        /// Takes the write lease of session `id` of `repo` for `lease` (a token unique to the
        /// caller) until `until` (unix ms), if no other lease is held at `now`, and returns the
        /// session as it stands, in one statement: the compare-and-swap that makes a request the
        /// session's only writer, on every replica, before it writes a byte. Also counts as
        /// activity (`updated_at = now`), so stale-session expiry spares a session being written.
        async fn upload_lease(
            &self,
            repo: &RepoName,
            id: &str,
            lease: &str,
            now: i64,
            until: i64,
        ) -> Result<UploadLease, MetaError>;

        /// Extends a held lease to `until` (and `updated_at`); `false` if `lease` no longer
        /// holds it (the session was deleted, or the lease expired and was taken).
        async fn upload_renew(&self, id: &str, lease: &str, until: i64) -> Result<bool, MetaError>;

        /// Gives up a held lease without advancing (a request that failed before acknowledging).
        async fn upload_release(&self, id: &str, lease: &str) -> Result<(), MetaError>;

        /// Replaces the session's offset, hash state, store state and `updated_at` and releases
        /// the lease, if `lease` still holds it and the offset is still `expected_offset`;
        /// `UploadConflict` otherwise (or if it is gone).
        async fn upload_advance(
            &self,
            rec: &UploadRecord,
            expected_offset: u64,
            lease: &str,
        ) -> Result<(), MetaError>;

        /// Removes a session; `false` if it was not there.
        async fn upload_delete(&self, id: &str) -> Result<bool, MetaError>;

        /// Number of open upload sessions (for the `berth_upload_sessions_open` gauge).
        async fn upload_count(&self) -> Result<u64, MetaError>;
    }
}

store_trait! {
    /// Garbage collection (module `gc`). Claims and tombstones: a blob row that is live and
    /// not tombstoned has its bytes in blob storage; GC tombstones a row (in a transaction
    /// that re-checks it has no link, no reference and no claim younger than the grace
    /// period), then deletes the bytes, then the row. A tombstone is never lifted. Every
    /// method is one transaction.
    pub trait GcStore {
        /// Claims `digest` before an upload commits its bytes: creates the row (not yet live)
        /// if there is none, refreshes `claimed_at` otherwise. `Deleting` if it is tombstoned.
        async fn blob_claim(&self, digest: &Digest) -> Result<BlobClaim, MetaError>;

        /// After the bytes of `digest` are committed: makes the claimed row live with `size`,
        /// links it into `repo` (creating the repository) and removes the upload session
        /// `upload` if given, in one transaction. `ClaimLost` (changing nothing) if the row is
        /// tombstoned, gone, or of another generation than `generation`.
        async fn upload_complete(
            &self,
            repo: &RepoName,
            digest: &Digest,
            size: u64,
            generation: i64,
            upload: Option<&str>,
        ) -> Result<(), MetaError>;

        /// Mount without `from`: links `digest` into `repo` if its row is live, not tombstoned
        /// and linked somewhere; its size, or `None` (nothing changed).
        async fn blob_mount_any(
            &self,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Option<u64>, MetaError>;

        /// Like [`blob_in_repo`](RegistryStore::blob_in_repo), and a claim: a link last claimed before
        /// `stale_before` (unix ms) is claimed again now, and if GC removed it meanwhile the
        /// answer is `None`. Fresh links cost no write.
        async fn link_claim(
            &self,
            repo: &RepoName,
            digest: &Digest,
            stale_before: i64,
        ) -> Result<Option<u64>, MetaError>;

        /// Whether manifest `digest` is in `repo`, and a claim: one last claimed before
        /// `stale_before` (unix ms) is claimed again now (a client that found it by digest may
        /// reference it from an index next). Fresh manifests cost no write.
        async fn manifest_claim(
            &self,
            repo: &RepoName,
            digest: &Digest,
            stale_before: i64,
        ) -> Result<bool, MetaError>;

        /// Examines up to `limit` GC candidates with id greater than `after`: deletes the
        /// manifests and links that are garbage under `pass` and tombstones the blobs that are
        /// (each re-checked in the transaction). Candidates still too young stay queued; the
        /// rest are removed. With `dry_run`, examines every candidate from `after` on
        /// (cascades included) up to `limit` and changes nothing.
        async fn gc_collect(
            &self,
            pass: &GcPass,
            after: i64,
            limit: u32,
            dry_run: bool,
        ) -> Result<GcBatch, MetaError>;

        /// Tombstoned blobs (from this run or an interrupted one), at most `limit`.
        async fn gc_tombstones(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetaError>;

        /// Removes the rows of tombstoned blobs whose bytes are deleted; rows not tombstoned
        /// are left alone. Returns how many went.
        async fn gc_forget(&self, digests: &[Digest]) -> Result<u64, MetaError>;

        /// Storage verification found bytes of `digest` that no row records. Records when it
        /// was first seen; once that is before `seen_before` (unix ms) and still no row
        /// exists, tombstones it (a row that claims will see) and returns `true`: the caller
        /// deletes the bytes, then calls [`gc_forget`](Self::gc_forget).
        async fn gc_orphan(&self, digest: &Digest, seen_before: i64) -> Result<bool, MetaError>;

        /// Upload sessions not advanced since `before` (unix ms), oldest first, at most `limit`.
        async fn uploads_stale(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>, MetaError>;

        /// The settings every replica shares.
        async fn gc_settings(&self) -> Result<GcSettings, MetaError>;

        /// Sets (or clears, with `None`) the schedule that overrides the configuration file's.
        async fn gc_set_schedule(&self, schedule: Option<&str>) -> Result<(), MetaError>;

        /// Sets (`Some((since, by))`) or clears the shared read-only flag of a read-only GC.
        async fn gc_set_read_only(&self, since: Option<(i64, &str)>) -> Result<(), MetaError>;

        /// Inserts (`id == 0`) or updates a run record; returns its id.
        async fn gc_run_save(&self, run: &GcRun) -> Result<i64, MetaError>;

        /// The last `limit` runs, newest first.
        async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>, MetaError>;
    }
}

/// Every registry metadata trait, as the registry's flows use them together: one value
/// (`Arc<dyn MetaStore>`) that a backend or a wrapper implements trait by trait. The job
/// leases ([`LeaseStore`]) live in the same database.
pub trait MetaStore:
    RegistryStore
    + UploadStore
    + GcStore
    + LeaseStore
    + TrustStore
    + PolicyStore
    + SignatureStore
    + ReplicaStore
{
    /// "sqlite" or "postgres".
    fn kind(&self) -> &'static str;
}

impl<S: MetaStore + ?Sized> MetaStore for instrument::Instrumented<S> {
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }
}
