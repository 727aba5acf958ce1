//! The embedded metadata store: one SQLite file next to the blobs, the default for a
//! single registry process.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` every commit waits for the
//! disk. So writes are not run by the requests themselves: each write method queues its
//! statements for one writer task, which takes every write waiting, runs them in a single
//! `BEGIN IMMEDIATE` transaction, each under its own savepoint (a write that fails is
//! rolled back alone, so each method stays atomic), commits once, and only then answers
//! the callers (group commit). Concurrent writers therefore queue instead of failing with
//! `SQLITE_BUSY`, and share the cost of one sync instead of paying one each; once a method
//! returns, its commit is on disk. `BEGIN IMMEDIATE` makes another process on the same
//! file (`berth fsck`) wait at the start of a transaction, never half-way.
//!
//! Reads use their own pool: in WAL mode they run alongside the writer and see the last
//! commit. Each method is as few statements as it can be; lookups go through the indexes
//! declared in `migrations/sqlite`.

use crate::convert::{
    first_missing, from_db, json_array, now_ms, stored_digest, stored_repo, to_db,
};
use crate::sqlite_fast::FastReads;
use crate::{ManifestRecord, MetaError, MetaStore, NewManifest, Referrer, UploadRecord};
use async_trait::async_trait;
use berth_oci::{Digest, RepoName, Tag};
use bytes::Bytes;
use futures::future::BoxFuture;
use rusqlite::OptionalExtension;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;
use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most writes committed together; bounds the time a batch holds the write lock.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer before callers wait to queue theirs.
const QUEUE: usize = 1024;

/// [`MetaStore`] on an SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    /// Readers; for an in-memory database, the writer's single connection.
    read: SqlitePool,
    /// Exactly one connection, used by the writer task only (and by migrations).
    write: SqlitePool,
    /// The writer task's queue.
    writes: mpsc::Sender<Box<dyn Pending>>,
    /// Hot-path reads on the calling thread (file databases only).
    fast: Option<Arc<FastReads>>,
}

impl SqliteMetaStore {
    /// Opens (creating it if missing) the database file at `path` and brings its schema
    /// up to date. Must be called within a tokio runtime: it starts the writer task.
    pub async fn open(path: &Path) -> Result<Self, MetaError> {
        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let write_options = common
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .optimize_on_close(true, None);
        // The writer connection lives as long as the store: it owns the WAL.
        let write = single_connection().connect_with(write_options).await?;
        migrate(&write).await?;
        // The database is in WAL mode now (the mode is persistent), readers inherit it.
        let read = SqlitePoolOptions::new()
            .max_connections(reader_count())
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(common)
            .await?;
        let mut store = Self::with_pools(read, write);
        store.fast = Some(Arc::new(FastReads::new(path)));
        Ok(store)
    }

    /// A private in-memory database, for tests. One connection serves reads and writes
    /// (an in-memory database lives as long as its connection).
    pub async fn open_memory() -> Result<Self, MetaError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = single_connection().connect_with(options).await?;
        migrate(&pool).await?;
        Ok(Self::with_pools(pool.clone(), pool))
    }

    fn with_pools(read: SqlitePool, write: SqlitePool) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(writer(write.clone(), queue));
        SqliteMetaStore {
            read,
            write,
            writes,
            fast: None,
        }
    }

    /// Closes both pools, waiting for running statements; the writer checkpoints the WAL.
    /// Writes after this fail.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Runs `op` in the writer's next transaction; returns once that has committed (or
    /// `op` failed and was rolled back).
    async fn write<T, F>(&self, op: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, MetaError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Box::new(Op { op, reply }))
            .await
            .map_err(|_| MetaError::Backend("the sqlite writer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| MetaError::Backend("the sqlite writer dropped a write".to_string()))?
    }
}

fn single_connection() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

async fn migrate(pool: &SqlitePool) -> Result<(), MetaError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| MetaError::Backend(format!("migrating the sqlite schema: {e}")))
}

/// Readers: reads are short and CPU-bound, a couple per core keeps every core busy.
fn reader_count() -> u32 {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    u32::try_from(cores * 2).unwrap_or(u32::MAX).clamp(4, 32)
}

// ---------------------------------------------------------------------------------------
// The writer task and its group commit

