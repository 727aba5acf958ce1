//! Signature artifacts: cosign and Notation signatures that clients push as ordinary OCI
//! manifests. The registry recognises them ([`classify`]) and verifies them itself
//! ([`verify`]) against the keys and certificates users registered ([`TrustedKey`]), never
//! on the client's word, giving one [`Fact`] per signature. Pure: bytes in, verdicts out.
//!
//! Forms: cosign simple signing (the `sha256-<hex>.sig` tag scheme and the OCI 1.1
//! `--registry-referrers-mode=oci-1-1` referrer), the Sigstore bundle that `cosign sign` v3
//! and `@sigstore/oci` attach (a DSSE envelope over an in-toto statement whose predicate is
//! `https://sigstore.dev/cosign/sign/v1`; attestations with other predicates are not
//! signatures), and Notation's JWS envelope. Notation's COSE envelope is recognised, not
//! verified.
//!
//! Trust rests on the registered key or certificate alone. Transparency-log entries (Rekor
//! inclusion proofs, signed entry timestamps) and RFC 3161 timestamps are neither required
//! nor verified, and certificate identities (Fulcio SANs and issuers, Notation's trusted
//! identities) are not checked: a keyless signature counts only when its certificate chains
//! to a registered certificate. Every certificate must be valid at verification time; a
//! signing time never extends one.

use crate::keys::KeyError;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use x509_parser::prelude::*;

/// The most layers looked at.
pub const MAX_LAYERS: usize = 16;
/// The largest layer read (bytes); the caller enforces it when fetching.
pub const MAX_LAYER_BYTES: u64 = 256 * 1024;
/// The largest PEM a user may register.
const MAX_PEM_BYTES: usize = 16 * 1024;
/// The most certificates in a chain (`x5c`, cosign's chain annotation, a bundle's chain).
const MAX_CHAIN: usize = 10;
/// The most DSSE signatures in one bundle.
const MAX_DSSE_SIGNATURES: usize = 16;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const COSIGN_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const NOTATION_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
const JOSE: &str = "application/jose+json";
const COSE: &str = "application/cose";
/// Sigstore bundle media types, v0.3 first (older ones carried the version as a parameter).
const BUNDLES: [&str; 6] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle.v0.2+json",
    "application/vnd.dev.sigstore.bundle.v0.1+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

const COSIGN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
const COSIGN_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
const COSIGN_CHAIN: &str = "dev.sigstore.cosign/chain";
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

const IN_TOTO: &str = "application/vnd.in-toto+json";
const STATEMENTS: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

const NOTATION_PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";
const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
/// The protected headers a Notation `crit` may name.
const KNOWN_CRIT: [&str; 5] = [
    SIGNING_SCHEME,
    EXPIRY,
    AUTHENTIC_SIGNING_TIME,
    "io.cncf.notary.verificationPlugin",
    "io.cncf.notary.verificationPluginMinVersion",
];

/// Who made a signature artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactFormat {
    Cosign,
    Notation,
}

impl ArtifactFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactFormat::Cosign => "cosign",
            ArtifactFormat::Notation => "notation",
        }
    }
}

/// What a user registered: a bare public key or a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedKeyKind {
    PublicKey,
    Certificate,
}

impl TrustedKeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustedKeyKind::PublicKey => "public-key",
            TrustedKeyKind::Certificate => "certificate",
        }
    }
}

/// A key or certificate a user registered.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// Lowercase hex SHA-256 of [`TrustedKey::der`] (for a certificate, Notation's
    /// `x509chain` thumbprint).
    pub id: String,
    pub kind: TrustedKeyKind,
    der: Vec<u8>,
    key: Key,
    /// A certificate's validity and subject common name.
    cert: Option<(Window, Option<String>)>,
}

impl TrustedKey {
    /// Parses one PEM block: `PUBLIC KEY` (SPKI: ECDSA P-256 or P-384, RSA of 2048 to 8192
    /// bits, Ed25519) or `CERTIFICATE` (X.509 whose key is one of those).
    pub fn from_pem(pem: &str) -> Result<TrustedKey, KeyError> {
        let unsupported = KeyError::Unsupported;
        if pem.len() > MAX_PEM_BYTES {
            return Err(unsupported(format!(
                "{} bytes of pem (at most {MAX_PEM_BYTES}): register one key or certificate",
                pem.len()
            )));
        }
        let mut blocks = Pem::iter_from_buffer(pem.as_bytes());
        let block = blocks
            .next()
            .ok_or_else(|| {
                KeyError::Malformed(
                    "pem",
                    "no -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE----- block".into(),
                )
            })?
            .map_err(|e| KeyError::Malformed("pem", e.to_string()))?;
        if blocks.next().is_some() {
            return Err(unsupported(
                "more than one pem block: register each key or certificate on its own".into(),
            ));
        }
        let der = block.contents;
        let (kind, key, cert) = match block.label.as_str() {
            "PUBLIC KEY" => {
                let spki = match SubjectPublicKeyInfo::from_der(&der) {
                    Ok(([], spki)) => spki,
                    Ok(_) => return Err(KeyError::Malformed("public", "trailing bytes".into())),
                    Err(e) => return Err(KeyError::Malformed("public", e.to_string())),
                };
                (
                    TrustedKeyKind::PublicKey,
                    Key::from_spki(&spki).map_err(unsupported)?,
                    None,
                )
            }
            "CERTIFICATE" => {
                let cert = parse_cert(&der).map_err(|e| KeyError::Malformed("x509", e))?;
                let key = Key::from_spki(cert.public_key())
                    .map_err(|e| unsupported(format!("the certificate's key: {e}")))?;
                (
                    TrustedKeyKind::Certificate,
                    key,
                    Some((Window::of(&cert), common_name(&cert))),
                )
            }
            label if label.contains("PRIVATE") => {
                return Err(unsupported(format!(
                    "a {label}: register its public key (a PUBLIC KEY block), never the private key"
                )))
            }
            label => {
                return Err(unsupported(format!(
                    "a {label} block: register a PUBLIC KEY or a CERTIFICATE"
                )))
            }
        };
        Ok(TrustedKey {
            id: hex::encode(Sha256::digest(&der)),
            kind,
            der,
            key,
            cert,
        })
    }

    /// For a certificate: its notAfter, unix seconds; `None` for a public key.
    pub fn not_after(&self) -> Option<i64> {
        self.cert.as_ref().map(|(w, _)| w.not_after)
    }

    /// The subject common name of a certificate, if any (for listings).
    pub fn subject(&self) -> Option<String> {
        self.cert.as_ref().and_then(|(_, cn)| cn.clone())
    }

    /// The DER the id is the hash of: the SPKI of a public key, a certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The key's algorithm: `ecdsa-p256`, `ecdsa-p384`, `rsa` or `ed25519`.
    pub fn algorithm(&self) -> &'static str {
        self.key.alg.as_str()
    }
}

/// A manifest recognised as a signature artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub format: ArtifactFormat,
    /// The signed image: `sha256:<hex>`.
    pub subject: String,
    /// At most [`MAX_LAYERS`].
    pub layers: Vec<Layer>,
    kind: Kind,
    /// The manifest's `subject` descriptor's media type and size (referrers only).
    subject_media_type: Option<String>,
    subject_size: Option<u64>,
}

/// Which layers an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SimpleSigning,
    Bundle,
    Notation,
}

/// A layer of a signature artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
}

/// One verdict: a signature (one layer, or one DSSE signature inside it) checked against
/// the registered keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The index of the layer in the artifact.
    pub layer: u32,
    /// The registered key ([`TrustedKey::id`]) that verifies the signature; `None` when none
    /// does.
    pub key_id: Option<String>,
    pub valid: bool,
    /// `""` when valid; else why not.
    pub reason: String,
    /// Unix seconds after which the signature no longer counts (a certificate's notAfter,
    /// Notation's expiry); `None`: never.
    pub expires_at: Option<i64>,
}

