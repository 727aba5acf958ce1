//! The embedded metadata store: one SQLite file next to the blobs, the default for a
//! single registry process.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` every commit waits for the
//! disk. So writes are not run by the requests themselves: each write method queues a
//! closure for one writer thread (its own rusqlite connection), which takes every write
//! waiting, runs them in a single `BEGIN IMMEDIATE` transaction, each under its own
//! savepoint (a write that fails is rolled back alone, so each method stays atomic),
//! commits once, and only then answers the callers (group commit). Concurrent writers
//! therefore queue instead of failing with `SQLITE_BUSY`, and share the cost of one sync
//! instead of paying one each; once a method returns, its commit is on disk.
//! `BEGIN IMMEDIATE` makes another process on the same file (`berth fsck`) wait at the
//! start of a transaction, never half-way.
//!
//! Reads run alongside the writer (WAL) and see the last commit: the pull hot path on
//! per-thread connections ([`crate::sqlite_fast`]), the rest on a sqlx pool. Migrations
//! are sqlx's, run once at open. Each method is as few statements as it can be; lookups go
//! through the indexes declared in `migrations/sqlite`.

use crate::convert::{first_missing, from_db, json_array, now_ms, stored_digest, to_db};
use crate::gc::{Collect, Completion};
use crate::shared::{self, manifest_record, upload_record};
use crate::shared::{BLOB_IN_REPO, BLOB_ROW_LIVE, LINK_CLAIMED, LINK_INSERT, MANIFEST_BY_TAG};
use crate::shared::{BLOB_UNLINK, GC_SET_READ_ONLY, GC_SET_SCHEDULE, MANIFEST_DELETE, TAG_DELETE};
use crate::shared::{CATALOG_AFTER, CATALOG_FIRST, MANIFEST_GET, REPO_EXISTS, TAGS_AFTER};
use crate::shared::{MANIFEST_CLAIMED, MANIFEST_INSERT, MANIFEST_RECLAIM, MANIFEST_TOUCH, TAG_SET};
use crate::shared::{TAGS_FIRST, UPLOAD_ADVANCE, UPLOAD_INSERT, UPLOAD_LEASE, UPLOAD_OFFSET};
use crate::shared::{UPLOAD_DELETE, UPLOAD_RELEASE, UPLOAD_RENEW};
use crate::sqlite_fast::FastReads;
use crate::sqlite_gc as gc;
use crate::{
    BlobClaim, GcBatch, GcPass, GcRun, GcSettings, GcStore, ManifestRecord, MetaError, MetaStore,
    NewManifest, Referrer, RegistryStore, UploadLease, UploadRecord, UploadStore,
};
use async_trait::async_trait;
use berth_oci::{Digest, RepoName, Tag};
use rusqlite::OptionalExtension;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a statement waiting for another process's lock tries again.
const BUSY_POLL: Duration = Duration::from_millis(1);
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most writes committed together; bounds the time a batch holds the write lock.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer before callers wait to queue theirs.
const QUEUE: usize = 1024;

/// [`MetaStore`] on an SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    /// Readers for the queries off the hot path (referrers, uploads, fsck listings).
    pub(crate) read: SqlitePool,
    /// The writer thread's queue.
    writes: mpsc::Sender<Box<dyn Pending>>,
    /// Hot-path reads on the calling thread.
    pub(crate) fast: Arc<FastReads>,
}

