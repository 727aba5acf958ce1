//! The Docker registry v2 bearer token: an ES256-signed JWT with a libtrust key id.
//!
//! The token endpoint issues these; `/v2` verifies them on every request. Because a
//! verification bug is an authentication bypass, the format is implemented here by hand
//! over `p256` (ECDSA P-256 with SHA-256, RFC 6979 deterministic signatures) and
//! `base64`, instead of through a general JWT library:
//!
//! - There is no algorithm dispatch at all. The header's `alg` must be the literal
//!   `ES256`, and the only verification routine is ECDSA P-256, so `none`, `HS256` signed
//!   with the public key as an HMAC secret, or any other algorithm confusion cannot be
//!   expressed, let alone accepted.
//! - One crypto library generates keys, reads and writes PKCS#8 PEM, derives the
//!   SubjectPublicKeyInfo for the key id, signs and verifies; a JWT library would add a
//!   second backend for the same P-256 operations.
//! - The whole format is three base64url segments and two small JSON objects; the checks
//!   are listed in [`verify`] and each has a test with a token built by hand.
//!
//! Header: `{"typ":"JWT","alg":"ES256","kid":"<libtrust key id>"}`. The key id is what
//! Docker's libtrust computes: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
//! base32 (RFC 4648, no padding), in 12 groups of 4 characters joined by `:`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::Signature;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

use crate::rbac::Restriction;
use crate::scope::Scope;

/// Seconds of clock skew tolerated on `exp` and `nbf` between replicas and clients.
pub const LEEWAY_SECS: u64 = 30;
/// Longest token accepted by [`verify`]: a bound on work before the signature is checked.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Why a key could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM text is not a PKCS#8 P-256 private key (or SPKI public key).
    #[error("invalid P-256 key: {0}")]
    Invalid(String),
}

impl KeyError {
    fn invalid(e: impl fmt::Display) -> KeyError {
        KeyError::Invalid(e.to_string())
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments of JSON with the required fields.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names an algorithm other than ES256 (including `none` and `HS256`).
    #[error("unsupported token algorithm {0:?}")]
    Algorithm(String),
    /// The header names no key id, or one that is not a trusted key.
    #[error("token signed by an unknown key {0:?}")]
    UnknownKey(Option<String>),
    /// The signature does not verify with the named key.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token was issued for another service.
    #[error("token issued for another audience")]
    WrongAudience,
    /// The token was issued by another issuer.
    #[error("token issued by another issuer")]
    WrongIssuer,
}

/// The libtrust key id of a public key (see the module documentation).
fn libtrust_kid(key: &p256::ecdsa::VerifyingKey) -> String {
    let spki = key
        .to_public_key_der()
        .expect("a P-256 public key always encodes");
    let digest = Sha256::digest(spki.as_bytes());
    let b32 = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    let groups: Vec<&str> = (0..b32.len()).step_by(4).map(|i| &b32[i..i + 4]).collect();
    groups.join(":")
}

/// The private key tokens are signed with. Its PKCS#8 PEM form is what the metadata store
/// keeps; `Debug` never prints the private part.
#[derive(Clone)]
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SigningKey {
        SigningKey::from_inner(p256::ecdsa::SigningKey::random(&mut OsRng))
    }

    fn from_inner(inner: p256::ecdsa::SigningKey) -> SigningKey {
        let public = VerifyingKey::from_inner(*inner.verifying_key());
        SigningKey { inner, public }
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-256 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let inner = p256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(KeyError::invalid)?;
        Ok(SigningKey::from_inner(inner))
    }

    /// The key as PKCS#8 PEM, for the metadata store. A secret: never log it.
    pub fn to_pkcs8_pem(&self) -> String {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key always encodes")
            .to_string()
    }

    /// The public half, to verify tokens with.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The libtrust key id put in the header of every token this key signs.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// A public key trusted to have signed tokens, with its libtrust key id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: p256::ecdsa::VerifyingKey,
    kid: String,
}

impl VerifyingKey {
    fn from_inner(inner: p256::ecdsa::VerifyingKey) -> VerifyingKey {
        let kid = libtrust_kid(&inner);
        VerifyingKey { inner, kid }
    }

