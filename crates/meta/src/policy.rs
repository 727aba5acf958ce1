//! Signature policies: the [`PolicyStore`] trait and its implementation for both backends.
//!
//! A policy belongs to a scope, a namespace or a repository, and is stored as the text
//! `core` checked (mode, formats, all-of or any-of, signers); this store neither parses
//! nor evaluates it. Every change, and every change of the signed targets (`trust_put`),
//! moves one revision counter on in the same transaction: what a replica compares to know
//! that its cached decisions are stale. Like the leases and the trust data, the
//! statements are the same text in both dialects.

use crate::convert::now_ms;
use crate::shared::{Arg, Pool, Statements, Step};
use crate::MetaError;
use async_trait::async_trait;

/// A policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// `org` or `org/repo`.
    pub scope: String,
    /// `off`, `audit` or `enforce`.
    pub mode: String,
    /// Comma-separated formats.
    pub formats: String,
    pub all_of: bool,
    /// Comma-separated signers.
    pub signers: String,
    /// Unix ms.
    pub updated_at: i64,
}

store_trait! {
/// Signature policies by scope, shared by every replica.
pub trait PolicyStore {
    /// Sets the policy of `policy.scope` (replacing any).
    async fn policy_put(&self, policy: &StoredPolicy) -> Result<(), MetaError>;

    /// The policy of `scope`, if one is set.
    async fn policy_get(&self, scope: &str) -> Result<Option<StoredPolicy>, MetaError>;

    /// Removes the policy of `scope`; whether there was one.
    async fn policy_delete(&self, scope: &str) -> Result<bool, MetaError>;

    /// The revision of everything policy decisions depend on (policies, signed targets).
    async fn policy_revision(&self) -> Result<i64, MetaError>;

    /// The manifests of `repo` that list `digest` as a child (the indexes a platform
    /// image belongs to), whose signatures may let it pass.
    async fn manifest_parents(&self, repo: &str, digest: &str) -> Result<Vec<String>, MetaError>;
}
}

pub(crate) const REVISION_BUMP: &str =
    "UPDATE policy_revision SET revision = revision + 1 WHERE id = 1";
const PUT: &str =
    "INSERT INTO signature_policies (scope, mode, formats, all_of, signers, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope) DO UPDATE SET mode = $2, \
     formats = $3, all_of = $4, signers = $5, updated_at = $6";
const GET: &str = "SELECT scope, mode, formats, all_of, signers, updated_at \
     FROM signature_policies WHERE scope = $1";
const DELETE: &str = "DELETE FROM signature_policies WHERE scope = $1";
const REVISION: &str = "SELECT revision FROM policy_revision WHERE id = 1";
const PARENTS: &str = "SELECT r.manifest FROM manifest_refs r \
     JOIN repositories p ON p.id = r.repo_id \
     WHERE p.name = $1 AND r.referenced = $2 AND r.kind = 'manifest' ORDER BY r.manifest LIMIT 100";

/// Every statement above, for the check that their parameters are in order.
#[cfg(test)]
pub(crate) const STATEMENTS: &[&str] = &[REVISION_BUMP, PUT, GET, DELETE, REVISION, PARENTS];

type Row = (String, String, String, i64, String, i64);

#[async_trait]
impl<S: Statements> PolicyStore for S {
    async fn policy_put(&self, p: &StoredPolicy) -> Result<(), MetaError> {
        let args = vec![
            p.scope.as_str().into(),
            p.mode.as_str().into(),
            p.formats.as_str().into(),
            Arg::Int(i64::from(p.all_of)),
            p.signers.as_str().into(),
            Arg::Int(now_ms()),
        ];
        self.run_all(vec![
            Step::changes(PUT, args),
            Step::changes(REVISION_BUMP, vec![]),
        ])
        .await
    }

    async fn policy_get(&self, scope: &str) -> Result<Option<StoredPolicy>, MetaError> {
        let row: Option<Row> = on_pool!(self.pool(), p => {
            sqlx::query_as(GET).bind(scope).fetch_optional(p).await?
        });
        Ok(row.map(
            |(scope, mode, formats, all_of, signers, updated_at)| StoredPolicy {
                scope,
                mode,
                formats,
                all_of: all_of != 0,
                signers,
                updated_at,
            },
        ))
    }

    async fn policy_delete(&self, scope: &str) -> Result<bool, MetaError> {
        let steps = vec![
            Step::changes(DELETE, vec![scope.into()]),
            Step::changes(REVISION_BUMP, vec![]),
        ];
        match self.run_all(steps).await {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn policy_revision(&self) -> Result<i64, MetaError> {
        let (revision,): (i64,) = on_pool!(self.pool(), p => {
            sqlx::query_as(REVISION).fetch_one(p).await?
        });
        Ok(revision)
    }

    async fn manifest_parents(&self, repo: &str, digest: &str) -> Result<Vec<String>, MetaError> {
        let rows: Vec<(String,)> = on_pool!(self.pool(), p => {
            sqlx::query_as(PARENTS).bind(repo).bind(digest).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|(d,)| d).collect())
    }
}
