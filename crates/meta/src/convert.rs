//! Conversions both stores share: the clock, sizes between `u64` and the databases'
//! signed integers, values read back from a database into validated types, and the
//! "first missing reference" rule of `manifest_put`.

use crate::{MetaError, NewManifest};
use berth_oci::{Digest, RepoName};
use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A size or offset as the databases store it (signed 64-bit).
pub(crate) fn to_db(v: u64, what: &str) -> Result<i64, MetaError> {
    i64::try_from(v).map_err(|_| {
        MetaError::Backend(format!("{what} {v} does not fit in a signed 64-bit column"))
    })
}

/// A size or offset read back from a database.
pub(crate) fn from_db(v: i64, what: &str) -> Result<u64, MetaError> {
    u64::try_from(v).map_err(|_| MetaError::Backend(format!("stored {what} {v} is negative")))
}

/// A digest read back from a database.
pub(crate) fn stored_digest(s: &str) -> Result<Digest, MetaError> {
    Digest::parse(s).map_err(|e| MetaError::Backend(format!("stored digest {s:?} is invalid: {e}")))
}

/// A repository name read back from a database.
pub(crate) fn stored_repo(s: &str) -> Result<RepoName, MetaError> {
    RepoName::parse(s)
        .map_err(|e| MetaError::Backend(format!("stored repository name {s:?} is invalid: {e}")))
}

/// The error `manifest_put` returns given which of the manifest's blobs and children the
/// repository has: the first missing blob in the manifest's order, else the first missing
/// child; `None` if nothing is missing.
pub(crate) fn first_missing(
    m: &NewManifest,
    blobs_present: &HashMap<String, i64>,
    children_present: &HashSet<String>,
) -> Option<MetaError> {
    for (i, d) in m.blobs.iter().enumerate() {
        let Some(&stored) = blobs_present.get(d.as_str()) else {
            return Some(MetaError::MissingBlob(d.clone()));
        };
        let stored = u64::try_from(stored).unwrap_or(0);
        if let Some(&declared) = m.blob_sizes.get(i) {
            if declared != stored {
                return Some(MetaError::BlobSizeMismatch {
                    digest: d.clone(),
                    declared,
                    stored,
                });
            }
        }
    }
    m.children
        .iter()
        .find(|d| !children_present.contains(d.as_str()))
        .map(|d| MetaError::MissingManifest(d.clone()))
}

/// Digests as a JSON array of strings, for SQLite's `json_each`.
pub(crate) fn json_array(digests: &[Digest]) -> String {
    let mut out = String::with_capacity(2 + digests.len() * 75);
    out.push('[');
    for (i, d) in digests.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // A validated digest is `algorithm:hex`: nothing in it needs escaping.
        out.push('"');
        out.push_str(d.as_str());
        out.push('"');
    }
    out.push(']');
    out
}
