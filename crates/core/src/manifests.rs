//! Manifests, tags, listings and referrers.
//!
//! Manifests are validated (schema, referenced content present in the repository, size)
//! and stored byte for byte; their digest is computed over exactly those bytes.

use crate::error::CoreError;
use crate::registry::Registry;
use berth_meta::{ManifestRecord, NewManifest};
use berth_oci::manifest::MAX_MANIFEST_SIZE;
use berth_oci::{media, Digest, ManifestError, ParsedManifest, Reference, RepoName, Tag};
use bytes::Bytes;
use serde::Serialize;

/// What a successful manifest push reports.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    /// The manifest's subject, reported back as `OCI-Subject`.
    pub subject: Option<Digest>,
    /// It is a signature, whose facts were just recorded: cached policy decisions are
    /// stale.
    pub signature: bool,
}

/// A page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<String>,
    /// Whether there is more after the last item.
    pub more: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<serde_json::Value>,
}

impl Registry {
    /// Validates and stores a manifest, pointing `reference` at it if it is a tag.
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifest, CoreError> {
        self.check_writable()?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(CoreError::ManifestTooLarge(MAX_MANIFEST_SIZE));
        }
        let parsed =
            ParsedManifest::parse(&bytes, content_type).map_err(CoreError::ManifestInvalid)?;
        let (digest, tag) = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if &actual != d {
                    return Err(CoreError::DigestMismatch {
                        expected: d.clone(),
                        actual,
                    });
                }
                (actual, None)
            }
            Reference::Tag(t) => (Digest::sha256_of(&bytes), Some(t)),
        };
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let annotations = match &parsed.annotations {
            Some(a) if !a.is_empty() => serde_json::to_string(a).ok(),
            _ => None,
        };
        // Each required blob with the size its descriptor gives (a negative size was
        // refused by the parser); one digest given two sizes is a contradiction.
        let mut sized: Vec<(Digest, u64)> = parsed
            .required_blobs()
            .map(|d| (d.digest.clone(), u64::try_from(d.size).unwrap_or(u64::MAX)))
            .collect();
        sized.sort();
        sized.dedup();
        if let Some(w) = sized.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(CoreError::ManifestInvalid(ManifestError::Invalid(format!(
                "descriptors of blob {} give different sizes ({} and {})",
                w[0].0, w[0].1, w[1].1
            ))));
        }
        let (blobs, blob_sizes): (Vec<Digest>, Vec<u64>) = sized.into_iter().unzip();
        let mut children: Vec<Digest> = parsed.manifests.iter().map(|d| d.digest.clone()).collect();
        children.sort();
        children.dedup();
        let m = NewManifest {
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            artifact_type: parsed.artifact_type.clone(),
            subject: subject.clone(),
            annotations,
            bytes,
            blobs,
            blob_sizes,
            children,
        };
        self.meta.manifest_put(repo, &m, tag).await?;
        let signature = self
            .record_signatures(repo, &digest, &m.bytes, tag, subject.is_some())
            .await?;
        Ok(PutManifest {
            digest,
            subject,
            signature,
        })
    }

    /// The manifest `reference` points to, if the client accepts its type.
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<ManifestRecord, CoreError> {
        let rec = match reference {
            Reference::Digest(d) => self.meta.manifest_get(repo, d).await?,
            Reference::Tag(t) => self.meta.manifest_by_tag(repo, t).await?,
        }
        .ok_or(CoreError::ManifestUnknown)?;
        if let Reference::Digest(d) = reference {
            // Found by digest: an index may reference it next (GC's claims).
            if !self.claim_manifest(repo, d).await? {
                return Err(CoreError::ManifestUnknown);
            }
        }
        // A client asking by digest gets exactly those bytes whatever it accepts.
        if matches!(reference, Reference::Tag(_)) && !media::acceptable(&rec.media_type, accept) {
            return Err(CoreError::ManifestNotAcceptable(rec.media_type));
        }
        Ok(rec)
    }

    /// Deletes a manifest (by digest, with its tags) or a tag (by tag).
    pub async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), CoreError> {
        self.check_writable()?;
        let found = match reference {
            Reference::Digest(d) => self.meta.manifest_delete(repo, d).await?,
            Reference::Tag(t) => self.meta.tag_delete(repo, t).await?,
        };
        if found {
            Ok(())
        } else {
            Err(CoreError::ManifestUnknown)
        }
    }

    fn page_size(&self, n: Option<u32>) -> u32 {
        n.unwrap_or(self.cfg.max_page).min(self.cfg.max_page)
    }

    /// Tags of a repository, a page at a time.
    pub async fn tags_list(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page, CoreError> {
        let n = self.page_size(n);
        if n == 0 {
            return if self.meta.repo_exists(repo).await? {
                Ok(Page {
                    items: vec![],
                    more: false,
                })
            } else {
                Err(CoreError::NameUnknown)
            };
        }
        let mut items = self
            .meta
            .tags_list(repo, last, n.saturating_add(1))
            .await?
            .ok_or(CoreError::NameUnknown)?;
        let more = items.len() > n as usize;
        items.truncate(n as usize);
        Ok(Page { items, more })
    }

    /// Repository names, a page at a time.
    pub async fn catalog(&self, last: Option<&str>, n: Option<u32>) -> Result<Page, CoreError> {
        let n = self.page_size(n);
        if n == 0 {
            return Ok(Page {
                items: vec![],
                more: false,
            });
        }
        let mut items = self.meta.catalog(last, n.saturating_add(1)).await?;
        let more = items.len() > n as usize;
        items.truncate(n as usize);
        Ok(Page { items, more })
    }

    /// The referrers of `subject` in `repo` as an OCI image index document, including those
    /// listed in a `sha256-<hex>` fallback tag index pushed by clients that predate the API.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>, CoreError> {
        let found = self.meta.referrers(repo, subject, artifact_type).await?;
        let mut seen = std::collections::HashSet::new();
        let mut manifests = Vec::with_capacity(found.len());
        for r in found {
            seen.insert(r.digest.as_str().to_string());
            let mut v = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.as_str(),
                "size": r.size,
            });
            if let Some(at) = &r.artifact_type {
                v["artifactType"] = serde_json::Value::String(at.clone());
            }
            if let Some(a) = r
                .annotations
                .as_deref()
                .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
            {
                v["annotations"] = a;
            }
            manifests.push(v);
        }
        let fallback = format!("{}-{}", subject.algorithm().as_str(), subject.hex());
        if let Ok(tag) = Tag::parse(&fallback) {
            if let Some(rec) = self.meta.manifest_by_tag(repo, &tag).await? {
                if let Ok(idx) = ParsedManifest::parse(&rec.bytes, Some(&rec.media_type)) {
                    for d in idx.manifests {
                        if !seen.insert(d.digest.as_str().to_string()) {
                            continue;
                        }
                        if artifact_type.is_some() && d.artifact_type.as_deref() != artifact_type {
                            continue;
                        }
                        manifests.push(serde_json::to_value(&d).unwrap_or_default());
                    }
                }
            }
        }
        let doc = IndexDoc {
            schema_version: 2,
            media_type: media::OCI_INDEX,
            manifests,
        };
        serde_json::to_vec(&doc)
            .map_err(|e| CoreError::Meta(berth_meta::MetaError::Backend(e.to_string())))
    }
}
