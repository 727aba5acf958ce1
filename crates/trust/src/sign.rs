//! The server's signing: the snapshot and timestamp roles it manages, with ECDSA P-256
//! keys (raw `r||s` over SHA-256, RFC 6979 nonces), written as canonical JSON.

use crate::canonical;
use crate::keys::{KeyType, PublicKey};
use crate::metadata::{Common, FileMeta, RoleName, Signature, SignedFile, Snapshot, Timestamp};
use chrono::{DateTime, Duration, Utc};
use p256::ecdsa::SigningKey;
use std::collections::BTreeMap;

/// How long what the server signs stays valid (Notary's defaults).
pub const SNAPSHOT_LIFETIME: Duration = Duration::days(3 * 365);
pub const TIMESTAMP_LIFETIME: Duration = Duration::days(14);

/// A private key the server holds for one role of one GUN.
#[derive(Clone)]
pub struct ServerKey {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("key_id", &self.public.key_id())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// The key whose private scalar is `secret` (32 bytes).
    pub fn from_secret(secret: &[u8]) -> Result<ServerKey, crate::keys::KeyError> {
        let signing = SigningKey::from_slice(secret)
            .map_err(|e| crate::keys::KeyError::Malformed("ecdsa", e.to_string()))?;
        Ok(ServerKey::from_signing(signing))
    }

    pub fn from_signing(signing: SigningKey) -> ServerKey {
        use p256::pkcs8::EncodePublicKey;
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        ServerKey {
            signing,
            public: PublicKey::new(KeyType::Ecdsa, spki),
        }
    }

    /// The private scalar, to be stored encrypted.
    pub fn secret(&self) -> Vec<u8> {
        self.signing.to_bytes().to_vec()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        use signature::Signer;
        let sig: p256::ecdsa::Signature = self.signing.sign(msg);
        Signature {
            keyid: self.public.key_id(),
            method: "ecdsa".into(),
            sig: sig.to_bytes().to_vec(),
        }
    }
}

/// Signs `signed` with `key` and parses the file back (so its bytes are what is stored).
fn sign_file<T: crate::metadata::Role + serde::Serialize>(
    signed: &T,
    key: &ServerKey,
) -> SignedFile<T> {
    // Every field of these roles has a canonical form (integers, strings, maps).
    let value = serde_json::to_value(signed).unwrap_or_default();
    let canonical = canonical::to_vec(&value).unwrap_or_default();
    let sig = key.sign(&canonical);
    let file = serde_json::json!({"signed": value, "signatures": [sig]});
    let bytes = canonical::to_vec(&file).unwrap_or_default();
    SignedFile::parse(&bytes).expect("a file this module wrote parses")
}

/// The next version of a role: one past `previous` (the first is 1).
fn next(kind: &str, previous: Option<&Common>, expires: DateTime<Utc>) -> Common {
    Common {
        kind: kind.into(),
        expires,
        version: previous.map_or(1, |p| p.version.saturating_add(1)),
    }
}

/// A snapshot naming `files` (role -> stored bytes) over `previous`: the previous entries
/// kept, those of `files` replaced, the version one past the previous.
pub fn snapshot(
    previous: Option<&Snapshot>,
    files: &BTreeMap<RoleName, Vec<u8>>,
    key: &ServerKey,
    now: DateTime<Utc>,
) -> SignedFile<Snapshot> {
    let mut meta = previous.map(|p| p.meta.clone()).unwrap_or_default();
    for (role, bytes) in files {
        meta.insert(role.as_str().to_string(), FileMeta::of(bytes));
    }
    let prev = previous.map(|p| &p.common);
    let common = next("Snapshot", prev, now + SNAPSHOT_LIFETIME);
    sign_file(&Snapshot { common, meta }, key)
}

/// A timestamp naming `snapshot`, the version one past `previous`.
pub fn timestamp(
    previous: Option<&Timestamp>,
    snapshot: &[u8],
    key: &ServerKey,
    now: DateTime<Utc>,
) -> SignedFile<Timestamp> {
    let mut meta = BTreeMap::new();
    meta.insert(RoleName::SNAPSHOT.to_string(), FileMeta::of(snapshot));
    let prev = previous.map(|p| &p.common);
    let common = next("Timestamp", prev, now + TIMESTAMP_LIFETIME);
    sign_file(&Timestamp { common, meta }, key)
}