impl Fact {
    fn refused(layer: u32, reason: impl Into<String>) -> Fact {
        Fact {
            layer,
            key_id: None,
            valid: false,
            reason: reason.into(),
            expires_at: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: Option<u64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<DescriptorJson>,
    #[serde(default)]
    layers: Vec<DescriptorJson>,
    subject: Option<DescriptorJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Recognises `manifest` (its bytes as pushed, under `tag` if pushed by tag) as a
/// signature artifact: a cosign `sha256-<hex>.sig` tag of simple-signing layers, or a
/// referrer (a manifest with a `subject`) whose `artifactType` (else `config.mediaType`) is
/// cosign's, a Sigstore bundle's or Notation's. Anything else: `None`.
pub fn classify(manifest: &[u8], tag: Option<&str>) -> Option<Artifact> {
    let m: ManifestJson = serde_json::from_slice(manifest).ok()?;
    if m.schema_version != Some(2)
        || !matches!(
            m.media_type.as_deref(),
            None | Some(OCI_MANIFEST | DOCKER_MANIFEST)
        )
    {
        return None;
    }
    let config = m.config?;
    let layers = m
        .layers
        .into_iter()
        .take(MAX_LAYERS)
        .map(|d| {
            Some(Layer {
                media_type: d.media_type?,
                size: d.size?,
                digest: d.digest,
                annotations: d.annotations.unwrap_or_default(),
            })
        })
        .collect::<Option<Vec<_>>>()
        .filter(|l| !l.is_empty())?;
    if let Some(subject) = tag.and_then(tag_subject) {
        if layers.iter().all(|l| l.media_type == SIMPLE_SIGNING) {
            return Some(Artifact {
                format: ArtifactFormat::Cosign,
                subject,
                layers,
                kind: Kind::SimpleSigning,
                subject_media_type: None,
                subject_size: None,
            });
        }
    }
    let subject = m.subject.filter(|s| is_sha256(&s.digest))?;
    let artifact_type = m.artifact_type.or(config.media_type)?;
    let (format, kind) = match artifact_type.as_str() {
        COSIGN_ARTIFACT => (ArtifactFormat::Cosign, Kind::SimpleSigning),
        NOTATION_ARTIFACT => (ArtifactFormat::Notation, Kind::Notation),
        t if BUNDLES.contains(&t) => (ArtifactFormat::Cosign, Kind::Bundle),
        _ => return None,
    };
    Some(Artifact {
        format,
        subject: subject.digest,
        layers,
        kind,
        subject_media_type: subject.media_type,
        subject_size: subject.size,
    })
}

/// The subject's lowercase hex digest and the kind (`sig`, `att`, `sbom`) of a cosign tag
/// (`sha256-<hex>.sig`).
pub fn cosign_tag(tag: &str) -> Option<(&str, &str)> {
    let (hex, kind) = tag.strip_prefix("sha256-")?.split_once('.')?;
    let digest_ok = is_sha256(&format!("sha256:{hex}"));
    (digest_ok && matches!(kind, "sig" | "att" | "sbom")).then_some((hex, kind))
}

/// The image a cosign signature tag `sha256-<hex>.sig` signs.
fn tag_subject(tag: &str) -> Option<String> {
    match cosign_tag(tag)? {
        (hex, "sig") => Some(format!("sha256:{hex}")),
        _ => None,
    }
}

fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Verifies every layer of `artifact`. `blobs[i]` is the content of `artifact.layers[i]`
/// (its digest checked by the caller), `None` when it could not be read. Gives at least one
/// fact per layer: one per registered key that verifies a signature, else one with no key
/// and the reason.
pub fn verify(
    artifact: &Artifact,
    blobs: &[Option<Vec<u8>>],
    keys: &[TrustedKey],
    now: i64,
) -> Vec<Fact> {
    let mut facts = Vec::new();
    for (index, layer) in (0u32..).zip(&artifact.layers) {
        let claims = match blobs.get(index as usize).and_then(Option::as_deref) {
            None => Err("the layer could not be read".to_string()),
            Some(blob) if blob.len() as u64 > MAX_LAYER_BYTES => {
                Err(format!("the layer is larger than {MAX_LAYER_BYTES} bytes"))
            }
            Some(blob) => claims(artifact, layer, blob),
        };
        match claims {
            Ok(claims) => facts.extend(claims.iter().flat_map(|c| judge(index, c, keys, now))),
            Err(reason) => facts.push(Fact::refused(index, reason)),
        }
    }
    facts
}

/// A signature found in a layer, its content checked, to attribute to registered keys.
struct Claim {
    /// The bytes signed.
    msg: Vec<u8>,
    sig: Vec<u8>,
    scheme: Scheme,
    /// The certificates carried with the signature, leaf first; empty for a bare key.
    chain: Vec<Vec<u8>>,
    /// The signer's own expiry (Notation), unix seconds.
    expiry: Option<i64>,
}

/// The signatures in one layer, after the checks that need no key.
fn claims(artifact: &Artifact, layer: &Layer, blob: &[u8]) -> Result<Vec<Claim>, String> {
    match (artifact.kind, layer.media_type.as_str()) {
        (Kind::SimpleSigning, SIMPLE_SIGNING) => {
            simple_signing(&artifact.subject, layer, blob).map(|c| vec![c])
        }
        (Kind::Bundle, t) if BUNDLES.contains(&t) => bundle(&artifact.subject, blob),
        (Kind::Notation, JOSE) => notation_jws(artifact, blob).map(|c| vec![c]),
        (Kind::Notation, COSE) => Err("COSE envelopes are not verified".into()),
        (kind, t) => Err(format!(
            "a layer of media type {t} is not a {} signature",
            match kind {
                Kind::SimpleSigning => "cosign simple-signing",
                Kind::Bundle => "sigstore bundle",
                Kind::Notation => "notation",
            }
        )),
    }
}

fn names_subject(named: &str, subject: &str) -> Result<(), String> {
    if named == subject {
        Ok(())
    } else {
        Err(format!("payload names {named} not the subject {subject}"))
    }
}

/// cosign simple signing: the layer is the payload, its annotations the signature and
/// the certificates.
fn simple_signing(subject: &str, layer: &Layer, payload: &[u8]) -> Result<Claim, String> {
    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        #[serde(rename = "type")]
        kind: String,
        image: Image,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("malformed simple-signing payload: {e}"))?;
    if p.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(format!(
            "simple-signing type {:?} is not {SIMPLE_SIGNING_TYPE:?}",
            p.critical.kind
        ));
    }
    names_subject(&p.critical.image.digest, subject)?;
    let annotation = |name: &str| layer.annotations.get(name).map(String::as_str);
    let sig = annotation(COSIGN_SIGNATURE).ok_or(format!("the layer has no {COSIGN_SIGNATURE}"))?;
    let sig = b64(sig).map_err(|e| format!("malformed {COSIGN_SIGNATURE}: {e}"))?;
    let mut chain = Vec::new();
    if let Some(leaf) = annotation(COSIGN_CERTIFICATE) {
        chain = pem_certs(leaf)?;
        if chain.len() != 1 {
            return Err(format!(
                "{COSIGN_CERTIFICATE} holds {} certificates, not one",
                chain.len()
            ));
        }
        chain.extend(pem_certs(annotation(COSIGN_CHAIN).unwrap_or_default())?);
    }
    Ok(Claim {
        msg: payload.to_vec(),
        sig,
        scheme: Scheme::Any,
        chain,
        expiry: None,
    })
}

/// The DER of each `CERTIFICATE` block of `pem`.
fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("malformed certificate pem: {e}"))?;
        if block.label != "CERTIFICATE" || certs.len() == MAX_CHAIN {
            return Err(format!(
                "certificates must be at most {MAX_CHAIN} CERTIFICATE pem blocks"
            ));
        }
        certs.push(block.contents);
    }
    Ok(certs)
}