/// A queued write, its result type erased.
trait Pending: Send {
    /// Runs the write's statements on the writer connection (inside a transaction).
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection)
        -> BoxFuture<'c, Box<dyn Finished>>;
    /// Answers the caller with an error without running the write.
    fn fail(self: Box<Self>, reason: &str);
}

/// A write that ran, waiting for its transaction to end before answering the caller.
trait Finished: Send {
    fn succeeded(&self) -> bool;
    /// Answers the caller; `commit` is how the transaction ended.
    fn deliver(self: Box<Self>, commit: Result<(), &str>);
}

struct Op<T, F> {
    op: F,
    reply: oneshot::Sender<Result<T, MetaError>>,
}

impl<T, F> Pending for Op<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, MetaError>>
        + Send
        + 'static,
{
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Box<dyn Finished>> {
        let Op { op, reply } = *self;
        Box::pin(async move {
            let result = op(conn).await;
            Box::new(Done { result, reply }) as Box<dyn Finished>
        })
    }

    fn fail(self: Box<Self>, reason: &str) {
        // The caller may have gone away; nobody to tell then.
        let _ = self.reply.send(Err(MetaError::Backend(reason.to_string())));
    }
}

struct Done<T> {
    result: Result<T, MetaError>,
    reply: oneshot::Sender<Result<T, MetaError>>,
}

impl<T: Send + 'static> Finished for Done<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn deliver(self: Box<Self>, commit: Result<(), &str>) {
        let answer = match (self.result, commit) {
            (Ok(_), Err(reason)) => Err(MetaError::Backend(reason.to_string())),
            (result, _) => result,
        };
        let _ = self.reply.send(answer);
    }
}

/// The writer task: takes every write waiting, commits them together, repeats. Ends when
/// the last store handle is dropped.
async fn writer(pool: SqlitePool, mut queue: mpsc::Receiver<Box<dyn Pending>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (pool, batch) = (pool.clone(), std::mem::take(&mut batch));
        // A batch runs as its own task so that a panic costs that batch (its callers get
        // an error) and not every later write.
        if let Err(e) = tokio::spawn(async move { commit_batch(&pool, batch).await }).await {
            tracing::error!(error = %e, "sqlite write batch panicked");
        }
    }
}

async fn commit_batch(pool: &SqlitePool, batch: Vec<Box<dyn Pending>>) {
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            let reason = format!("beginning a sqlite write transaction: {e}");
            tracing::error!(error = %e, writes = batch.len(), "sqlite writer cannot begin a transaction");
            batch.into_iter().for_each(|p| p.fail(&reason));
            return;
        }
    };
    let mut finished: Vec<Box<dyn Finished>> = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    if batch.len() == 1 {
        // Alone in its transaction: no savepoint needed, a failure rolls back everything.
        for p in batch {
            finished.push(p.run(&mut tx).await);
        }
    } else {
        for p in batch {
            if let Some(reason) = &broken {
                p.fail(reason);
                continue;
            }
            // A nested transaction is a savepoint.
            let mut savepoint = match tx.begin().await {
                Ok(sp) => sp,
                Err(e) => {
                    let reason = format!("opening a sqlite savepoint: {e}");
                    p.fail(&reason);
                    broken = Some(reason);
                    continue;
                }
            };
            let done = p.run(&mut savepoint).await;
            let ended = if done.succeeded() {
                savepoint.commit().await
            } else {
                savepoint.rollback().await
            };
            if let Err(e) = ended {
                broken = Some(format!("closing a sqlite savepoint: {e}"));
            }
            finished.push(done);
        }
    }
    let outcome = match broken {
        Some(reason) => {
            let _ = tx.rollback().await;
            Err(reason)
        }
        // Nothing to keep: do not pay for a sync.
        None if !finished.iter().any(|f| f.succeeded()) => tx
            .rollback()
            .await
            .map_err(|e| format!("rolling back a sqlite transaction: {e}")),
        None => tx
            .commit()
            .await
            .map_err(|e| format!("committing a sqlite transaction: {e}")),
    };
    if let Err(reason) = &outcome {
        tracing::error!(error = %reason, writes = finished.len(), "sqlite write batch failed");
    }
    for f in finished {
        f.deliver(outcome.as_ref().map(|_| ()).map_err(String::as_str));
    }
}

