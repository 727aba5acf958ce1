//! Statements both dialects accept, written once: the SQL text (`$n` parameters, which
//! SQLite reads as numbered parameters too, and standard `CAST`), the binding and the row
//! mapping. Each runs on either backend's sqlx pool: [`on_pool!`] expands one body for
//! each. What the dialects really disagree on (upserts, locking, SQLite's writer thread
//! and per-thread readers on the hot paths) stays in `sqlite*` and `postgres*`.

use crate::convert::{from_db, stored_digest, stored_repo};
use crate::identity::{audit_event, grant, repo_settings_rows, token_record};
use crate::identity::{repos_page_query, visible_page_query, RepoSettings, VisibleScope};
use crate::identity::{AccountId, AuditEvent, AuditFilter, AuditRow, GrantRow, Member};
use crate::identity::{RepoSettingsRow, SigningKeyRecord, TeamRecord, TokenKind};
use crate::identity::{TokenRecord, TokenRow, TOKEN_COLUMNS};
use crate::{GcRun, GcSettings, ManifestRecord, MetaError, Referrer, UploadRecord};
use berth_auth::rbac::Grant;
use berth_oci::{Digest, RepoName};
use bytes::Bytes;

// ---------------------------------------------------------------------------------------
// Statement text both dialects accept. SQLite's writer and per-thread readers bind
// parameters by position, and SQLite numbers `$n` parameters in the order they first
// appear: so in these, `$1`, `$2`, ... first appear in that order (`parameters_in_order`
// checks every one).

/// Whether a repository exists: name.
pub(crate) const REPO_EXISTS: &str = "SELECT 1 FROM repositories WHERE name = $1";
/// A catalog page after a name: last, limit. (Two statements rather than
/// `$1 IS NULL OR name > $1`, so both are index range scans.)
pub(crate) const CATALOG_AFTER: &str =
    "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2";
/// The first catalog page: limit.
pub(crate) const CATALOG_FIRST: &str = "SELECT name FROM repositories ORDER BY name LIMIT $1";
/// A manifest's media type and bytes: repository, digest.
pub(crate) const MANIFEST_GET: &str = "SELECT m.media_type, m.bytes FROM repositories r \
     JOIN manifests m ON m.repo_id = r.id \
     WHERE r.name = $1 AND m.digest = $2";
/// The manifest a tag points at (digest, media type, bytes): repository, tag.
pub(crate) const MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.bytes \
     FROM repositories r \
     JOIN tags t ON t.repo_id = r.id \
     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest \
     WHERE r.name = $1 AND t.name = $2";
/// A page of tags after a name (no row: no repository; a NULL: no further tags): last,
/// repository, limit.
pub(crate) const TAGS_AFTER: &str = "SELECT t.name FROM repositories r \
     LEFT JOIN tags t ON t.repo_id = r.id AND t.name > $1 \
     WHERE r.name = $2 ORDER BY t.name LIMIT $3";
/// The first page of tags, as [`TAGS_AFTER`]: repository, limit.
pub(crate) const TAGS_FIRST: &str = "SELECT t.name FROM repositories r \
     LEFT JOIN tags t ON t.repo_id = r.id \
     WHERE r.name = $1 ORDER BY t.name LIMIT $2";
/// A manifest's claim: repository, digest.
pub(crate) const MANIFEST_CLAIMED: &str = "SELECT m.claimed_at FROM repositories r \
     JOIN manifests m ON m.repo_id = r.id WHERE r.name = $1 AND m.digest = $2";
/// Claims a manifest again: now, repository, digest.
pub(crate) const MANIFEST_TOUCH: &str = "UPDATE manifests SET claimed_at = $1 \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $2) AND digest = $3";
/// A link's blob size and claim: repository, digest.
pub(crate) const LINK_CLAIMED: &str = "SELECT b.size, rb.claimed_at FROM repositories r \
     JOIN repo_blobs rb ON rb.repo_id = r.id \
     JOIN blobs b ON b.digest = rb.digest \
     WHERE r.name = $1 AND rb.digest = $2";
/// Claims a link again: now, repository, digest.
pub(crate) const LINK_TOUCH: &str = "UPDATE repo_blobs SET claimed_at = $1 \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $2) AND digest = $3";
/// The size of a blob a repository links: repository, digest.
pub(crate) const BLOB_IN_REPO: &str = "SELECT b.size FROM repositories r \
     JOIN repo_blobs rb ON rb.repo_id = r.id \
     JOIN blobs b ON b.digest = rb.digest \
     WHERE r.name = $1 AND rb.digest = $2";
/// Links a blob (or claims the link again): repository id, digest, now.
pub(crate) const LINK_INSERT: &str = "INSERT INTO repo_blobs (repo_id, digest, created_at, \
     claimed_at) VALUES ($1, $2, $3, $3) \
     ON CONFLICT (repo_id, digest) DO UPDATE SET claimed_at = excluded.claimed_at";
/// Records a blob whose bytes the caller vouches for, returning its tombstone (a
/// tombstoned row is not revived): digest, size, now, generation.
pub(crate) const BLOB_ROW_LIVE: &str = "INSERT INTO blobs (digest, size, created_at, \
     claimed_at, live, generation) VALUES ($1, $2, $3, $3, 1, $4) \
     ON CONFLICT (digest) DO UPDATE SET claimed_at = excluded.claimed_at, live = 1 \
     RETURNING deleting";
/// Stores a manifest unless it is there: repository id, digest, media type, artifact
/// type, subject, annotations, size, bytes, now.
pub(crate) const MANIFEST_INSERT: &str = "INSERT INTO manifests (repo_id, digest, media_type, \
     artifact_type, subject, annotations, size, bytes, created_at, claimed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
     ON CONFLICT (repo_id, digest) DO NOTHING";
/// Claims a stored manifest again (a re-put): now, repository id, digest.
pub(crate) const MANIFEST_RECLAIM: &str =
    "UPDATE manifests SET claimed_at = $1 WHERE repo_id = $2 AND digest = $3";
