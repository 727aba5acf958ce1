//! X.509 certificates in `*-x509` keys: Notary's root keys are certificate chains whose
//! leaf's common name is the GUN. Parsing, the checks Notary makes on them, and the PEM
//! re-encoding (Go's `pem.EncodeToMemory`: 64 columns, `\n`, no headers) from which the
//! server recomputes a root key's id.

use crate::keys::KeyError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use x509_parser::prelude::*;

/// SHA-1 signature algorithms: a certificate signed with one is refused.
pub(crate) const SHA1_SIGNATURES: [&str; 3] = [
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
];

/// A leaf certificate and the intermediates after it, as DER.
#[derive(Debug, Clone)]
pub struct CertChain {
    certs: Vec<Vec<u8>>,
    leaf_spki: Vec<u8>,
}

/// What a certificate says of itself, for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub common_name: Option<String>,
    pub is_ca: bool,
    pub sha1_signed: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertChain {
    /// Parses every `CERTIFICATE` block of `pem`, the leaf first.
    pub fn from_pem(pem: &[u8]) -> Result<CertChain, KeyError> {
        let bad = |e: String| KeyError::Malformed("x509", e);
        let mut certs = Vec::new();
        for block in Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| bad(e.to_string()))?;
            if block.label != "CERTIFICATE" {
                return Err(bad(format!(
                    "a {} block in a certificate chain",
                    block.label
                )));
            }
            certs.push(block.contents);
        }
        let leaf = certs.first().ok_or_else(|| bad("no certificate".into()))?;
        let (_, cert) = parse_x509_certificate(leaf).map_err(|e| bad(e.to_string()))?;
        let leaf_spki = cert.public_key().raw.to_vec();
        for der in &certs[1..] {
            parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
        }
        Ok(CertChain { certs, leaf_spki })
    }

    pub fn leaf_spki(&self) -> &[u8] {
        &self.leaf_spki
    }

    /// The facts of each certificate, the leaf first.
    pub fn facts(&self) -> Vec<CertFacts> {
        self.certs
            .iter()
            .filter_map(|der| parse_x509_certificate(der).ok())
            .map(|(_, c)| CertFacts {
                common_name: c
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_string),
                is_ca: c.is_ca(),
                sha1_signed: SHA1_SIGNATURES
                    .contains(&c.signature_algorithm.algorithm.to_id_string().as_str()),
                not_before: c.validity().not_before.timestamp(),
                not_after: c.validity().not_after.timestamp(),
            })
            .collect()
    }

    /// The chain as Go's `pem.EncodeToMemory` writes it, the bytes a root key's id is
    /// recomputed from.
    pub fn to_go_pem(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for der in &self.certs {
            out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            let b64 = B64.encode(der);
            for line in b64.as_bytes().chunks(64) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            out.extend_from_slice(b"-----END CERTIFICATE-----\n");
        }
        out
    }
}