// ---------------------------------------------------------------------------------------
// Statements shared by several methods

async fn repo_id(conn: &mut SqliteConnection, repo: &RepoName) -> Result<Option<i64>, MetaError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?1")
            .bind(repo.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// The id of `repo`, created if missing. Only called by the writer: there is no
/// concurrent creator.
async fn ensure_repo(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    now: i64,
) -> Result<i64, MetaError> {
    if let Some(id) = repo_id(conn, repo).await? {
        return Ok(id);
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES (?1, ?2) RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now)
    .fetch_one(conn)
    .await?)
}

async fn insert_link(
    conn: &mut SqliteConnection,
    repo_id: i64,
    digest: &Digest,
    now: i64,
) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (repo_id, digest) DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

const REPO_EXISTS: &str = "SELECT 1 FROM repositories WHERE name = ?1";
const CATALOG_AFTER: &str = "SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2";
const CATALOG_FIRST: &str = "SELECT name FROM repositories ORDER BY name LIMIT ?1";
const MANIFEST_GET: &str = "SELECT m.media_type, m.bytes FROM repositories r \
     JOIN manifests m ON m.repo_id = r.id \
     WHERE r.name = ?1 AND m.digest = ?2";
const MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.bytes FROM repositories r \
     JOIN tags t ON t.repo_id = r.id \
     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest \
     WHERE r.name = ?1 AND t.name = ?2";
const TAGS_AFTER: &str = "SELECT t.name FROM repositories r \
     LEFT JOIN tags t ON t.repo_id = r.id AND t.name > ?2 \
     WHERE r.name = ?1 ORDER BY t.name LIMIT ?3";
const TAGS_FIRST: &str = "SELECT t.name FROM repositories r \
     LEFT JOIN tags t ON t.repo_id = r.id \
     WHERE r.name = ?1 ORDER BY t.name LIMIT ?2";
const BLOB_IN_REPO: &str = "SELECT b.size FROM repositories r \
     JOIN repo_blobs rb ON rb.repo_id = r.id \
     JOIN blobs b ON b.digest = rb.digest \
     WHERE r.name = ?1 AND rb.digest = ?2";

async fn blob_link(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    digest: &Digest,
    size: i64,
) -> Result<(), MetaError> {
    let now = now_ms();
    let repo_id = ensure_repo(conn, repo, now).await?;
    sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING")
        .bind(digest.as_str())
        .bind(size)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    insert_link(conn, repo_id, digest, now).await
}

