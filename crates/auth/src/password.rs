//! Password hashing for local accounts.
//!
//! Passwords are hashed with argon2id (RFC 9106) into a PHC string
//! (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), which carries its own algorithm, parameters
//! and salt, so the metadata store keeps one text column and parameters can be raised
//! later: [`needs_rehash`] says when a stored hash was made with other parameters, and the
//! caller re-hashes on the next successful login. Verification recomputes the hash with
//! the stored parameters and compares in constant time.
//!
//! Hashing is deliberately slow (tens of milliseconds): async callers must run it on a
//! blocking thread.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

/// Why a password could not be hashed or a stored hash could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The stored string is not a PHC string of an argon2 hash.
    #[error("malformed password hash: {0}")]
    Malformed(String),
    /// The configured parameters are outside what argon2 accepts.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    /// Hashing failed for another reason (should not happen with valid parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Cost parameters for new hashes. Plain data so that it can sit in the configuration.
///
/// The default is one of the OWASP recommendations for argon2id, which it rates as equally
/// strong: 7 MiB, 5 passes, 1 lane (the other options trade memory for passes, up to 19 MiB
/// with 2). About 20 ms on a server core: slow for an attacker with a stolen database, cheap
/// enough for `docker login` and Basic auth behind a rate limit. The low-memory option keeps
/// a login from adding 19 MiB to the server's resident memory while it runs (one per
/// concurrent login).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes over memory.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams {
            memory_kib: 7 * 1024,
            iterations: 5,
            parallelism: 1,
        }
    }
}

impl PasswordParams {
    /// The cheapest parameters argon2 accepts; for tests only, never for real accounts.
    pub fn insecure_fast_for_tests() -> Self {
        PasswordParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, PasswordError> {
        let p = Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(Params::DEFAULT_OUTPUT_LEN),
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }
}

/// Hashes `password` with argon2id, a fresh 16-byte random salt and `params`; returns the
/// PHC string to store.
pub fn hash_password(password: &[u8], params: &PasswordParams) -> Result<String, PasswordError> {
    let argon = params.argon2()?;
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon, password, &salt, &mut out).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let out = Output::new(&out).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(format!(
        "${}$v={}$m={},t={},p={}${}${}",
        Algorithm::Argon2id.ident(),
        Version::V0x13 as u32,
        params.memory_kib,
        params.iterations,
        params.parallelism,
        salt.as_str(),
        out
    ))
}

/// Checks `password` against a stored PHC string, in constant time over the hash output.
///
/// Returns `Ok(false)` for a wrong password and an error only when the stored string is
/// unusable. Any argon2 variant is accepted (older hashes stay valid); see [`needs_rehash`].
#[must_use = "a password check that is not looked at checks nothing"]
pub fn verify_password(password: &[u8], phc: &str) -> Result<bool, PasswordError> {
    let parsed = parse_argon2(phc)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(malformed)?,
        None => Version::default(),
    };
    // Takes the output length from the stored hash too.
    let params = Params::try_from(&parsed).map_err(malformed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(PasswordError::Malformed("no salt or no hash".into()));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(malformed)?;
    let mut out = vec![0u8; expected.len()];
    compute(
        &Argon2::new(algorithm, version, params),
        password,
        salt,
        &mut out,
    )
    .map_err(malformed)?;
    let out = Output::new(&out).map_err(malformed)?;
    // `Output`'s equality is constant time.
    Ok(out == expected)
}

/// Spends the same time as a [`verify_password`] with `params` and always returns `false`.
///
/// Call it when the account does not exist (or has no local password), so that the time a
/// login takes does not tell whether a user name exists.
pub fn verify_dummy(password: &[u8], params: &PasswordParams) -> bool {
    if let Ok(argon) = params.argon2() {
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let _ = compute(&argon, password, &[0u8; 16], &mut out);
    }
    false
}

/// Blocks of argon2 memory that an allocation of at least this many always gets a mapping
/// of its own: 32 MiB, glibc malloc's upper bound for its mmap threshold.
const UNMAPPED_BLOCKS: usize = (32 << 20) / Block::SIZE + 1;

