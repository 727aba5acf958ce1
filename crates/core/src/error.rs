//! Domain errors of registry operations. Each says what happened; the HTTP layer decides
//! the status code and wire code in one `match`.

use berth_blob::BlobError;
use berth_meta::MetaError;
use berth_oci::{Digest, ManifestError, NameError};

/// What went wrong in a registry operation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("invalid repository name: {0}")]
    NameInvalid(NameError),
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("provided digest {expected} did not match uploaded content {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("manifest of type {0} is not among the types the client accepts")]
    ManifestNotAcceptable(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(ManifestError),
    #[error("manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest is larger than the {0} byte limit")]
    ManifestTooLarge(usize),
    #[error("{0}")]
    SizeInvalid(String),
    /// A chunk that does not start where the upload stands.
    #[error("chunk out of order: the upload stands at offset {offset}")]
    RangeInvalid { offset: u64 },
    /// A blob read range outside the blob.
    #[error("requested range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The request body ended early or failed.
    #[error("request body failed: {0}")]
    BodyFailed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("registry is read-only: {0}")]
    ReadOnly(String),
    /// An upload met garbage collection deleting the same digest: retry.
    #[error("{0}")]
    Collecting(String),
    /// A signature policy in `enforce` mode refused the manifest.
    #[error("{0}")]
    PolicyDenied(String),
    #[error(transparent)]
    Meta(MetaError),
    #[error(transparent)]
    Blob(BlobError),
}

impl From<MetaError> for CoreError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingBlob(d) | MetaError::MissingManifest(d) => {
                CoreError::ManifestBlobUnknown(d)
            }
            e @ MetaError::BlobSizeMismatch { .. } => {
                CoreError::ManifestInvalid(berth_oci::ManifestError::Invalid(e.to_string()))
            }
            other => CoreError::Meta(other),
        }
    }
}

impl From<BlobError> for CoreError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => CoreError::BlobUnknown,
            BlobError::UploadNotFound(_) => CoreError::UploadUnknown,
            BlobError::Source(e) => CoreError::BodyFailed(e.to_string()),
            other => CoreError::Blob(other),
        }
    }
}

impl CoreError {
    /// Whether this is the server's fault (to be logged, answered with 500) rather than the
    /// client's.
    pub fn is_internal(&self) -> bool {
        matches!(self, CoreError::Meta(_) | CoreError::Blob(_))
    }
}
