//! The OCI vocabulary shared by every other crate: validated newtypes for digests,
//! repository names, tags and references, media types, manifest and index parsing with
//! the spec's validation rules, and the distribution spec's error codes.
//!
//! Pure: no IO and no async. Everything here is a function of bytes and strings, so it is
//! tested with tables and property tests and fuzzed directly.
//!
//! - [`digest`]: `Digest` (sha256 / sha512) and a resumable, serialisable hasher.
//! - [`name`]: `RepoName`, `Tag`, `Reference`.
//! - [`media`]: the media types the registry knows.
//! - [`manifest`]: parsing and validating image manifests, indexes and artifacts.
//! - [`error`]: the spec's error codes.
//! - [`newtype`]: `text_newtype!` and `string_form!`, the impls every validated string type
//!   shares.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;
pub mod newtype;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use error::ErrorCode;
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{is_valid_account_name, NameError, Reference, RepoName, Tag};