async fn blob_mount(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    from: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>, MetaError> {
    let size: Option<i64> = sqlx::query_scalar(BLOB_IN_REPO)
        .bind(from.as_str())
        .bind(digest.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(size) = size else {
        return Ok(None);
    };
    let now = now_ms();
    let repo_id = ensure_repo(conn, repo, now).await?;
    insert_link(conn, repo_id, digest, now).await?;
    Ok(Some(from_db(size, "blob size")?))
}

async fn upload_create(conn: &mut SqliteConnection, rec: &UploadRecord) -> Result<(), MetaError> {
    let offset = to_db(rec.offset, "upload offset")?;
    let repo_id = ensure_repo(conn, &rec.repo, now_ms()).await?;
    sqlx::query(
        "INSERT INTO uploads (id, repo_id, \"offset\", hash_state, store_state, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&rec.id)
    .bind(repo_id)
    .bind(offset)
    .bind(&rec.hash_state)
    .bind(&rec.store_state)
    .bind(rec.created_at)
    .bind(rec.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn upload_advance(
    conn: &mut SqliteConnection,
    rec: &UploadRecord,
    expected_offset: u64,
) -> Result<(), MetaError> {
    let done = sqlx::query(
        "UPDATE uploads SET \"offset\" = ?1, hash_state = ?2, store_state = ?3, updated_at = ?4 \
         WHERE id = ?5 AND \"offset\" = ?6 \
         AND repo_id = (SELECT id FROM repositories WHERE name = ?7)",
    )
    .bind(to_db(rec.offset, "upload offset")?)
    .bind(&rec.hash_state)
    .bind(&rec.store_state)
    .bind(rec.updated_at)
    .bind(&rec.id)
    .bind(to_db(expected_offset, "upload offset")?)
    .bind(rec.repo.as_str())
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(MetaError::UploadConflict(rec.id.clone()));
    }
    Ok(())
}

async fn manifest_put(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    m: &NewManifest,
    tag: Option<&Tag>,
) -> Result<(), MetaError> {
    let size = to_db(m.bytes.len() as u64, "manifest size")?;
    let now = now_ms();
    let repo_id = match repo_id(conn, repo).await? {
        Some(id) => {
            if !m.blobs.is_empty() || !m.children.is_empty() {
                let present: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT 0, digest FROM repo_blobs \
                     WHERE repo_id = ?1 AND digest IN (SELECT value FROM json_each(?2)) \
                     UNION ALL \
                     SELECT 1, digest FROM manifests \
                     WHERE repo_id = ?1 AND digest IN (SELECT value FROM json_each(?3))",
                )
                .bind(id)
                .bind(json_array(&m.blobs))
                .bind(json_array(&m.children))
                .fetch_all(&mut *conn)
                .await?;
                let (blobs, children): (Vec<_>, Vec<_>) =
                    present.into_iter().partition(|(kind, _)| *kind == 0);
                let blobs: HashSet<String> = blobs.into_iter().map(|(_, d)| d).collect();
                let children: HashSet<String> = children.into_iter().map(|(_, d)| d).collect();
                if let Some(e) = first_missing(m, &blobs, &children) {
                    return Err(e);
                }
            }
            id
        }
        None => {
            // A repository that does not exist links nothing.
            if let Some(e) = first_missing(m, &HashSet::new(), &HashSet::new()) {
                return Err(e);
            }
            ensure_repo(conn, repo, now).await?
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO manifests \
         (repo_id, digest, media_type, artifact_type, subject, annotations, size, bytes, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (repo_id, digest) DO NOTHING",
    )
    .bind(repo_id)
    .bind(m.digest.as_str())
    .bind(&m.media_type)
    .bind(m.artifact_type.as_deref())
    .bind(m.subject.as_ref().map(Digest::as_str))
    .bind(m.annotations.as_deref())
    .bind(size)
    .bind(m.bytes.as_ref())
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    // A manifest already stored has its references already (same digest, same bytes).
    if inserted && (!m.blobs.is_empty() || !m.children.is_empty()) {
        sqlx::query(
            "INSERT OR IGNORE INTO manifest_refs (repo_id, manifest, referenced, kind) \
             SELECT ?1, ?2, value, 'blob' FROM json_each(?3) \
             UNION ALL \
             SELECT ?1, ?2, value, 'manifest' FROM json_each(?4)",
        )
        .bind(repo_id)
        .bind(m.digest.as_str())
        .bind(json_array(&m.blobs))
        .bind(json_array(&m.children))
        .execute(&mut *conn)
        .await?;
    }
    if let Some(tag) = tag {
        sqlx::query(
            "INSERT INTO tags (repo_id, name, manifest, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (repo_id, name) DO UPDATE \
             SET manifest = excluded.manifest, updated_at = excluded.updated_at",
        )
        .bind(repo_id)
        .bind(tag.as_str())
        .bind(m.digest.as_str())
        .bind(now)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A `DELETE` of one row identified by repository name and `key`; whether it deleted.
async fn delete_in_repo(
    conn: &mut SqliteConnection,
    sql: &'static str,
    repo: &RepoName,
    key: &str,
) -> Result<bool, MetaError> {
    let done = sqlx::query(sql)
        .bind(repo.as_str())
        .bind(key)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn manifest_record(digest: Digest, media_type: String, bytes: Vec<u8>) -> ManifestRecord {
    ManifestRecord {
        digest,
        media_type,
        bytes: Bytes::from(bytes),
    }
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        if let Some(fast) = &self.fast {
            return fast.with(|c| c.prepare_cached(REPO_EXISTS)?.exists([repo.as_str()]));
        }
        let row: Option<i64> = sqlx::query_scalar(REPO_EXISTS)
            .bind(repo.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }

    async fn catalog(&self, last: Option<&str>, n: u32) -> Result<Vec<String>, MetaError> {
        // Two statements rather than `?1 IS NULL OR name > ?1`, so both are index range scans.
        if let Some(fast) = &self.fast {
            return fast.with(|c| match last {
                Some(last) => c
                    .prepare_cached(CATALOG_AFTER)?
                    .query_map((last, i64::from(n)), |r| r.get(0))?
                    .collect(),
                None => c
                    .prepare_cached(CATALOG_FIRST)?
                    .query_map([i64::from(n)], |r| r.get(0))?
                    .collect(),
            });
        }
        let q = match last {
            Some(last) => sqlx::query_scalar(CATALOG_AFTER)
                .bind(last)
                .bind(i64::from(n)),
            None => sqlx::query_scalar(CATALOG_FIRST).bind(i64::from(n)),
        };
        Ok(q.fetch_all(&self.read).await?)
    }

    async fn blob_in_repo(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = match &self.fast {
            Some(fast) => fast.with(|c| {
                c.prepare_cached(BLOB_IN_REPO)?
                    .query_row((repo.as_str(), digest.as_str()), |r| r.get(0))
                    .optional()
            })?,
            None => {
                sqlx::query_scalar(BLOB_IN_REPO)
                    .bind(repo.as_str())
                    .bind(digest.as_str())
                    .fetch_optional(&self.read)
                    .await?
            }
        };
        size.map(|s| from_db(s, "blob size")).transpose()
    }

    async fn blob_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT size FROM blobs WHERE digest = ?1 \
             AND EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)",
        )
        .bind(digest.as_str())
        .fetch_optional(&self.read)
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
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |conn| Box::pin(async move { blob_link(conn, &repo, &digest, size).await }))
            .await
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (repo, from, digest) = (repo.clone(), from.clone(), digest.clone());
        self.write(move |conn| {
            Box::pin(async move { blob_mount(conn, &repo, &from, &digest).await })
        })
        .await
    }

    async fn blob_unlink(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |conn| {
            Box::pin(async move {
                delete_in_repo(
                    conn,
                    "DELETE FROM repo_blobs \
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2",
                    &repo,
                    digest.as_str(),
                )
                .await
            })
        })
        .await
    }

    async fn upload_create(&self, rec: &UploadRecord) -> Result<(), MetaError> {
        let rec = rec.clone();
        self.write(move |conn| Box::pin(async move { upload_create(conn, &rec).await }))
            .await
    }

    async fn upload_get(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<Option<UploadRecord>, MetaError> {
        let row: Option<(i64, Vec<u8>, String, i64, i64)> = sqlx::query_as(
            "SELECT u.\"offset\", u.hash_state, u.store_state, u.created_at, u.updated_at \
             FROM uploads u JOIN repositories r ON r.id = u.repo_id \
             WHERE u.id = ?1 AND r.name = ?2",
        )
        .bind(id)
        .bind(repo.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(
            |(offset, hash_state, store_state, created_at, updated_at)| {
                Ok(UploadRecord {
                    id: id.to_string(),
                    repo: repo.clone(),
                    offset: from_db(offset, "upload offset")?,
                    hash_state,
                    store_state,
                    created_at,
                    updated_at,
                })
            },
        )
        .transpose()
    }

    async fn upload_advance(
        &self,
        rec: &UploadRecord,
        expected_offset: u64,
    ) -> Result<(), MetaError> {
        let rec = rec.clone();
        self.write(move |conn| {
            Box::pin(async move { upload_advance(conn, &rec, expected_offset).await })
        })
        .await
    }

    async fn upload_count(&self) -> Result<u64, MetaError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
            .fetch_one(&self.read)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM uploads WHERE id = ?1")
                    .bind(&id)
                    .execute(conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError> {
        let (repo, m, tag) = (repo.clone(), m.clone(), tag.cloned());
        self.write(move |conn| {
            Box::pin(async move { manifest_put(conn, &repo, &m, tag.as_ref()).await })
        })
        .await
    }

    async fn manifest_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, Vec<u8>)> = match &self.fast {
            Some(fast) => fast.with(|c| {
                c.prepare_cached(MANIFEST_GET)?
                    .query_row((repo.as_str(), digest.as_str()), |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
            })?,
            None => {
                sqlx::query_as(MANIFEST_GET)
                    .bind(repo.as_str())
                    .bind(digest.as_str())
                    .fetch_optional(&self.read)
                    .await?
            }
        };
        Ok(row.map(|(media_type, bytes)| manifest_record(digest.clone(), media_type, bytes)))
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, String, Vec<u8>)> = match &self.fast {
            Some(fast) => fast.with(|c| {
                c.prepare_cached(MANIFEST_BY_TAG)?
                    .query_row((repo.as_str(), tag.as_str()), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
            })?,
            None => {
                sqlx::query_as(MANIFEST_BY_TAG)
                    .bind(repo.as_str())
                    .bind(tag.as_str())
                    .fetch_optional(&self.read)
                    .await?
            }
        };
        row.map(|(d, media_type, bytes)| Ok(manifest_record(stored_digest(&d)?, media_type, bytes)))
            .transpose()
    }

    async fn manifest_delete(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        let (repo, digest) = (repo.clone(), digest.clone());
        // Tags pointing at it and its references go by ON DELETE CASCADE, in this statement.
        self.write(move |conn| {
            Box::pin(async move {
                delete_in_repo(
                    conn,
                    "DELETE FROM manifests \
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2",
                    &repo,
                    digest.as_str(),
                )
                .await
            })
        })
        .await
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> Result<bool, MetaError> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.write(move |conn| {
            Box::pin(async move {
                delete_in_repo(
                    conn,
                    "DELETE FROM tags \
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND name = ?2",
                    &repo,
                    tag.as_str(),
                )
                .await
            })
        })
        .await
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
        let rows: Vec<Option<String>> = match (&self.fast, last) {
            (Some(fast), Some(last)) => fast.with(|c| {
                c.prepare_cached(TAGS_AFTER)?
                    .query_map((repo.as_str(), last, limit), |r| r.get(0))?
                    .collect()
            })?,
            (Some(fast), None) => fast.with(|c| {
                c.prepare_cached(TAGS_FIRST)?
                    .query_map((repo.as_str(), limit), |r| r.get(0))?
                    .collect()
            })?,
            (None, Some(last)) => {
                sqlx::query_scalar(TAGS_AFTER)
                    .bind(repo.as_str())
                    .bind(last)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
            (None, None) => {
                sqlx::query_scalar(TAGS_FIRST)
                    .bind(repo.as_str())
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
        };
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows.into_iter().flatten().take(n as usize).collect()))
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        let rows: Vec<(String, String, Option<String>, i64, Option<String>)> = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations \
             FROM repositories r JOIN manifests m ON m.repo_id = r.id \
             WHERE r.name = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3) \
             ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .fetch_all(&self.read)
        .await?;
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

    async fn all_blobs(&self) -> Result<Vec<(Digest, u64)>, MetaError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter()
            .map(|(d, size)| Ok((stored_digest(&d)?, from_db(size, "blob size")?)))
            .collect()
    }

    async fn all_manifests(&self) -> Result<Vec<(RepoName, ManifestRecord)>, MetaError> {
        let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT r.name, m.digest, m.media_type, m.bytes \
             FROM repositories r JOIN manifests m ON m.repo_id = r.id \
             ORDER BY r.name, m.digest",
        )
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(name, d, media_type, bytes)| {
                Ok((
                    stored_repo(&name)?,
                    manifest_record(stored_digest(&d)?, media_type, bytes),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use std::sync::Arc;

    #[tokio::test]
    async fn references_follow_their_manifest() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(
            SqliteMetaStore::open(&dir.path().join("meta.db"))
                .await
                .expect("open"),
        );
        let read = store.read.clone();
        let refs = move || {
            let read = read.clone();
            async move {
                sqlx::query_as(
                    "SELECT manifest, kind, referenced FROM manifest_refs ORDER BY 1, 2, 3",
                )
                .fetch_all(&read)
                .await
                .expect("reading manifest_refs")
            }
        };
        conformance::references_follow_their_manifest(store, refs).await;
    }

    /// The pragmas that make a commit durable and keep references consistent are in force
    /// on the writer.
    #[tokio::test]
    async fn writer_pragmas() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .expect("open");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.write)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.write)
            .await
            .expect("pragma");
        assert_eq!(sync, 2, "synchronous=FULL");
        for pool in [&store.write, &store.read] {
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .expect("pragma");
            assert_eq!(fk, 1, "foreign keys enforced");
        }
    }
}
