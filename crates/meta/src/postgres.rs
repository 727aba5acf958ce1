//! The shared metadata store: PostgreSQL, for several registry replicas on one database.
//!
//! Replicas write concurrently, so every check-then-write is made safe inside the
//! database rather than in a process: `manifest_put` locks the links and child manifests
//! it relies on (`SELECT ... FOR SHARE`) before writing, so a concurrent unlink or delete
//! waits for it (or it sees the deletion and fails); `upload_advance` is a compare-and-swap
//! on the offset; creations race harmlessly through `INSERT ... ON CONFLICT DO NOTHING`.
//! Transactions run at PostgreSQL's default READ COMMITTED level.
//!
//! Names and digests are `COLLATE "C"` columns (see `migrations/postgres`), so orderings
//! and `last` comparisons are byte-wise, as in SQLite.

use crate::convert::{first_missing, from_db, now_ms, stored_digest, to_db};
use crate::gc::{Collect, Completion};
use crate::postgres_gc as gc;
use crate::shared::{self, manifest_record, upload_record};
use crate::shared::{BLOB_IN_REPO, BLOB_ROW_LIVE, MANIFEST_BY_TAG, MANIFEST_GET, REPO_EXISTS};
use crate::shared::{BLOB_UNLINK, GC_SET_READ_ONLY, GC_SET_SCHEDULE, MANIFEST_DELETE, TAG_DELETE};
use crate::shared::{CATALOG_AFTER, CATALOG_FIRST, TAGS_AFTER, TAGS_FIRST, UPLOAD_OFFSET};
use crate::shared::{MANIFEST_CLAIMED, MANIFEST_INSERT, MANIFEST_RECLAIM, MANIFEST_TOUCH, TAG_SET};
use crate::shared::{UPLOAD_ADVANCE, UPLOAD_INSERT, UPLOAD_LEASE};
use crate::shared::{UPLOAD_DELETE, UPLOAD_RELEASE, UPLOAD_RENEW};
use crate::{
    BlobClaim, GcBatch, GcPass, GcRun, GcSettings, GcStore, ManifestRecord, MetaError, MetaStore,
    NewManifest, Referrer, RegistryStore, UploadLease, UploadRecord, UploadStore,
};
use async_trait::async_trait;
use berth_oci::{Digest, RepoName, Tag};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per process unless configured (`metadata.max_connections`). The database,
/// not this pool, is the limit beyond this.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// [`MetaStore`] on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgMetaStore {
    pub(crate) pool: PgPool,
}

