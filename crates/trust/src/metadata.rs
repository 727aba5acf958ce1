//! Notary's TUF metadata files: `{"signed": {...}, "signatures": [...]}` for the four base
//! roles and delegated targets roles, as the Go clients write them (`_type` capitalised,
//! binary values in base64, `expires` in RFC 3339). A parsed file keeps the bytes it came
//! from (what is stored and hashed) and the canonical bytes of its `signed` object (what
//! its signatures cover).

use crate::b64::Bytes;
use crate::canonical;
use crate::keys::PublicKey;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A role's name: `root`, `targets`, `snapshot`, `timestamp` or a delegation
/// `targets/<name>[/...]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);

/// The longest delegation name Notary accepts.
const MAX_ROLE_NAME: usize = 255;

impl RoleName {
    pub const ROOT: &'static str = "root";
    pub const TARGETS: &'static str = "targets";
    pub const SNAPSHOT: &'static str = "snapshot";
    pub const TIMESTAMP: &'static str = "timestamp";

    /// A base role, or a clean delegation path under `targets/` of `[-a-z0-9_/]`.
    pub fn parse(name: &str) -> Option<RoleName> {
        let base = [Self::ROOT, Self::TARGETS, Self::SNAPSHOT, Self::TIMESTAMP];
        if base.contains(&name) {
            return Some(RoleName(name.to_string()));
        }
        let rest = name.strip_prefix("targets/")?;
        let clean = name.len() <= MAX_ROLE_NAME
            && rest.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
            });
        clean.then(|| RoleName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_delegation(&self) -> bool {
        self.0.starts_with("targets/")
    }

    /// `targets` or one of its delegations: a role that signs targets.
    pub fn is_targets(&self) -> bool {
        self.0 == Self::TARGETS || self.is_delegation()
    }

    /// A delegation's parent (`targets/a/b` -> `targets/a`), `None` for a base role.
    pub fn parent(&self) -> Option<RoleName> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| RoleName(parent.to_string()))
    }

    /// How deep in the targets tree: `targets` 0, `targets/a` 1.
    pub fn depth(&self) -> usize {
        self.0.matches('/').count()
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One signature of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub method: String,
    #[serde(with = "crate::b64")]
    pub sig: Vec<u8>,
}

/// Why a file could not be read as metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("malformed metadata: {0}")]
    Json(String),
    #[error("metadata of type {found} where {expected} was expected")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error(transparent)]
    Canonical(#[from] canonical::CanonicalError),
}

/// A metadata file: its parsed `signed` part, its signatures, and the bytes both came from.
#[derive(Debug, Clone)]
pub struct SignedFile<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
    /// The canonical JSON of the `signed` object: what the signatures cover.
    pub canonical: Vec<u8>,
    /// The file as received: what is stored, served and hashed.
    pub bytes: Vec<u8>,
}

/// The fields every role has.
pub trait Role: DeserializeOwned {
    /// The `_type` it must carry.
    const TYPE: &'static str;
    fn common(&self) -> &Common;
}

/// `_type`, `expires` and `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Common {
    #[serde(rename = "_type")]
    pub kind: String,
    #[serde(with = "rfc3339")]
    pub expires: DateTime<Utc>,
    pub version: i64,
}

#[derive(Deserialize)]
struct Envelope {
    signed: Value,
    signatures: Vec<Signature>,
}

impl<T: Role> SignedFile<T> {
    /// Parses `bytes` as a file of role type `T`.
    pub fn parse(bytes: &[u8]) -> Result<SignedFile<T>, FormatError> {
        let json = |e: serde_json::Error| FormatError::Json(e.to_string());
        let env: Envelope = serde_json::from_slice(bytes).map_err(json)?;
        let canonical = canonical::to_vec(&env.signed)?;
        let signed: T = serde_json::from_value(env.signed).map_err(json)?;
        if signed.common().kind != T::TYPE {
            return Err(FormatError::WrongType {
                expected: T::TYPE,
                found: signed.common().kind.clone(),
            });
        }
        Ok(SignedFile {
            signed,
            signatures: env.signatures,
            canonical,
            bytes: bytes.to_vec(),
        })
    }

    pub fn version(&self) -> i64 {
        self.signed.common().version
    }

    pub fn expires(&self) -> DateTime<Utc> {
        self.signed.common().expires
    }
}

/// A role's keys and threshold in the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    #[serde(deserialize_with = "nullable")]
    pub keyids: Vec<String>,
    pub threshold: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub consistent_snapshot: bool,
    #[serde(deserialize_with = "nullable")]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(deserialize_with = "nullable")]
    pub roles: BTreeMap<String, RoleKeys>,
}

/// `Role` for a role type whose `_type` is its name.
macro_rules! role {
    ($t:ident) => {
        impl Role for $t {
            const TYPE: &'static str = stringify!($t);
            fn common(&self) -> &Common {
                &self.common
            }
        }
    };
}

role!(Root);

/// A target or a file in snapshot / timestamp `meta`: its length and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub length: i64,
    #[serde(deserialize_with = "nullable")]
    pub hashes: BTreeMap<String, Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

impl FileMeta {
    /// The meta of `bytes` as Notary writes it: length, sha256 and sha512.
    pub fn of(bytes: &[u8]) -> FileMeta {
        use sha2::{Digest, Sha256, Sha512};
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".into(), Bytes(Sha256::digest(bytes).to_vec()));
        hashes.insert("sha512".into(), Bytes(Sha512::digest(bytes).to_vec()));
        FileMeta {
            length: bytes.len() as i64,
            hashes,
            custom: None,
        }
    }

    pub fn sha256(&self) -> Option<&[u8]> {
        self.hashes.get("sha256").map(|b| b.0.as_slice())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRole {
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub keyids: Vec<String>,
    pub threshold: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delegations {
    #[serde(default, deserialize_with = "nullable")]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(default, deserialize_with = "nullable")]
    pub roles: Vec<DelegationRole>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default, deserialize_with = "nullable")]
    pub targets: BTreeMap<String, FileMeta>,
    #[serde(default, deserialize_with = "nullable")]
    pub delegations: Delegations,
}

role!(Targets);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub common: Common,
    #[serde(deserialize_with = "nullable")]
    pub meta: BTreeMap<String, FileMeta>,
}

role!(Snapshot);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(flatten)]
    pub common: Common,
    #[serde(deserialize_with = "nullable")]
    pub meta: BTreeMap<String, FileMeta>,
}

role!(Timestamp);

/// A collection Go may write as `null` (a nil slice or map): empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `expires`: any RFC 3339 time on the way in (fractions, offsets), UTC `Z` on the way out.
mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
