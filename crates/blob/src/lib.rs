//! Blob bytes: the [`BlobStore`] trait and its implementations.
//!
//! A `BlobStore` knows bytes and keys, never manifests or repositories. Committed blobs are
//! content-addressed by digest (one copy however many repositories link it); upload data
//! lives under an upload id until it is committed under its digest or aborted. Every
//! method that acknowledges data returns only once the data is durable (fsync, or the
//! object store's acknowledgement), because the registry acknowledges to its client right
//! after.
//!
//! Upload progress that a store needs to continue an upload (an S3 multipart id and part
//! list, say) is returned as an opaque [`UploadState`]; the caller keeps it in the metadata
//! store with the upload's offset and hash state, so another process can continue.
//!
//! - [`fs`]: files under a directory; an upload's file is fsynced on every append and
//!   renamed to its content path on commit.
//! - [`memory`]: in-process, for tests of the layers above.
//! - [`s3`]: any S3-compatible object store through `object_store`'s multipart API.
//! - `conformance` (feature `conformance`, on only for tests): the one test suite every
//!   implementation passes, and the `blob_store_conformance!` macro that runs it. It is
//!   not compiled into the binary.
//! - [`instrument`]: [`Instrumented`](instrument::Instrumented), the wrapper that records
//!   the latency and errors of every call; `berth` wraps the store it opens.
//! - `keys` (private): the key layout and upload-id grammar the stores share.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod fs;
pub mod instrument;
mod keys;
pub mod memory;
pub mod s3;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of byte chunks, as read from a request body or a stored blob.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Errors of a blob store. `Io` and `Backend` are the store's own failures; the others are
/// the caller's mistakes or races.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("upload {0} not found in blob storage")]
    UploadNotFound(String),
    #[error("requested range is not satisfiable")]
    Range,
    /// The incoming data stream failed (client went away, body shorter than announced).
    #[error("reading the request body failed: {0}")]
    Source(std::io::Error),
    #[error("blob storage i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob storage backend error: {0}")]
    Backend(String),
}

/// Store-specific progress of an upload, opaque to callers, kept by them in the metadata
/// store between requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadState(pub String);

/// What a commit does when bytes are already stored under the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Keep them and drop the upload's (deduplication): the caller knows they were
    /// committed by an upload that hashed them.
    Keep,
    /// Replace them, atomically, with the upload's own bytes, which the caller has hashed:
    /// stored bytes nobody verified (crash or lost-claim leftovers) are never trusted.
    Replace,
}

/// A committed blob being read.
pub struct BlobRead {
    /// Total size of the blob (not of the range).
    pub size: u64,
    /// The bytes asked for.
    pub stream: ByteStream,
}

/// Byte-level storage for blobs and upload data.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A short name for logs and health output ("filesystem", "s3").
    fn kind(&self) -> &'static str;

    /// Checks that the store is reachable and writable enough to serve.
    async fn ping(&self) -> Result<(), BlobError>;

    /// Size of a committed blob, or `None`.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;

    /// Reads a committed blob, or the byte range `start..end` of it (end exclusive; the
    /// caller has checked the range against the size it knows). `NotFound` if absent.
    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError>;

    /// Deletes a committed blob; `false` if it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// Every committed blob with its size (for fsck and storage verification). Entries
    /// whose key is not a valid digest are reported by [`BlobStore::list_foreign`].
    fn list(&self) -> BoxStream<'static, Result<(Digest, u64), BlobError>>;

    /// Keys in the store that are neither a committed blob nor upload data (crash leftovers,
    /// stray files). Each is a store-relative key.
    fn list_foreign(&self) -> BoxStream<'static, Result<String, BlobError>>;

    /// Removes a key reported by [`BlobStore::list_foreign`].
    async fn delete_foreign(&self, key: &str) -> Result<(), BlobError>;

    /// Upload ids that have data in the store, with the age of their last write in seconds.
    fn list_uploads(&self) -> BoxStream<'static, Result<(String, u64), BlobError>>;

    /// Creates empty upload data for `id` (an id made by the caller: `[A-Za-z0-9-]{1,64}`).
    async fn upload_start(&self, id: &str) -> Result<UploadState, BlobError>;

    /// Appends the whole of `data` at `offset`, which is the length acknowledged so far.
    /// Anything the store holds past `offset` (from an append that failed half way) is
    /// discarded first. Returns the new state and the number of bytes appended, once they
    /// are durable. On error nothing past `offset` counts.
    async fn upload_append(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
        data: ByteStream,
    ) -> Result<(UploadState, u64), BlobError>;

    /// Makes the first `len` bytes of the upload the blob `digest` (the caller has checked
    /// the digest), durably, and removes the upload data. If the blob already exists, what
    /// happens is `existing`'s: the upload data is simply removed ([`Existing::Keep`]), or
    /// it replaces the stored bytes in one atomic step ([`Existing::Replace`]; readers see
    /// the old bytes or the new, never a mixture or nothing). A commit retried after it
    /// succeeded (the upload data is gone, the blob is there) succeeds.
    async fn upload_commit(
        &self,
        id: &str,
        state: &UploadState,
        len: u64,
        digest: &Digest,
        existing: Existing,
    ) -> Result<(), BlobError>;

    /// Removes an upload's data; succeeds if there is none.
    async fn upload_abort(&self, id: &str, state: &UploadState) -> Result<(), BlobError>;
}