/// Points a tag at a manifest: repository id, tag, digest, now.
pub(crate) const TAG_SET: &str = "INSERT INTO tags (repo_id, name, manifest, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (repo_id, name) DO UPDATE \
     SET manifest = excluded.manifest, updated_at = excluded.updated_at";
/// Creates an upload session: id, repository id, offset, hash state, store state,
/// created, updated.
pub(crate) const UPLOAD_INSERT: &str = "INSERT INTO uploads (id, repo_id, \"offset\", \
     hash_state, store_state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// Takes an upload's lease if it is free or expired, returning the session's offset,
/// hash state, store state and creation time: lease, until, now, id, repository.
pub(crate) const UPLOAD_LEASE: &str = "UPDATE uploads \
     SET lease = $1, lease_until = $2, updated_at = $3 \
     WHERE id = $4 AND repo_id = (SELECT id FROM repositories WHERE name = $5) \
     AND (lease IS NULL OR lease_until < $3) \
     RETURNING \"offset\", hash_state, store_state, created_at";
/// An upload's offset: id, repository.
pub(crate) const UPLOAD_OFFSET: &str = "SELECT u.\"offset\" FROM uploads u \
     JOIN repositories r ON r.id = u.repo_id WHERE u.id = $1 AND r.name = $2";
/// Advances an upload and releases its lease if the lease and the offset are still the
/// caller's: offset, hash state, store state, updated, id, expected offset, lease,
/// repository.
pub(crate) const UPLOAD_ADVANCE: &str = "UPDATE uploads SET \"offset\" = $1, hash_state = $2, \
     store_state = $3, updated_at = $4, lease = NULL, lease_until = NULL \
     WHERE id = $5 AND \"offset\" = $6 AND lease = $7 \
     AND repo_id = (SELECT id FROM repositories WHERE name = $8)";

/// Removes a blob's link: repository name, digest.
pub(crate) const BLOB_UNLINK: &str = "DELETE FROM repo_blobs \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
/// Deletes a manifest (its tags and references by `ON DELETE CASCADE`): repository, digest.
pub(crate) const MANIFEST_DELETE: &str = "DELETE FROM manifests \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
/// Removes a tag: repository, tag.
pub(crate) const TAG_DELETE: &str = "DELETE FROM tags \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2";
/// Extends an upload's lease: until, now, id, lease.
pub(crate) const UPLOAD_RENEW: &str =
    "UPDATE uploads SET lease_until = $1, updated_at = $2 WHERE id = $3 AND lease = $4";
/// Gives up an upload's lease: id, lease.
pub(crate) const UPLOAD_RELEASE: &str =
    "UPDATE uploads SET lease = NULL, lease_until = NULL WHERE id = $1 AND lease = $2";
/// Removes an upload session: id.
pub(crate) const UPLOAD_DELETE: &str = "DELETE FROM uploads WHERE id = $1";
/// Sets GC's schedule: schedule.
pub(crate) const GC_SET_SCHEDULE: &str = "UPDATE gc_settings SET schedule = $1 WHERE id = 1";
/// Sets GC's read-only flag: since, by.
pub(crate) const GC_SET_READ_ONLY: &str =
    "UPDATE gc_settings SET read_only_since = $1, read_only_by = $2 WHERE id = 1";

/// Makes a claimed blob row live once its bytes are committed, if it still has the
/// claimed generation and no tombstone: size, now, digest, generation.
pub(crate) const BLOB_COMPLETE: &str = "UPDATE blobs SET live = 1, verified = 1, \
     size = $1, claimed_at = $2 WHERE digest = $3 AND generation = $4 AND deleting IS NULL";

/// Deletes a manifest that is garbage under a pass: repository id, digest, cutoff,
/// delete untagged, referrers follow their subject. A manifest is kept while tagged, while
/// a manifest or a tagged referrer refers to it, and while a signed target names it for a
/// tag the repository has (`trust_targets`).
pub(crate) const DELETE_MANIFEST: &str =
    "DELETE FROM manifests WHERE repo_id = $1 AND digest = $2 \
     AND claimed_at < $3 \
     AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = $1 AND manifest = $2) \
     AND NOT EXISTS (SELECT 1 FROM manifest_refs \
         WHERE referenced = $2 AND kind = 'manifest' AND repo_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM manifests r \
         JOIN tags t ON t.repo_id = r.repo_id AND t.manifest = r.digest \
         WHERE r.repo_id = $1 AND r.subject = $2) \
     AND NOT EXISTS (SELECT 1 FROM trust_targets s \
         JOIN repositories p ON p.name = s.repo \
         JOIN tags t ON t.repo_id = p.id AND t.name = s.tag \
         WHERE p.id = $1 AND s.digest = $2) \
     AND CASE WHEN subject IS NULL THEN $4 \
         WHEN $5 THEN NOT EXISTS (SELECT 1 FROM manifests s \
             WHERE s.repo_id = $1 AND s.digest = manifests.subject) \
         ELSE FALSE END";
/// Deletes a link that is garbage: repository id, digest, cutoff.
pub(crate) const DELETE_LINK: &str = "DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2 \
     AND claimed_at < $3 \
     AND NOT EXISTS (SELECT 1 FROM manifest_refs \
         WHERE referenced = $2 AND kind = 'blob' AND repo_id = $1)";
/// Tombstones a blob that is garbage, returning its size: now, digest, cutoff.
pub(crate) const TOMBSTONE_BLOB: &str = "UPDATE blobs SET deleting = $1 \
     WHERE digest = $2 AND deleting IS NULL AND claimed_at < $3 \
     AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = $2) \
     AND NOT EXISTS (SELECT 1 FROM manifest_refs WHERE referenced = $2 AND kind = 'blob') \
     RETURNING size";

/// A manifest's claim: repository id, digest.
pub(crate) const MANIFEST_CLAIM: &str =
    "SELECT claimed_at FROM manifests WHERE repo_id = $1 AND digest = $2";
/// A link's claim: repository id, digest.
pub(crate) const LINK_CLAIM: &str =
    "SELECT claimed_at FROM repo_blobs WHERE repo_id = $1 AND digest = $2";