/// A Sigstore bundle: a DSSE envelope over an in-toto statement naming the subject.
fn bundle(subject: &str, blob: &[u8]) -> Result<Vec<Claim>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Bundle {
        media_type: String,
        #[serde(default)]
        verification_material: Material,
        dsse_envelope: Option<Envelope>,
        message_signature: Option<Value>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Material {
        certificate: Option<RawBytes>,
        x509_certificate_chain: Option<CertificateChain>,
    }
    #[derive(Deserialize)]
    struct CertificateChain {
        certificates: Vec<RawBytes>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawBytes {
        raw_bytes: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        payload: String,
        payload_type: String,
        signatures: Vec<DsseSignature>,
    }
    #[derive(Deserialize)]
    struct DsseSignature {
        sig: String,
    }
    let b: Bundle =
        serde_json::from_slice(blob).map_err(|e| format!("malformed sigstore bundle: {e}"))?;
    if !BUNDLES.contains(&b.media_type.as_str()) {
        return Err(format!(
            "bundle media type {} is not supported",
            b.media_type
        ));
    }
    let envelope = match (b.dsse_envelope, b.message_signature) {
        (Some(envelope), _) => envelope,
        (None, Some(_)) => return Err("message signatures are not image signatures".into()),
        (None, None) => return Err("the bundle has no dsseEnvelope".into()),
    };
    if envelope.payload_type != IN_TOTO {
        return Err(format!(
            "payload type {} is not {IN_TOTO}",
            envelope.payload_type
        ));
    }
    let body = b64(&envelope.payload).map_err(|e| format!("malformed dsse payload: {e}"))?;
    statement_names(&body, subject)?;
    if envelope.signatures.is_empty() || envelope.signatures.len() > MAX_DSSE_SIGNATURES {
        return Err(format!(
            "{} dsse signatures (1 to {MAX_DSSE_SIGNATURES})",
            envelope.signatures.len()
        ));
    }
    let material = b.verification_material;
    let raw = match (material.certificate, material.x509_certificate_chain) {
        (Some(leaf), _) => vec![leaf],
        (None, Some(chain)) => chain.certificates,
        (None, None) => Vec::new(),
    };
    if raw.len() > MAX_CHAIN {
        return Err(format!("more than {MAX_CHAIN} certificates"));
    }
    let chain = raw
        .iter()
        .map(|c| b64(&c.raw_bytes).map_err(|e| format!("malformed certificate: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let msg = pae(&envelope.payload_type, &body);
    envelope
        .signatures
        .iter()
        .map(|s| {
            Ok(Claim {
                msg: msg.clone(),
                sig: b64(&s.sig).map_err(|e| format!("malformed dsse signature: {e}"))?,
                scheme: Scheme::Any,
                chain: chain.clone(),
                expiry: None,
            })
        })
        .collect()
}

/// DSSE's pre-authentication encoding: what a DSSE signature covers.
fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Checks that `body` is cosign's signature statement about `subject`.
fn statement_names(body: &[u8], subject: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Statement {
        #[serde(rename = "_type")]
        kind: String,
        #[serde(default)]
        subject: Vec<Subject>,
        predicate_type: String,
    }
    #[derive(Deserialize)]
    struct Subject {
        #[serde(default)]
        digest: BTreeMap<String, String>,
    }
    let s: Statement =
        serde_json::from_slice(body).map_err(|e| format!("malformed in-toto statement: {e}"))?;
    if !STATEMENTS.contains(&s.kind.as_str()) {
        return Err(format!("statement type {} is not in-toto's", s.kind));
    }
    if s.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(format!(
            "statement predicate {} is not a signature ({COSIGN_SIGN_PREDICATE})",
            s.predicate_type
        ));
    }
    let named: Vec<String> = s
        .subject
        .iter()
        .filter_map(|s| s.digest.get("sha256"))
        .map(|h| format!("sha256:{h}"))
        .collect();
    if named.iter().any(|n| n == subject) {
        Ok(())
    } else {
        Err(format!(
            "statement does not name the subject {subject} (it names {})",
            if named.is_empty() {
                "no sha256 digest".into()
            } else {
                named.join(", ")
            }
        ))
    }
}

/// A Notation JWS envelope (flattened JSON serialization).
fn notation_jws(artifact: &Artifact, blob: &[u8]) -> Result<Claim, String> {
    #[derive(Deserialize)]
    struct Jws {
        payload: String,
        protected: String,
        header: Unprotected,
        signature: String,
    }
    #[derive(Deserialize)]
    struct Unprotected {
        #[serde(default)]
        x5c: Vec<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        target_artifact: Target,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        media_type: String,
        digest: String,
        size: u64,
    }
    let jws: Jws =
        serde_json::from_slice(blob).map_err(|e| format!("malformed jws envelope: {e}"))?;
    let protected: Map<String, Value> = b64(&jws.protected)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("malformed jws protected header")?;
    let (alg, expiry) = protected_header(&protected)?;
    let target = b64(&jws.payload)
        .map_err(|e| e.to_string())
        .and_then(|p| serde_json::from_slice::<Payload>(&p).map_err(|e| e.to_string()))
        .map_err(|e| format!("malformed notation payload: {e}"))?
        .target_artifact;
    names_subject(&target.digest, &artifact.subject)?;
    if let Some(media_type) = artifact
        .subject_media_type
        .as_ref()
        .filter(|m| **m != target.media_type)
    {
        return Err(format!(
            "payload names media type {} not the subject's {media_type}",
            target.media_type
        ));
    }
    if let Some(size) = artifact.subject_size.filter(|s| *s != target.size) {
        return Err(format!(
            "payload names size {} not the subject's {size}",
            target.size
        ));
    }
    if jws.header.x5c.is_empty() || jws.header.x5c.len() > MAX_CHAIN {
        return Err(format!(
            "x5c holds {} certificates (1 to {MAX_CHAIN})",
            jws.header.x5c.len()
        ));
    }
    let chain = jws
        .header
        .x5c
        .iter()
        .map(|c| b64(c).map_err(|e| format!("malformed x5c certificate: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Claim {
        msg: format!("{}.{}", jws.protected, jws.payload).into_bytes(),
        sig: b64(&jws.signature).map_err(|e| format!("malformed jws signature: {e}"))?,
        scheme: Scheme::Jws(alg),
        chain,
        expiry,
    })
}

/// Checks Notation's protected header; gives its `alg` and expiry.
fn protected_header(h: &Map<String, Value>) -> Result<(JwsAlg, Option<i64>), String> {
    let text = |name: &str| match h.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(format!("protected header {name} is not a string")),
    };
    let required = |name: &str| text(name)?.ok_or(format!("protected header has no {name}"));
    let alg = JwsAlg::parse(required("alg")?)?;
    let cty = required("cty")?;
    if cty != NOTATION_PAYLOAD {
        return Err(format!("cty {cty} is not {NOTATION_PAYLOAD}"));
    }
    let crit: Vec<&str> = match h.get("crit") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or("crit lists a non-string"))
            .collect::<Result<_, _>>()?,
        _ => return Err("protected header has no crit list".into()),
    };
    if let Some(unknown) = crit.iter().find(|c| !KNOWN_CRIT.contains(c)) {
        return Err(format!("unknown critical header {unknown}"));
    }
    if let Some(missing) = crit.iter().find(|c| !h.contains_key(**c)) {
        return Err(format!("critical header {missing} is missing"));
    }
    let signing_time = match required(SIGNING_SCHEME)? {
        "notary.x509" => SIGNING_TIME,
        "notary.x509.signingAuthority" => AUTHENTIC_SIGNING_TIME,
        other => return Err(format!("signing scheme {other} is not supported")),
    };
    rfc3339(required(signing_time)?)?;
    let expiry = text(EXPIRY)?.map(rfc3339).transpose()?;
    let must_be_critical = [
        Some(SIGNING_SCHEME),
        (signing_time == AUTHENTIC_SIGNING_TIME).then_some(AUTHENTIC_SIGNING_TIME),
        expiry.map(|_| EXPIRY),
    ];
    if let Some(name) = must_be_critical
        .into_iter()
        .flatten()
        .find(|n| !crit.contains(n))
    {
        return Err(format!("crit does not list {name}"));
    }
    Ok((alg, expiry))
}

fn rfc3339(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|e| format!("time {s:?} is not rfc 3339: {e}"))
}

/// Standard or URL-safe base64, padded or not: encoders differ (JWS is unpadded base64url,
/// DSSE and x5c standard).
fn b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(s)
        .or_else(|_| B64URL.decode(s.trim_end_matches('=')))
}

