//! Docker Content Trust data: the [`TrustStore`] trait and its implementation for both
//! backends.
//!
//! A repository's trust data is every version of every role file (root, targets and its
//! delegations, snapshot, timestamp) as stored bytes, the private keys the server holds for
//! it (sealed by the caller: this store never sees a key in clear), and the changefeed.
//! An update stores all its files in one transaction, each only if its version is above
//! every stored version of its role, so a replayed or racing update writes nothing. Like
//! the leases, the statements are the same text in both dialects and the trait is
//! implemented once, for every store that can run statements.

use crate::convert::now_ms;
use crate::shared::{Arg, Pool, Statements, Step};
use crate::MetaError;
use async_trait::async_trait;
use serde::Serialize;

/// One stored version of a role file: its bytes, their lowercase hex SHA-256, and when it
/// was stored (unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustFile {
    pub role: String,
    pub version: i64,
    pub sha256: String,
    pub data: Vec<u8>,
    pub created_at: i64,
}

impl TrustFile {
    /// A file to store now, its checksum computed here.
    pub fn new(role: &str, version: i64, data: Vec<u8>) -> TrustFile {
        TrustFile {
            role: role.to_string(),
            version,
            sha256: berth_oci::Digest::sha256_of(&data).hex().to_string(),
            data,
            created_at: now_ms(),
        }
    }
}

/// A target of a repository's current trust data: a tag, the manifest digest it signs,
/// the role that signs it, the keys whose signatures on that role's file verify, and when
/// the role (or one of its ancestors) expires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SignedTarget {
    pub tag: String,
    pub digest: String,
    pub role: String,
    pub key_ids: Vec<String>,
    /// Unix ms.
    pub expires_at: i64,
}

/// The account a trust key signs for (0: none, a key `berth admin` brought).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrustSigner {
    pub key_id: String,
    pub account: i64,
}

/// A changefeed record: a timestamp stored (`update`) or a repository's trust data deleted
/// (`deletion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustChange {
    pub id: i64,
    pub repo: String,
    pub version: i64,
    pub sha256: String,
    pub category: String,
    /// Unix ms.
    pub created_at: i64,
}

/// A private key the server holds for one role of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustKey {
    pub role: String,
    pub key_id: String,
    /// As TUF metadata carries it: DER SubjectPublicKeyInfo.
    pub public: Vec<u8>,
    /// Sealed with the key-encryption key (ciphertext only, so `Debug` may show it).
    pub sealed: Vec<u8>,
}

/// What an update that changes a targets role says of the signatures: every signed target
/// now (replacing the stored ones), and the signers of keys it brings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    pub targets: Vec<SignedTarget>,
    pub signers: Vec<TrustSigner>,
}

store_trait! {
/// Trust data of repositories, shared by every replica.
pub trait TrustStore {
    /// Stores `files` of `repo` together, and a changefeed `update` row for the timestamp
    /// among them; or nothing, with [`MetaError::Conflict`], when a file's version is not
    /// above every stored version of its role. `signed`, when given, replaces the signed
    /// targets of `repo` (what garbage collection keeps while the repository has the tag,
    /// what signature policies read) and records the signers of keys not seen before, in
    /// the same transaction, which also moves the policy revision on.
    async fn trust_put(&self, repo: &str, files: Vec<TrustFile>, signed: Option<Signed>)
        -> Result<(), MetaError>;

    /// The signed targets of `repo`, by tag, digest and role; only those of `digest` when
    /// given.
    async fn trust_signed(&self, repo: &str, digest: Option<&str>)
        -> Result<Vec<SignedTarget>, MetaError>;

    /// The signers of `repo`'s trust keys, by key id.
    async fn trust_signers(&self, repo: &str) -> Result<Vec<TrustSigner>, MetaError>;

    /// The highest version of `role`.
    async fn trust_current(&self, repo: &str, role: &str)
        -> Result<Option<TrustFile>, MetaError>;

    /// The highest version of every role of `repo`.
    async fn trust_current_all(&self, repo: &str) -> Result<Vec<TrustFile>, MetaError>;

    /// Version `version` of `role`.
    async fn trust_version(&self, repo: &str, role: &str, version: i64)
        -> Result<Option<TrustFile>, MetaError>;

    /// The newest version of `role` whose bytes hash to `sha256` (lowercase hex).
    async fn trust_checksum(&self, repo: &str, role: &str, sha256: &str)
        -> Result<Option<TrustFile>, MetaError>;

    /// Deletes every file of `repo` (and with `keys`, its keys) and its signed targets,
    /// recording a `deletion` change when there were files and moving the policy revision
    /// on; whether there were files.
    async fn trust_delete(&self, repo: &str, keys: bool) -> Result<bool, MetaError>;

    /// Keeps a new key of the server's for `repo`.
    async fn trust_key_add(&self, repo: &str, key: TrustKey) -> Result<(), MetaError>;

    /// Every key held for `repo`, oldest first.
    async fn trust_keys(&self, repo: &str) -> Result<Vec<TrustKey>, MetaError>;

    /// Up to `limit` changes of `repo` (every repository when `None`) after the change
    /// `after` (0: from the start), oldest first; with `before`, the `limit` changes before
    /// it instead, still oldest first.
    async fn trust_changes(&self, repo: Option<&str>, after: i64, limit: i64, before: bool)
        -> Result<Vec<TrustChange>, MetaError>;

    /// The id of the newest change (0 if none).
    async fn trust_last_change(&self) -> Result<i64, MetaError>;

    /// Up to `limit` repositories with a timestamp, by name after `after` ("": from the
    /// start): what the re-signing job walks.
    async fn trust_repos(&self, after: &str, limit: i64) -> Result<Vec<String>, MetaError>;
}
}