impl PgMetaStore {
    /// Runs a statement; whether it changed a row.
    pub(crate) async fn changed(
        &self,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<bool, MetaError> {
        Ok(q.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// A `DELETE` of one row identified by repository name and `key`; whether it deleted.
    async fn delete_in_repo(
        &self,
        statement: &'static str,
        repo: &RepoName,
        key: &str,
    ) -> Result<bool, MetaError> {
        self.changed(sqlx::query(statement).bind(repo.as_str()).bind(key))
            .await
    }

    /// The sqlx pool, for the statements both dialects share (`crate::shared`).
    pub(crate) fn sqlx(&self) -> shared::Pool<'_> {
        shared::Pool::Postgres(&self.pool)
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the
    /// schema up to date. Tables live in the role's default `search_path` (usually `public`).
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        Self::connect_pooled(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`connect`](Self::connect), with a pool of at most `max_connections`.
    pub async fn connect_pooled(url: &str, max_connections: u32) -> Result<Self, MetaError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = pool_options()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    /// Like [`connect`](Self::connect), with every table in the schema `schema`, created if
    /// missing. Each pooled connection gets `search_path` set to it alone, so several Berth
    /// installations (or tests) can share one database without seeing each other.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, MetaError> {
        if schema.is_empty() || schema.len() > 63 || schema.contains('\0') {
            return Err(MetaError::Backend(format!(
                "invalid schema name {schema:?}: 1 to 63 bytes, no NUL"
            )));
        }
        let options = PgConnectOptions::from_str(url)?;
        let quoted = quote_ident(schema);

        let mut conn = options.connect().await?;
        let created = conn
            .execute(format!("CREATE SCHEMA IF NOT EXISTS {quoted}").as_str())
            .await;
        if let Err(e) = created {
            // Two processes creating the schema at once: one of them gets a unique
            // violation although the schema now exists.
            if !schema_exists(&mut conn, schema).await? {
                return Err(e.into());
            }
        }
        conn.close().await?;

        let set_path: Arc<str> = Arc::from(format!("SET search_path TO {quoted}"));
        let pool = pool_options()
            .after_connect(move |conn, _meta| {
                let set_path = Arc::clone(&set_path);
                Box::pin(async move {
                    conn.execute(&*set_path).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: PgPool) -> Result<Self, MetaError> {
        let applied = sqlx::query_scalar(crate::shared::SCHEMA_VERSION)
            .fetch_one(&pool)
            .await
            .ok()
            .flatten();
        crate::shared::refuse_newer_schema("postgres", applied, &MIGRATOR)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| MetaError::Backend(format!("migrating the postgres schema: {e}")))?;
        Ok(PgMetaStore { pool })
    }

    /// Closes the pool, waiting for running statements.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(DEFAULT_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, MetaError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(conn)
            .await?,
    )
}

async fn repo_id(conn: &mut PgConnection, repo: &RepoName) -> Result<Option<i64>, MetaError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// The id of `repo`, created if missing; safe against a concurrent creator (inside a READ
/// COMMITTED transaction each statement sees what committed before it).
pub(crate) async fn ensure_repo(
    conn: &mut PgConnection,
    repo: &RepoName,
    now: i64,
) -> Result<i64, MetaError> {
    if let Some(id) = repo_id(conn, repo).await? {
        return Ok(id);
    }
    // A new repository takes its namespace's default visibility (private without one),
    // and belongs to the namespace's account, if there is one; under the namespace's lock,
    // so that an account of that name is either committed (and seen) or created after
    // this transaction (and sees the repository).
    crate::postgres_identity::lock_namespace(conn, repo.namespace()).await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at, visibility, owner_id) VALUES ($1, $2, \
         COALESCE((SELECT default_visibility FROM accounts WHERE name = $3), 'private'), \
         (SELECT id FROM accounts WHERE name = $3)) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now)
    .bind(repo.namespace())
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        // Another transaction created it between our two statements.
        None => repo_id(conn, repo).await?.ok_or_else(|| {
            MetaError::Backend(format!("repository {repo} vanished while being created"))
        }),
    }
}

fn digests(list: &[Digest]) -> Vec<&str> {
    list.iter().map(Digest::as_str).collect()
}

impl MetaStore for PgMetaStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }
}