    /// Reads a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`) P-256 key.
    pub fn from_public_key_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        let inner =
            p256::ecdsa::VerifyingKey::from_public_key_pem(pem).map_err(KeyError::invalid)?;
        Ok(VerifyingKey::from_inner(inner))
    }

    /// The key as SubjectPublicKeyInfo PEM.
    pub fn to_public_key_pem(&self) -> String {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key always encodes")
    }

    /// The libtrust key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.kid)
    }
}

/// One entry of the `access` claim: the actions granted on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// Resource type (`repository`, `registry`).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Resource name (`team/app`, `catalog`).
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

impl From<&Scope> for AccessEntry {
    /// The entry granting exactly what the scope names (its class is not part of the claim,
    /// as in Distribution).
    fn from(s: &Scope) -> AccessEntry {
        AccessEntry {
            resource_type: s.resource_type.as_str().to_string(),
            name: s.name.as_str().to_string(),
            actions: s.actions.iter().map(|a| a.as_str().to_string()).collect(),
        }
    }
}

/// The claims of a registry token. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the token endpoint's configured name.
    pub iss: String,
    /// Subject: the account name (empty for an anonymous caller).
    pub sub: String,
    /// Audience: the service the token is for (the `service` parameter).
    pub aud: String,
    /// Expiry.
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique token id, random.
    pub jti: String,
    /// What the token grants; exactly what the caller's roles allow of what was asked.
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// The restriction of the credential the token was issued to (a restricted access
    /// token, or a refresh token minted from one): whatever else the token is used for
    /// (a listing, the management API), it never reaches past it.
    #[serde(
        default,
        rename = "berth_restriction",
        skip_serializing_if = "Option::is_none"
    )]
    pub restriction: Option<Restriction>,
}

impl Claims {
    /// Claims valid from `now` for `ttl_secs`, with a random `jti`.
    pub fn new(
        issuer: &str,
        subject: &str,
        audience: &str,
        access: Vec<AccessEntry>,
        now: u64,
        ttl_secs: u64,
    ) -> Claims {
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        Claims {
            iss: issuer.to_string(),
            sub: subject.to_string(),
            aud: audience.to_string(),
            exp: now.saturating_add(ttl_secs),
            nbf: now,
            iat: now,
            jti: URL_SAFE_NO_PAD.encode(jti),
            access,
            restriction: None,
        }
    }

    /// Whether the `access` claim grants `action` on the resource `resource_type:name`.
    /// Actions match literally: `*` is only granted where it was asked and allowed.
    pub fn allows(&self, resource_type: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|e| {
            e.resource_type == resource_type
                && e.name == name
                && e.actions.iter().any(|a| a == action)
        })
    }
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'a str,
    alg: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct ParsedHeader {
    alg: String,
    kid: Option<String>,
    /// RFC 7515: a header naming extensions the verifier must understand is refused.
    crit: Option<serde_json::Value>,
}

/// `aud` may be one string or an array of strings (RFC 7519).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ParsedClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    #[serde(default)]
    access: Vec<AccessEntry>,
    #[serde(default, rename = "berth_restriction")]
    restriction: Option<Restriction>,
}

/// Signs `claims` with `key`: `base64url(header).base64url(claims).base64url(r || s)`.
pub fn issue(claims: &Claims, key: &SigningKey) -> String {
    let header = Header {
        typ: "JWT",
        alg: "ES256",
        kid: key.kid(),
    };
    let header = serde_json::to_vec(&header).expect("header serialises");
    let claims = serde_json::to_vec(claims).expect("claims serialise");
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let sig: Signature = key.inner.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    token
}

