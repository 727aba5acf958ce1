//! Metadata made and signed by tests (feature `testing`: test support that panics by
//! design, off in the binary): root certificates for a GUN (rcgen), ECDSA P-256 keys, and
//! files signed as the Go clients sign them; and (`signers`) cosign and Notation
//! signature artifacts as their tools write them.

use crate::canonical;
use crate::metadata::{Common, DelegationRole, Delegations, FileMeta, RoleKeys, Root, Targets};
use crate::{HeldKeys, KeyType, PublicKey, ServerKey};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use p256::ecdsa::SigningKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;

mod signers;
pub use signers::*;

pub const GUN: &str = "registry.example:5000/team/app";

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A signing key and the public key it is listed as.
#[derive(Clone)]
pub struct Signer {
    pub key: SigningKey,
    pub public: PublicKey,
}

impl Signer {
    pub fn id(&self) -> String {
        self.public.key_id()
    }

    /// A plain `ecdsa` key.
    pub fn ecdsa() -> Signer {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let public = ServerKey::from_signing(key.clone()).public().clone();
        Signer { key, public }
    }

    /// An `ecdsa-x509` key: a self-signed certificate whose common name is `cn`.
    pub fn cert(cn: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&pair).unwrap();
        use p256::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_der(&pair.serialize_der()).unwrap();
        let chain = crate::x509::CertChain::from_pem(cert.pem().as_bytes()).unwrap();
        Signer {
            key,
            public: PublicKey::new(KeyType::EcdsaX509, chain.to_go_pem()),
        }
    }

    pub fn held(&self) -> ServerKey {
        ServerKey::from_signing(self.key.clone())
    }
}

/// `signed` signed by each of `signers`, written as canonical JSON.
pub fn sign(signed: &impl serde::Serialize, signers: &[&Signer]) -> Vec<u8> {
    let value = serde_json::to_value(signed).unwrap();
    sign_value(value, signers)
}

pub fn sign_value(value: Value, signers: &[&Signer]) -> Vec<u8> {
    use signature::Signer as _;
    let msg = canonical::to_vec(&value).unwrap();
    let sigs: Vec<Value> = signers
        .iter()
        .map(|s| {
            let sig: p256::ecdsa::Signature = s.key.sign(&msg);
            json!({"keyid": s.id(), "method": "ecdsa",
                   "sig": base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())})
        })
        .collect();
    canonical::to_vec(&json!({"signed": value, "signatures": sigs})).unwrap()
}

pub fn common(kind: &str, version: i64, expires: DateTime<Utc>) -> Common {
    Common {
        kind: kind.into(),
        expires,
        version,
    }
}

/// The parties of one repository: root, targets, and the server's snapshot and timestamp.
pub struct Repo {
    pub root: Signer,
    pub targets: Signer,
    pub snapshot: Signer,
    pub timestamp: Signer,
}

/// A repository of [`GUN`].
impl Default for Repo {
    fn default() -> Repo {
        Repo::of(GUN)
    }
}

impl Repo {
    /// A repository of `gun`: its root key a certificate for it.
    pub fn of(gun: &str) -> Repo {
        Repo {
            root: Signer::cert(gun),
            targets: Signer::ecdsa(),
            snapshot: Signer::ecdsa(),
            timestamp: Signer::ecdsa(),
        }
    }

    /// The keys the server holds: snapshot and timestamp.
    pub fn held(&self) -> HeldKeys {
        HeldKeys {
            snapshot: vec![self.snapshot.held()],
            timestamp: vec![self.timestamp.held()],
        }
    }

    /// A root of `version` listing each role's one key, threshold 1.
    pub fn root(&self, version: i64) -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (name, s) in [
            ("root", &self.root),
            ("targets", &self.targets),
            ("snapshot", &self.snapshot),
            ("timestamp", &self.timestamp),
        ] {
            keys.insert(s.id(), s.public.clone());
            roles.insert(
                name.to_string(),
                RoleKeys {
                    keyids: vec![s.id()],
                    threshold: 1,
                },
            );
        }
        Root {
            common: common("Root", version, now() + Duration::days(3650)),
            consistent_snapshot: false,
            keys,
            roles,
        }
    }

    /// Targets of `version` naming `tags` (tag -> manifest bytes).
    pub fn targets(&self, version: i64, tags: &[(&str, &[u8])]) -> Targets {
        Targets {
            common: common("Targets", version, now() + Duration::days(1095)),
            targets: tags
                .iter()
                .map(|(t, b)| (t.to_string(), FileMeta::of(b)))
                .collect(),
            delegations: Delegations::default(),
        }
    }
}

/// Declares in `parent` the delegation `name` to `signer` for `paths`.
pub fn delegate(parent: &mut Targets, name: &str, signer: &Signer, paths: &[&str]) {
    let d = &mut parent.delegations;
    d.keys.insert(signer.id(), signer.public.clone());
    d.roles.push(DelegationRole {
        name: name.into(),
        keyids: vec![signer.id()],
        threshold: 1,
        paths: paths.iter().map(|p| p.to_string()).collect(),
    });
}
