//! The key-encryption key: 32 bytes that seal every private key Berth keeps in its stores
//! (the trust service's snapshot and timestamp keys, the token service's signing keys).
//! Never stored in a database: it comes from `keys.kek_file`, the same on every replica.
//!
//! Sealing is AES-256-GCM with a random nonce per secret and the secret's place bound as
//! associated data (its kind, repository, key id), so a sealed secret copied into another
//! row does not open there.

use std::sync::Arc;

#[derive(Clone)]
pub struct Kek(Arc<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// A sealed secret that does not open: another key-encryption key sealed it, it was moved
/// from the place it was sealed for, or it is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "does not open with this key-encryption key (a different kek_file than the one it was \
     sealed with?)"
)]
pub struct Unsealable;

const NONCE: usize = 12;

impl Kek {
    pub fn new(bytes: [u8; 32]) -> Kek {
        Kek(Arc::new(bytes))
    }

    /// 32 random bytes.
    pub fn generate() -> Kek {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Kek::new(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> aes_gcm::Aes256Gcm {
        use aes_gcm::KeyInit;
        aes_gcm::Aes256Gcm::new(self.0.as_slice().into())
    }

    /// `secret` sealed for the place named by `bound` (parts that cannot contain a newline,
    /// such as a kind, a repository and a key id): nonce then ciphertext and tag.
    pub fn seal(&self, bound: &[&str], secret: &[u8]) -> Vec<u8> {
        use aes_gcm::aead::{Aead, AeadCore, Payload};
        let nonce = aes_gcm::Aes256Gcm::generate_nonce(&mut rand::rngs::OsRng);
        let aad = bound.join("\n");
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: secret,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message of a key's size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The secret sealed for `bound`.
    pub fn open(&self, bound: &[&str], sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        use aes_gcm::aead::{Aead, Payload};
        if sealed.len() < NONCE {
            return Err(Unsealable);
        }
        let (nonce, msg) = sealed.split_at(NONCE);
        let aad = bound.join("\n");
        self.cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_only_where_and_with_what_it_was_sealed() {
        let kek = Kek::generate();
        let sealed = kek.seal(&["org/app", "abc"], b"secret");
        assert_eq!(kek.open(&["org/app", "abc"], &sealed).unwrap(), b"secret");
        assert_eq!(kek.open(&["org/app", "abd"], &sealed), Err(Unsealable));
        assert_eq!(kek.open(&["org/app\nabc"], &sealed).unwrap(), b"secret");
        assert_eq!(
            Kek::generate().open(&["org/app", "abc"], &sealed),
            Err(Unsealable)
        );
        assert_eq!(
            kek.open(&["org/app", "abc"], &sealed[..11]),
            Err(Unsealable)
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(kek.open(&["org/app", "abc"], &flipped), Err(Unsealable));
    }
}
