//! cosign and Notation signatures: the keys users register, and the facts the registry
//! verifies of every signature it holds.
//!
//! A signature arrives as an ordinary manifest (a cosign `sha256-<hex>.sig` tag, or a
//! referrer whose artifact type is cosign's, a sigstore bundle or Notation's). Once it is
//! stored, [`Registry::record_signatures`] reads its layers (at most
//! [`artifacts::MAX_LAYERS`], each at most [`artifacts::MAX_LAYER_BYTES`]) and verifies
//! them in `berth_trust::artifacts` against every registered key, and the verdicts become
//! the facts signature policies read; nothing the client says about a signature is
//! believed. A change of keys makes every fact stale: [`Registry::signatures_reverify`]
//! verifies them again, at once for the first [`REVERIFY_INLINE`] after a key is added
//! and otherwise in the `signature-reverify` job (exclusive, so one replica does it). A
//! key removed stops counting at once (the store reads facts through the keys).

use crate::error::CoreError;
use crate::registry::Registry;
use berth_meta::{RegisteredKey, SignatureFact};
use berth_oci::{Digest, RepoName, Tag};
use berth_trust::artifacts::{self, Artifact, TrustedKey};
use futures::StreamExt;
use std::time::Duration;

/// How many stale signatures a key registration verifies again before answering; the
/// job does the rest.
pub const REVERIFY_INLINE: u32 = 200;

/// How often the reverification job looks for stale facts.
pub const REVERIFY_EVERY: Duration = Duration::from_secs(30);

/// The most keys one account registers.
pub const MAX_KEYS_PER_ACCOUNT: u32 = 50;

/// The most keys the registry verifies signatures against.
const MAX_KEYS: u32 = 10_000;

/// The longest key name.
pub const MAX_KEY_NAME: usize = 100;

/// Why a key was not registered.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<berth_meta::MetaError> for KeyError {
    fn from(e: berth_meta::MetaError) -> KeyError {
        KeyError::Core(e.into())
    }
}

impl Registry {
    /// Verifies and records the signatures of the manifest `digest` just stored in `repo`
    /// (under `tag`, if any), if it is a signature artifact; whether it is. `has_subject`:
    /// it names a subject (a referrer counts whatever its tags; a cosign tag's signature
    /// counts while the tag points at it).
    pub(crate) async fn record_signatures(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: &[u8],
        tag: Option<&Tag>,
        has_subject: bool,
    ) -> Result<bool, CoreError> {
        let tag = tag.map(Tag::as_str);
        let cosign_sig = tag
            .and_then(artifacts::cosign_tag)
            .is_some_and(|(_, kind)| kind == "sig");
        if !has_subject && !cosign_sig {
            return Ok(false);
        }
        let Some(artifact) = artifacts::classify(bytes, tag) else {
            return Ok(false);
        };
        let via_tag = if has_subject {
            ""
        } else {
            tag.unwrap_or_default()
        };
        let revision = self.meta.keys_revision().await?;
        let keys = self.trusted_keys().await?;
        let facts = facts_of(self, &artifact, via_tag, &keys).await?;
        self.meta
            .facts_put(repo.as_str(), digest.as_str(), via_tag, &facts, revision)
            .await?;
        Ok(true)
    }

