//! Signature artifacts made by tests as the real tools write them, byte for byte, for
//! [`crate::artifacts`] and the registry's end-to-end tests: cosign's tag scheme
//! (go-containerregistry's JSON), a Sigstore bundle as `@sigstore/oci` attaches it, and a
//! Notation JWS envelope as notation-go and oras-go write it. Test support: panics by design.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// A manifest to push and the blobs (config and layers) to upload before it.
#[derive(Debug, Clone)]
pub struct Pushable {
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// The tag to push the manifest under; `None`: by digest.
    pub tag: Option<String>,
    pub blobs: Vec<Vec<u8>>,
}

impl Pushable {
    /// The manifest's digest, `sha256:<hex>`.
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }
}

/// A P-256 signing key, with its certificate chain (leaf first) when a [`TestCa`] issued it.
#[derive(Clone)]
pub struct ArtifactKey {
    pub key: SigningKey,
    pub chain: Vec<Vec<u8>>,
}

impl Default for ArtifactKey {
    fn default() -> ArtifactKey {
        ArtifactKey::new()
    }
}

impl ArtifactKey {
    /// A fresh P-256 key without a certificate.
    pub fn new() -> ArtifactKey {
        ArtifactKey {
            key: SigningKey::random(&mut rand_core::OsRng),
            chain: Vec::new(),
        }
    }

    /// The SPKI PEM, as `cosign generate-key-pair` writes `cosign.pub`.
    pub fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey;
        pem(
            "PUBLIC KEY",
            self.key
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes(),
        )
    }

    /// The leaf certificate's PEM, when the key has one.
    pub fn cert_pem(&self) -> Option<String> {
        self.chain.first().map(|der| pem("CERTIFICATE", der))
    }

    /// The same key without its certificates: it signs as a bare key.
    pub fn bare(&self) -> ArtifactKey {
        ArtifactKey {
            key: self.key.clone(),
            chain: Vec::new(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        signature::Signer::sign(&self.key, msg)
    }
}

/// A self-signed P-256 CA that issues code-signing leaves.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    /// A CA valid from 2000 to 2100.
    pub fn new(cn: &str) -> TestCa {
        TestCa::with_validity(cn, 946_684_800, 4_102_444_800)
    }

    /// A CA valid from `not_before` to `not_after` (unix seconds).
    pub fn with_validity(cn: &str, not_before: i64, not_after: i64) -> TestCa {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = cert_params(cn, not_before, not_after);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    /// The CA certificate's PEM: what a user registers as a trust root.
    pub fn ca_pem(&self) -> String {
        pem("CERTIFICATE", self.cert.der())
    }

    /// A P-256 leaf (digitalSignature, codeSigning) valid from `not_before` to `not_after`,
    /// carrying the chain `[leaf, ca]`.
    pub fn leaf(&self, cn: &str, not_before: i64, not_after: i64) -> ArtifactKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = cert_params(cn, not_before, not_after);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        let cert = params.signed_by(&pair, &self.cert, &self.key).unwrap();
        use p256::pkcs8::DecodePrivateKey;
        ArtifactKey {
            key: SigningKey::from_pkcs8_der(&pair.serialize_der()).unwrap(),
            chain: vec![cert.der().to_vec(), self.cert.der().to_vec()],
        }
    }
}

fn cert_params(cn: &str, not_before: i64, not_after: i64) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since = |t: i64| Duration::from_secs(u64::try_from(t).expect("a time after 1970"));
    params.not_before = epoch + since(not_before);
    params.not_after = epoch + since(not_after);
    params
}

/// The cosign tag scheme: the simple-signing payload of `subject` (media type, digest,
/// size) for `reference`, signed by `key`.
pub fn cosign_simple_signing(
    subject: (&str, &str, u64),
    reference: &str,
    key: &ArtifactKey,
) -> Pushable {
    cosign_simple_signing_with(subject, reference, key, subject.1, false)
}