/// Runs argon2 into `out` with memory that goes back to the system afterwards.
///
/// The argon2 crate's own hashing allocates exactly its memory cost (19 MiB with the former
/// default).
/// glibc's malloc raises its mmap threshold to the largest mapped block freed (up to
/// 32 MiB) and then serves blocks of that size from the heap, where freed memory stays
/// resident: every thread that checked a password kept 19 MiB for good (four concurrent
/// logins: +100 MiB). So the memory is allocated here with room for more than 32 MiB,
/// which is always a mapping of its own, unmapped when freed; only the blocks argon2 uses
/// are ever written, so only those become resident.
fn compute(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let needed = argon.params().block_count();
    let mut blocks = Vec::with_capacity(needed.max(UNMAPPED_BLOCKS));
    blocks.resize(needed, Block::new());
    argon.hash_password_into_with_memory(password, salt, out, &mut blocks)
}

/// Whether a stored hash should be replaced (after a successful login) because it was not
/// made with argon2id, version 0x13 and exactly `params`. A malformed hash needs a rehash.
pub fn needs_rehash(phc: &str, params: &PasswordParams) -> bool {
    let Ok(parsed) = parse_argon2(phc) else {
        return true;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() || parsed.version != Some(0x13) {
        return true;
    }
    let Ok(stored) = Params::try_from(&parsed) else {
        return true;
    };
    stored.m_cost() != params.memory_kib
        || stored.t_cost() != params.iterations
        || stored.p_cost() != params.parallelism
        || parsed.hash.map(|h| h.len()) != Some(Params::DEFAULT_OUTPUT_LEN)
}

fn malformed(e: impl std::fmt::Display) -> PasswordError {
    PasswordError::Malformed(e.to_string())
}

fn parse_argon2(phc: &str) -> Result<PasswordHash<'_>, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(malformed)?;
    if Algorithm::try_from(parsed.algorithm).is_err() {
        return Err(PasswordError::Malformed(format!(
            "not an argon2 hash: {}",
            parsed.algorithm
        )));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(PasswordError::Malformed("no salt or no hash".into()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    fn fast() -> PasswordParams {
        PasswordParams::insecure_fast_for_tests()
    }

    #[test]
    fn round_trip() {
        let phc = hash_password(b"correct horse", &fast()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(verify_password(b"correct horse", &phc).unwrap());
        assert!(!needs_rehash(&phc, &fast()));
    }

    #[test]
    fn default_params_round_trip() {
        let phc = hash_password(b"s3cret", &PasswordParams::default()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{phc}");
        assert!(verify_password(b"s3cret", &phc).unwrap());
    }

    #[test]
    fn wrong_password() {
        let phc = hash_password(b"correct horse", &fast()).unwrap();
        assert!(!verify_password(b"correct horsf", &phc).unwrap());
        assert!(!verify_password(b"", &phc).unwrap());
    }

    #[test]
    fn salts_differ() {
        let a = hash_password(b"pw", &fast()).unwrap();
        let b = hash_password(b"pw", &fast()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_phc() {
        for bad in [
            "",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=8,t=1,p=1$",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaA",
            "$argon2id$v=19$m=x,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        ] {
            assert!(
                matches!(
                    verify_password(b"pw", bad),
                    Err(PasswordError::Malformed(_))
                ),
                "{bad:?}"
            );
            assert!(needs_rehash(bad, &fast()), "{bad:?}");
        }
    }

    #[test]
    fn rehash_when_params_change() {
        let phc = hash_password(b"pw", &fast()).unwrap();
        let stronger = PasswordParams {
            iterations: 2,
            ..fast()
        };
        assert!(needs_rehash(&phc, &stronger));
        // An argon2i hash still verifies but asks for a rehash.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let old = argon2i.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_password(b"pw", &old).unwrap());
        assert!(needs_rehash(&old, &fast()));
    }

    #[test]
    fn same_strings_as_the_argon2_crate() {
        // What the argon2 crate's own hasher makes verifies here, and what this module
        // makes verifies with the crate's verifier: stored hashes of either stay valid.
        use argon2::password_hash::PasswordVerifier;
        let p = fast();
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let theirs = p
            .argon2()
            .unwrap()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(b"pw", &theirs).unwrap());
        assert!(!verify_password(b"pW", &theirs).unwrap());
        let ours = hash_password(b"pw", &p).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"pW", &parsed).is_err());
        assert!(!needs_rehash(&ours, &p));
    }

    #[test]
    fn invalid_params_refused() {
        let p = PasswordParams {
            memory_kib: 1,
            ..fast()
        };
        assert!(matches!(
            hash_password(b"pw", &p),
            Err(PasswordError::Params(_))
        ));
        assert!(!verify_dummy(b"pw", &fast()));
    }
}