#[async_trait]
impl RegistryStore for PgMetaStore {
    async fn blob_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        shared::blob_anywhere(self.sqlx(), digest).await
    }

    async fn ping(&self) -> Result<(), MetaError> {
        shared::ping(self.sqlx()).await
    }

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        let row = sqlx::query(REPO_EXISTS).bind(repo.as_str());
        Ok(row.fetch_optional(&self.pool).await?.is_some())
    }

    async fn catalog(&self, last: Option<&str>, n: u32) -> Result<Vec<String>, MetaError> {
        let q = match last {
            Some(last) => sqlx::query_scalar(CATALOG_AFTER).bind(last),
            None => sqlx::query_scalar(CATALOG_FIRST),
        };
        Ok(q.bind(i64::from(n)).fetch_all(&self.pool).await?)
    }

    async fn blob_in_repo(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = sqlx::query_scalar(BLOB_IN_REPO)
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await?;
        size.map(|s| from_db(s, "blob size")).transpose()
    }

    async fn blob_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let size = to_db(size, "blob size")?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let repo_id = ensure_repo(&mut tx, repo, now).await?;
        // Without a claim: the caller vouches that the bytes are committed. A tombstoned
        // row is not revived (its bytes are being deleted).
        let deleting: Option<i64> = sqlx::query_scalar(BLOB_ROW_LIVE)
            .bind(digest.as_str())
            .bind(size)
            .bind(now)
            .bind(crate::sqlite_gc::new_generation())
            .fetch_one(&mut *tx)
            .await?;
        if deleting.is_some() {
            tx.rollback().await?;
            return Err(MetaError::ClaimLost(digest.clone()));
        }
        gc::insert_link(&mut tx, repo_id, digest, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        static LOCKED: LazyLock<String> =
            LazyLock::new(|| format!("{BLOB_IN_REPO} FOR SHARE OF rb"));
        let mut tx = self.pool.begin().await?;
        // The source link stays until this commits: a concurrent unlink in `from` waits.
        let size: Option<i64> = sqlx::query_scalar(LOCKED.as_str())
            .bind(from.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        gc::link_found(tx, repo, digest, size).await
    }

    async fn blob_unlink(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        self.delete_in_repo(BLOB_UNLINK, repo, digest.as_str())
            .await
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError> {
        let size = to_db(m.bytes.len() as u64, "manifest size")?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let repo_id = match repo_id(&mut tx, repo).await? {
            Some(id) => {
                // FOR SHARE: the rows found cannot be deleted (unlinked) until this commits;
                // a delete that committed first makes them missing here.
                let mut blobs = HashMap::new();
                if !m.blobs.is_empty() {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT rb.digest, b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
                         WHERE rb.repo_id = $1 AND rb.digest = ANY($2) FOR SHARE OF rb",
                    )
                    .bind(id)
                    .bind(digests(&m.blobs))
                    .fetch_all(&mut *tx)
                    .await?;
                    blobs.extend(rows);
                }
                let mut children = HashSet::new();
                if !m.children.is_empty() {
                    let rows: Vec<String> = sqlx::query_scalar(
                        "SELECT digest FROM manifests WHERE repo_id = $1 AND digest = ANY($2) FOR SHARE",
                    )
                    .bind(id)
                    .bind(digests(&m.children))
                    .fetch_all(&mut *tx)
                    .await?;
                    children.extend(rows);
                }
                if let Some(e) = first_missing(m, &blobs, &children) {
                    tx.rollback().await?;
                    return Err(e);
                }
                id
            }
            None => {
                // A repository that does not exist links nothing.
                if let Some(e) = first_missing(m, &HashMap::new(), &HashSet::new()) {
                    tx.rollback().await?;
                    return Err(e);
                }
                ensure_repo(&mut tx, repo, now).await?
            }
        };
        // A concurrent put of the same manifest waits here for the other to commit, then
        // does nothing.
        let inserted = sqlx::query(MANIFEST_INSERT)
            .bind(repo_id)
            .bind(m.digest.as_str())
            .bind(&m.media_type)
            .bind(m.artifact_type.as_deref())
            .bind(m.subject.as_ref().map(Digest::as_str))
            .bind(m.annotations.as_deref())
            .bind(size)
            .bind(m.bytes.as_ref())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if !inserted {
            // A re-put claims the manifest again (an index about to reference it).
            sqlx::query(MANIFEST_RECLAIM)
                .bind(now)
                .bind(repo_id)
                .bind(m.digest.as_str())
                .execute(&mut *tx)
                .await?;
        }
        // A manifest already stored has its references already (same digest, same bytes).
        if inserted && (!m.blobs.is_empty() || !m.children.is_empty()) {
            sqlx::query(
                "INSERT INTO manifest_refs (repo_id, manifest, referenced, kind) \
                 SELECT $1, $2, d, 'blob' FROM unnest($3::text[]) AS d \
                 UNION ALL \
                 SELECT $1, $2, d, 'manifest' FROM unnest($4::text[]) AS d \
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(m.digest.as_str())
            .bind(digests(&m.blobs))
            .bind(digests(&m.children))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(tag) = tag {
            sqlx::query(TAG_SET)
                .bind(repo_id)
                .bind(tag.as_str())
                .bind(m.digest.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn manifest_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(MANIFEST_GET)
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(media_type, bytes)| manifest_record(digest.clone(), media_type, bytes)))
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(MANIFEST_BY_TAG)
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(d, media_type, bytes)| Ok(manifest_record(stored_digest(&d)?, media_type, bytes)))
            .transpose()
    }

    async fn manifest_delete(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        self.delete_in_repo(MANIFEST_DELETE, repo, digest.as_str())
            .await
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> Result<bool, MetaError> {
        self.delete_in_repo(TAG_DELETE, repo, tag.as_str()).await
    }

    async fn tags_list(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: u32,
    ) -> Result<Option<Vec<String>>, MetaError> {
        // One statement answers both questions: no row means no repository, a single NULL
        // tag means a repository without (further) tags. At least one row is asked for so
        // that n = 0 still tells the two apart.
        let limit = i64::from(n.max(1));
        let q = match last {
            Some(last) => sqlx::query_scalar(TAGS_AFTER).bind(last),
            None => sqlx::query_scalar(TAGS_FIRST),
        };
        let rows: Vec<Option<String>> = q
            .bind(repo.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(shared::tag_page(rows, n))
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        shared::referrers(self.sqlx(), repo, subject, artifact_type).await
    }

    async fn all_blobs(&self) -> Result<Vec<(Digest, u64)>, MetaError> {
        shared::all_blobs(self.sqlx()).await
    }

    async fn all_manifests(&self) -> Result<Vec<(RepoName, ManifestRecord)>, MetaError> {
        shared::all_manifests(self.sqlx()).await
    }
}

#[async_trait]
impl UploadStore for PgMetaStore {
    async fn upload_create(&self, rec: &UploadRecord) -> Result<(), MetaError> {
        let offset = to_db(rec.offset, "upload offset")?;
        let mut tx = self.pool.begin().await?;
        let repo_id = ensure_repo(&mut tx, &rec.repo, now_ms()).await?;
        sqlx::query(UPLOAD_INSERT)
            .bind(&rec.id)
            .bind(repo_id)
            .bind(offset)
            .bind(&rec.hash_state)
            .bind(&rec.store_state)
            .bind(rec.created_at)
            .bind(rec.updated_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn upload_get(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<Option<UploadRecord>, MetaError> {
        shared::upload_get(self.sqlx(), repo, id).await
    }

    async fn upload_lease(
        &self,
        repo: &RepoName,
        id: &str,
        lease: &str,
        now: i64,
        until: i64,
    ) -> Result<UploadLease, MetaError> {
        // A concurrent taker waits for the row lock, then re-checks the WHERE clause against
        // the committed row, which now holds an unexpired lease: one of them gets it.
        let row: Option<(i64, Vec<u8>, String, i64)> = sqlx::query_as(UPLOAD_LEASE)
            .bind(lease)
            .bind(until)
            .bind(now)
            .bind(id)
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if let Some((offset, hash_state, store_state, created_at)) = row {
            let cols = (offset, hash_state, store_state, created_at, now);
            return Ok(UploadLease::Held(upload_record(
                id.to_string(),
                repo.clone(),
                cols,
            )?));
        }
        let offset: Option<i64> = sqlx::query_scalar(UPLOAD_OFFSET)
            .bind(id)
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match offset {
            Some(o) => UploadLease::Busy {
                offset: from_db(o, "upload offset")?,
            },
            None => UploadLease::Missing,
        })
    }

    async fn upload_renew(&self, id: &str, lease: &str, until: i64) -> Result<bool, MetaError> {
        let q = sqlx::query(UPLOAD_RENEW).bind(until).bind(now_ms());
        self.changed(q.bind(id).bind(lease)).await
    }

    async fn upload_release(&self, id: &str, lease: &str) -> Result<(), MetaError> {
        self.changed(sqlx::query(UPLOAD_RELEASE).bind(id).bind(lease))
            .await?;
        Ok(())
    }

    async fn upload_advance(
        &self,
        rec: &UploadRecord,
        expected_offset: u64,
        lease: &str,
    ) -> Result<(), MetaError> {
        // Compare-and-swap on the lease and the offset, releasing the lease.
        let done = sqlx::query(UPLOAD_ADVANCE)
            .bind(to_db(rec.offset, "upload offset")?)
            .bind(&rec.hash_state)
            .bind(&rec.store_state)
            .bind(rec.updated_at)
            .bind(&rec.id)
            .bind(to_db(expected_offset, "upload offset")?)
            .bind(lease)
            .bind(rec.repo.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::UploadConflict(rec.id.clone()));
        }
        Ok(())
    }

    async fn upload_count(&self) -> Result<u64, MetaError> {
        shared::upload_count(self.sqlx()).await
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, MetaError> {
        self.changed(sqlx::query(UPLOAD_DELETE).bind(id)).await
    }
}

#[async_trait]
impl GcStore for PgMetaStore {
    async fn blob_claim(&self, digest: &Digest) -> Result<BlobClaim, MetaError> {
        gc::blob_claim(&self.pool, digest).await
    }

    async fn upload_complete(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        generation: i64,
        upload: Option<&str>,
    ) -> Result<(), MetaError> {
        gc::upload_complete(
            &self.pool,
            &Completion::new(repo, digest, size, generation, upload),
        )
        .await
    }

    async fn blob_mount_any(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        gc::blob_mount_any(&self.pool, repo, digest).await
    }

    async fn link_claim(
        &self,
        repo: &RepoName,
        digest: &Digest,
        stale_before: i64,
    ) -> Result<Option<u64>, MetaError> {
        gc::link_claim(&self.pool, repo, digest, stale_before).await
    }

    async fn manifest_claim(
        &self,
        repo: &RepoName,
        digest: &Digest,
        stale_before: i64,
    ) -> Result<bool, MetaError> {
        let claimed: Option<i64> = sqlx::query_scalar(MANIFEST_CLAIMED)
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match claimed {
            None => Ok(false),
            Some(at) if at >= stale_before => Ok(true),
            Some(_) => {
                let q = sqlx::query(MANIFEST_TOUCH).bind(now_ms());
                self.changed(q.bind(repo.as_str()).bind(digest.as_str()))
                    .await
            }
        }
    }

    async fn gc_collect(
        &self,
        pass: &GcPass,
        after: i64,
        limit: u32,
        dry_run: bool,
    ) -> Result<GcBatch, MetaError> {
        let c = Collect::new(*pass, after, limit, dry_run);
        gc::gc_collect(&self.pool, c).await
    }

    async fn gc_tombstones(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetaError> {
        shared::gc_tombstones(self.sqlx(), limit).await
    }

    async fn gc_forget(&self, digests: &[Digest]) -> Result<u64, MetaError> {
        Ok(
            sqlx::query("DELETE FROM blobs WHERE digest = ANY($1) AND deleting IS NOT NULL")
                .bind(digests_of(digests))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn gc_orphan(&self, digest: &Digest, seen_before: i64) -> Result<bool, MetaError> {
        gc::gc_orphan(&self.pool, digest, seen_before).await
    }

    async fn uploads_stale(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>, MetaError> {
        shared::uploads_stale(self.sqlx(), before, limit).await
    }

    async fn gc_settings(&self) -> Result<GcSettings, MetaError> {
        shared::gc_settings(self.sqlx()).await
    }

    async fn gc_set_schedule(&self, schedule: Option<&str>) -> Result<(), MetaError> {
        self.changed(sqlx::query(GC_SET_SCHEDULE).bind(schedule))
            .await?;
        Ok(())
    }

    async fn gc_set_read_only(&self, since: Option<(i64, &str)>) -> Result<(), MetaError> {
        let q = sqlx::query(GC_SET_READ_ONLY).bind(since.map(|s| s.0));
        self.changed(q.bind(since.map(|s| s.1))).await?;
        Ok(())
    }

    async fn gc_run_save(&self, run: &GcRun) -> Result<i64, MetaError> {
        gc::gc_run_save(&self.pool, run).await
    }

    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>, MetaError> {
        shared::gc_runs(self.sqlx(), limit).await
    }
}

fn digests_of(list: &[Digest]) -> Vec<&str> {
    list.iter().map(Digest::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn references_follow_their_manifest() {
        let url = conformance::pg_test_url();
        let store =
            PgMetaStore::connect_with_schema(&url, &conformance::unique_schema("berth_test"))
                .await
                .expect("connect");
        let pool = store.pool.clone();
        let refs = move || {
            let pool = pool.clone();
            async move {
                sqlx::query_as(
                    "SELECT manifest, kind, referenced FROM manifest_refs ORDER BY 1, 2, 3",
                )
                .fetch_all(&pool)
                .await
                .expect("reading manifest_refs")
            }
        };
        conformance::references_follow_their_manifest(Arc::new(store), refs).await;
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("berth"), "\"berth\"");
        assert_eq!(quote_ident("a\"b; DROP"), "\"a\"\"b; DROP\"");
    }
}