/// [`cosign_simple_signing`] with a payload naming `payload_digest`, or (`tamper`) a payload
/// changed after signing.
pub fn cosign_simple_signing_with(
    subject: (&str, &str, u64),
    reference: &str,
    key: &ArtifactKey,
    payload_digest: &str,
    tamper: bool,
) -> Pushable {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":"cosign container image signature"}},"optional":null}}"#,
        json(reference),
        json(payload_digest)
    );
    let mut annotations = BTreeMap::from([(
        "dev.cosignproject.cosign/signature",
        B64.encode(key.sign(payload.as_bytes()).to_der()),
    )]);
    if let Some((leaf, rest)) = key.chain.split_first() {
        annotations.insert("dev.sigstore.cosign/certificate", pem("CERTIFICATE", leaf));
        if !rest.is_empty() {
            let chain = rest.iter().map(|der| pem("CERTIFICATE", der)).collect();
            annotations.insert("dev.sigstore.cosign/chain", chain);
        }
    }
    let payload = if tamper {
        payload.replace(r#""optional":null"#, r#""optional":{"tampered":"true"}"#)
    } else {
        payload
    }
    .into_bytes();
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        json(&digest(&payload))
    )
    .into_bytes();
    // go-containerregistry's descriptor: mediaType, size, digest, annotations.
    let ggcr = |media_type: &str, blob: &[u8], annotations: Option<String>| {
        let mut members = vec![
            ("mediaType", json(media_type)),
            ("size", blob.len().to_string()),
            ("digest", json(&digest(blob))),
        ];
        members.extend(annotations.map(|a| ("annotations", a)));
        object(&members)
    };
    let manifest = object(&[
        ("schemaVersion", "2".into()),
        ("mediaType", json(OCI_MANIFEST)),
        (
            "config",
            ggcr("application/vnd.oci.image.config.v1+json", &config, None),
        ),
        (
            "layers",
            format!(
                "[{}]",
                ggcr(
                    "application/vnd.dev.cosign.simplesigning.v1+json",
                    &payload,
                    Some(string_map(&annotations))
                )
            ),
        ),
    ]);
    Pushable {
        manifest: manifest.into_bytes(),
        media_type: OCI_MANIFEST.into(),
        tag: Some(format!("{}.sig", subject.1.replace(':', "-"))),
        blobs: vec![config, payload],
    }
}

/// A Sigstore bundle v0.3 referrer as `@sigstore/oci` attaches it: a DSSE envelope over
/// cosign's signature statement about `subject`, signed by `key` (its certificate in the
/// bundle when it has one, else a public-key hint).
pub fn cosign_bundle(subject: (&str, &str, u64), key: &ArtifactKey) -> Pushable {
    let hex = subject.1.strip_prefix("sha256:").expect("a sha256 subject");
    let statement = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":{}}}}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{{}}}}"#,
        json(hex)
    );
    let payload_type = "application/vnd.in-toto+json";
    let pae = format!(
        "DSSEv1 {} {payload_type} {} {statement}",
        payload_type.len(),
        statement.len()
    );
    let sig = B64.encode(key.sign(pae.as_bytes()).to_der());
    let hint = {
        use p256::pkcs8::EncodePublicKey;
        let spki = key.key.verifying_key().to_public_key_der().unwrap();
        B64.encode(Sha256::digest(spki.as_bytes()))
    };
    let material = match key.chain.first() {
        Some(leaf) => (
            "certificate",
            object(&[("rawBytes", json(&B64.encode(leaf)))]),
        ),
        None => ("publicKey", object(&[("hint", json(&hint))])),
    };
    let bundle = object(&[
        ("mediaType", json(BUNDLE)),
        (
            "verificationMaterial",
            object(&[
                material,
                ("tlogEntries", "[]".into()),
                (
                    "timestampVerificationData",
                    object(&[("rfc3161Timestamps", "[]".into())]),
                ),
            ]),
        ),
        (
            "dsseEnvelope",
            object(&[
                ("payload", json(&B64.encode(&statement))),
                ("payloadType", json(payload_type)),
                (
                    "signatures",
                    format!(
                        "[{}]",
                        object(&[("sig", json(&sig)), ("keyid", json(&hint))])
                    ),
                ),
            ]),
        ),
    ])
    .into_bytes();
    let created = utc_now().replace('Z', ".000Z");
    referrer(
        BUNDLE,
        oci_descriptor(EMPTY, b"{}", &[]),
        (BUNDLE, bundle),
        subject,
        &BTreeMap::from([("org.opencontainers.image.created", created)]),
    )
}

/// A Notation JWS referrer (ES256, signing scheme `notary.x509`, signed now, optional
/// expiry in unix seconds) signed by `leaf`, a leaf of a [`TestCa`].
pub fn notation_jws(
    subject: (&str, &str, u64),
    leaf: &ArtifactKey,
    expiry: Option<i64>,
) -> Pushable {
    notation_jws_with(subject, leaf, expiry, &[])
}