    /// Verifies again the signatures whose facts were verified against other keys, at
    /// most `limit` of them; how many were. Stops early when `cancel` fires.
    pub async fn signatures_reverify(
        &self,
        limit: u32,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<u32, CoreError> {
        let revision = self.meta.keys_revision().await?;
        let mut keys = None;
        let mut done = 0;
        while done < limit && !cancel.is_cancelled() {
            let batch = self
                .meta
                .facts_stale(revision, 50.min(limit - done))
                .await?;
            if batch.is_empty() {
                break;
            }
            // Read after the revision: at least the keys it counts.
            if keys.is_none() {
                keys = Some(self.trusted_keys().await?);
            }
            let keys = keys.as_deref().unwrap_or_default();
            for stale in batch {
                done += 1;
                let tag = (!stale.via_tag.is_empty()).then_some(stale.via_tag.as_str());
                let manifest = match (
                    RepoName::parse(&stale.repo),
                    Digest::parse(&stale.signature),
                ) {
                    (Ok(repo), Ok(digest)) => self.meta.manifest_get(&repo, &digest).await?,
                    _ => None,
                };
                // No longer a signature (or gone): no facts, so not stale again.
                let facts = match manifest.and_then(|m| artifacts::classify(&m.bytes, tag)) {
                    Some(a) => facts_of(self, &a, &stale.via_tag, keys).await?,
                    None => vec![],
                };
                self.meta
                    .facts_put(
                        &stale.repo,
                        &stale.signature,
                        &stale.via_tag,
                        &facts,
                        revision,
                    )
                    .await?;
            }
        }
        Ok(done)
    }

    /// Every registered key the registry can verify with (a stored key it cannot parse
    /// any more is skipped, with a warning).
    async fn trusted_keys(&self) -> Result<Vec<TrustedKey>, CoreError> {
        let stored = self.meta.keys(None, MAX_KEYS).await?;
        Ok(stored
            .iter()
            .filter_map(|k| match TrustedKey::from_pem(&k.pem) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(key = %k.id, error = %e, "registered key not usable");
                    None
                }
            })
            .collect())
    }

    /// The content of a signature layer, if it is small enough and readable.
    async fn signature_layer(&self, layer: &artifacts::Layer) -> Option<Vec<u8>> {
        let digest = Digest::parse(&layer.digest).ok()?;
        if layer.size > artifacts::MAX_LAYER_BYTES {
            return None;
        }
        let read = self.blobs.get(&digest, None).await.ok()?;
        let mut stream = read.stream;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.ok()?);
            if out.len() as u64 > artifacts::MAX_LAYER_BYTES {
                return None;
            }
        }
        (Digest::of(digest.algorithm(), &out) == digest).then_some(out)
    }

    /// Registers `pem` (a public key or a certificate) for `account` under `name`, then
    /// verifies again the signatures it may verify.
    pub async fn signing_key_add(
        &self,
        account: i64,
        name: &str,
        pem: &str,
    ) -> Result<RegisteredKey, KeyError> {
        if name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control) {
            return Err(KeyError::Invalid(format!(
                "a key name is at most {MAX_KEY_NAME} characters, none of them control characters"
            )));
        }
        let key = TrustedKey::from_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
        if self
            .meta
            .keys(Some(account), MAX_KEYS_PER_ACCOUNT)
            .await?
            .len()
            >= MAX_KEYS_PER_ACCOUNT as usize
        {
            return Err(KeyError::Limit(format!(
                "an account registers at most {MAX_KEYS_PER_ACCOUNT} keys"
            )));
        }
        let record = RegisteredKey {
            id: key.id.clone(),
            account,
            kind: key.kind.as_str().to_string(),
            name: name.to_string(),
            pem: pem.trim().to_string() + "\n",
            created_at: crate::time::now_ms(),
        };
        self.meta.key_add(&record).await?;
        let cancel = tokio_util::sync::CancellationToken::new();
        if let Err(e) = self.signatures_reverify(REVERIFY_INLINE, &cancel).await {
            tracing::warn!(error = %e, "signatures not verified again; the job will");
        }
        Ok(record)
    }

    /// The keys `account` registered, oldest first.
    pub async fn signing_keys(&self, account: i64) -> Result<Vec<RegisteredKey>, CoreError> {
        Ok(self.meta.keys(Some(account), MAX_KEYS_PER_ACCOUNT).await?)
    }

    /// Removes the key `id` of `account`; whether there was one. Its signatures stop
    /// counting at once.
    pub async fn signing_key_delete(&self, account: i64, id: &str) -> Result<bool, CoreError> {
        Ok(self.meta.key_delete(account, id).await?)
    }
}

/// The facts of `artifact`, its layers read from the blob store.
async fn facts_of(
    registry: &Registry,
    artifact: &Artifact,
    via_tag: &str,
    keys: &[TrustedKey],
) -> Result<Vec<SignatureFact>, CoreError> {
    let mut blobs = Vec::with_capacity(artifact.layers.len());
    for layer in artifact.layers.iter().take(artifacts::MAX_LAYERS) {
        blobs.push(registry.signature_layer(layer).await);
    }
    let now = crate::time::now_ms() / 1000;
    Ok(artifacts::verify(artifact, &blobs, keys, now)
        .into_iter()
        .map(|f| SignatureFact {
            signature: String::new(),
            layer: i64::from(f.layer),
            key_id: f.key_id.unwrap_or_default(),
            subject: artifact.subject.clone(),
            format: artifact.format.as_str().to_string(),
            via_tag: via_tag.to_string(),
            valid: f.valid,
            reason: f.reason,
            expires_at: f.expires_at.map_or(0, |s| s.saturating_mul(1000)),
        })
        .collect())
}

/// The reverification job: every [`REVERIFY_EVERY`], on one replica at a time.
pub fn reverify_job(registry: std::sync::Arc<Registry>) -> crate::jobs::Job {
    crate::jobs::Job::new("signature-reverify", REVERIFY_EVERY, move |cancel| {
        let registry = registry.clone();
        async move {
            match registry.signatures_reverify(u32::MAX, &cancel).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(signatures = n, "signatures verified again"),
                Err(e) => tracing::warn!(error = %e, "verifying signatures again"),
            }
        }
    })
    .exclusive()
}