const PUT: &str = "INSERT INTO trust_files (repo, role, version, sha256, data, created_at) \
     SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS \
     (SELECT 1 FROM trust_files WHERE repo = $1 AND role = $2 AND version >= $3)";
const CHANGE: &str = "INSERT INTO trust_changes (repo, version, sha256, category, created_at) \
     VALUES ($1, $2, $3, $4, $5)";
const CURRENT: &str = "SELECT role, version, sha256, data, created_at FROM trust_files \
     WHERE repo = $1 AND role = $2 ORDER BY version DESC LIMIT 1";
const CURRENT_ALL: &str = "SELECT f.role, f.version, f.sha256, f.data, f.created_at \
     FROM trust_files f WHERE f.repo = $1 AND f.version = \
     (SELECT MAX(g.version) FROM trust_files g WHERE g.repo = f.repo AND g.role = f.role) \
     ORDER BY f.role";
const VERSION: &str = "SELECT role, version, sha256, data, created_at FROM trust_files \
     WHERE repo = $1 AND role = $2 AND version = $3";
const CHECKSUM: &str = "SELECT role, version, sha256, data, created_at FROM trust_files \
     WHERE repo = $1 AND role = $2 AND sha256 = $3 ORDER BY version DESC LIMIT 1";
const DELETE_FILES: &str = "DELETE FROM trust_files WHERE repo = $1";
const DELETE_SIGNED: &str = "DELETE FROM trust_targets WHERE repo = $1";
const SIGNED_ADD: &str =
    "INSERT INTO trust_targets (repo, tag, digest, role, key_ids, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const SIGNED: &str = "SELECT tag, digest, role, key_ids, expires_at FROM trust_targets \
     WHERE repo = $1 AND ($2 = '' OR digest = $2) ORDER BY tag, digest, role";
const SIGNER_ADD: &str = "INSERT INTO trust_signers (repo, key_id, account_id) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const SIGNERS: &str =
    "SELECT key_id, account_id FROM trust_signers WHERE repo = $1 ORDER BY key_id";
const DELETE_KEYS: &str = "DELETE FROM trust_keys WHERE repo = $1";
const KEY_ADD: &str = "INSERT INTO trust_keys (repo, role, key_id, public, sealed, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const KEYS: &str = "SELECT role, key_id, public, sealed FROM trust_keys \
     WHERE repo = $1 ORDER BY created_at, key_id";
const CHANGES_AFTER: &str = "SELECT id, repo, version, sha256, category, created_at \
     FROM trust_changes WHERE ($1 = '' OR repo = $1) AND id > $2 ORDER BY id LIMIT $3";
const CHANGES_BEFORE: &str = "SELECT id, repo, version, sha256, category, created_at \
     FROM trust_changes WHERE ($1 = '' OR repo = $1) AND id < $2 ORDER BY id DESC LIMIT $3";
const LAST_CHANGE: &str = "SELECT COALESCE(MAX(id), 0) FROM trust_changes";
const REPOS: &str = "SELECT DISTINCT repo FROM trust_files WHERE role = 'timestamp' AND repo > $1 \
     ORDER BY repo LIMIT $2";