/// [`notation_jws`] with `extra` protected headers (name, value), each listed in `crit`.
pub fn notation_jws_with(
    subject: (&str, &str, u64),
    leaf: &ArtifactKey,
    expiry: Option<i64>,
    extra: &[(&str, &str)],
) -> Pushable {
    assert!(
        !leaf.chain.is_empty(),
        "a notation signer needs a certificate chain"
    );
    let scheme = "io.cncf.notary.signingScheme";
    let mut crit = vec![scheme.to_string()];
    // notation-core-go marshals the protected header from a map: keys sorted.
    let mut header: BTreeMap<String, serde_json::Value> = BTreeMap::from([
        ("alg".into(), "ES256".into()),
        (
            "cty".into(),
            "application/vnd.cncf.notary.payload.v1+json".into(),
        ),
        (scheme.into(), "notary.x509".into()),
        ("io.cncf.notary.signingTime".into(), utc_now().into()),
    ]);
    for (name, value) in extra {
        header.insert(name.to_string(), (*value).into());
        crit.push(name.to_string());
    }
    if let Some(expiry) = expiry {
        header.insert("io.cncf.notary.expiry".into(), utc(expiry).into());
        crit.push("io.cncf.notary.expiry".into());
    }
    header.insert("crit".into(), crit.into());
    let protected = B64URL.encode(serde_json::to_vec(&header).unwrap());
    let target = object(&[
        ("mediaType", json(subject.0)),
        ("digest", json(subject.1)),
        ("size", subject.2.to_string()),
    ]);
    let payload = B64URL.encode(object(&[("targetArtifact", target)]));
    let sig = leaf.sign(format!("{protected}.{payload}").as_bytes());
    let x5c: Vec<String> = leaf
        .chain
        .iter()
        .map(|der| json(&B64.encode(der)))
        .collect();
    let envelope = object(&[
        ("payload", json(&payload)),
        ("protected", json(&protected)),
        (
            "header",
            object(&[
                ("x5c", format!("[{}]", x5c.join(","))),
                ("io.cncf.notary.signingAgent", json("notation-go/1.3.0")),
            ]),
        ),
        ("signature", json(&B64URL.encode(sig.to_bytes()))),
    ])
    .into_bytes();
    let thumbprints: Vec<String> = leaf
        .chain
        .iter()
        .map(|der| hex::encode(Sha256::digest(der)))
        .collect();
    // oras-go's empty config descriptor carries its data.
    let config = oci_descriptor(EMPTY, b"{}", &[("data", json("e30="))]);
    referrer(
        "application/vnd.cncf.notary.signature",
        config,
        ("application/jose+json", envelope),
        subject,
        &BTreeMap::from([
            (
                "io.cncf.notary.x509chain.thumbprint#S256",
                serde_json::to_string(&thumbprints).unwrap(),
            ),
            ("org.opencontainers.image.created", utc_now()),
        ]),
    )
}

/// An OCI 1.1 referrer: one layer, an empty config, a subject and annotations.
fn referrer(
    artifact_type: &str,
    config: String,
    (layer_type, layer): (&str, Vec<u8>),
    subject: (&str, &str, u64),
    annotations: &BTreeMap<&str, String>,
) -> Pushable {
    let manifest = object(&[
        ("schemaVersion", "2".into()),
        ("mediaType", json(OCI_MANIFEST)),
        ("artifactType", json(artifact_type)),
        ("config", config),
        (
            "layers",
            format!("[{}]", oci_descriptor(layer_type, &layer, &[])),
        ),
        (
            "subject",
            object(&[
                ("mediaType", json(subject.0)),
                ("digest", json(subject.1)),
                ("size", subject.2.to_string()),
            ]),
        ),
        ("annotations", string_map(annotations)),
    ]);
    Pushable {
        manifest: manifest.into_bytes(),
        media_type: OCI_MANIFEST.into(),
        tag: None,
        blobs: vec![b"{}".to_vec(), layer],
    }
}

/// An OCI descriptor (mediaType, digest, size, then `extra` members) of `blob`.
fn oci_descriptor(media_type: &str, blob: &[u8], extra: &[(&str, String)]) -> String {
    let mut members = vec![
        ("mediaType", json(media_type)),
        ("digest", json(&digest(blob))),
        ("size", blob.len().to_string()),
    ];
    members.extend(extra.iter().cloned());
    object(&members)
}

/// A JSON object with its members in this order (Go structs and JS objects keep theirs).
fn object(members: &[(&str, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// A map of strings, keys sorted (as Go writes a map).
fn string_map(map: &BTreeMap<&str, String>) -> String {
    serde_json::to_string(map).unwrap()
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn digest(blob: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(blob)))
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64 columns, `\n`.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn utc_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    utc(i64::try_from(now).unwrap())
}