/// Attributes `claim` to the registered keys: one fact per key that vouches for it, else
/// one refusal.
fn judge(layer: u32, claim: &Claim, keys: &[TrustedKey], now: i64) -> Vec<Fact> {
    let vouches = if claim.chain.is_empty() {
        by_key(claim, keys)
    } else {
        by_chain(claim, keys)
    };
    match vouches {
        Ok(vouches) => vouches
            .into_iter()
            .map(|(key_id, mut windows)| {
                windows.extend(claim.expiry.map(Window::signature));
                verdict(layer, key_id, &windows, now)
            })
            .collect(),
        Err(reason) => vec![Fact::refused(layer, reason)],
    }
}

/// A registered key that vouches for a signature, and the validity periods it rests on.
type Vouch = (String, Vec<Window>);

/// A signature without certificates: every registered key (a certificate's too) that
/// verifies it.
fn by_key(claim: &Claim, keys: &[TrustedKey]) -> Result<Vec<Vouch>, String> {
    let vouches: Vec<Vouch> = keys
        .iter()
        .filter(|k| k.key.verify(claim.scheme, &claim.msg, &claim.sig).is_ok())
        .map(|k| {
            (
                k.id.clone(),
                k.cert.iter().map(|(w, _)| w.clone()).collect(),
            )
        })
        .collect();
    if vouches.is_empty() {
        return Err("no registered key verifies the signature".into());
    }
    Ok(vouches)
}

/// A signature with its certificates: the leaf's key must verify it, each certificate must
/// be issued by the next, and the chain must hold or be issued by a registered certificate.
fn by_chain(claim: &Claim, keys: &[TrustedKey]) -> Result<Vec<Vouch>, String> {
    let certs = claim
        .chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_cert(der).map_err(|e| format!("certificate {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (leaf, last) = match (certs.first(), certs.last()) {
        (Some(leaf), Some(last)) => (leaf, last),
        _ => return Err("no certificate".into()),
    };
    Key::from_spki(leaf.public_key())
        .and_then(|k| k.verify(claim.scheme, &claim.msg, &claim.sig))
        .map_err(|e| format!("{e} with the signing certificate ({})", leaf.subject()))?;
    for pair in certs.windows(2) {
        if !issued_by(&pair[0], &pair[1]) {
            return Err(format!(
                "certificate {} is not issued by the next in the chain, {}",
                pair[0].subject(),
                pair[1].subject()
            ));
        }
    }
    let windows: Vec<Window> = certs.iter().map(Window::of).collect();
    let vouches: Vec<Vouch> = keys
        .iter()
        .filter(|k| k.kind == TrustedKeyKind::Certificate)
        .filter_map(|k| {
            if claim.chain.contains(&k.der) {
                return Some((k.id.clone(), windows.clone()));
            }
            let anchor = parse_cert(&k.der).ok()?;
            issued_by(last, &anchor).then(|| {
                let mut w = windows.clone();
                w.push(Window::of(&anchor));
                (k.id.clone(), w)
            })
        })
        .collect();
    if vouches.is_empty() {
        return Err(format!(
            "no registered certificate anchors the signing certificate ({})",
            leaf.subject()
        ));
    }
    Ok(vouches)
}

/// Whether `issuer`, a CA with a key this registry accepts, signed `cert` (not with SHA-1).
fn issued_by(cert: &X509Certificate, issuer: &X509Certificate) -> bool {
    let algorithm = cert.signature_algorithm.algorithm.to_id_string();
    issuer.is_ca()
        && !crate::x509::SHA1_SIGNATURES.contains(&algorithm.as_str())
        && Key::from_spki(issuer.public_key()).is_ok()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(format!("malformed certificate: {e}")),
    }
}

fn common_name(cert: &X509Certificate) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// The period in which a certificate, or a signature with an expiry, counts.
#[derive(Debug, Clone)]
struct Window {
    /// `certificate` or `signature`.
    what: &'static str,
    /// The certificate's subject, or empty.
    name: String,
    not_before: i64,
    not_after: i64,
}

impl Window {
    fn of(cert: &X509Certificate) -> Window {
        Window {
            what: "certificate",
            name: cert.subject().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        }
    }

    fn signature(expiry: i64) -> Window {
        Window {
            what: "signature",
            name: String::new(),
            not_before: i64::MIN,
            not_after: expiry,
        }
    }
}

/// The fact for a key that vouches for a signature: valid while every window holds.
fn verdict(layer: u32, key_id: String, windows: &[Window], now: i64) -> Fact {
    let problem = windows.iter().find_map(|w| {
        let name = if w.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", w.name)
        };
        if now < w.not_before {
            Some(format!(
                "{} not yet valid: valid from {}{name}",
                w.what,
                utc(w.not_before)
            ))
        } else if now > w.not_after {
            Some(format!("{} expired at {}{name}", w.what, utc(w.not_after)))
        } else {
            None
        }
    });
    Fact {
        layer,
        key_id: Some(key_id),
        valid: problem.is_none(),
        expires_at: problem
            .is_none()
            .then(|| windows.iter().map(|w| w.not_after).min())
            .flatten(),
        reason: problem.unwrap_or_default(),
    }
}

fn utc(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// The public-key algorithms verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    P256,
    P384,
    Rsa,
    Ed25519,
}

impl Alg {
    fn as_str(self) -> &'static str {
        match self {
            Alg::P256 => "ecdsa-p256",
            Alg::P384 => "ecdsa-p384",
            Alg::Rsa => "rsa",
            Alg::Ed25519 => "ed25519",
        }
    }
}

/// How a signature is checked: cosign and DSSE take whatever fits the key; a JWS names its
/// algorithm, which must fit the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Any,
    Jws(JwsAlg),
}

/// The JWS `alg` values Notation allows, but ES512 (P-521, which this registry cannot verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JwsAlg {
    Es256,
    Es384,
    Ps256,
    Ps384,
    Ps512,
}

const JWS_ALGS: [(&str, JwsAlg); 5] = [
    ("ES256", JwsAlg::Es256),
    ("ES384", JwsAlg::Es384),
    ("PS256", JwsAlg::Ps256),
    ("PS384", JwsAlg::Ps384),
    ("PS512", JwsAlg::Ps512),
];

impl JwsAlg {
    fn parse(alg: &str) -> Result<JwsAlg, String> {
        match JWS_ALGS.iter().find(|(name, _)| *name == alg) {
            Some((_, a)) => Ok(*a),
            None if alg == "ES512" => Err("alg ES512 (P-521) is not supported".into()),
            None => Err(format!("alg {alg} is not one of notation's")),
        }
    }

    fn name(self) -> &'static str {
        JWS_ALGS
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(name, _)| name)
    }
}

/// A public key: its algorithm and the SPKI's `subjectPublicKey` bits (ring's input).
#[derive(Debug, Clone)]
struct Key {
    alg: Alg,
    raw: Vec<u8>,
}