/// A page of GC candidates: after, limit.
pub(crate) const GC_CANDIDATES: &str =
    "SELECT id, kind, repo_id, digest FROM gc_candidates WHERE id > $1 ORDER BY id LIMIT $2";
/// Removes a GC candidate: id.
pub(crate) const GC_CANDIDATE_DROP: &str = "DELETE FROM gc_candidates WHERE id = $1";
/// Records a new GC run, returning its id: holder, started by, mode, dry run, status,
/// started, finished, then the seven counts ([`GcRun::counts`](crate::GcRun)), errors.
pub(crate) const GC_RUN_INSERT: &str = "INSERT INTO gc_runs (holder, started_by, mode, \
     dry_run, status, started_at, finished_at, manifests_deleted, links_deleted, \
     blobs_deleted, blob_bytes, uploads_purged, orphans_deleted, orphan_bytes, errors) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id";
/// Updates a GC run: status, finished, the seven counts, errors, id.
pub(crate) const GC_RUN_UPDATE: &str = "UPDATE gc_runs SET status = $1, finished_at = $2, \
     manifests_deleted = $3, links_deleted = $4, blobs_deleted = $5, blob_bytes = $6, \
     uploads_purged = $7, orphans_deleted = $8, orphan_bytes = $9, errors = $10 WHERE id = $11";

/// Deletes a user: id.
pub(crate) const USER_DELETE: &str = "DELETE FROM accounts WHERE id = $1 AND kind = 'user'";
/// Deletes an organisation: name.
pub(crate) const ORG_DELETE: &str = "DELETE FROM accounts WHERE name = $1 AND kind = 'org'";
/// Maps a team to a directory group: group, organisation, team.
pub(crate) const TEAM_SET_GROUP: &str = "UPDATE teams SET directory_group = $1 WHERE id = \
     (SELECT t.id FROM teams t JOIN accounts o ON o.id = t.org_id \
     WHERE o.name = $2 AND o.kind = 'org' AND t.name = $3)";
/// Deletes a team: organisation, team.
pub(crate) const TEAM_DELETE: &str = "DELETE FROM teams WHERE id = \
     (SELECT t.id FROM teams t JOIN accounts o ON o.id = t.org_id \
     WHERE o.name = $1 AND o.kind = 'org' AND t.name = $2)";
/// Removes a team member: organisation, team, user.
pub(crate) const TEAM_MEMBER_REMOVE: &str = "DELETE FROM team_members WHERE team_id = \
     (SELECT t.id FROM teams t JOIN accounts o ON o.id = t.org_id \
     WHERE o.name = $1 AND o.kind = 'org' AND t.name = $2) AND user_id = $3";
/// Removes a repository grant: organisation, team, repository.
pub(crate) const GRANT_REPO_REMOVE: &str = "DELETE FROM repo_grants WHERE team_id = \
     (SELECT t.id FROM teams t JOIN accounts o ON o.id = t.org_id \
     WHERE o.name = $1 AND o.kind = 'org' AND t.name = $2) \
     AND repo_id = (SELECT id FROM repositories WHERE name = $3)";
/// Removes a namespace grant: organisation, team.
pub(crate) const GRANT_NAMESPACE_REMOVE: &str = "DELETE FROM namespace_grants WHERE team_id = \
     (SELECT t.id FROM teams t JOIN accounts o ON o.id = t.org_id \
     WHERE o.name = $1 AND o.kind = 'org' AND t.name = $2)";
/// Records a token's use: when, id.
pub(crate) const TOKEN_TOUCH: &str = "UPDATE tokens SET last_used_at = $1 WHERE id = $2";
/// Revokes every token of a user: user.
pub(crate) const TOKENS_REVOKE_ALL: &str =
    "UPDATE tokens SET revoked = TRUE WHERE user_id = $1 AND NOT revoked";
/// Deletes a repository: name.
pub(crate) const REPO_DELETE: &str = "DELETE FROM repositories WHERE name = $1";
/// Sets a repository's visibility: visibility, name.
pub(crate) const REPO_SET_VISIBILITY: &str =
    "UPDATE repositories SET visibility = $1 WHERE name = $2";
/// Retires a signing key: kid.
pub(crate) const SIGNING_KEY_RETIRE: &str = "UPDATE signing_keys SET retired = TRUE WHERE kid = $1";
pub(crate) const SIGNING_KEY_RESEAL: &str =
    "UPDATE signing_keys SET pem = $1 WHERE kid = $2 AND pem = $3";
/// Deletes up to `$2` audit events older than `$1`.
pub(crate) const AUDIT_PRUNE: &str = "DELETE FROM audit_log WHERE id IN \
     (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)";

/// Every statement above, for `parameters_in_order`.
#[cfg(test)]
const STATEMENTS: &[&str] = &[
    REPO_EXISTS,
    CATALOG_AFTER,
    CATALOG_FIRST,
    MANIFEST_GET,
    MANIFEST_BY_TAG,
    TAGS_AFTER,
    TAGS_FIRST,
    MANIFEST_CLAIMED,
    MANIFEST_TOUCH,
    LINK_CLAIMED,
    LINK_TOUCH,
    BLOB_IN_REPO,
    LINK_INSERT,
    BLOB_ROW_LIVE,
    MANIFEST_INSERT,
    MANIFEST_RECLAIM,
    TAG_SET,
    UPLOAD_INSERT,
    UPLOAD_LEASE,
    UPLOAD_OFFSET,
    UPLOAD_ADVANCE,
    BLOB_UNLINK,
    MANIFEST_DELETE,
    TAG_DELETE,
    UPLOAD_RENEW,
    UPLOAD_RELEASE,
    UPLOAD_DELETE,
    GC_SET_SCHEDULE,
    GC_SET_READ_ONLY,
    BLOB_COMPLETE,
    DELETE_MANIFEST,
    DELETE_LINK,
    TOMBSTONE_BLOB,
    MANIFEST_CLAIM,
    LINK_CLAIM,
    GC_CANDIDATES,
    GC_CANDIDATE_DROP,
    GC_RUN_INSERT,
    GC_RUN_UPDATE,
    ORG_ID,
    TEAM_ID,
    USER_DELETE,
    ORG_DELETE,
    TEAM_SET_GROUP,
    TEAM_DELETE,
    TEAM_MEMBER_REMOVE,
    GRANT_REPO_REMOVE,
    GRANT_NAMESPACE_REMOVE,
    REPO_SET_VISIBILITY,
    REPO_DELETE,
    TOKEN_TOUCH,
    TOKENS_REVOKE_ALL,
    SIGNING_KEY_RETIRE,
    SIGNING_KEY_RESEAL,
    AUDIT_PRUNE,
];

