//! Docker Content Trust's metadata (Notary v1, a dialect of TUF), with no IO: bytes in,
//! verdicts out.
//!
//! - [`canonical`]: canonical JSON as the Go clients write it (what signatures cover).
//! - [`keys`]: public keys, key ids, signature verification (ECDSA P-256, RSA, Ed25519,
//!   certificates).
//! - [`x509`]: the certificates of root keys, and Go's PEM form of them.
//! - [`metadata`]: the role files (root, targets and delegations, snapshot, timestamp).
//! - [`verify`]: signature thresholds and the certificate rules for root keys.
//! - [`sign`]: the roles the server signs (snapshot, timestamp) with the keys it holds.
//! - [`update`]: an update of one GUN validated as Notary's server does, giving every file
//!   to store.
//! - [`artifacts`]: cosign and Notation signature artifacts (OCI manifests) recognised and
//!   verified against registered keys and certificates.

pub mod artifacts;
mod b64;
pub mod canonical;
pub mod keys;
pub mod metadata;
pub mod sign;
#[cfg(feature = "testing")]
pub mod testing;
pub mod update;
pub mod verify;
pub mod x509;

pub use keys::{KeyError, KeyType, PublicKey};
pub use metadata::{RoleName, SignedFile};
pub use sign::ServerKey;
pub use update::{Current, HeldKeys, NewFile, UpdateError};