/// Verifies a token and returns its claims.
///
/// In order, it refuses: a token longer than [`MAX_TOKEN_LEN`] or not made of three
/// base64url segments of JSON; a header whose `alg` is not exactly `ES256` or that has a
/// `crit` member; a missing `kid` or one not among `keys`; a signature that does not verify
/// (P-256, SHA-256, 64-byte `r || s`); claims missing any of iss, sub, aud, exp, nbf, iat,
/// jti; `exp` more than [`LEEWAY_SECS`] before `now`; `nbf` more than [`LEEWAY_SECS`] after
/// `now`; an audience without `expected_audience`; an issuer other than `expected_issuer`.
/// Time checks come after the signature, so an unsigned token learns nothing.
pub fn verify(
    token: &str,
    keys: &[VerifyingKey],
    expected_issuer: &str,
    expected_audience: &str,
    now: u64,
) -> Result<Claims, TokenError> {
    let malformed = |m: &str| TokenError::Malformed(m.to_string());
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three segments"));
    };
    let b64 = |s: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))
    };
    let header: ParsedHeader = serde_json::from_slice(&b64(h64, "header")?)
        .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
    if header.alg != "ES256" {
        return Err(TokenError::Algorithm(header.alg.chars().take(32).collect()));
    }
    if header.crit.is_some() {
        return Err(malformed("critical header extensions are not supported"));
    }
    let key = match &header.kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid == *kid)
            .ok_or_else(|| TokenError::UnknownKey(Some(kid.chars().take(64).collect())))?,
        None => return Err(TokenError::UnknownKey(None)),
    };
    let sig = b64(s64, "signature")?;
    let sig = Signature::from_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let signing_input = &token[..h64.len() + 1 + c64.len()];
    key.inner
        .verify(signing_input.as_bytes(), &sig)
        .map_err(|_| TokenError::BadSignature)?;

    let c: ParsedClaims = serde_json::from_slice(&b64(c64, "claims")?)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if now > c.exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if now.saturating_add(LEEWAY_SECS) < c.nbf {
        return Err(TokenError::NotYetValid);
    }
    let aud_ok = match &c.aud {
        Audience::One(a) => a == expected_audience,
        Audience::Many(v) => v.iter().any(|a| a == expected_audience),
    };
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    if c.iss != expected_issuer {
        return Err(TokenError::WrongIssuer);
    }
    Ok(Claims {
        iss: c.iss,
        sub: c.sub,
        aud: expected_audience.to_string(),
        exp: c.exp,
        nbf: c.nbf,
        iat: c.iat,
        jti: c.jti,
        access: c.access,
        restriction: c.restriction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use serde_json::json;

    const ISS: &str = "berth-token";
    const AUD: &str = "registry.example.com";
    const NOW: u64 = 1_800_000_000;

    // Generated with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`; the
    // kid was computed independently with openssl + Python (SPKI DER, sha256, base32).
    const FIXED_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgX8MHTR5E6oKZHEbq
/feo4eYJwvqaygS/bIJ73lgWK9+hRANCAASw2VxnDW+sPLdTvwvjx/HsUxOJei1e
eSflNQWwiyvXOLzkztqTms2fNY+h2ar4joD6uQ7i6OY8vEdPK2XbhdM9
-----END PRIVATE KEY-----
";
    const FIXED_KID: &str = "SPHY:RPRJ:5VK6:UPNT:5I64:4Y56:VPXZ:JBU5:BU72:YQZK:IMJQ:Q7WR";

    fn claims() -> Claims {
        let access = vec![AccessEntry {
            resource_type: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }];
        Claims::new(ISS, "alice", AUD, access, NOW, 300)
    }

    fn check(token: &str, key: &SigningKey, now: u64) -> Result<Claims, TokenError> {
        verify(token, &[key.verifying_key().clone()], ISS, AUD, now)
    }

    /// Builds a token from arbitrary header and claims JSON, signed with `key` (ES256).
    fn forge(header: serde_json::Value, claims: serde_json::Value, key: &SigningKey) -> String {
        let mut t = URL_SAFE_NO_PAD.encode(header.to_string());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig: Signature = key.inner.sign(t.as_bytes());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        t
    }

    fn es256(key: &SigningKey) -> serde_json::Value {
        json!({"typ": "JWT", "alg": "ES256", "kid": key.kid()})
    }

    fn claims_json() -> serde_json::Value {
        serde_json::to_value(claims()).unwrap()
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::generate();
        let c = claims();
        let token = issue(&c, &key);
        let got = check(&token, &key, NOW + 10).unwrap();
        assert_eq!(got, c);
        assert!(got.allows("repository", "team/app", "push"));
        assert!(!got.allows("repository", "team/app", "delete"));
        assert!(!got.allows("repository", "team/other", "pull"));
        // Key rotation: any of several trusted keys.
        let other = SigningKey::generate();
        let keys = [other.verifying_key().clone(), key.verifying_key().clone()];
        assert!(verify(&token, &keys, ISS, AUD, NOW).is_ok());
    }

    #[test]
    fn header_shape() {
        let key = SigningKey::generate();
        let token = issue(&claims(), &key);
        let h = token.split('.').next().unwrap();
        let h: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        assert_eq!(h, json!({"typ": "JWT", "alg": "ES256", "kid": key.kid()}));
    }

    #[test]
    fn kid_is_libtrust() {
        let key = SigningKey::from_pkcs8_pem(FIXED_PEM).unwrap();
        assert_eq!(key.kid(), FIXED_KID);
        let fresh = SigningKey::generate();
        let kid = fresh.kid();
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert!(kid.split(':').all(|g| g.len() == 4
            && g.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))));
    }

    #[test]
    fn pem_round_trip() {
        let key = SigningKey::generate();
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.kid(), key.kid());
        let token = issue(&claims(), &back);
        assert!(check(&token, &key, NOW).is_ok());
        let public =
            VerifyingKey::from_public_key_pem(&key.verifying_key().to_public_key_pem()).unwrap();
        assert_eq!(&public, key.verifying_key());
        assert!(SigningKey::from_pkcs8_pem("not a key").is_err());
        assert!(VerifyingKey::from_public_key_pem(&pem).is_err());
        assert!(!format!("{key:?}").contains(&pem[30..60]));
    }

    #[test]
    fn refuses_alg_none() {
        let key = SigningKey::generate();
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": key.kid()}).to_string());
        let c = URL_SAFE_NO_PAD.encode(claims_json().to_string());
        for t in [format!("{h}.{c}."), format!("{h}.{c}")] {
            let e = check(&t, &key, NOW).unwrap_err();
            assert!(
                matches!(e, TokenError::Algorithm(_) | TokenError::Malformed(_)),
                "{e:?}"
            );
        }
        assert_eq!(
            check(&format!("{h}.{c}."), &key, NOW),
            Err(TokenError::Algorithm("none".into()))
        );
    }

    #[test]
    fn refuses_hs256_with_public_key_as_secret() {
        let key = SigningKey::generate();
        let public_pem = key.verifying_key().to_public_key_pem();
        let mut t = URL_SAFE_NO_PAD
            .encode(json!({"typ": "JWT", "alg": "HS256", "kid": key.kid()}).to_string());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(claims_json().to_string()));
        let mut mac = Hmac::<Sha256>::new_from_slice(public_pem.as_bytes()).unwrap();
        mac.update(t.as_bytes());
        let tag = mac.finalize().into_bytes();
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(
            check(&t, &key, NOW),
            Err(TokenError::Algorithm("HS256".into()))
        );
    }

    #[test]
    fn refuses_other_algorithms() {
        let key = SigningKey::generate();
        for alg in ["ES384", "RS256", "es256", "ES256 ", "EdDSA", ""] {
            let t = forge(json!({"alg": alg, "kid": key.kid()}), claims_json(), &key);
            assert_eq!(
                check(&t, &key, NOW),
                Err(TokenError::Algorithm(alg.into())),
                "{alg}"
            );
        }
        let t = forge(json!({"kid": key.kid()}), claims_json(), &key);
        assert!(matches!(
            check(&t, &key, NOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_unknown_kid() {
        let trusted = SigningKey::generate();
        let stranger = SigningKey::generate();
        let t = issue(&claims(), &stranger);
        assert_eq!(
            check(&t, &trusted, NOW),
            Err(TokenError::UnknownKey(Some(stranger.kid().to_string())))
        );
        let t = forge(json!({"alg": "ES256"}), claims_json(), &trusted);
        assert_eq!(check(&t, &trusted, NOW), Err(TokenError::UnknownKey(None)));
        assert_eq!(
            verify(&issue(&claims(), &trusted), &[], ISS, AUD, NOW),
            Err(TokenError::UnknownKey(Some(trusted.kid().to_string())))
        );
    }

    #[test]
    fn refuses_another_key_claiming_a_trusted_kid() {
        let trusted = SigningKey::generate();
        let stranger = SigningKey::generate();
        let t = forge(es256(&trusted), claims_json(), &stranger);
        assert_eq!(check(&t, &trusted, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn refuses_tampering() {
        let key = SigningKey::generate();
        let t = issue(&claims(), &key);
        let parts: Vec<&str> = t.split('.').collect();
        // Escalated claims under the original signature.
        let mut evil = claims_json();
        evil["access"][0]["actions"] = json!(["pull", "push", "delete"]);
        let evil = URL_SAFE_NO_PAD.encode(evil.to_string());
        let t2 = format!("{}.{}.{}", parts[0], evil, parts[2]);
        assert_eq!(check(&t2, &key, NOW), Err(TokenError::BadSignature));
        // A flipped signature byte.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let t3 = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(check(&t3, &key, NOW), Err(TokenError::BadSignature));
        // A header re-encoded (the signature covers the bytes as sent).
        let h = URL_SAFE_NO_PAD
            .encode(json!({"alg": "ES256", "kid": key.kid(), "typ": "JWT"}).to_string());
        let t4 = format!("{}.{}.{}", h, parts[1], parts[2]);
        assert_eq!(check(&t4, &key, NOW), Err(TokenError::BadSignature));
        // Signature of the wrong length, or empty.
        let t5 = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode([0u8; 63])
        );
        assert_eq!(check(&t5, &key, NOW), Err(TokenError::BadSignature));
        let t6 = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(check(&t6, &key, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn refuses_expired_and_not_yet_valid() {
        let key = SigningKey::generate();
        let c = claims(); // valid NOW .. NOW + 300
        let t = issue(&c, &key);
        assert!(check(&t, &key, c.exp + LEEWAY_SECS).is_ok());
        assert_eq!(
            check(&t, &key, c.exp + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        );
        assert_eq!(check(&t, &key, c.exp + 86_400), Err(TokenError::Expired));
        assert!(check(&t, &key, c.nbf - LEEWAY_SECS).is_ok());
        assert_eq!(
            check(&t, &key, c.nbf - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn refuses_wrong_audience_and_issuer() {
        let key = SigningKey::generate();
        let mut other_service = claims();
        other_service.aud = "other.example.com".into();
        let t = issue(&other_service, &key);
        assert_eq!(check(&t, &key, NOW), Err(TokenError::WrongAudience));

        let mut c = claims_json();
        c["aud"] = json!(["other.example.com", AUD]);
        assert!(check(&forge(es256(&key), c.clone(), &key), &key, NOW).is_ok());
        c["aud"] = json!(["other.example.com"]);
        assert_eq!(
            check(&forge(es256(&key), c, &key), &key, NOW),
            Err(TokenError::WrongAudience)
        );

        let mut other_issuer = claims();
        other_issuer.iss = "evil".into();
        let t = issue(&other_issuer, &key);
        assert_eq!(check(&t, &key, NOW), Err(TokenError::WrongIssuer));
    }

    #[test]
    fn refuses_malformed() {
        let key = SigningKey::generate();
        let good = issue(&claims(), &key);
        let p: Vec<&str> = good.split('.').collect();
        let bad = [
            String::new(),
            "a.b".into(),
            format!("{good}.x"),
            format!("{}!.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}", p[0], p[1]),
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), p[1], p[2]),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for t in &bad {
            assert!(
                matches!(check(t, &key, NOW), Err(TokenError::Malformed(_))),
                "{:.60}",
                t
            );
        }
        // Validly signed but with claims missing or of the wrong type.
        for field in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"] {
            let mut c = claims_json();
            c.as_object_mut().unwrap().remove(field);
            let t = forge(es256(&key), c, &key);
            assert!(
                matches!(check(&t, &key, NOW), Err(TokenError::Malformed(_))),
                "{field}"
            );
        }
        let mut c = claims_json();
        c["exp"] = json!("tomorrow");
        assert!(matches!(
            check(&forge(es256(&key), c, &key), &key, NOW),
            Err(TokenError::Malformed(_))
        ));
        // Duplicate members are refused rather than resolved one way or the other.
        let h = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"ES256","alg":"none","kid":"{}"}}"#,
            key.kid()
        ));
        let t = format!("{h}.{}.{}", p[1], p[2]);
        assert!(matches!(
            check(&t, &key, NOW),
            Err(TokenError::Malformed(_))
        ));
        // Critical extensions are refused.
        let mut h = es256(&key);
        h["crit"] = json!(["exp"]);
        let t = forge(h, claims_json(), &key);
        assert!(matches!(
            check(&t, &key, NOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn access_entry_from_scope() {
        let s = crate::scope::Scope::parse("repository(plugin):team/app:pull,push").unwrap();
        let e = AccessEntry::from(&s);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "repository", "name": "team/app", "actions": ["pull", "push"]})
        );
    }
}