impl Key {
    fn from_spki(spki: &SubjectPublicKeyInfo) -> Result<Key, String> {
        let raw = spki.subject_public_key.data.to_vec();
        let params = spki.algorithm.parameters.as_ref();
        let curve = params
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let (alg, len) = match spki.algorithm.algorithm.to_id_string().as_str() {
            // id-ecPublicKey: prime256v1, secp384r1, uncompressed points
            "1.2.840.10045.2.1" => match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => (Alg::P256, Some(65)),
                Some("1.3.132.0.34") => (Alg::P384, Some(97)),
                _ => return Err("an ecdsa key not on P-256 or P-384".into()),
            },
            // rsaEncryption
            "1.2.840.113549.1.1.1" => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPublicKey::from_public_key_der(spki.raw)
                    .map_err(|e| format!("malformed rsa key: {e}"))?;
                let bits = key.n().bits();
                if !(2048..=8192).contains(&bits) {
                    return Err(format!("an rsa key of {bits} bits (2048 to 8192)"));
                }
                (Alg::Rsa, None)
            }
            // id-Ed25519
            "1.3.101.112" => (Alg::Ed25519, Some(32)),
            oid => {
                return Err(format!(
                    "key algorithm {oid} is not supported (ecdsa P-256 or P-384, rsa, ed25519)"
                ))
            }
        };
        let ec = matches!(alg, Alg::P256 | Alg::P384);
        if len.is_some_and(|n| raw.len() != n || (ec && raw.first() != Some(&4))) {
            return Err(format!("malformed {} key", alg.as_str()));
        }
        Ok(Key { alg, raw })
    }

    /// Checks `sig` over `msg`. ECDSA: ASN.1 DER or fixed `r||s`, SHA-256 on P-256 and
    /// SHA-384 on P-384, high S accepted (as Go does); RSA: PKCS#1 v1.5 or PSS with
    /// SHA-256 (PSS salt of the hash's length for a JWS); Ed25519 over the message.
    fn verify(&self, scheme: Scheme, msg: &[u8], sig: &[u8]) -> Result<(), String> {
        use ring::signature::{self as rs, VerificationAlgorithm};
        let any = |algs: &[&'static dyn VerificationAlgorithm]| {
            algs.iter().any(|a| {
                rs::UnparsedPublicKey::new(*a, &self.raw)
                    .verify(msg, sig)
                    .is_ok()
            })
        };
        let ok = match (scheme, self.alg) {
            (Scheme::Any, Alg::P256) => {
                any(&[&rs::ECDSA_P256_SHA256_ASN1, &rs::ECDSA_P256_SHA256_FIXED])
            }
            (Scheme::Any, Alg::P384) => {
                any(&[&rs::ECDSA_P384_SHA384_ASN1, &rs::ECDSA_P384_SHA384_FIXED])
            }
            (Scheme::Any, Alg::Rsa) => any(&[
                &rs::RSA_PKCS1_2048_8192_SHA256,
                &rs::RSA_PSS_2048_8192_SHA256,
            ]),
            (Scheme::Any, Alg::Ed25519) => any(&[&rs::ED25519]),
            (Scheme::Jws(JwsAlg::Es256), Alg::P256) => any(&[&rs::ECDSA_P256_SHA256_FIXED]),
            (Scheme::Jws(JwsAlg::Es384), Alg::P384) => any(&[&rs::ECDSA_P384_SHA384_FIXED]),
            (Scheme::Jws(JwsAlg::Ps256), Alg::Rsa) => any(&[&rs::RSA_PSS_2048_8192_SHA256]),
            (Scheme::Jws(JwsAlg::Ps384), Alg::Rsa) => any(&[&rs::RSA_PSS_2048_8192_SHA384]),
            (Scheme::Jws(JwsAlg::Ps512), Alg::Rsa) => any(&[&rs::RSA_PSS_2048_8192_SHA512]),
            (Scheme::Jws(alg), key) => {
                return Err(format!(
                    "alg {} does not fit an {} key",
                    alg.name(),
                    key.as_str()
                ))
            }
        };
        if ok {
            Ok(())
        } else {
            Err("the signature does not verify".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, ArtifactKey, Pushable, TestCa};
    use std::time::{SystemTime, UNIX_EPOCH};

    const IMAGE: (&str, &str, u64) = (
        OCI_MANIFEST,
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        1234,
    );
    const OTHER: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const REFERENCE: &str = "127.0.0.1:5000/acme/app";
    const DAY: i64 = 86_400;

    fn now() -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        i64::try_from(secs).unwrap()
    }

    fn trusted(pem: &str) -> TrustedKey {
        TrustedKey::from_pem(pem).unwrap()
    }

    /// Keys registered by someone else.
    fn unrelated() -> Vec<TrustedKey> {
        vec![
            trusted(&ArtifactKey::new().public_pem()),
            trusted(&TestCa::new("someone else's ca").ca_pem()),
        ]
    }

    /// The layers' contents: the blobs after the config.
    fn layers(p: &Pushable) -> Vec<Option<Vec<u8>>> {
        p.blobs[1..].iter().cloned().map(Some).collect()
    }

    /// Classifies and verifies `p` as the registry does.
    fn check(p: &Pushable, keys: &[TrustedKey], now: i64) -> Vec<Fact> {
        let artifact = classify(&p.manifest, p.tag.as_deref()).expect("a signature artifact");
        verify(&artifact, &layers(p), keys, now)
    }

    /// The one fact about `p`'s one layer.
    fn only(facts: Vec<Fact>) -> Fact {
        assert_eq!(facts.len(), 1, "{facts:?}");
        facts.into_iter().next().unwrap()
    }

    /// `p` with its manifest edited (re-serialised: classify reads it, nothing signs it).
    fn edit(p: &Pushable, f: impl FnOnce(&mut Value)) -> Pushable {
        let mut manifest: Value = serde_json::from_slice(&p.manifest).unwrap();
        f(&mut manifest);
        Pushable {
            manifest: serde_json::to_vec(&manifest).unwrap(),
            ..p.clone()
        }
    }

    /// `p` with its simple-signing signature replaced by `sig`.
    fn resigned(p: &Pushable, sig: &[u8]) -> Pushable {
        edit(p, |m| {
            m["layers"][0]["annotations"][COSIGN_SIGNATURE] = B64.encode(sig).into();
        })
    }

    /// The cosign tag-scheme artifact pushed instead as an oci-1-1 referrer.
    fn oci_1_1(p: &Pushable) -> Pushable {
        let mut p = edit(p, |m| {
            m["artifactType"] = COSIGN_ARTIFACT.into();
            m["config"]["mediaType"] = COSIGN_ARTIFACT.into();
            m["subject"] =
                serde_json::json!({"mediaType": IMAGE.0, "digest": IMAGE.1, "size": IMAGE.2});
        });
        p.tag = None;
        p
    }

    struct Form {
        name: &'static str,
        format: ArtifactFormat,
        pushable: Pushable,
        /// What the signer's owner registers.
        trust: String,
        expires_at: Option<i64>,
    }

    fn forms(now: i64) -> Vec<Form> {
        let key = ArtifactKey::new();
        let ca = TestCa::new("acme ca");
        let leaf = ca.leaf("acme signer", now - DAY, now + 30 * DAY);
        let leaf_expiry = Some(now + 30 * DAY);
        let form = |name, format, pushable, trust: String, expires_at| Form {
            name,
            format,
            pushable,
            trust,
            expires_at,
        };
        let cosign = ArtifactFormat::Cosign;
        let tagged = testing::cosign_simple_signing(IMAGE, REFERENCE, &key);
        vec![
            form(
                "cosign tag, key",
                cosign,
                tagged.clone(),
                key.public_pem(),
                None,
            ),
            form(
                "cosign oci-1-1, key",
                cosign,
                oci_1_1(&tagged),
                key.public_pem(),
                None,
            ),
            form(
                "cosign tag, certificate",
                cosign,
                testing::cosign_simple_signing(IMAGE, REFERENCE, &leaf),
                ca.ca_pem(),
                leaf_expiry,
            ),
            form(
                "cosign tag, registered leaf's key",
                cosign,
                testing::cosign_simple_signing(IMAGE, REFERENCE, &leaf.bare()),
                leaf.cert_pem().unwrap(),
                leaf_expiry,
            ),
            form(
                "bundle, key",
                cosign,
                testing::cosign_bundle(IMAGE, &key),
                key.public_pem(),
                None,
            ),
            form(
                "bundle, certificate",
                cosign,
                testing::cosign_bundle(IMAGE, &leaf),
                ca.ca_pem(),
                leaf_expiry,
            ),
            form(
                "notation",
                ArtifactFormat::Notation,
                testing::notation_jws(IMAGE, &leaf, None),
                ca.ca_pem(),
                leaf_expiry,
            ),
            form(
                "notation, registered leaf",
                ArtifactFormat::Notation,
                testing::notation_jws(IMAGE, &leaf, None),
                leaf.cert_pem().unwrap(),
                leaf_expiry,
            ),
            form(
                "notation with an expiry",
                ArtifactFormat::Notation,
                testing::notation_jws(IMAGE, &leaf, Some(now + DAY)),
                ca.ca_pem(),
                Some(now + DAY),
            ),
        ]
    }

    #[test]
    fn each_form_verifies_with_its_registered_key_only() {
        let now = now();
        for f in forms(now) {
            let artifact = classify(&f.pushable.manifest, f.pushable.tag.as_deref()).unwrap();
            assert_eq!(artifact.format, f.format, "{}", f.name);
            assert_eq!(artifact.subject, IMAGE.1, "{}", f.name);
            let registered = trusted(&f.trust);
            let keys = [unrelated(), vec![registered.clone()]].concat();
            assert_eq!(
                check(&f.pushable, &keys, now),
                vec![Fact {
                    layer: 0,
                    key_id: Some(registered.id.clone()),
                    valid: true,
                    reason: String::new(),
                    expires_at: f.expires_at,
                }],
                "{}",
                f.name
            );
            let fact = only(check(&f.pushable, &unrelated(), now));
            assert!(fact.key_id.is_none() && !fact.valid, "{}: {fact:?}", f.name);
            assert!(
                fact.reason.starts_with("no registered"),
                "{}: {}",
                f.name,
                fact.reason
            );
        }
    }

    #[test]
    fn a_signature_of_another_image_is_refused_naming_both() {
        let now = now();
        let key = ArtifactKey::new();
        let keys = [trusted(&key.public_pem())];
        let signed_other =
            testing::cosign_simple_signing_with(IMAGE, REFERENCE, &key, OTHER, false);
        let fact = only(check(&signed_other, &keys, now));
        assert_eq!(
            fact.reason,
            format!("payload names {OTHER} not the subject {}", IMAGE.1)
        );
        // Each form replayed onto another image: the tag or the subject moved.
        for f in forms(now) {
            let moved = match &f.pushable.tag {
                Some(_) => Pushable {
                    tag: Some(format!("{}.sig", OTHER.replace(':', "-"))),
                    ..f.pushable.clone()
                },
                None => edit(&f.pushable, |m| m["subject"]["digest"] = OTHER.into()),
            };
            let fact = only(check(&moved, &[trusted(&f.trust)], now));
            assert!(!fact.valid && fact.key_id.is_none(), "{}: {fact:?}", f.name);
            assert!(
                fact.reason.contains(OTHER) && fact.reason.contains(IMAGE.1),
                "{}: {}",
                f.name,
                fact.reason
            );
        }
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let now = now();
        let ca = TestCa::new("acme ca");
        let leaf = ca.leaf("acme signer", now - DAY, now + DAY);
        let key = ArtifactKey::new();
        for (signer, trust, reason) in [
            (
                &key,
                key.public_pem(),
                "no registered key verifies the signature",
            ),
            (
                &leaf,
                ca.ca_pem(),
                "the signature does not verify with the signing certificate (CN=acme signer)",
            ),
        ] {
            let tampered =
                testing::cosign_simple_signing_with(IMAGE, REFERENCE, signer, IMAGE.1, true);
            assert_eq!(
                only(check(&tampered, &[trusted(&trust)], now)).reason,
                reason
            );
        }
    }

    #[test]
    fn certificates_and_signatures_count_only_while_valid() {
        let now = now();
        let ca = TestCa::new("acme ca");
        let expired = ca.leaf("old signer", now - 30 * DAY, now - DAY);
        let early = ca.leaf("new signer", now + DAY, now + 30 * DAY);
        let valid = ca.leaf("signer", now - DAY, now + DAY);
        let registered = trusted(&ca.ca_pem());
        let expired_reason = format!("certificate expired at {} (CN=old signer)", utc(now - DAY));
        let cases = [
            (
                testing::cosign_simple_signing(IMAGE, REFERENCE, &expired),
                expired_reason.clone(),
            ),
            (
                testing::cosign_bundle(IMAGE, &expired),
                expired_reason.clone(),
            ),
            (testing::notation_jws(IMAGE, &expired, None), expired_reason),
            (
                testing::notation_jws(IMAGE, &early, None),
                format!(
                    "certificate not yet valid: valid from {} (CN=new signer)",
                    utc(now + DAY)
                ),
            ),
            (
                testing::notation_jws(IMAGE, &valid, Some(now - 60)),
                format!("signature expired at {}", utc(now - 60)),
            ),
        ];
        for (pushable, reason) in cases {
            let fact = only(check(&pushable, std::slice::from_ref(&registered), now));
            assert_eq!(fact.key_id.as_ref(), Some(&registered.id));
            assert_eq!(
                (fact.valid, fact.reason, fact.expires_at),
                (false, reason, None)
            );
        }
        // An expired trust root fails every chain it anchors.
        let old_ca = TestCa::with_validity("old ca", now - 30 * DAY, now - DAY);
        let leaf = old_ca.leaf("signer", now - 2 * DAY, now + DAY);
        let fact = only(check(
            &testing::notation_jws(IMAGE, &leaf, None),
            &[trusted(&old_ca.ca_pem())],
            now,
        ));
        assert!(
            fact.reason.starts_with("certificate expired at ")
                && fact.reason.ends_with("(CN=old ca)"),
            "{fact:?}"
        );
    }

    #[test]
    fn notation_critical_headers() {
        let now = now();
        let ca = TestCa::new("acme ca");
        let leaf = ca.leaf("signer", now - DAY, now + DAY);
        let keys = [trusted(&ca.ca_pem())];
        let cases: [(&[(&str, &str)], &str); 3] = [
            (
                &[("io.example.unknown", "x")],
                "unknown critical header io.example.unknown",
            ),
            (
                &[("signingTime", "x")],
                "unknown critical header signingTime",
            ),
            (
                &[("io.cncf.notary.verificationPlugin", "com.example.plugin")],
                "",
            ),
        ];
        for (extra, reason) in cases {
            let p = testing::notation_jws_with(IMAGE, &leaf, None, extra);
            assert_eq!(only(check(&p, &keys, now)).reason, reason);
        }
        let header = |h: Value| {
            let h: Map<String, Value> = serde_json::from_value(h).unwrap();
            protected_header(&h).map(|(alg, expiry)| (alg.name(), expiry))
        };
        let base = serde_json::json!({
            "alg": "ES256", "cty": NOTATION_PAYLOAD, "crit": [SIGNING_SCHEME],
            SIGNING_SCHEME: "notary.x509", SIGNING_TIME: "2026-12-07T12:00:00Z",
        });
        assert_eq!(header(base.clone()), Ok(("ES256", None)));
        let with = |k: &str, v: Value| {
            let mut h = base.clone();
            h[k] = v;
            header(h)
        };
        let refusals = [
            with("crit", serde_json::json!([SIGNING_SCHEME, EXPIRY])),
            with(EXPIRY, "2027-01-01T00:00:00Z".into()),
            with("crit", serde_json::json!([])),
            with("alg", "ES512".into()),
            with("alg", "HS256".into()),
            with("cty", "application/json".into()),
            with(SIGNING_SCHEME, "notary.default".into()),
            with(SIGNING_TIME, "yesterday".into()),
        ];
        let reasons: Vec<String> = refusals.into_iter().map(|r| r.unwrap_err()).collect();
        assert_eq!(
            reasons,
            [
                "critical header io.cncf.notary.expiry is missing",
                "crit does not list io.cncf.notary.expiry",
                "crit does not list io.cncf.notary.signingScheme",
                "alg ES512 (P-521) is not supported",
                "alg HS256 is not one of notation's",
                "cty application/json is not application/vnd.cncf.notary.payload.v1+json",
                "signing scheme notary.default is not supported",
                "time \"yesterday\" is not rfc 3339: premature end of input",
            ]
        );
    }

    #[test]
    fn notation_jws_has_the_specification_shape() {
        let now = now();
        let ca = TestCa::new("acme ca");
        let leaf = ca.leaf("signer", now - DAY, now + DAY);
        let p = testing::notation_jws(IMAGE, &leaf, Some(now + DAY));
        let manifest: Value = serde_json::from_slice(&p.manifest).unwrap();
        let envelope: Map<String, Value> = serde_json::from_slice(&p.blobs[1]).unwrap();
        assert_eq!(
            envelope.keys().collect::<Vec<_>>(),
            ["header", "payload", "protected", "signature"]
        );
        let url = |name: &str| {
            let text = envelope[name].as_str().unwrap();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{name} is not unpadded base64url"
            );
            B64URL.decode(text).unwrap()
        };
        let protected: Map<String, Value> = serde_json::from_slice(&url("protected")).unwrap();
        assert_eq!(
            protected.keys().collect::<Vec<_>>(),
            ["alg", "crit", "cty", EXPIRY, SIGNING_SCHEME, SIGNING_TIME]
        );
        assert_eq!(protected["alg"], "ES256");
        assert_eq!(protected["cty"], NOTATION_PAYLOAD);
        assert_eq!(
            protected["crit"],
            serde_json::json!([SIGNING_SCHEME, EXPIRY])
        );
        assert_eq!(protected[SIGNING_SCHEME], "notary.x509");
        assert_eq!(rfc3339(protected[EXPIRY].as_str().unwrap()), Ok(now + DAY));
        assert!((rfc3339(protected[SIGNING_TIME].as_str().unwrap()).unwrap() - now).abs() < 60);
        assert_eq!(
            serde_json::from_slice::<Value>(&url("payload")).unwrap(),
            serde_json::json!({"targetArtifact": {"mediaType": IMAGE.0, "digest": IMAGE.1, "size": IMAGE.2}})
        );
        assert_eq!(url("signature").len(), 64, "ES256 is r||s");
        let x5c: Vec<Vec<u8>> = envelope["header"]["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| B64.decode(c.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(x5c, leaf.chain);
        assert!(envelope["header"]["io.cncf.notary.signingAgent"].is_string());
        // The thumbprints are the registered ids of the chain's certificates.
        let ids = [
            trusted(&leaf.cert_pem().unwrap()).id,
            trusted(&ca.ca_pem()).id,
        ];
        let thumbprints = manifest["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<String>>(thumbprints).unwrap(),
            ids
        );
        assert_eq!(manifest["artifactType"], NOTATION_ARTIFACT);
        assert_eq!(manifest["layers"][0]["mediaType"], JOSE);
        assert_eq!(
            manifest["config"],
            serde_json::json!({"mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2, "data": "e30="})
        );
    }

    #[test]
    fn pushables_are_registry_ready() {
        for f in forms(now()) {
            let p = &f.pushable;
            let m: Value = serde_json::from_slice(&p.manifest).unwrap();
            assert_eq!(
                (m["schemaVersion"].as_u64(), p.media_type.as_str()),
                (Some(2), OCI_MANIFEST)
            );
            assert_eq!(m["mediaType"], OCI_MANIFEST);
            let descriptors = [
                vec![m["config"].clone()],
                m["layers"].as_array().unwrap().clone(),
            ]
            .concat();
            assert_eq!(descriptors.len(), p.blobs.len(), "{}", f.name);
            for (d, blob) in descriptors.iter().zip(&p.blobs) {
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(blob)));
                assert_eq!(d["digest"], digest.as_str(), "{}", f.name);
                assert_eq!(d["size"].as_u64(), Some(blob.len() as u64), "{}", f.name);
            }
            if p.tag.is_none() {
                assert_eq!(m["subject"]["digest"], IMAGE.1, "{}", f.name);
            }
        }
        let tagged = testing::cosign_simple_signing(IMAGE, REFERENCE, &ArtifactKey::new());
        assert_eq!(
            tagged.tag.as_deref(),
            Some(&*format!("sha256-{}.sig", &IMAGE.1[7..]))
        );
        let payload: Value = serde_json::from_slice(&tagged.blobs[1]).unwrap();
        assert_eq!(
            payload["critical"]["identity"]["docker-reference"],
            REFERENCE
        );
        let config = String::from_utf8(tagged.blobs[0].clone()).unwrap();
        let payload_digest = format!("sha256:{}", hex::encode(Sha256::digest(&tagged.blobs[1])));
        assert!(
            config.contains(&format!(r#""diff_ids":["{payload_digest}"]"#)),
            "{config}"
        );
    }

    #[test]
    fn classify_ignores_what_is_not_a_signature() {
        let key = ArtifactKey::new();
        let tagged = testing::cosign_simple_signing(IMAGE, REFERENCE, &key);
        let notation = {
            let ca = TestCa::new("ca");
            testing::notation_jws(IMAGE, &ca.leaf("signer", 0, 4_102_444_800), None)
        };
        let sig_tag = tagged.tag.as_deref();
        let image = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": IMAGE.1, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": IMAGE.1, "size": 3}],
        })
        .to_string();
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "artifactType": NOTATION_ARTIFACT,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": IMAGE.1, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": IMAGE.1, "size": 2},
        })
        .to_string();
        let sbom = edit(&notation, |m| {
            m["artifactType"] = "application/spdx+json".into()
        });
        let no_subject = edit(&notation, |m| {
            m.as_object_mut().unwrap().remove("subject");
        });
        let sha512_subject = edit(&notation, |m| {
            m["subject"]["digest"] = format!("sha512:{}", "a".repeat(128)).into()
        });
        let bad_hex = edit(&notation, |m| {
            m["subject"]["digest"] = IMAGE.1.to_uppercase().replace("SHA256", "sha256").into()
        });
        let attestation = edit(&tagged, |m| {
            m["layers"][0]["mediaType"] = "application/vnd.dsse.envelope.v1+json".into();
        });
        let no_layers = edit(&notation, |m| m["layers"] = serde_json::json!([]));
        let cases: [(&str, &[u8], Option<&str>); 14] = [
            ("an image", image.as_bytes(), Some("latest")),
            ("an image under a .sig tag", image.as_bytes(), sig_tag),
            ("an index", index.as_bytes(), None),
            ("an sbom referrer", &sbom.manifest, None),
            (
                "a notation manifest without subject",
                &no_subject.manifest,
                None,
            ),
            ("a sha512 subject", &sha512_subject.manifest, None),
            ("an uppercase subject", &bad_hex.manifest, None),
            (
                "an attestation under a .sig tag",
                &attestation.manifest,
                sig_tag,
            ),
            (
                "simple signing under another tag",
                &tagged.manifest,
                Some("sha256-abc.sig"),
            ),
            ("simple signing by digest", &tagged.manifest, None),
            ("no layers", &no_layers.manifest, None),
            ("garbage", b"\xff\x00garbage", sig_tag),
            ("json null", b"null", sig_tag),
            (
                "schema version 1",
                br#"{"schemaVersion":1,"layers":[]}"#,
                sig_tag,
            ),
        ];
        for (name, manifest, tag) in cases {
            assert_eq!(classify(manifest, tag), None, "{name}");
        }
        assert!(classify(&tagged.manifest, sig_tag).is_some());
        assert!(classify(&notation.manifest, None).is_some());
    }

    #[test]
    fn high_s_ecdsa_signatures_verify() {
        let key = ArtifactKey::new();
        let p = testing::cosign_simple_signing(IMAGE, REFERENCE, &key);
        let sig: p256::ecdsa::Signature = signature::Signer::sign(&key.key, &p.blobs[1][..]);
        let low = sig.normalize_s().unwrap_or(sig);
        let (r, s) = low.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert!(high.normalize_s().is_some(), "s is high");
        let keys = [trusted(&key.public_pem())];
        for sig in [high.to_der().as_bytes().to_vec(), high.to_bytes().to_vec()] {
            assert!(only(check(&resigned(&p, &sig), &keys, now())).valid);
        }
    }

    #[test]
    fn p384_and_ed25519_keys_verify() {
        use ring::signature::{self as rs, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let p = testing::cosign_simple_signing(IMAGE, REFERENCE, &ArtifactKey::new());
        let payload = &p.blobs[1];
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let signer = rs::EcdsaKeyPair::from_pkcs8(
            &rs::ECDSA_P384_SHA384_ASN1_SIGNING,
            &p384.serialize_der(),
            &rng,
        )
        .unwrap();
        let p384_sig = signer.sign(&rng, payload).unwrap().as_ref().to_vec();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let signer = rs::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&ed.serialize_der()).unwrap();
        assert_eq!(signer.public_key().as_ref().len(), 32);
        let ed_sig = signer.sign(payload).as_ref().to_vec();
        for (pair, sig, alg) in [(p384, p384_sig, "ecdsa-p384"), (ed, ed_sig, "ed25519")] {
            let key = trusted(&pair.public_key_pem());
            assert_eq!(key.algorithm(), alg);
            let fact = only(check(
                &resigned(&p, &sig),
                std::slice::from_ref(&key),
                now(),
            ));
            assert_eq!((fact.valid, fact.key_id), (true, Some(key.id)), "{alg}");
        }
    }

    #[test]
    fn rsa_keys_verify_pkcs1_and_pss() {
        use rsa::pkcs8::EncodePublicKey;
        use signature::{RandomizedSigner, SignatureEncoding, Signer};
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let key = trusted(&pem);
        assert_eq!(key.algorithm(), "rsa");
        let p = testing::cosign_simple_signing(IMAGE, REFERENCE, &ArtifactKey::new());
        let payload = &p.blobs[1][..];
        let pkcs1 = rsa::pkcs1v15::SigningKey::<Sha256>::new(private.clone()).sign(payload);
        let pss = rsa::pss::BlindedSigningKey::<Sha256>::new(private)
            .sign_with_rng(&mut rand_core::OsRng, payload);
        for sig in [pkcs1.to_vec(), pss.to_vec()] {
            assert!(
                only(check(
                    &resigned(&p, &sig),
                    std::slice::from_ref(&key),
                    now()
                ))
                .valid
            );
        }
    }

    #[test]
    fn jws_alg_must_fit_the_key() {
        let key = ArtifactKey::new();
        let spki = {
            use p256::pkcs8::EncodePublicKey;
            key.key.verifying_key().to_public_key_der().unwrap()
        };
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki.as_bytes()).unwrap();
        let k = Key::from_spki(&spki).unwrap();
        let sig: p256::ecdsa::Signature = signature::Signer::sign(&key.key, b"msg");
        assert_eq!(
            k.verify(Scheme::Jws(JwsAlg::Es256), b"msg", &sig.to_bytes()),
            Ok(())
        );
        assert_eq!(
            k.verify(Scheme::Jws(JwsAlg::Es256), b"msg", sig.to_der().as_bytes()),
            Err("the signature does not verify".into()),
            "a JWS signature is r||s"
        );
        assert_eq!(
            k.verify(Scheme::Jws(JwsAlg::Ps256), b"msg", &sig.to_bytes()),
            Err("alg PS256 does not fit an ecdsa-p256 key".into())
        );
    }

    #[test]
    fn layers_that_are_not_verified_get_a_reason() {
        let now = now();
        let key = ArtifactKey::new();
        let keys = [trusted(&key.public_pem())];
        let bundle = testing::cosign_bundle(IMAGE, &key);
        let artifact = classify(&bundle.manifest, None).unwrap();
        let mut message_signature: Value = serde_json::from_slice(&bundle.blobs[1]).unwrap();
        message_signature
            .as_object_mut()
            .unwrap()
            .remove("dsseEnvelope");
        message_signature["messageSignature"] = serde_json::json!({"signature": "AAAA"});
        let mut attestation: Value = serde_json::from_slice(&bundle.blobs[1]).unwrap();
        let statement = serde_json::json!({"_type": STATEMENTS[0], "subject": [{"digest": {"sha256": &IMAGE.1[7..]}}],
            "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}});
        attestation["dsseEnvelope"]["payload"] = B64.encode(statement.to_string()).into();
        let cases = [
            (None, "the layer could not be read".to_string()),
            (Some(vec![0; MAX_LAYER_BYTES as usize + 1]), format!("the layer is larger than {MAX_LAYER_BYTES} bytes")),
            (Some(serde_json::to_vec(&message_signature).unwrap()), "message signatures are not image signatures".into()),
            (
                Some(serde_json::to_vec(&attestation).unwrap()),
                format!("statement predicate https://slsa.dev/provenance/v1 is not a signature ({COSIGN_SIGN_PREDICATE})"),
            ),
        ];
        for (blob, reason) in cases {
            assert_eq!(only(verify(&artifact, &[blob], &keys, now)).reason, reason);
        }
        assert_eq!(
            only(verify(&artifact, &[], &keys, now)).reason,
            "the layer could not be read"
        );
        // COSE is recognised, not verified.
        let ca = TestCa::new("ca");
        let notation = testing::notation_jws(IMAGE, &ca.leaf("signer", 0, 4_102_444_800), None);
        let cose = edit(&notation, |m| m["layers"][0]["mediaType"] = COSE.into());
        assert_eq!(
            only(check(&cose, &[trusted(&ca.ca_pem())], now)).reason,
            "COSE envelopes are not verified"
        );
        // Every layer gets its facts.
        let tagged = testing::cosign_simple_signing(IMAGE, REFERENCE, &key);
        let twice = edit(&tagged, |m| {
            m["layers"] = serde_json::json!([m["layers"][0], m["layers"][0]])
        });
        let artifact = classify(&twice.manifest, twice.tag.as_deref()).unwrap();
        let facts = verify(
            &artifact,
            &[Some(tagged.blobs[1].clone()), None],
            &keys,
            now,
        );
        assert_eq!(
            facts.iter().map(|f| (f.layer, f.valid)).collect::<Vec<_>>(),
            [(0, true), (1, false)]
        );
    }

    #[test]
    fn trusted_keys_parse_or_say_why_not() {
        let ca = TestCa::new("acme ca");
        let key = ArtifactKey::new();
        let public = trusted(&key.public_pem());
        assert_eq!(
            (public.kind, public.not_after(), public.subject()),
            (TrustedKeyKind::PublicKey, None, None)
        );
        assert_eq!(public.id, hex::encode(Sha256::digest(public.der())));
        let cert = trusted(&ca.ca_pem());
        assert_eq!(cert.kind.as_str(), "certificate");
        assert_eq!(
            (cert.not_after(), cert.subject().as_deref()),
            (Some(4_102_444_800), Some("acme ca"))
        );
        let small_rsa = {
            use rsa::pkcs8::EncodePublicKey;
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024)
                .unwrap()
                .to_public_key()
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .unwrap()
        };
        let private = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let refusals = [
            (format!("{}{}", key.public_pem(), ca.ca_pem()), "unsupported key: more than one pem block: register each key or certificate on its own"),
            (private, "unsupported key: a PRIVATE KEY: register its public key (a PUBLIC KEY block), never the private key"),
            (small_rsa, "unsupported key: an rsa key of 1024 bits (2048 to 8192)"),
            ("hello".into(), "malformed pem key: no -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE----- block"),
            (key.public_pem().replace("PUBLIC KEY", "RSA PUBLIC KEY"), "unsupported key: a RSA PUBLIC KEY block: register a PUBLIC KEY or a CERTIFICATE"),
            (" ".repeat(MAX_PEM_BYTES + 1), "unsupported key: 16385 bytes of pem (at most 16384): register one key or certificate"),
        ];
        for (pem, reason) in refusals {
            assert_eq!(TrustedKey::from_pem(&pem).unwrap_err().to_string(), reason);
        }
    }

    /// `classify` and `verify` never panic, whatever bytes they are given.
    #[test]
    fn mutated_artifacts_never_panic() {
        let now = now();
        for f in forms(now) {
            let p = &f.pushable;
            let keys = [unrelated(), vec![trusted(&f.trust)]].concat();
            let blobs = layers(p);
            for i in 0..p.manifest.len() {
                let mut m = p.manifest.clone();
                m[i] ^= 0x21;
                for manifest in [&m[..], &p.manifest[..i]] {
                    if let Some(a) = classify(manifest, p.tag.as_deref()) {
                        verify(&a, &blobs, &keys, now);
                    }
                }
            }
            let artifact = classify(&p.manifest, p.tag.as_deref()).unwrap();
            let blob = &p.blobs[1];
            for i in (0..blob.len()).step_by(blob.len() / 150 + 1) {
                for flip in [0x01, 0x80] {
                    let mut b = blob.clone();
                    b[i] ^= flip;
                    let facts = verify(&artifact, &[Some(b)], &keys, now);
                    assert!(!facts.is_empty());
                }
                verify(&artifact, &[Some(blob[..i].to_vec())], &keys, now);
            }
        }
    }
}
