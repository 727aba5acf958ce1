//! cosign and Notation signatures: the [`SignatureStore`] trait and its implementation for
//! both backends.
//!
//! Two things live here. The keys and certificates users registered (`key:ID` in a
//! policy), each owned by one account; every change moves the keys' revision and the
//! policy revision on (triggers). And the facts `core` verified of each signature it
//! holds: subject, format, the registered key that verifies it (or why none does), when it
//! stops counting, and the keys' revision it was verified against, so that a change of
//! keys can have every fact verified again. This store neither parses keys nor verifies
//! anything. A fact only counts while its key is still registered and, for a cosign tag,
//! while the tag points at the signature: both are read through joins, so removing a key
//! or moving a tag takes effect at once. Like the trust data, the statements are the same
//! text in both dialects.

use crate::convert::now_ms;
use crate::shared::{Arg, Pool, Statements, Step};
use crate::MetaError;
use async_trait::async_trait;

/// A key or certificate a user registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredKey {
    /// Lowercase hex SHA-256 of the DER.
    pub id: String,
    pub account: i64,
    /// `public-key` or `certificate`.
    pub kind: String,
    pub name: String,
    pub pem: String,
    /// Unix ms.
    pub created_at: i64,
}

/// What was verified of one signature against one registered key (`key_id` empty: none
/// verifies it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFact {
    /// The digest of the signature manifest.
    pub signature: String,
    pub layer: i64,
    pub key_id: String,
    /// The digest of the signed manifest.
    pub subject: String,
    /// `cosign` or `notation`.
    pub format: String,
    /// The cosign tag it counts through (`sha256-<hex>.sig`); empty for a referrer.
    pub via_tag: String,
    pub valid: bool,
    /// Why it is not valid; empty when it is.
    pub reason: String,
    /// Unix ms after which it no longer counts; 0: never.
    pub expires_at: i64,
}

/// A valid signature that counts now: its key is registered, and its tag (if any) points
/// at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedSignature {
    pub format: String,
    pub key_id: String,
    /// The key's owner.
    pub account: i64,
    /// Unix ms; 0: never.
    pub expires_at: i64,
}

/// A signature manifest whose facts were verified against older keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleSignature {
    pub repo: String,
    pub signature: String,
    pub via_tag: String,
}

store_trait! {
/// Registered keys and signature facts, shared by every replica.
pub trait SignatureStore {
    /// Registers a key; `Conflict` when the key is registered already (by anyone).
    async fn key_add(&self, key: &RegisteredKey) -> Result<(), MetaError>;

    /// The keys of `account` (every key with `None`), oldest first, at most `limit`.
    async fn keys(&self, account: Option<i64>, limit: u32) -> Result<Vec<RegisteredKey>, MetaError>;

    /// Removes the key `id` of `account`; whether there was one.
    async fn key_delete(&self, account: i64, id: &str) -> Result<bool, MetaError>;

    /// The revision of the registered keys (moved on by each change).
    async fn keys_revision(&self) -> Result<i64, MetaError>;

    /// Replaces the facts of the signature manifest `signature` of `repo` as counted
    /// through `via_tag` (empty: as a referrer) with `facts`, verified against the keys at
    /// `keys_revision`. Nothing is written when the manifest
    /// is gone or when facts verified against newer keys are stored.
    async fn facts_put(&self, repo: &str, signature: &str, via_tag: &str, facts: &[SignatureFact],
        keys_revision: i64) -> Result<(), MetaError>;

    /// The valid signatures of `subject` in `repo` that count now (expiry is the caller's).
    async fn signatures_counted(&self, repo: &str, subject: &str)
        -> Result<Vec<CountedSignature>, MetaError>;

    /// Every fact about `subject` in `repo`, valid or not, at most [`FACTS_LIMIT`], each
    /// with the owner of its key (`None`: no key, or the key is no longer registered).
    async fn facts_of(&self, repo: &str, subject: &str)
        -> Result<Vec<(SignatureFact, Option<i64>)>, MetaError>;

    /// Signature manifests with facts verified against keys older than `keys_revision`.
    async fn facts_stale(&self, keys_revision: i64, limit: u32) -> Result<Vec<StaleSignature>, MetaError>;
}
}