/// The sqlx pool a statement runs on.
#[derive(Clone, Copy)]
pub(crate) enum Pool<'a> {
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

/// A value bound to a statement run through [`Statements::run`] (owned: SQLite's writer
/// thread takes it along).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(s.to_string())
    }
}

impl From<i64> for Arg {
    fn from(i: i64) -> Arg {
        Arg::Int(i)
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(i) => i.to_sql(),
            Arg::Text(t) => t.to_sql(),
            Arg::Bytes(b) => b.to_sql(),
        }
    }
}

/// What a store needs for a trait written once over both backends (the job leases): one
/// write statement with its arguments, run as each backend runs a write (SQLite's writer
/// thread, PostgreSQL's pool), and the sqlx pool for the reads.
#[async_trait::async_trait]
pub(crate) trait Statements: Send + Sync + 'static {
    /// Runs `statement` with `args` (`$1`, `$2`, ... in order); how many rows it changed.
    async fn run(&self, statement: &'static str, args: Vec<Arg>) -> Result<u64, MetaError>;

    /// Runs every step in one transaction: if a step that must change a row changes none
    /// (or any step breaks a unique key), nothing is written and the answer is
    /// [`MetaError::Conflict`].
    async fn run_all(&self, steps: Vec<Step>) -> Result<(), MetaError>;

    /// The one row of a trust file (`crate::trust`) that `statement` with `args` reads:
    /// on SQLite through this thread's connection (`sqlite_fast`), as the registry's hot
    /// reads are, since clients fetch trust files on every trusted pull.
    async fn file_row(
        &self,
        statement: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<crate::trust::FileRow>, MetaError>;

    /// The sqlx pool for reads.
    fn pool(&self) -> Pool<'_>;
}

/// One statement of an all-or-nothing write ([`Statements::run_all`]).
pub(crate) struct Step {
    pub(crate) statement: &'static str,
    pub(crate) args: Vec<Arg>,
    /// Whether changing no row fails the whole write (an insert guarded by a condition);
    /// `false` for a statement that clears what may not be there.
    pub(crate) must_change: bool,
}

impl Step {
    /// A statement that must change a row.
    pub(crate) fn changes(statement: &'static str, args: Vec<Arg>) -> Step {
        Step {
            statement,
            args,
            must_change: true,
        }
    }

    /// A statement that may change no row.
    pub(crate) fn any(statement: &'static str, args: Vec<Arg>) -> Step {
        Step {
            statement,
            args,
            must_change: false,
        }
    }
}

/// The conflict of [`Statements::run_all`]: statement `i` changed nothing.
fn unchanged(i: usize) -> MetaError {
    MetaError::Conflict(format!("statement {i} of an all-or-nothing write"))
}

/// Whether `$1`, `$2`, ... first appear in that order. SQLite binds `$N` as a name, by
/// where it first appears, not by its number: a statement written for both backends that
/// names its arguments out of order binds them to the wrong places there, silently.
fn numbered_in_order(statement: &str) -> bool {
    let mut next = 1;
    for part in statement.split('$').skip(1) {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        match part[..digits].parse::<usize>() {
            Ok(n) if n > next => return false,
            Ok(n) if n == next => next += 1,
            _ => {}
        }
    }
    true
}

#[async_trait::async_trait]
impl Statements for crate::SqliteMetaStore {
    async fn run(&self, statement: &'static str, args: Vec<Arg>) -> Result<u64, MetaError> {
        debug_assert!(numbered_in_order(statement), "{statement}");
        let n = self
            .execute(statement, rusqlite::params_from_iter(args))
            .await?;
        Ok(n as u64)
    }

    async fn run_all(&self, steps: Vec<Step>) -> Result<(), MetaError> {
        self.write(move |conn| {
            for (i, step) in steps.into_iter().enumerate() {
                debug_assert!(numbered_in_order(step.statement), "{}", step.statement);
                let n = conn
                    .prepare_cached(step.statement)
                    .and_then(|mut st| st.execute(rusqlite::params_from_iter(step.args)))
                    .map_err(crate::sqlite::sql)?;
                if n == 0 && step.must_change {
                    return Err(unchanged(i));
                }
            }
            Ok(())
        })
        .await
    }

    async fn file_row(
        &self,
        statement: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<crate::trust::FileRow>, MetaError> {
        use rusqlite::OptionalExtension;
        debug_assert!(numbered_in_order(statement), "{statement}");
        self.fast.with(|c| {
            c.prepare_cached(statement)?
                .query_row(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
        })
    }

    fn pool(&self) -> Pool<'_> {
        self.sqlx()
    }
}

#[async_trait::async_trait]
impl Statements for crate::PgMetaStore {
    async fn run(&self, statement: &'static str, args: Vec<Arg>) -> Result<u64, MetaError> {
        Ok(pg_query(statement, args)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn run_all(&self, steps: Vec<Step>) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        for (i, step) in steps.into_iter().enumerate() {
            let done = pg_query(step.statement, step.args).execute(&mut *tx).await;
            match done {
                Ok(r) if r.rows_affected() > 0 || !step.must_change => {}
                Ok(_) => return Err(unchanged(i)),
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                    return Err(unchanged(i))
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn file_row(
        &self,
        statement: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<crate::trust::FileRow>, MetaError> {
        let row = pg_query(statement, args).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| sqlx::FromRow::from_row(&r)).transpose()?)
    }

    fn pool(&self) -> Pool<'_> {
        self.sqlx()
    }
}

/// `statement` with `args` bound, for PostgreSQL.
fn pg_query(
    statement: &'static str,
    args: Vec<Arg>,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(statement);
    for arg in args {
        q = match arg {
            Arg::Int(i) => q.bind(i),
            Arg::Text(t) => q.bind(t),
            Arg::Bytes(b) => q.bind(b),
        };
    }
    q
}

/// Evaluates `$body` with `$p` bound to the pool, once per dialect.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// The newest migration applied to a database (fails when none ever was).
pub(crate) const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM _sqlx_migrations";

/// Refuses to start on a schema a newer berth migrated (`applied`, the newest migration
/// it recorded, beyond every one `migrator` knows): this version would not know what the
/// newer tables and triggers promise. Rolling upgrades start the newer replicas first;
/// the older ones keep running on the migrated schema, and only a restarted older one
/// stops here.
pub(crate) fn refuse_newer_schema(
    dialect: &str,
    applied: Option<i64>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), MetaError> {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match applied {
        Some(v) if v > known => Err(MetaError::Backend(format!(
            "the {dialect} schema is at migration {v}, newer than this berth {} knows ({known}): \
             a newer version migrated it; run that version on this replica too",
            env!("CARGO_PKG_VERSION")
        ))),
        _ => Ok(()),
    }
}

/// A manifest row as both stores read it.
pub(crate) fn manifest_record(
    digest: Digest,
    media_type: String,
    bytes: Vec<u8>,
) -> ManifestRecord {
    ManifestRecord {
        digest,
        media_type,
        bytes: Bytes::from(bytes),
    }
}

/// The answer of `tags_list` from the rows of its statement, which asks for at least one
/// row: none means no repository, a single NULL tag a repository without (further) tags.
pub(crate) fn tag_page(rows: Vec<Option<String>>, n: u32) -> Option<Vec<String>> {
    if rows.is_empty() {
        return None;
    }
    Some(rows.into_iter().flatten().take(n as usize).collect())
}

/// A referrer row: digest, media type, artifact type, size, annotations.
type ReferrerRow = (String, String, Option<String>, i64, Option<String>);

/// [`RegistryStore::referrers`](crate::RegistryStore::referrers).
pub(crate) async fn referrers(
    pool: Pool<'_>,
    repo: &RepoName,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Referrer>, MetaError> {
    let sql = "SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations \
               FROM repositories r JOIN manifests m ON m.repo_id = r.id \
               WHERE r.name = $1 AND m.subject = $2 \
               AND (CAST($3 AS TEXT) IS NULL OR m.artifact_type = $3) \
               ORDER BY m.digest";
    let rows: Vec<ReferrerRow> = on_pool!(pool, p => {
        sqlx::query_as(sql)
            .bind(repo.as_str())
            .bind(subject.as_str())
            .bind(artifact_type)
            .fetch_all(p)
            .await?
    });
    rows.into_iter()
        .map(|(d, media_type, artifact_type, size, annotations)| {
            Ok(Referrer {
                digest: stored_digest(&d)?,
                media_type,
                artifact_type,
                size: from_db(size, "manifest size")?,
                annotations,
            })
        })
        .collect()
}

/// [`RegistryStore::ping`](crate::RegistryStore::ping).
pub(crate) async fn ping(pool: Pool<'_>) -> Result<(), MetaError> {
    on_pool!(pool, p => {
        sqlx::query("SELECT 1").execute(p).await?;
    });
    Ok(())
}

/// [`RegistryStore::blob_anywhere`](crate::RegistryStore::blob_anywhere).
pub(crate) async fn blob_anywhere(
    pool: Pool<'_>,
    digest: &Digest,
) -> Result<Option<u64>, MetaError> {
    let sql = "SELECT size FROM blobs WHERE digest = $1 \
               AND EXISTS (SELECT 1 FROM repo_blobs WHERE digest = $1)";
    let size: Option<i64> = on_pool!(pool, p => {
        sqlx::query_scalar(sql).bind(digest.as_str()).fetch_optional(p).await?
    });
    size.map(|s| from_db(s, "blob size")).transpose()
}

/// [`UploadStore::upload_count`](crate::UploadStore::upload_count).
pub(crate) async fn upload_count(pool: Pool<'_>) -> Result<u64, MetaError> {
    let sql = "SELECT count(*) FROM uploads";
    let n: i64 = on_pool!(pool, p => sqlx::query_scalar(sql).fetch_one(p).await?);
    Ok(n.max(0) as u64)
}

/// [`RegistryStore::all_blobs`](crate::RegistryStore::all_blobs).
pub(crate) async fn all_blobs(pool: Pool<'_>) -> Result<Vec<(Digest, u64)>, MetaError> {
    let sql = "SELECT digest, size FROM blobs WHERE live = 1 AND deleting IS NULL ORDER BY digest";
    let rows: Vec<(String, i64)> = on_pool!(pool, p => sqlx::query_as(sql).fetch_all(p).await?);
    rows.into_iter().map(digest_size).collect()
}

/// [`GcStore::gc_tombstones`](crate::GcStore::gc_tombstones).
pub(crate) async fn gc_tombstones(
    pool: Pool<'_>,
    limit: u32,
) -> Result<Vec<(Digest, u64)>, MetaError> {
    let sql = "SELECT digest, size FROM blobs WHERE deleting IS NOT NULL ORDER BY deleting \
               LIMIT $1";
    let rows: Vec<(String, i64)> =
        on_pool!(pool, p => sqlx::query_as(sql).bind(i64::from(limit)).fetch_all(p).await?);
    rows.into_iter().map(digest_size).collect()
}

/// A blob row's digest and size.
fn digest_size((digest, size): (String, i64)) -> Result<(Digest, u64), MetaError> {
    Ok((stored_digest(&digest)?, from_db(size, "blob size")?))
}

/// [`RegistryStore::all_manifests`](crate::RegistryStore::all_manifests).
pub(crate) async fn all_manifests(
    pool: Pool<'_>,
) -> Result<Vec<(RepoName, ManifestRecord)>, MetaError> {
    let sql = "SELECT r.name, m.digest, m.media_type, m.bytes \
               FROM repositories r JOIN manifests m ON m.repo_id = r.id \
               ORDER BY r.name, m.digest";
    let rows: Vec<(String, String, String, Vec<u8>)> =
        on_pool!(pool, p => sqlx::query_as(sql).fetch_all(p).await?);
    rows.into_iter()
        .map(|(name, d, media_type, bytes)| {
            let record = manifest_record(stored_digest(&d)?, media_type, bytes);
            Ok((stored_repo(&name)?, record))
        })
        .collect()
}

/// `SELECT` of grants as (org, team, repository or NULL, role): repository grants
/// matching `repo_where`, then namespace grants matching `ns_where`. Aliases: `o` the
/// team's organisation, `t` the team, `r` the repository.
pub(crate) fn grants_sql(repo_where: &str, ns_where: &str) -> String {
    format!(
        "SELECT o.name AS gorg, t.name AS gteam, r.name AS grepo, g.role AS grole \
         FROM repo_grants g \
         JOIN teams t ON t.id = g.team_id JOIN accounts o ON o.id = t.org_id \
         JOIN repositories r ON r.id = g.repo_id WHERE {repo_where} \
         UNION ALL \
         SELECT o.name, t.name, NULL, g.role FROM namespace_grants g \
         JOIN teams t ON t.id = g.team_id JOIN accounts o ON o.id = t.org_id WHERE {ns_where} \
         ORDER BY grepo NULLS FIRST, gorg, gteam"
    )
}

/// Whose grants [`grants`] lists.
#[derive(Clone, Copy)]
pub(crate) enum GrantsOf<'a> {
    /// Every grant of an organisation's teams.
    Org(&'a str),
    /// The grants that apply to a repository (on it, or on its namespace).
    Repo(&'a RepoName),
    /// The grants of the teams a user is a member of.
    User(i64),
}

/// `grants_of_org`, `grants_on_repo` and `grants_of_user` of
/// [`AccessStore`](crate::AccessStore).
pub(crate) async fn grants(pool: Pool<'_>, of: GrantsOf<'_>) -> Result<Vec<Grant>, MetaError> {
    let mine = "t.id IN (SELECT team_id FROM team_members WHERE user_id = $1)";
    let (sql, first, second) = match &of {
        GrantsOf::Org(org) => (grants_sql("o.name = $1", "o.name = $1"), *org, None),
        GrantsOf::Repo(r) => (
            grants_sql("r.name = $1", "o.name = $2"),
            r.as_str(),
            Some(r.namespace()),
        ),
        GrantsOf::User(_) => (grants_sql(mine, mine), "", None),
    };
    let rows: Vec<GrantRow> = on_pool!(pool, p => {
        let q = sqlx::query_as(&sql);
        let q = match of {
            GrantsOf::User(id) => q.bind(id),
            _ => q.bind(first),
        };
        let q = match second {
            Some(s) => q.bind(s),
            None => q,
        };
        q.fetch_all(p).await?
    });
    rows.into_iter().map(grant).collect()
}

/// [`AccessStore::repos_list`](crate::identity::AccessStore::repos_list).
pub(crate) async fn repos_list(
    pool: Pool<'_>,
    namespace: Option<&str>,
    last: Option<&str>,
    n: u32,
) -> Result<Vec<RepoSettings>, MetaError> {
    let query = repos_page_query(namespace, last, |i| format!("${i}"));
    repo_settings_page(pool, query, namespace, n).await
}

/// [`AccessStore::repos_visible`](crate::identity::AccessStore::repos_visible).
pub(crate) async fn repos_visible(
    pool: Pool<'_>,
    scope: &VisibleScope,
    namespace: Option<&str>,
    last: Option<&str>,
    n: u32,
) -> Result<Vec<RepoSettings>, MetaError> {
    match visible_page_query(scope, namespace, last, |i| format!("${i}")) {
        Some(query) => repo_settings_page(pool, query, namespace, n).await,
        None => Ok(vec![]),
    }
}

/// One page of [`repos_page_query`](crate::identity::repos_page_query) or
/// [`visible_page_query`](crate::identity::visible_page_query) (`query`: the statement and
/// its text parameters, written with `$n`): binds the parameters, then the limit `n`, and
/// maps the rows with [`repo_settings_rows`].
async fn repo_settings_page(
    pool: Pool<'_>,
    query: (String, Vec<String>),
    namespace: Option<&str>,
    n: u32,
) -> Result<Vec<RepoSettings>, MetaError> {
    let (sql, binds) = query;
    let rows: Vec<RepoSettingsRow> = on_pool!(pool, p => {
        let mut q = sqlx::query_as(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        q.bind(i64::from(n)).fetch_all(p).await?
    });
    repo_settings_rows(rows, namespace)
}

/// [`GcStore::gc_settings`](crate::GcStore::gc_settings).
pub(crate) async fn gc_settings(pool: Pool<'_>) -> Result<GcSettings, MetaError> {
    let sql = "SELECT schedule, read_only_since, read_only_by FROM gc_settings WHERE id = 1";
    let row: Option<(Option<String>, Option<i64>, Option<String>)> =
        on_pool!(pool, p => sqlx::query_as(sql).fetch_optional(p).await?);
    Ok(row
        .map(|(schedule, read_only_since, read_only_by)| GcSettings {
            schedule,
            read_only_since,
            read_only_by,
        })
        .unwrap_or_default())
}

/// A `gc_runs` row: id, holder, started by, mode, dry run, status, started, finished,
/// the seven counts (manifests, links, blobs, blob bytes, uploads, orphans, orphan
/// bytes), errors (JSON).
type GcRunRow = (
    i64,
    String,
    String,
    String,
    bool,
    String,
    i64,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
);

/// [`GcStore::gc_runs`](crate::GcStore::gc_runs).
pub(crate) async fn gc_runs(pool: Pool<'_>, limit: u32) -> Result<Vec<GcRun>, MetaError> {
    let sql = "SELECT id, holder, started_by, mode, dry_run, status, started_at, finished_at, \
               manifests_deleted, links_deleted, blobs_deleted, blob_bytes, uploads_purged, \
               orphans_deleted, orphan_bytes, errors FROM gc_runs ORDER BY id DESC LIMIT $1";
    let rows: Vec<GcRunRow> =
        on_pool!(pool, p => sqlx::query_as(sql).bind(i64::from(limit)).fetch_all(p).await?);
    let n = |v: i64| v.max(0) as u64;
    Ok(rows
        .into_iter()
        .map(|r| GcRun {
            id: r.0,
            holder: r.1,
            started_by: r.2,
            mode: r.3,
            dry_run: r.4,
            status: r.5,
            started_at: r.6,
            finished_at: r.7,
            manifests_deleted: n(r.8),
            links_deleted: n(r.9),
            blobs_deleted: n(r.10),
            blob_bytes: n(r.11),
            uploads_purged: n(r.12),
            orphans_deleted: n(r.13),
            orphan_bytes: n(r.14),
            errors: serde_json::from_str(&r.15).unwrap_or_default(),
        })
        .collect())
}

/// An upload session's columns as both stores read them: offset, hash state, store
/// state, created, updated.
pub(crate) type UploadColumns = (i64, Vec<u8>, String, i64, i64);

/// The session `id` of `repo` from its columns.
pub(crate) fn upload_record(
    id: String,
    repo: RepoName,
    (offset, hash_state, store_state, created_at, updated_at): UploadColumns,
) -> Result<UploadRecord, MetaError> {
    Ok(UploadRecord {
        id,
        repo,
        offset: from_db(offset, "upload offset")?,
        hash_state,
        store_state,
        created_at,
        updated_at,
    })
}

/// [`UploadStore::upload_get`](crate::UploadStore::upload_get).
pub(crate) async fn upload_get(
    pool: Pool<'_>,
    repo: &RepoName,
    id: &str,
) -> Result<Option<UploadRecord>, MetaError> {
    let sql = "SELECT u.\"offset\", u.hash_state, u.store_state, u.created_at, u.updated_at \
               FROM uploads u JOIN repositories r ON r.id = u.repo_id \
               WHERE u.id = $1 AND r.name = $2";
    let row: Option<UploadColumns> = on_pool!(pool, p => {
        sqlx::query_as(sql)
            .bind(id)
            .bind(repo.as_str())
            .fetch_optional(p)
            .await?
    });
    row.map(|cols| upload_record(id.to_string(), repo.clone(), cols))
        .transpose()
}

/// A stale upload row: id, repository, then [`UploadColumns`].
type StaleUploadRow = (String, String, i64, Vec<u8>, String, i64, i64);

/// [`GcStore::uploads_stale`](crate::GcStore::uploads_stale).
pub(crate) async fn uploads_stale(
    pool: Pool<'_>,
    before: i64,
    limit: u32,
) -> Result<Vec<UploadRecord>, MetaError> {
    let sql = "SELECT u.id, r.name, u.\"offset\", u.hash_state, u.store_state, u.created_at, \
               u.updated_at FROM uploads u JOIN repositories r ON r.id = u.repo_id \
               WHERE u.updated_at < $1 ORDER BY u.updated_at LIMIT $2";
    let rows: Vec<StaleUploadRow> = on_pool!(pool, p => {
        sqlx::query_as(sql)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
    });
    rows.into_iter()
        .map(
            |(id, repo, offset, hash_state, store_state, created_at, updated_at)| {
                let cols = (offset, hash_state, store_state, created_at, updated_at);
                upload_record(id, stored_repo(&repo)?, cols)
            },
        )
        .collect()
}

// ---------------------------------------------------------------------------------------
// Identity listings (the reads off the hot path; the hot ones run on SQLite's per-thread
// connections)

/// A row type both pools can decode.
pub(crate) trait AnyRow:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + Send
    + Unpin
{
}

impl<T> AnyRow for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin
{
}

/// [`AccountStore::users_list`](crate::AccountStore::users_list) and
/// [`orgs_list`](crate::AccountStore::orgs_list): accounts of `kind` by name, their
/// `columns`, each row mapped by `record`.
pub(crate) async fn accounts_page<R: AnyRow, T>(
    pool: Pool<'_>,
    (columns, kind): (&str, &str),
    last: Option<&str>,
    n: u32,
    record: fn(R) -> Result<T, MetaError>,
) -> Result<Vec<T>, MetaError> {
    let sql = format!(
        "SELECT {columns} FROM accounts WHERE kind = '{kind}' \
         AND (CAST($1 AS TEXT) IS NULL OR name > $1) ORDER BY name LIMIT $2"
    );
    let rows: Vec<R> = on_pool!(pool, p => {
        sqlx::query_as(&sql).bind(last).bind(i64::from(n)).fetch_all(p).await?
    });
    rows.into_iter().map(record).collect()
}

/// Members of an organisation (`org_members`) or of a team (`team_members`, never owners):
/// `id_sql` finds the organisation's or team's id from `names`, `NotFound(what)` if there
/// is none; `members_sql` lists (id, name, is_owner) for that id.
pub(crate) async fn members(
    pool: Pool<'_>,
    (id_sql, names): (&str, &[&str]),
    members_sql: &str,
    what: impl FnOnce() -> String,
) -> Result<Vec<Member>, MetaError> {
    let id: Option<i64> = on_pool!(pool, p => {
        let mut q = sqlx::query_scalar(id_sql);
        for name in names {
            q = q.bind(*name);
        }
        q.fetch_optional(p).await?
    });
    let id = id.ok_or_else(|| MetaError::NotFound(what()))?;
    let rows: Vec<(i64, String, bool)> =
        on_pool!(pool, p => sqlx::query_as(members_sql).bind(id).fetch_all(p).await?);
    Ok(rows
        .into_iter()
        .map(|(user_id, name, is_owner)| Member {
            user_id,
            name,
            is_owner,
        })
        .collect())
}

/// [`AccountStore::org_members`](crate::AccountStore::org_members).
pub(crate) async fn org_members(pool: Pool<'_>, org: &str) -> Result<Vec<Member>, MetaError> {
    members(
        pool,
        (ORG_ID, &[org]),
        "SELECT u.id, u.name, m.is_owner FROM org_members m \
         JOIN accounts u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.name",
        || format!("organisation {org}"),
    )
    .await
}

/// [`TeamStore::team_members`](crate::TeamStore::team_members).
pub(crate) async fn team_members(
    pool: Pool<'_>,
    org: &str,
    team: &str,
) -> Result<Vec<Member>, MetaError> {
    members(
        pool,
        (TEAM_ID, &[org, team]),
        "SELECT u.id, u.name, FALSE FROM team_members tm JOIN accounts u ON u.id = tm.user_id \
         WHERE tm.team_id = $1 ORDER BY u.name",
        || format!("team {org}/{team}"),
    )
    .await
}

/// The id of organisation `$1`.
pub(crate) const ORG_ID: &str = "SELECT id FROM accounts WHERE name = $1 AND kind = 'org'";

/// The id of team `$2` of organisation `$1`.
pub(crate) const TEAM_ID: &str = "SELECT t.id FROM teams t JOIN accounts o ON o.id = t.org_id \
     WHERE o.name = $1 AND o.kind = 'org' AND t.name = $2";

/// [`TeamStore::teams_list`](crate::TeamStore::teams_list).
pub(crate) async fn teams_list(pool: Pool<'_>, org: &str) -> Result<Vec<TeamRecord>, MetaError> {
    let sql = "SELECT t.id, t.name, t.directory_group, t.created_at FROM teams t \
               JOIN accounts o ON o.id = t.org_id WHERE o.name = $1 AND o.kind = 'org' \
               ORDER BY t.name";
    let rows: Vec<(i64, String, Option<String>, i64)> =
        on_pool!(pool, p => sqlx::query_as(sql).bind(org).fetch_all(p).await?);
    Ok(rows
        .into_iter()
        .map(|(id, name, group, created_at)| team_record(org, name, (id, group, created_at)))
        .collect())
}

/// A team from its organisation, its name and its columns (id, directory group, created).
pub(crate) fn team_record(
    org: &str,
    name: String,
    (id, directory_group, created_at): (i64, Option<String>, i64),
) -> TeamRecord {
    TeamRecord {
        id,
        org: org.to_string(),
        name,
        directory_group,
        created_at,
    }
}

/// [`TokenStore::tokens_list`](crate::TokenStore::tokens_list).
pub(crate) async fn tokens_list(
    pool: Pool<'_>,
    user: AccountId,
    kind: TokenKind,
) -> Result<Vec<TokenRecord>, MetaError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND kind = $2 \
         ORDER BY created_at DESC, id"
    );
    let rows: Vec<TokenRow> = on_pool!(pool, p => {
        sqlx::query_as(&sql).bind(user).bind(kind.as_str()).fetch_all(p).await?
    });
    rows.into_iter().map(token_record).collect()
}

/// [`TokenStore::signing_keys`](crate::TokenStore::signing_keys).
pub(crate) async fn signing_keys(pool: Pool<'_>) -> Result<Vec<SigningKeyRecord>, MetaError> {
    let sql =
        "SELECT kid, pem, created_at, retired FROM signing_keys ORDER BY created_at DESC, kid";
    let rows: Vec<(String, String, i64, bool)> =
        on_pool!(pool, p => sqlx::query_as(sql).fetch_all(p).await?);
    Ok(rows
        .into_iter()
        .map(|(kid, pem, created_at, retired)| SigningKeyRecord {
            kid,
            pem,
            created_at,
            retired,
        })
        .collect())
}

/// [`AuditStore::audit_query`](crate::AuditStore::audit_query).
pub(crate) async fn audit_query(
    pool: Pool<'_>,
    filter: &AuditFilter,
    before: Option<i64>,
    n: u32,
) -> Result<Vec<AuditEvent>, MetaError> {
    let sql = "SELECT id, at, actor_id, source, action, target, detail FROM audit_log \
               WHERE (CAST($1 AS BIGINT) IS NULL OR id < $1) \
               AND (CAST($2 AS BIGINT) IS NULL OR actor_id = $2) \
               AND (CAST($3 AS TEXT) IS NULL OR action = $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR at >= $4) \
               AND (CAST($5 AS BIGINT) IS NULL OR at < $5) \
               AND (CAST($6 AS TEXT) IS NULL OR substr(target, 1, length($6)) = $6) \
               ORDER BY id DESC LIMIT $7";
    let rows: Vec<AuditRow> = on_pool!(pool, p => {
        sqlx::query_as(sql)
            .bind(before)
            .bind(filter.actor)
            .bind(filter.action.as_deref())
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.target_prefix.as_deref())
            .bind(i64::from(n))
            .fetch_all(p)
            .await?
    });
    rows.into_iter().map(audit_event).collect()
}

#[cfg(test)]
mod tests {
    use super::numbered_in_order as in_order;

    #[test]
    fn arguments_numbered_in_order() {
        assert!(in_order(
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3 OR d = $1"
        ));
        assert!(in_order("SELECT 1"));
        assert!(!in_order("UPDATE t SET a = $3 WHERE b = $1 AND c = $2"));
        assert!(!in_order("SELECT $2"));
        assert!(in_order("SELECT '$' || $1"));
    }

    /// Every statement written for both backends, also those read through sqlx (which the
    /// debug assertion of the SQLite writes does not see).
    #[test]
    fn parameters_in_order() {
        for sql in super::STATEMENTS
            .iter()
            .chain(crate::lease::STATEMENTS)
            .chain(crate::trust::STATEMENTS)
            .chain(crate::policy::STATEMENTS)
            .chain(crate::signatures::STATEMENTS)
            .chain(crate::replicas::STATEMENTS)
            .chain(&[crate::identity::IDENTITY_REVISION])
            .chain(crate::identity::FAILURE_STATEMENTS)
        {
            assert!(in_order(sql), "{sql}");
        }
    }
}
