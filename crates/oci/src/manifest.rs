//! Parsing and validating image manifests, indexes and artifact manifests.
//!
//! The registry stores manifests byte for byte as received; this module only reads them
//! to learn their type, the descriptors they reference (which must exist in the
//! repository) and their `subject` (for the referrers API).

use crate::digest::Digest;
use crate::media::{self, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    fs_layers: Option<serde_json::Value>,
}

/// Why a manifest is refused. Every variant maps to `MANIFEST_INVALID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_SIZE} bytes")]
    TooLarge,
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("Docker schema 1 manifests are not supported; push with a current client")]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    UnknownMediaType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("{0}")]
    Invalid(String),
}

/// What the registry needs to know about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The media type the manifest is stored and served with.
    pub media_type: String,
    /// `artifactType` of the manifest, or for an image manifest without one, the config's
    /// media type (the referrers API's rule).
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    pub fn is_index(&self) -> bool {
        media::is_index_type(&self.media_type)
    }

    /// Blobs that must be present in the repository: the config and every layer that is
    /// not a foreign layer (one with `urls`).
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|d| d.urls.as_ref().is_none_or(|u| u.is_empty())),
        )
    }

    /// Parses and validates `bytes`. `content_type` is the request's `Content-Type`, if any.
    pub fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<ParsedManifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge);
        }
        let header = content_type.map(media::essence).filter(|s| !s.is_empty());
        if matches!(header, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
            return Err(ManifestError::Schema1);
        }
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.fs_layers.is_some() {
            return Err(ManifestError::Schema1);
        }
        match &raw.schema_version {
            Some(v) if v.as_i64() == Some(2) => {}
            _ => return Err(ManifestError::SchemaVersion),
        }
        let media_type = match (&raw.media_type, header) {
            (Some(body), Some(h)) if body != h && media::is_manifest_type(h) => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: h.to_string(),
                    body: body.clone(),
                })
            }
            (Some(body), _) => body.clone(),
            (None, Some(h)) if media::is_manifest_type(h) => h.to_string(),
            (None, _) => {
                if raw.manifests.is_some() {
                    media::OCI_INDEX.to_string()
                } else if raw.config.is_some() {
                    media::OCI_MANIFEST.to_string()
                } else {
                    return Err(ManifestError::Invalid(
                        "cannot tell the manifest's type: no mediaType, config or manifests".into(),
                    ));
                }
            }
        };
        if !media::is_manifest_type(&media_type) {
            return Err(ManifestError::UnknownMediaType(media_type));
        }
        let check = |d: &Descriptor, what: &str| -> Result<(), ManifestError> {
            if d.size < 0 {
                return Err(ManifestError::Invalid(format!(
                    "{what} has a negative size"
                )));
            }
            if !media::is_valid_media_type(&d.media_type) {
                return Err(ManifestError::Invalid(format!(
                    "{what} has an invalid mediaType {:?}",
                    d.media_type
                )));
            }
            if let Some(at) = &d.artifact_type {
                if !media::is_valid_media_type(at) {
                    return Err(ManifestError::Invalid(format!(
                        "{what} has an invalid artifactType"
                    )));
                }
            }
            Ok(())
        };
        if let Some(at) = &raw.artifact_type {
            if !media::is_valid_media_type(at) {
                return Err(ManifestError::Invalid(format!(
                    "invalid artifactType {at:?}"
                )));
            }
        }
        if let Some(s) = &raw.subject {
            check(s, "subject")?;
        }
        let parsed = if media::is_index_type(&media_type) {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid(
                    "an index has no config or layers".into(),
                ));
            }
            let manifests = raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("an index needs a manifests array".into()))?;
            for (i, d) in manifests.iter().enumerate() {
                check(d, &format!("manifests[{i}]"))?;
            }
            ParsedManifest {
                artifact_type: raw.artifact_type,
                media_type,
                config: None,
                layers: vec![],
                manifests,
                subject: raw.subject,
                annotations: raw.annotations,
            }
        } else {
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid(
                    "an image manifest has no manifests array".into(),
                ));
            }
            let config = raw
                .config
                .ok_or_else(|| ManifestError::Invalid("an image manifest needs a config".into()))?;
            check(&config, "config")?;
            let layers = raw.layers.ok_or_else(|| {
                ManifestError::Invalid("an image manifest needs a layers array".into())
            })?;
            for (i, d) in layers.iter().enumerate() {
                check(d, &format!("layers[{i}]"))?;
            }
            let artifact_type = raw
                .artifact_type
                .or_else(|| Some(config.media_type.clone()));
            ParsedManifest {
                artifact_type,
                media_type,
                config: Some(config),
                layers,
                manifests: vec![],
                subject: raw.subject,
                annotations: raw.annotations,
            }
        };
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":0}}]{extra}}}"#
        )
    }

    #[test]
    fn parses_image_and_subject() {
        let m = ParsedManifest::parse(
            image(&format!(r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D}","size":1}}"#)).as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json"),
        )
        .unwrap();
        assert!(!m.is_index());
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(m.subject.unwrap().size, 1);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn refusals() {
        let cases: Vec<(String, Option<&str>)> = vec![
            ("{".into(), None),
            ("[]".into(), None),
            (
                image("").replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
                None,
            ),
            (
                image("").replace("manifest.v1+json\",\"config", "manifest.v9+json\",\"config"),
                None,
            ),
            (image(""), Some(media::DOCKER_MANIFEST)),
            (image("").replace(D, "sha256:abc"), None),
            (image("").replace("\"size\":0}]", "\"size\":-1}]"), None),
            (r#"{"schemaVersion":1,"fsLayers":[]}"#.into(), None),
            (r#"{"schemaVersion":2}"#.into(), None),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#
                    .into(),
                None,
            ),
        ];
        for (body, ct) in cases {
            assert!(
                ParsedManifest::parse(body.as_bytes(), ct).is_err(),
                "accepted {body}"
            );
        }
        assert_eq!(
            ParsedManifest::parse(&vec![b' '; MAX_MANIFEST_SIZE + 1], None),
            Err(ManifestError::TooLarge)
        );
    }

    #[test]
    fn accept_rules() {
        use media::*;
        assert!(acceptable(DOCKER_MANIFEST, &[]));
        assert!(acceptable(
            DOCKER_MANIFEST,
            &[
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json"
            ]
        ));
        assert!(!acceptable(
            DOCKER_LIST,
            &["application/vnd.docker.distribution.manifest.v2+json"]
        ));
        assert!(acceptable(
            DOCKER_LIST,
            &["a/b, application/vnd.docker.distribution.manifest.list.v2+json;q=0.5"]
        ));
    }
}