/// The most facts [`SignatureStore::facts_of`] returns.
pub const FACTS_LIMIT: u32 = 100;

const KEY_ADD: &str = "INSERT INTO registered_keys (id, account_id, kind, name, pem, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const KEYS: &str = "SELECT id, account_id, kind, name, pem, created_at FROM registered_keys \
     WHERE $1 < 0 OR account_id = $1 ORDER BY created_at, id LIMIT $2";
const KEY_DELETE: &str = "DELETE FROM registered_keys WHERE account_id = $1 AND id = $2";
const KEYS_REVISION: &str = "SELECT revision FROM registered_keys_revision WHERE id = 1";
// A fact verified against newer keys is never replaced by one verified against older ones.
const FACTS_DELETE: &str = "DELETE FROM signature_facts WHERE signature = $1 AND via_tag = $2 \
     AND repo_id = (SELECT id FROM repositories WHERE name = $3) \
     AND NOT EXISTS (SELECT 1 FROM signature_facts n WHERE n.signature = $1 \
         AND n.via_tag = $2 AND n.repo_id = signature_facts.repo_id AND n.keys_revision > $4)";
const FACT_ADD: &str = "INSERT INTO signature_facts (repo_id, signature, layer, key_id, subject, \
     format, via_tag, valid, reason, expires_at, keys_revision) \
     SELECT m.repo_id, m.digest, $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM manifests m \
     JOIN repositories r ON r.id = m.repo_id WHERE r.name = $10 AND m.digest = $11 \
     AND NOT EXISTS (SELECT 1 FROM signature_facts n WHERE n.repo_id = m.repo_id \
         AND n.signature = m.digest AND n.via_tag = $5 AND n.keys_revision > $9) \
     ON CONFLICT DO NOTHING";
const COUNTED: &str = "SELECT f.format, f.key_id, k.account_id, f.expires_at \
     FROM signature_facts f JOIN repositories r ON r.id = f.repo_id \
     JOIN registered_keys k ON k.id = f.key_id \
     WHERE r.name = $1 AND f.subject = $2 AND f.valid = 1 AND (f.via_tag = '' OR EXISTS \
         (SELECT 1 FROM tags t WHERE t.repo_id = f.repo_id AND t.name = f.via_tag \
          AND t.manifest = f.signature)) \
     ORDER BY f.signature, f.layer, f.key_id LIMIT 1000";
const FACTS_OF: &str = "SELECT f.signature, f.layer, f.key_id, f.subject, f.format, f.via_tag, \
     f.valid, f.reason, f.expires_at, k.account_id FROM signature_facts f \
     JOIN repositories r ON r.id = f.repo_id LEFT JOIN registered_keys k ON k.id = f.key_id \
     WHERE r.name = $1 AND f.subject = $2 \
     ORDER BY f.signature, f.layer, f.key_id LIMIT 100";
const STALE: &str = "SELECT DISTINCT r.name, f.signature, f.via_tag FROM signature_facts f \
     JOIN repositories r ON r.id = f.repo_id WHERE f.keys_revision < $1 \
     ORDER BY r.name, f.signature LIMIT $2";

/// Every statement above, for the check that their parameters are in order.
#[cfg(test)]
pub(crate) const STATEMENTS: &[&str] = &[
    KEY_ADD,
    KEYS,
    KEY_DELETE,
    KEYS_REVISION,
    FACTS_DELETE,
    FACT_ADD,
    COUNTED,
    FACTS_OF,
    STALE,
];

type KeyRow = (String, i64, String, String, String, i64);
type FactRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
);