/// Every statement above, for the check that their parameters are in order.
#[cfg(test)]
pub(crate) const STATEMENTS: &[&str] = &[
    PUT,
    CHANGE,
    CURRENT,
    CURRENT_ALL,
    VERSION,
    CHECKSUM,
    DELETE_FILES,
    DELETE_SIGNED,
    SIGNED_ADD,
    SIGNED,
    SIGNER_ADD,
    SIGNERS,
    DELETE_KEYS,
    KEY_ADD,
    KEYS,
    CHANGES_AFTER,
    CHANGES_BEFORE,
    REPOS,
];

/// A trust file's row: role, version, sha256, data, created_at.
pub(crate) type FileRow = (String, i64, String, Vec<u8>, i64);
type KeyRow = (String, String, Vec<u8>, Vec<u8>);
type ChangeRow = (i64, String, i64, String, String, i64);

fn file((role, version, sha256, data, created_at): FileRow) -> TrustFile {
    TrustFile {
        role,
        version,
        sha256,
        data,
        created_at,
    }
}

fn change((id, repo, version, sha256, category, created_at): ChangeRow) -> TrustChange {
    TrustChange {
        id,
        repo,
        version,
        sha256,
        category,
        created_at,
    }
}

#[async_trait]
impl<S: Statements> TrustStore for S {
    async fn trust_delete(&self, repo: &str, keys: bool) -> Result<bool, MetaError> {
        let Some(timestamp) = self.trust_current(repo, "timestamp").await? else {
            let mut steps = vec![
                Step::any(DELETE_FILES, vec![repo.into()]),
                Step::any(DELETE_SIGNED, vec![repo.into()]),
                Step::changes(crate::policy::REVISION_BUMP, vec![]),
            ];
            if keys {
                steps.push(Step::any(DELETE_KEYS, vec![repo.into()]));
            }
            // Files without a timestamp (none that an update stored): nothing to record.
            let had = !self.trust_current_all(repo).await?.is_empty();
            self.run_all(steps).await?;
            return Ok(had);
        };
        let mut steps = vec![
            Step::changes(DELETE_FILES, vec![repo.into()]),
            Step::any(DELETE_SIGNED, vec![repo.into()]),
            Step::changes(crate::policy::REVISION_BUMP, vec![]),
            Step::changes(
                CHANGE,
                vec![
                    repo.into(),
                    Arg::Int(timestamp.version),
                    timestamp.sha256.as_str().into(),
                    "deletion".into(),
                    Arg::Int(now_ms()),
                ],
            ),
        ];
        if keys {
            steps.push(Step::any(DELETE_KEYS, vec![repo.into()]));
        }
        // A delete that found the files gone (a racing delete) has nothing left to do.
        match self.run_all(steps).await {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn trust_put(
        &self,
        repo: &str,
        files: Vec<TrustFile>,
        signed: Option<Signed>,
    ) -> Result<(), MetaError> {
        let mut steps = Vec::with_capacity(files.len() + 1);
        for f in &files {
            if f.role == "timestamp" {
                let args = vec![
                    repo.into(),
                    Arg::Int(f.version),
                    f.sha256.as_str().into(),
                    "update".into(),
                    Arg::Int(f.created_at),
                ];
                steps.push(Step::changes(CHANGE, args));
            }
        }
        for f in files {
            let args = vec![
                repo.into(),
                f.role.as_str().into(),
                Arg::Int(f.version),
                f.sha256.as_str().into(),
                Arg::Bytes(f.data),
                Arg::Int(f.created_at),
            ];
            steps.push(Step::changes(PUT, args));
        }
        if let Some(signed) = signed {
            steps.push(Step::any(DELETE_SIGNED, vec![repo.into()]));
            for t in signed.targets {
                let args = vec![
                    repo.into(),
                    Arg::Text(t.tag),
                    Arg::Text(t.digest),
                    Arg::Text(t.role),
                    Arg::Text(t.key_ids.join(",")),
                    Arg::Int(t.expires_at),
                ];
                steps.push(Step::changes(SIGNED_ADD, args));
            }
            for s in signed.signers {
                let args = vec![repo.into(), Arg::Text(s.key_id), Arg::Int(s.account)];
                steps.push(Step::any(SIGNER_ADD, args));
            }
            steps.push(Step::changes(crate::policy::REVISION_BUMP, vec![]));
        }
        self.run_all(steps).await.map_err(|e| match e {
            MetaError::Conflict(_) => {
                MetaError::Conflict(format!("a newer version of the trust data of {repo}"))
            }
            other => other,
        })
    }

    async fn trust_signed(
        &self,
        repo: &str,
        digest: Option<&str>,
    ) -> Result<Vec<SignedTarget>, MetaError> {
        let digest = digest.unwrap_or("");
        let rows: Vec<(String, String, String, String, i64)> = on_pool!(self.pool(), p => {
            sqlx::query_as(SIGNED).bind(repo).bind(digest).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(tag, digest, role, key_ids, expires_at)| SignedTarget {
                tag,
                digest,
                role,
                key_ids: key_ids
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect(),
                expires_at,
            })
            .collect())
    }

    async fn trust_signers(&self, repo: &str) -> Result<Vec<TrustSigner>, MetaError> {
        let rows: Vec<(String, i64)> = on_pool!(self.pool(), p => {
            sqlx::query_as(SIGNERS).bind(repo).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(key_id, account)| TrustSigner { key_id, account })
            .collect())
    }

    async fn trust_current(&self, repo: &str, role: &str) -> Result<Option<TrustFile>, MetaError> {
        let row = self
            .file_row(CURRENT, vec![repo.into(), role.into()])
            .await?;
        Ok(row.map(file))
    }

    async fn trust_current_all(&self, repo: &str) -> Result<Vec<TrustFile>, MetaError> {
        let rows: Vec<FileRow> = on_pool!(self.pool(), p => {
            sqlx::query_as(CURRENT_ALL).bind(repo).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(file).collect())
    }

    async fn trust_version(
        &self,
        repo: &str,
        role: &str,
        version: i64,
    ) -> Result<Option<TrustFile>, MetaError> {
        let args = vec![repo.into(), role.into(), Arg::Int(version)];
        Ok(self.file_row(VERSION, args).await?.map(file))
    }

    async fn trust_checksum(
        &self,
        repo: &str,
        role: &str,
        sha256: &str,
    ) -> Result<Option<TrustFile>, MetaError> {
        let args = vec![repo.into(), role.into(), sha256.into()];
        Ok(self.file_row(CHECKSUM, args).await?.map(file))
    }

    async fn trust_key_add(&self, repo: &str, key: TrustKey) -> Result<(), MetaError> {
        let args = vec![
            repo.into(),
            key.role.as_str().into(),
            key.key_id.as_str().into(),
            Arg::Bytes(key.public),
            Arg::Bytes(key.sealed),
            Arg::Int(now_ms()),
        ];
        self.run(KEY_ADD, args).await.map(|_| ())
    }

    async fn trust_keys(&self, repo: &str) -> Result<Vec<TrustKey>, MetaError> {
        let rows: Vec<KeyRow> = on_pool!(self.pool(), p => {
            sqlx::query_as(KEYS).bind(repo).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(role, key_id, public, sealed)| TrustKey {
                role,
                key_id,
                public,
                sealed,
            })
            .collect())
    }

    async fn trust_changes(
        &self,
        repo: Option<&str>,
        after: i64,
        limit: i64,
        before: bool,
    ) -> Result<Vec<TrustChange>, MetaError> {
        let statement = if before {
            CHANGES_BEFORE
        } else {
            CHANGES_AFTER
        };
        let repo = repo.unwrap_or("");
        let rows: Vec<ChangeRow> = on_pool!(self.pool(), p => {
            sqlx::query_as(statement).bind(repo).bind(after).bind(limit).fetch_all(p).await?
        });
        let mut changes: Vec<TrustChange> = rows.into_iter().map(change).collect();
        if before {
            changes.reverse();
        }
        Ok(changes)
    }

    async fn trust_repos(&self, after: &str, limit: i64) -> Result<Vec<String>, MetaError> {
        let repos: Vec<String> = on_pool!(self.pool(), p => {
            sqlx::query_scalar(REPOS).bind(after).bind(limit).fetch_all(p).await?
        });
        Ok(repos)
    }

    async fn trust_last_change(&self) -> Result<i64, MetaError> {
        let id: i64 = on_pool!(self.pool(), p => {
            sqlx::query_scalar(LAST_CHANGE).fetch_one(p).await?
        });
        Ok(id)
    }
}
