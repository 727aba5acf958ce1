//! Access tokens and refresh tokens: random secrets shown once, stored only as a hash.
//!
//! A secret looks like `berth_<id>_<secret>`: `id` is 16 lowercase hex characters (8
//! random bytes) that name the stored row, so a presented token is found with one indexed
//! lookup; `secret` is 64 lowercase hex characters (32 random bytes from the operating
//! system). The whole string is URL-safe, survives double-click selection, and the fixed
//! `berth_` prefix lets secret scanners and log filters recognise it.
//!
//! Only the SHA-256 of the whole token is stored. A slow password hash (argon2) protects
//! low-entropy human passwords against guessing; these secrets carry 256 bits of entropy,
//! so guessing is hopeless whatever the hash, and a plain SHA-256 preimage is out of reach.
//! A fast hash matters because an access token is presented as a password on every Basic
//! authenticated request. Comparison of the hashes is constant time.

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// The prefix of every Berth secret.
pub const PREFIX: &str = "berth_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// Why a presented string is not a Berth secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not `berth_<16 hex>_<64 hex>`. The message never repeats the input.
    #[error("not a berth token")]
    Malformed,
}

/// The public identifier of a secret: the key of its row in the metadata store. Not a
/// secret; may be shown in listings and audit logs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretId(String);

impl SecretId {
    /// Parses 16 lowercase hex characters.
    pub fn parse(s: &str) -> Result<SecretId, SecretError> {
        if s.len() == 2 * ID_BYTES && is_lower_hex(s) {
            Ok(SecretId(s.to_string()))
        } else {
            Err(SecretError::Malformed)
        }
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
berth_oci::text_newtype!(SecretId);
berth_oci::string_form!(SecretId, SecretError, SecretId::parse, SecretId::as_str);

/// The stored form of a secret: SHA-256 of the whole token, serialised as 64 hex
/// characters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    fn of(token: &str) -> SecretHash {
        SecretHash(Sha256::digest(token.as_bytes()).into())
    }
    /// Whether `presented` is the secret this hash was made from, in constant time.
    #[must_use = "a check that is not looked at checks nothing"]
    pub fn verify(&self, presented: &PresentedSecret) -> bool {
        let other = SecretHash::of(&presented.token);
        self.0.ct_eq(&other.0).into()
    }
    /// Reads the hex form kept in the store.
    pub fn from_hex(s: &str) -> Result<SecretHash, SecretError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| SecretError::Malformed)?;
        Ok(SecretHash(b))
    }
    /// The hex form kept in the store.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}
berth_oci::string_form!(
    SecretHash,
    SecretError,
    SecretHash::from_hex,
    SecretHash::to_hex
);
impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A freshly generated secret: `token` is shown to the user once and then dropped;
/// `id` and `hash` are stored.
pub struct NewSecret {
    /// The row key.
    pub id: SecretId,
    /// The full token, `berth_<id>_<secret>`. Never store or log it.
    pub token: String,
    /// What the store keeps.
    pub hash: SecretHash,
}

impl fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Generates a new secret from the operating system's random generator.
pub fn generate() -> NewSecret {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let id = SecretId(hex::encode(id));
    let token = format!("{PREFIX}{id}_{}", hex::encode(secret));
    let hash = SecretHash::of(&token);
    NewSecret { id, token, hash }
}

/// A token as presented by a client (as a password or a refresh token), split so that
/// its row can be looked up by `id` and then checked with [`SecretHash::verify`].
pub struct PresentedSecret {
    /// The row key to look up.
    pub id: SecretId,
    token: String,
}

impl fmt::Debug for PresentedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Whether `s` has the shape of a Berth secret, so that a Basic-auth password can be told
/// apart from an access token without a store lookup.
pub fn looks_like_secret(s: &str) -> bool {
    parse(s).is_ok()
}

/// Splits a presented token into its id and secret; refuses anything else.
pub fn parse(presented: &str) -> Result<PresentedSecret, SecretError> {
    let rest = presented
        .strip_prefix(PREFIX)
        .ok_or(SecretError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(SecretError::Malformed)?;
    let id = SecretId::parse(id)?;
    if secret.len() != 2 * SECRET_BYTES || !is_lower_hex(secret) {
        return Err(SecretError::Malformed);
    }
    Ok(PresentedSecret {
        id,
        token: presented.to_string(),
    })
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generate_parse_verify() {
        let s = generate();
        assert!(s.token.starts_with("berth_"));
        assert_eq!(s.token.len(), 6 + 16 + 1 + 64);
        assert!(s
            .token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let p = parse(&s.token).unwrap();
        assert_eq!(p.id, s.id);
        assert!(s.hash.verify(&p));
        assert!(looks_like_secret(&s.token));
    }

    #[test]
    fn other_secret_does_not_verify() {
        let a = generate();
        let b = generate();
        assert_ne!(a.token, b.token);
        assert_ne!(a.id, b.id);
        assert!(!a.hash.verify(&parse(&b.token).unwrap()));
        // Same id, different secret (a guess against a known id).
        let guess = format!("{PREFIX}{}_{}", a.id, "0".repeat(64));
        assert!(!a.hash.verify(&parse(&guess).unwrap()));
    }

    #[test]
    fn malformed_refused() {
        let s = generate();
        let t = &s.token;
        let bad = [
            String::new(),
            "hunter2".into(),
            t.replacen("berth_", "Berth_", 1),
            t.replacen("berth_", "", 1),
            t[..t.len() - 1].to_string(),
            format!("{t}0"),
            t.to_uppercase(),
            format!("berth_{}{}", s.id, &t[23..]),
            format!("berth_{}_{}", &s.id.as_str()[..15], &t[23..]),
            format!("{}g", &t[..t.len() - 1]),
            format!("berth_{}_{}_", s.id, &t[23..t.len() - 1]),
        ];
        for b in &bad {
            assert_eq!(parse(b).map(|_| ()), Err(SecretError::Malformed), "{b}");
            assert!(!looks_like_secret(b));
        }
    }

    #[test]
    fn hash_is_stored_as_hex_and_debug_hides_secrets() {
        let s = generate();
        let json = serde_json::to_string(&s.hash).unwrap();
        assert_eq!(json.len(), 66);
        let back: SecretHash = serde_json::from_str(&json).unwrap();
        assert!(back.verify(&parse(&s.token).unwrap()));
        assert!(serde_json::from_str::<SecretHash>("\"zz\"").is_err());
        let secret_part = &s.token[23..];
        for d in [
            format!("{s:?}"),
            format!("{:?}", parse(&s.token).unwrap()),
            format!("{:?}", s.hash),
        ] {
            assert!(!d.contains(secret_part), "{d}");
        }
        let id: SecretId = serde_json::from_str(&serde_json::to_string(&s.id).unwrap()).unwrap();
        assert_eq!(id, s.id);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,120}") {
            let _ = parse(&s);
        }
    }
}