#[async_trait]
impl<S: Statements> SignatureStore for S {
    async fn key_add(&self, k: &RegisteredKey) -> Result<(), MetaError> {
        let args = vec![
            k.id.as_str().into(),
            Arg::Int(k.account),
            k.kind.as_str().into(),
            k.name.as_str().into(),
            k.pem.as_str().into(),
            Arg::Int(now_ms()),
        ];
        match self.run_all(vec![Step::changes(KEY_ADD, args)]).await {
            Err(MetaError::Conflict(_)) => Err(MetaError::Conflict(format!(
                "key {} is registered already",
                k.id
            ))),
            other => other,
        }
    }

    async fn keys(
        &self,
        account: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RegisteredKey>, MetaError> {
        let account = account.unwrap_or(-1);
        let rows: Vec<KeyRow> = on_pool!(self.pool(), p => {
            sqlx::query_as(KEYS).bind(account).bind(i64::from(limit)).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, account, kind, name, pem, created_at)| RegisteredKey {
                id,
                account,
                kind,
                name,
                pem,
                created_at,
            })
            .collect())
    }

    async fn key_delete(&self, account: i64, id: &str) -> Result<bool, MetaError> {
        match self
            .run_all(vec![Step::changes(
                KEY_DELETE,
                vec![Arg::Int(account), id.into()],
            )])
            .await
        {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn keys_revision(&self) -> Result<i64, MetaError> {
        let (revision,): (i64,) = on_pool!(self.pool(), p => {
            sqlx::query_as(KEYS_REVISION).fetch_one(p).await?
        });
        Ok(revision)
    }

    async fn facts_put(
        &self,
        repo: &str,
        signature: &str,
        via_tag: &str,
        facts: &[SignatureFact],
        keys_revision: i64,
    ) -> Result<(), MetaError> {
        let mut steps = vec![Step::any(
            FACTS_DELETE,
            vec![
                signature.into(),
                via_tag.into(),
                repo.into(),
                Arg::Int(keys_revision),
            ],
        )];
        for f in facts.iter().filter(|f| f.via_tag == via_tag) {
            steps.push(Step::any(
                FACT_ADD,
                vec![
                    Arg::Int(f.layer),
                    f.key_id.as_str().into(),
                    f.subject.as_str().into(),
                    f.format.as_str().into(),
                    f.via_tag.as_str().into(),
                    Arg::Int(i64::from(f.valid)),
                    f.reason.as_str().into(),
                    Arg::Int(f.expires_at),
                    Arg::Int(keys_revision),
                    repo.into(),
                    signature.into(),
                ],
            ));
        }
        self.run_all(steps).await
    }

    async fn signatures_counted(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Vec<CountedSignature>, MetaError> {
        let rows: Vec<(String, String, i64, i64)> = on_pool!(self.pool(), p => {
            sqlx::query_as(COUNTED).bind(repo).bind(subject).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(format, key_id, account, expires_at)| CountedSignature {
                format,
                key_id,
                account,
                expires_at,
            })
            .collect())
    }

    async fn facts_of(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Vec<(SignatureFact, Option<i64>)>, MetaError> {
        let rows: Vec<FactRow> = on_pool!(self.pool(), p => {
            sqlx::query_as(FACTS_OF).bind(repo).bind(subject).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(
                    signature,
                    layer,
                    key_id,
                    subject,
                    format,
                    via_tag,
                    valid,
                    reason,
                    expires_at,
                    owner,
                )| {
                    let fact = SignatureFact {
                        signature,
                        layer,
                        key_id,
                        subject,
                        format,
                        via_tag,
                        valid: valid != 0,
                        reason,
                        expires_at,
                    };
                    (fact, owner)
                },
            )
            .collect())
    }

    async fn facts_stale(
        &self,
        keys_revision: i64,
        limit: u32,
    ) -> Result<Vec<StaleSignature>, MetaError> {
        let rows: Vec<(String, String, String)> = on_pool!(self.pool(), p => {
            sqlx::query_as(STALE).bind(keys_revision).bind(i64::from(limit)).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(repo, signature, via_tag)| StaleSignature {
                repo,
                signature,
                via_tag,
            })
            .collect())
    }
}
