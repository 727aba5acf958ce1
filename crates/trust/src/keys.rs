//! TUF public keys as Notary writes them, their key ids, and signature verification.
//!
//! A key is `{"keytype": T, "keyval": {"public": <base64>, "private": null}}`. `ecdsa` and
//! `rsa` hold a DER SubjectPublicKeyInfo, `ecdsa-x509` and `rsa-x509` a PEM certificate
//! (chain), `ed25519` the raw 32 bytes. The key id is the lowercase hex SHA-256 of the
//! canonical JSON of that object with `private` null, so the same key has a different id
//! as `ecdsa` and as `ecdsa-x509`: a signer's identity is its SPKI ([`PublicKey::spki`]).

use crate::canonical;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The key types Notary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "ecdsa")]
    Ecdsa,
    #[serde(rename = "ecdsa-x509")]
    EcdsaX509,
    #[serde(rename = "rsa")]
    Rsa,
    #[serde(rename = "rsa-x509")]
    RsaX509,
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ecdsa => "ecdsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::Rsa => "rsa",
            KeyType::RsaX509 => "rsa-x509",
            KeyType::Ed25519 => "ed25519",
        }
    }

    pub fn is_x509(self) -> bool {
        matches!(self, KeyType::EcdsaX509 | KeyType::RsaX509)
    }
}

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("malformed {0} key: {1}")]
    Malformed(&'static str, String),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("signature method {method} does not fit a {keytype} key")]
    MethodMismatch {
        method: String,
        keytype: &'static str,
    },
    #[error("signature does not verify")]
    BadSignature,
}

/// A public key as it appears in TUF metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub keytype: KeyType,
    /// The decoded `keyval.public`.
    pub public: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct KeyJson {
    keytype: KeyType,
    keyval: KeyVal,
}

#[derive(Serialize, Deserialize)]
struct KeyVal {
    #[serde(with = "crate::b64")]
    public: Vec<u8>,
    // Public keys in metadata carry `null` here; whatever a client sent is never kept.
    #[serde(default, skip_deserializing)]
    private: Option<()>,
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        KeyJson {
            keytype: self.keytype,
            keyval: KeyVal {
                public: self.public.clone(),
                private: None,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let k = KeyJson::deserialize(d)?;
        Ok(PublicKey {
            keytype: k.keytype,
            public: k.keyval.public,
        })
    }
}

/// The SPKI algorithm a key holds.
enum Spki {
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    pub fn new(keytype: KeyType, public: Vec<u8>) -> PublicKey {
        PublicKey { keytype, public }
    }

    /// The key id: hex SHA-256 of the key's canonical JSON with `private` null.
    pub fn key_id(&self) -> String {
        let value = serde_json::json!({
            "keytype": self.keytype.as_str(),
            "keyval": {"private": null, "public": B64.encode(&self.public)},
        });
        // Strings only: the canonical form always exists.
        let bytes = canonical::to_vec(&value).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// The DER SubjectPublicKeyInfo: the key's identity, the same whatever its key type
    /// (an `ecdsa-x509` certificate's key is the `ecdsa` key of the same SPKI).
    pub fn spki(&self) -> Result<Vec<u8>, KeyError> {
        match self.keytype {
            KeyType::Ecdsa | KeyType::Rsa => Ok(self.public.clone()),
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                let chain = crate::x509::CertChain::from_pem(&self.public)?;
                Ok(chain.leaf_spki().to_vec())
            }
            KeyType::Ed25519 => {
                let key = ed25519_key(&self.public)?;
                use ed25519_dalek::pkcs8::EncodePublicKey;
                key.to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .map_err(|e| KeyError::Malformed("ed25519", e.to_string()))
            }
        }
    }

    fn verifier(&self) -> Result<Spki, KeyError> {
        use p256::pkcs8::DecodePublicKey;
        let name = self.keytype.as_str();
        match self.keytype {
            KeyType::Ed25519 => ed25519_key(&self.public).map(Spki::Ed25519),
            KeyType::Ecdsa | KeyType::EcdsaX509 => {
                let spki = self.spki()?;
                p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
                    .map(Spki::P256)
                    .map_err(|e| KeyError::Unsupported(format!("{name} key is not on P-256 ({e})")))
            }
            KeyType::Rsa | KeyType::RsaX509 => {
                let spki = self.spki()?;
                let key = rsa::RsaPublicKey::from_public_key_der(&spki)
                    .map_err(|e| KeyError::Malformed("rsa", e.to_string()))?;
                use rsa::traits::PublicKeyParts;
                if key.n().bits() < 2048 {
                    return Err(KeyError::Unsupported(format!(
                        "rsa key of {} bits (at least 2048)",
                        key.n().bits()
                    )));
                }
                Ok(Spki::Rsa(key))
            }
        }
    }

    /// `Err` unless this registry can verify signatures with the key.
    pub fn check(&self) -> Result<(), KeyError> {
        self.verifier().map(|_| ())
    }

    /// Checks `sig` over `msg` with `method` as Notary does: `ecdsa` is a raw `r||s` over
    /// SHA-256, `eddsa` Ed25519, `rsapss` PSS with SHA-256 and a 32-byte salt,
    /// `rsapkcs1v15` PKCS#1 v1.5 with SHA-256.
    pub fn verify(&self, method: &str, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        use signature::Verifier;
        let mismatch = || KeyError::MethodMismatch {
            method: method.to_string(),
            keytype: self.keytype.as_str(),
        };
        let ok = match (self.verifier()?, method.to_ascii_lowercase().as_str()) {
            (Spki::P256(key), "ecdsa") => {
                let sig =
                    p256::ecdsa::Signature::from_slice(sig).map_err(|_| KeyError::BadSignature)?;
                key.verify(msg, &sig).is_ok()
            }
            (Spki::Ed25519(key), "eddsa") => {
                let sig = ed25519_dalek::Signature::from_slice(sig)
                    .map_err(|_| KeyError::BadSignature)?;
                key.verify(msg, &sig).is_ok()
            }
            (Spki::Rsa(key), "rsapss") => {
                let sig = rsa::pss::Signature::try_from(sig).map_err(|_| KeyError::BadSignature)?;
                rsa::pss::VerifyingKey::<Sha256>::new(key)
                    .verify(msg, &sig)
                    .is_ok()
            }
            (Spki::Rsa(key), "rsapkcs1v15") => {
                let sig =
                    rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| KeyError::BadSignature)?;
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                    .verify(msg, &sig)
                    .is_ok()
            }
            _ => return Err(mismatch()),
        };
        ok.then_some(()).ok_or(KeyError::BadSignature)
    }
}

fn ed25519_key(raw: &[u8]) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| KeyError::Malformed("ed25519", format!("{} bytes, not 32", raw.len())))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|e| KeyError::Malformed("ed25519", e.to_string()))
}
