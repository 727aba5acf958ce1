//! Signature thresholds: does a file carry valid signatures from enough of a role's keys?

use crate::keys::PublicKey;
use crate::metadata::Signature;
use crate::x509::CertChain;
use std::collections::{BTreeMap, BTreeSet};

/// The id a key must be listed under: its key id, for a certificate computed from the
/// chain re-encoded as Go writes PEM (Notary recomputes x509 key ids that way, so a
/// certificate listed under any other id signs nothing).
pub fn canonical_key_id(key: &PublicKey) -> Option<String> {
    if key.keytype.is_x509() {
        let chain = CertChain::from_pem(&key.public).ok()?;
        Some(PublicKey::new(key.keytype, chain.to_go_pem()).key_id())
    } else {
        Some(key.key_id())
    }
}

/// The ids of `keyids` whose key (from `keys`) made a valid signature over `canonical`,
/// each counted once.
pub fn valid_signers(
    canonical: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<String, PublicKey>,
    keyids: &[String],
) -> BTreeSet<String> {
    let mut valid = BTreeSet::new();
    for sig in signatures {
        if valid.contains(&sig.keyid) || !keyids.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = keys.get(&sig.keyid) else {
            continue;
        };
        if canonical_key_id(key).as_deref() != Some(sig.keyid.as_str()) {
            continue;
        }
        if key.verify(&sig.method, canonical, &sig.sig).is_ok() {
            valid.insert(sig.keyid.clone());
        }
    }
    valid
}

/// `Err` with a message unless at least `threshold` of `keyids` signed.
pub fn check_threshold(
    role: &str,
    canonical: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<String, PublicKey>,
    keyids: &[String],
    threshold: i64,
) -> Result<BTreeSet<String>, String> {
    if threshold < 1 {
        return Err(format!("{role}: threshold {threshold} is below 1"));
    }
    let valid = valid_signers(canonical, signatures, keys, keyids);
    if (valid.len() as i64) < threshold {
        return Err(format!(
            "{role}: valid signatures did not meet threshold ({} of {threshold})",
            valid.len()
        ));
    }
    Ok(valid)
}

/// Whether a key is one Notary accepts as a certificate for `gun` at `now` (unix seconds):
/// a leaf (not a CA) whose common name is the GUN, not signed with SHA-1, valid now (one
/// day of leeway before its start), an RSA key of at least 2048 bits. `check_expiry` is
/// false for the previous root's keys, whose certificates may since have expired.
pub fn valid_root_cert(
    key: &PublicKey,
    gun: &str,
    now: i64,
    check_expiry: bool,
) -> Result<(), String> {
    if !key.keytype.is_x509() {
        return Err(format!(
            "root keys must be certificates, not {}",
            key.keytype.as_str()
        ));
    }
    let chain = CertChain::from_pem(&key.public).map_err(|e| e.to_string())?;
    let facts = chain.facts();
    let leaf = facts.first().ok_or("empty certificate chain")?;
    if leaf.is_ca {
        return Err("the first certificate of a root key is a CA".into());
    }
    if leaf.common_name.as_deref() != Some(gun) {
        return Err(format!(
            "certificate common name {:?} is not the GUN {gun}",
            leaf.common_name.as_deref().unwrap_or("")
        ));
    }
    for cert in &facts {
        if cert.sha1_signed {
            return Err("certificate signed with SHA-1".into());
        }
        if check_expiry && (cert.not_before > now + 86_400 || cert.not_after < now) {
            return Err("certificate not valid now".into());
        }
    }
    // A key this registry cannot verify with (an RSA key under 2048 bits, an EC key on
    // another curve) signs nothing.
    key.check().map_err(|e| e.to_string())?;
    Ok(())
}