impl SqliteMetaStore {
    /// The sqlx pool, for the statements both dialects share (`crate::shared`).
    pub(crate) fn sqlx(&self) -> shared::Pool<'_> {
        shared::Pool::Sqlite(&self.read)
    }

    /// Opens (creating it if missing) the database file at `path` and brings its schema
    /// up to date, then starts the writer thread.
    pub async fn open(path: &Path) -> Result<Self, MetaError> {
        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        {
            // Migrations run once, on a connection of their own that also puts the file in
            // WAL mode (the mode is persistent: every later connection inherits it).
            let setup = common
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(setup)
                .await?;
            migrate(&pool).await?;
            pool.close().await;
        }
        let read = SqlitePoolOptions::new()
            .max_connections(reader_count())
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(common)
            .await?;
        let conn = open_writer(path).map_err(sql)?;
        let (writes, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("berth-sqlite-writer".into())
            .spawn(move || writer(conn, queue))
            .map_err(|e| MetaError::Backend(format!("starting the sqlite writer thread: {e}")))?;
        Ok(SqliteMetaStore {
            read,
            writes,
            fast: Arc::new(FastReads::new(path)),
        })
    }

    /// Closes the reader pool, waiting for running statements. The writer thread ends,
    /// closing its connection, when the last handle of the store is dropped.
    pub async fn close(&self) {
        self.read.close().await;
    }

    /// Runs one statement in the writer's next transaction; the number of rows it changed.
    pub(crate) async fn execute<P>(
        &self,
        statement: &'static str,
        params: P,
    ) -> Result<usize, MetaError>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.write(move |conn| {
            conn.prepare_cached(statement)
                .and_then(|mut st| st.execute(params))
                .map_err(sql)
        })
        .await
    }

    /// Runs `op` in the writer's next transaction; returns once that has committed (or
    /// `op` failed and was rolled back).
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, MetaError> + Send + 'static,
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

/// The writer's connection: durable commits (`synchronous=FULL`), foreign keys enforced.
fn open_writer(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_handler(Some(on_busy))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

/// The busy handler of the rusqlite connections. SQLite's own (`busy_timeout`) sleeps
/// longer and longer between tries, up to 100 ms, so a writer that found the file locked
/// by another process (`berth gc`, `berth fsck` beside `berth serve`) sleeps on long after
/// the lock was released, and every write queued behind it waits too. This one tries again
/// every millisecond, for [`BUSY_TIMEOUT`] in all.
pub(crate) fn on_busy(tries: i32) -> bool {
    let waited = BUSY_POLL.saturating_mul(u32::try_from(tries).unwrap_or(u32::MAX));
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

async fn migrate(pool: &SqlitePool) -> Result<(), MetaError> {
    let applied = sqlx::query_scalar(crate::shared::SCHEMA_VERSION)
        .fetch_one(pool)
        .await
        .ok()
        .flatten();
    crate::shared::refuse_newer_schema("sqlite", applied, &MIGRATOR)?;
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

pub(crate) fn sql(e: rusqlite::Error) -> MetaError {
    MetaError::Backend(format!("sqlite: {e}"))
}

// ---------------------------------------------------------------------------------------
// The writer thread and its group commit

/// A queued write, its result type erased.
trait Pending: Send {
    /// Runs the write's statements on the writer connection (inside a transaction).
    fn run(self: Box<Self>, conn: &rusqlite::Connection) -> Box<dyn Finished>;
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
    F: FnOnce(&rusqlite::Connection) -> Result<T, MetaError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &rusqlite::Connection) -> Box<dyn Finished> {
        let Op { op, reply } = *self;
        let result = op(conn);
        Box::new(Done { result, reply })
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

/// The writer thread: takes every write waiting, commits them together, repeats. Ends when
/// the last store handle is dropped. Statements run on this thread directly (no hop to a
/// connection thread per statement), which is what makes a batch cheap.
fn writer(mut conn: rusqlite::Connection, mut queue: mpsc::Receiver<Box<dyn Pending>>) {
    let mut batch: Vec<Box<dyn Pending>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let taken = std::mem::take(&mut batch);
        // A panic costs that batch (its callers get an error), not every later write.
        let conn_ref = &mut conn;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_batch(conn_ref, taken)
        }))
        .is_err()
        {
            tracing::error!("sqlite write batch panicked");
        }
    }
}

