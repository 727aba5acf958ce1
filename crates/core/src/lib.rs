//! The registry's behaviour, independent of HTTP: what a push, a pull, an upload, a mount,
//! a delete or a listing does, in terms of the two stores.
//!
//! - [`registry`]: the [`Registry`] service that the HTTP layer calls; blobs and uploads.
//! - [`manifests`]: manifest put/get/delete, tags, referrers.
//! - [`directory_sync`]: the directory sync applied to accounts and teams, its schedule
//!   and history, and just-in-time accounts of directory users.
//! - [`audit_retention`]: the job that deletes audit events past their retention.
//! - [`gc`]: garbage collection: a run over the metadata store's candidate queue, its
//!   schedule, and the read-only flag replicas follow.
//! - [`jobs`]: background jobs: a name, an interval, a lease for those that run on one
//!   replica at a time, a cancellation token; started, stopped and their leases released
//!   together.
//! - [`policy`]: signature policies, decided on every manifest GET and HEAD;
//!   [`signatures`]: the keys users register and the cosign and Notation signatures
//!   verified against them; [`trust`]: Docker Content Trust (Notary) in process.
//! - [`time`]: now in unix milliseconds, RFC 3339, durations (`90s`, `1h 30m`).
//! - [`cluster`]: the replicas: this one's heartbeat, the cluster's health and issues.
//! - [`status`]: the stores' health and GC's state and history as views for the
//!   operations endpoints (so `http` reaches no store).
//! - [`manage`]: the management service of `/api/v0` and `berth admin`; [`access`]:
//!   authentication, the token service, the access decision, the audit trail.
//! - [`error`]: [`CoreError`], what went wrong in domain terms (the HTTP crate maps it to
//!   the wire, in one place).
//!
//! Invariants kept here:
//! - A blob is linked into a repository only after blob storage has it durably, and a
//!   manifest is stored only when every blob and child manifest it references is linked in
//!   the same repository (checked in the metadata store's transaction).
//! - Upload progress (offset, hash state, blob-store state) is written to the metadata
//!   store before a chunk is acknowledged, so any process on the same stores continues it.

pub mod access;
pub mod audit_retention;
pub mod cluster;
pub mod directory_sync;
pub mod error;
pub mod gc;
pub mod jobs;
pub mod kek;
pub mod manage;
pub mod manifests;
pub mod policy;
pub mod registry;
pub mod signatures;
pub mod status;
pub mod time;
pub mod trust;

pub use access::{Access, AccessConfig, AccessError, Caller, Credentials, Verdict};
pub use error::CoreError;
pub use kek::Kek;
pub use registry::{BlobBody, Registry, RegistryConfig, UploadStatus};