fn commit_batch(conn: &mut rusqlite::Connection, batch: Vec<Box<dyn Pending>>) {
    let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
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
            finished.push(p.run(&tx));
        }
    } else {
        for p in batch {
            if let Some(reason) = &broken {
                p.fail(reason);
                continue;
            }
            let sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    let reason = format!("opening a sqlite savepoint: {e}");
                    p.fail(&reason);
                    broken = Some(reason);
                    continue;
                }
            };
            let done = p.run(&sp);
            // Dropping a savepoint rolls it back; committing releases it into the batch.
            let ended = if done.succeeded() {
                sp.commit()
            } else {
                sp.finish()
            };
            if let Err(e) = ended {
                broken = Some(format!("closing a sqlite savepoint: {e}"));
            }
            finished.push(done);
        }
    }
    let outcome = match broken {
        Some(reason) => {
            let _ = tx.rollback();
            Err(reason)
        }
        // Nothing to keep: do not pay for a sync.
        None if !finished.iter().any(|f| f.succeeded()) => tx
            .rollback()
            .map_err(|e| format!("rolling back a sqlite transaction: {e}")),
        None => {
            tx.set_drop_behavior(rusqlite::DropBehavior::Commit);
            tx.commit()
                .map_err(|e| format!("committing a sqlite transaction: {e}"))
        }
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

pub(crate) fn repo_id(
    conn: &rusqlite::Connection,
    repo: &RepoName,
) -> Result<Option<i64>, MetaError> {
    conn.prepare_cached("SELECT id FROM repositories WHERE name = ?1")
        .and_then(|mut st| st.query_row([repo.as_str()], |r| r.get(0)).optional())
        .map_err(sql)
}

/// The id of `repo`, created if missing. Only called by the writer: there is no
/// concurrent creator in this process (another process waits on `BEGIN IMMEDIATE`).
pub(crate) fn ensure_repo(
    conn: &rusqlite::Connection,
    repo: &RepoName,
    now: i64,
) -> Result<i64, MetaError> {
    if let Some(id) = repo_id(conn, repo)? {
        return Ok(id);
    }
    // A new repository takes its namespace's default visibility (private without one),
    // and belongs to the namespace's account, if there is one.
    conn.prepare_cached(
        "INSERT INTO repositories (name, created_at, visibility, owner_id) VALUES (?1, ?2, \
         COALESCE((SELECT default_visibility FROM accounts WHERE name = ?3), 'private'), \
         (SELECT id FROM accounts WHERE name = ?3)) RETURNING id",
    )
    .and_then(|mut st| st.query_row((repo.as_str(), now, repo.namespace()), |r| r.get(0)))
    .map_err(sql)
}

pub(crate) fn insert_link(
    conn: &rusqlite::Connection,
    repo_id: i64,
    digest: &Digest,
    now: i64,
) -> Result<(), MetaError> {
    conn.prepare_cached(LINK_INSERT)
        .and_then(|mut st| st.execute((repo_id, digest.as_str(), now)))
        .map_err(sql)?;
    Ok(())
}

fn blob_link(
    conn: &rusqlite::Connection,
    repo: &RepoName,
    digest: &Digest,
    size: i64,
) -> Result<(), MetaError> {
    let now = now_ms();
    let repo_id = ensure_repo(conn, repo, now)?;
    // Without a claim: the caller vouches that the bytes are committed. A tombstoned row
    // is not revived (its bytes are being deleted).
    let deleting: Option<i64> = conn
        .prepare_cached(BLOB_ROW_LIVE)
        .and_then(|mut st| {
            st.query_row(
                (
                    digest.as_str(),
                    size,
                    now,
                    crate::sqlite_gc::new_generation(),
                ),
                |r| r.get(0),
            )
        })
        .map_err(sql)?;
    if deleting.is_some() {
        return Err(MetaError::ClaimLost(digest.clone()));
    }
    insert_link(conn, repo_id, digest, now)
}

fn blob_mount(
    conn: &rusqlite::Connection,
    repo: &RepoName,
    from: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>, MetaError> {
    let size: Option<i64> = conn
        .prepare_cached(BLOB_IN_REPO)
        .and_then(|mut st| {
            st.query_row((from.as_str(), digest.as_str()), |r| r.get(0))
                .optional()
        })
        .map_err(sql)?;
    link_found(conn, repo, digest, size)
}

/// Links a blob that a mount found (its `size`, or `None`: not there) into `repo`; the
/// size as the mount answers it.
pub(crate) fn link_found(
    conn: &rusqlite::Connection,
    repo: &RepoName,
    digest: &Digest,
    size: Option<i64>,
) -> Result<Option<u64>, MetaError> {
    let Some(size) = size else {
        return Ok(None);
    };
    let now = now_ms();
    let repo_id = ensure_repo(conn, repo, now)?;
    insert_link(conn, repo_id, digest, now)?;
    Ok(Some(from_db(size, "blob size")?))
}

fn upload_create(conn: &rusqlite::Connection, rec: &UploadRecord) -> Result<(), MetaError> {
    let offset = to_db(rec.offset, "upload offset")?;
    let repo_id = ensure_repo(conn, &rec.repo, now_ms())?;
    conn.prepare_cached(UPLOAD_INSERT)
        .and_then(|mut st| {
            st.execute((
                &rec.id,
                repo_id,
                offset,
                &rec.hash_state,
                &rec.store_state,
                rec.created_at,
                rec.updated_at,
            ))
        })
        .map_err(sql)?;
    Ok(())
}

fn upload_advance(
    conn: &rusqlite::Connection,
    rec: &UploadRecord,
    expected_offset: u64,
    lease: &str,
) -> Result<(), MetaError> {
    let changed = conn
        .prepare_cached(UPLOAD_ADVANCE)
        .and_then(|mut st| {
            st.execute((
                to_db(rec.offset, "upload offset").unwrap_or(i64::MAX),
                &rec.hash_state,
                &rec.store_state,
                rec.updated_at,
                &rec.id,
                to_db(expected_offset, "upload offset").unwrap_or(i64::MAX),
                lease,
                rec.repo.as_str(),
            ))
        })
        .map_err(sql)?;
    if changed == 0 {
        return Err(MetaError::UploadConflict(rec.id.clone()));
    }
    Ok(())
}

fn upload_lease(
    conn: &rusqlite::Connection,
    repo: &RepoName,
    id: &str,
    lease: &str,
    now: i64,
    until: i64,
) -> Result<UploadLease, MetaError> {
    let row: Option<(i64, Vec<u8>, String, i64)> = conn
        .prepare_cached(UPLOAD_LEASE)
        .and_then(|mut st| {
            st.query_row((lease, until, now, id, repo.as_str()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(sql)?;
    if let Some((offset, hash_state, store_state, created_at)) = row {
        let cols = (offset, hash_state, store_state, created_at, now);
        return Ok(UploadLease::Held(upload_record(
            id.to_string(),
            repo.clone(),
            cols,
        )?));
    }
    let offset: Option<i64> = conn
        .prepare_cached(UPLOAD_OFFSET)
        .and_then(|mut st| st.query_row((id, repo.as_str()), |r| r.get(0)).optional())
        .map_err(sql)?;
    Ok(match offset {
        Some(o) => UploadLease::Busy {
            offset: from_db(o, "upload offset")?,
        },
        None => UploadLease::Missing,
    })
}

fn manifest_put(
    conn: &rusqlite::Connection,
    repo: &RepoName,
    m: &NewManifest,
    tag: Option<&Tag>,
) -> Result<(), MetaError> {
    let size = to_db(m.bytes.len() as u64, "manifest size")?;
    let now = now_ms();
    let repo_id = match repo_id(conn, repo)? {
        Some(id) => {
            if !m.blobs.is_empty() || !m.children.is_empty() {
                let present: Vec<(i64, String, i64)> = conn
                    .prepare_cached(
                        "SELECT 0, rb.digest, b.size FROM repo_blobs rb \
                         JOIN blobs b ON b.digest = rb.digest \
                         WHERE rb.repo_id = ?1 AND rb.digest IN (SELECT value FROM json_each(?2)) \
                         UNION ALL \
                         SELECT 1, digest, 0 FROM manifests \
                         WHERE repo_id = ?1 AND digest IN (SELECT value FROM json_each(?3))",
                    )
                    .and_then(|mut st| {
                        st.query_map((id, json_array(&m.blobs), json_array(&m.children)), |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect()
                    })
                    .map_err(sql)?;
                let (blobs, children): (Vec<_>, Vec<_>) =
                    present.into_iter().partition(|(kind, _, _)| *kind == 0);
                let blobs: HashMap<String, i64> =
                    blobs.into_iter().map(|(_, d, size)| (d, size)).collect();
                let children: HashSet<String> = children.into_iter().map(|(_, d, _)| d).collect();
                if let Some(e) = first_missing(m, &blobs, &children) {
                    return Err(e);
                }
            }
            id
        }
        None => {
            // A repository that does not exist links nothing.
            if let Some(e) = first_missing(m, &HashMap::new(), &HashSet::new()) {
                return Err(e);
            }
            ensure_repo(conn, repo, now)?
        }
    };
    let inserted = conn
        .prepare_cached(MANIFEST_INSERT)
        .and_then(|mut st| {
            st.execute((
                repo_id,
                m.digest.as_str(),
                &m.media_type,
                m.artifact_type.as_deref(),
                m.subject.as_ref().map(Digest::as_str),
                m.annotations.as_deref(),
                size,
                m.bytes.as_ref(),
                now,
            ))
        })
        .map_err(sql)?
        > 0;
    if !inserted {
        // A re-put claims the manifest again (an index about to reference it).
        conn.prepare_cached(MANIFEST_RECLAIM)
            .and_then(|mut st| st.execute((now, repo_id, m.digest.as_str())))
            .map_err(sql)?;
    }
    // A manifest already stored has its references already (same digest, same bytes).
    if inserted && (!m.blobs.is_empty() || !m.children.is_empty()) {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO manifest_refs (repo_id, manifest, referenced, kind) \
             SELECT ?1, ?2, value, 'blob' FROM json_each(?3) \
             UNION ALL \
             SELECT ?1, ?2, value, 'manifest' FROM json_each(?4)",
        )
        .and_then(|mut st| {
            st.execute((
                repo_id,
                m.digest.as_str(),
                json_array(&m.blobs),
                json_array(&m.children),
            ))
        })
        .map_err(sql)?;
    }
    if let Some(tag) = tag {
        conn.prepare_cached(TAG_SET)
            .and_then(|mut st| st.execute((repo_id, tag.as_str(), m.digest.as_str(), now)))
            .map_err(sql)?;
    }
    Ok(())
}

impl SqliteMetaStore {
    /// A `DELETE` of one row identified by repository name and `key`; whether it deleted.
    async fn delete_in_repo(
        &self,
        statement: &'static str,
        repo: &RepoName,
        key: &str,
    ) -> Result<bool, MetaError> {
        let params = (repo.as_str().to_string(), key.to_string());
        Ok(self.execute(statement, params).await? > 0)
    }
}

impl MetaStore for SqliteMetaStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl RegistryStore for SqliteMetaStore {
    async fn blob_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        shared::blob_anywhere(self.sqlx(), digest).await
    }

    async fn ping(&self) -> Result<(), MetaError> {
        shared::ping(self.sqlx()).await
    }

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        self.fast
            .with(|c| c.prepare_cached(REPO_EXISTS)?.exists([repo.as_str()]))
    }

    async fn catalog(&self, last: Option<&str>, n: u32) -> Result<Vec<String>, MetaError> {
        // Two statements rather than `?1 IS NULL OR name > ?1`, so both are index range scans.
        self.fast.with(|c| match last {
            Some(last) => c
                .prepare_cached(CATALOG_AFTER)?
                .query_map((last, i64::from(n)), |r| r.get(0))?
                .collect(),
            None => c
                .prepare_cached(CATALOG_FIRST)?
                .query_map([i64::from(n)], |r| r.get(0))?
                .collect(),
        })
    }

    async fn blob_in_repo(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = self.fast.with(|c| {
            c.prepare_cached(BLOB_IN_REPO)?
                .query_row((repo.as_str(), digest.as_str()), |r| r.get(0))
                .optional()
        })?;
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
        self.write(move |conn| blob_link(conn, &repo, &digest, size))
            .await
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (repo, from, digest) = (repo.clone(), from.clone(), digest.clone());
        self.write(move |conn| blob_mount(conn, &repo, &from, &digest))
            .await
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
        let (repo, m, tag) = (repo.clone(), m.clone(), tag.cloned());
        self.write(move |conn| manifest_put(conn, &repo, &m, tag.as_ref()))
            .await
    }

    async fn manifest_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, Vec<u8>)> = self.fast.with(|c| {
            c.prepare_cached(MANIFEST_GET)?
                .query_row((repo.as_str(), digest.as_str()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
        })?;
        Ok(row.map(|(media_type, bytes)| manifest_record(digest.clone(), media_type, bytes)))
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, String, Vec<u8>)> = self.fast.with(|c| {
            c.prepare_cached(MANIFEST_BY_TAG)?
                .query_row((repo.as_str(), tag.as_str()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
        })?;
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
        let rows: Vec<Option<String>> = self.fast.with(|c| match last {
            Some(last) => c
                .prepare_cached(TAGS_AFTER)?
                .query_map((last, repo.as_str(), limit), |r| r.get(0))?
                .collect(),
            None => c
                .prepare_cached(TAGS_FIRST)?
                .query_map((repo.as_str(), limit), |r| r.get(0))?
                .collect(),
        })?;
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
impl UploadStore for SqliteMetaStore {
    async fn upload_create(&self, rec: &UploadRecord) -> Result<(), MetaError> {
        let rec = rec.clone();
        self.write(move |conn| upload_create(conn, &rec)).await
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
        let (repo, id, lease) = (repo.clone(), id.to_string(), lease.to_string());
        self.write(move |conn| upload_lease(conn, &repo, &id, &lease, now, until))
            .await
    }

    async fn upload_renew(&self, id: &str, lease: &str, until: i64) -> Result<bool, MetaError> {
        let params = (until, now_ms(), id.to_string(), lease.to_string());
        Ok(self.execute(UPLOAD_RENEW, params).await? > 0)
    }

    async fn upload_release(&self, id: &str, lease: &str) -> Result<(), MetaError> {
        self.execute(UPLOAD_RELEASE, (id.to_string(), lease.to_string()))
            .await?;
        Ok(())
    }

    async fn upload_advance(
        &self,
        rec: &UploadRecord,
        expected_offset: u64,
        lease: &str,
    ) -> Result<(), MetaError> {
        let (rec, lease) = (rec.clone(), lease.to_string());
        self.write(move |conn| upload_advance(conn, &rec, expected_offset, &lease))
            .await
    }

    async fn upload_count(&self) -> Result<u64, MetaError> {
        shared::upload_count(self.sqlx()).await
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, MetaError> {
        Ok(self.execute(UPLOAD_DELETE, [id.to_string()]).await? > 0)
    }
}

#[async_trait]
impl GcStore for SqliteMetaStore {
    async fn blob_claim(&self, digest: &Digest) -> Result<BlobClaim, MetaError> {
        let digest = digest.clone();
        self.write(move |conn| gc::blob_claim(conn, &digest)).await
    }

    async fn upload_complete(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        generation: i64,
        upload: Option<&str>,
    ) -> Result<(), MetaError> {
        let c = Completion::new(repo, digest, size, generation, upload);
        self.write(move |conn| gc::upload_complete(conn, &c)).await
    }

    async fn blob_mount_any(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |conn| gc::blob_mount_any(conn, &repo, &digest))
            .await
    }

    async fn link_claim(
        &self,
        repo: &RepoName,
        digest: &Digest,
        stale_before: i64,
    ) -> Result<Option<u64>, MetaError> {
        let row: Option<(i64, i64)> = self.fast.with(|c| {
            c.prepare_cached(LINK_CLAIMED)?
                .query_row((repo.as_str(), digest.as_str()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
        })?;
        match row {
            None => Ok(None),
            Some((size, claimed)) if claimed >= stale_before => {
                Ok(Some(from_db(size, "blob size")?))
            }
            Some(_) => {
                let (repo, digest) = (repo.clone(), digest.clone());
                self.write(move |conn| gc::link_touch(conn, &repo, &digest))
                    .await
            }
        }
    }

    async fn manifest_claim(
        &self,
        repo: &RepoName,
        digest: &Digest,
        stale_before: i64,
    ) -> Result<bool, MetaError> {
        let claimed: Option<i64> = self.fast.with(|c| {
            c.prepare_cached(MANIFEST_CLAIMED)?
                .query_row((repo.as_str(), digest.as_str()), |r| r.get(0))
                .optional()
        })?;
        match claimed {
            None => Ok(false),
            Some(at) if at >= stale_before => Ok(true),
            Some(_) => {
                let (repo, digest) = (repo.clone(), digest.clone());
                self.write(move |conn| {
                    let n = conn
                        .prepare_cached(MANIFEST_TOUCH)
                        .and_then(|mut st| st.execute((now_ms(), repo.as_str(), digest.as_str())))
                        .map_err(sql)?;
                    Ok(n > 0)
                })
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
        self.write(move |conn| gc::gc_collect(conn, c)).await
    }

    async fn gc_tombstones(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetaError> {
        shared::gc_tombstones(self.sqlx(), limit).await
    }

    async fn gc_forget(&self, digests: &[Digest]) -> Result<u64, MetaError> {
        let digests = digests.to_vec();
        self.write(move |conn| gc::gc_forget(conn, &digests)).await
    }

    async fn gc_orphan(&self, digest: &Digest, seen_before: i64) -> Result<bool, MetaError> {
        let digest = digest.clone();
        self.write(move |conn| gc::gc_orphan(conn, &digest, seen_before))
            .await
    }

    async fn uploads_stale(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>, MetaError> {
        shared::uploads_stale(self.sqlx(), before, limit).await
    }

    async fn gc_settings(&self) -> Result<GcSettings, MetaError> {
        shared::gc_settings(self.sqlx()).await
    }

    async fn gc_set_schedule(&self, schedule: Option<&str>) -> Result<(), MetaError> {
        self.execute(GC_SET_SCHEDULE, [schedule.map(str::to_string)])
            .await?;
        Ok(())
    }

    async fn gc_set_read_only(&self, since: Option<(i64, &str)>) -> Result<(), MetaError> {
        let params = (since.map(|s| s.0), since.map(|s| s.1.to_string()));
        self.execute(GC_SET_READ_ONLY, params).await?;
        Ok(())
    }

    async fn gc_run_save(&self, run: &GcRun) -> Result<i64, MetaError> {
        let run = run.clone();
        self.write(move |conn| gc::gc_run_save(conn, &run)).await
    }

    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>, MetaError> {
        shared::gc_runs(self.sqlx(), limit).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conformance;
    use std::sync::Arc;

    /// A store on a new file in a temporary directory (removed when dropped).
    pub(crate) async fn temporary() -> (tempfile::TempDir, SqliteMetaStore) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn references_follow_their_manifest() {
        let (_dir, store) = temporary().await;
        let store = Arc::new(store);
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
    /// on the writer's connection and the readers'.
    #[tokio::test]
    async fn writer_pragmas() {
        let (_dir, store) = temporary().await;
        let (mode, sync, fk): (String, i64, i64) = store
            .write(|c| {
                let q = |p: &str| {
                    c.query_row(&format!("PRAGMA {p}"), [], |r| {
                        r.get::<_, rusqlite::types::Value>(0)
                    })
                };
                let text = |v: rusqlite::types::Value| match v {
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                };
                let int = |v: rusqlite::types::Value| match v {
                    rusqlite::types::Value::Integer(i) => i,
                    _ => -1,
                };
                Ok((
                    text(q("journal_mode").map_err(sql)?),
                    int(q("synchronous").map_err(sql)?),
                    int(q("foreign_keys").map_err(sql)?),
                ))
            })
            .await
            .expect("pragmas");
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(fk, 1, "foreign keys enforced on the writer");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.read)
            .await
            .expect("pragma");
        assert_eq!(fk, 1, "foreign keys enforced on readers");
    }
}
