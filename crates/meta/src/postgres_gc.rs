//! The garbage-collection statements of the PostgreSQL store.
//!
//! Replicas write concurrently at READ COMMITTED, so each GC decision is its own short
//! transaction that first locks the row it may delete (`SELECT ... FOR UPDATE`) and only
//! then checks, in a new statement (a new snapshot), what still needs it. Every writer
//! that makes a row needed touches that row's lock first: a manifest put holds `FOR SHARE`
//! on the links and child manifests it relies on, a new link or tag holds the foreign-key
//! lock on the blob or manifest it names, a claim updates the blob row. Whichever comes
//! second sees the other's commit. One row per transaction means GC never holds two locks
//! at once, so it cannot take part in a deadlock.

use crate::convert::{from_db, now_ms, stored_digest, to_db};
use crate::gc::{BlobClaim, Collect, Completion, GcBatch, GcPass, GcRun};
use crate::postgres::ensure_repo;
use crate::shared::{BLOB_COMPLETE, DELETE_LINK, DELETE_MANIFEST, TOMBSTONE_BLOB, UPLOAD_DELETE};
use crate::shared::{GC_CANDIDATES, GC_CANDIDATE_DROP, GC_RUN_INSERT, GC_RUN_UPDATE};
use crate::shared::{LINK_CLAIM, LINK_CLAIMED, LINK_INSERT, LINK_TOUCH, MANIFEST_CLAIM};
use crate::sqlite_gc::new_generation;
use crate::MetaError;
use berth_oci::{Digest, RepoName};
use sqlx::postgres::PgPool;
use sqlx::PgConnection;

pub(crate) async fn blob_claim(pool: &PgPool, digest: &Digest) -> Result<BlobClaim, MetaError> {
    let now = now_ms();
    // The row lock of ON CONFLICT DO UPDATE waits for a GC transaction deciding this blob,
    // and the WHERE sees its tombstone.
    let row: Option<(i64, bool)> = sqlx::query_as(
        "INSERT INTO blobs (digest, size, created_at, claimed_at, live, generation) \
         VALUES ($1, 0, $2, $2, 0, $3) \
         ON CONFLICT (digest) DO UPDATE SET claimed_at = EXCLUDED.claimed_at \
         WHERE blobs.deleting IS NULL \
         RETURNING generation, (live = 1 AND verified = 1)",
    )
    .bind(digest.as_str())
    .bind(now)
    .bind(new_generation())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((generation, verified)) => BlobClaim::Claimed {
            generation,
            verified,
        },
        None => BlobClaim::Deleting,
    })
}

pub(crate) async fn insert_link(
    conn: &mut PgConnection,
    repo_id: i64,
    digest: &Digest,
    now: i64,
) -> Result<(), MetaError> {
    sqlx::query(LINK_INSERT)
        .bind(repo_id)
        .bind(digest.as_str())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn upload_complete(pool: &PgPool, c: &Completion) -> Result<(), MetaError> {
    let now = now_ms();
    let size = to_db(c.size, "blob size")?;
    let mut tx = pool.begin().await?;
    let n = sqlx::query(BLOB_COMPLETE)
        .bind(size)
        .bind(now)
        .bind(c.digest.as_str())
        .bind(c.generation)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        tx.rollback().await?;
        return Err(MetaError::ClaimLost(c.digest.clone()));
    }
    let repo_id = ensure_repo(&mut tx, &c.repo, now).await?;
    insert_link(&mut tx, repo_id, &c.digest, now).await?;
    if let Some(id) = &c.upload {
        sqlx::query(UPLOAD_DELETE)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn blob_mount_any(
    pool: &PgPool,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>, MetaError> {
    let mut tx = pool.begin().await?;
    let size: Option<i64> = sqlx::query_scalar(
        "SELECT size FROM blobs WHERE digest = $1 AND live = 1 AND deleting IS NULL \
         AND EXISTS (SELECT 1 FROM repo_blobs WHERE digest = $1) FOR SHARE",
    )
    .bind(digest.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    link_found(tx, repo, digest, size).await
}

/// Links a blob that a mount found in `tx` (its `size`, or `None`: not there) into
/// `repo` and commits; the size as the mount answers it.
pub(crate) async fn link_found(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    repo: &RepoName,
    digest: &Digest,
    size: Option<i64>,
) -> Result<Option<u64>, MetaError> {
    let Some(size) = size else {
        tx.rollback().await?;
        return Ok(None);
    };
    let now = now_ms();
    let repo_id = ensure_repo(&mut tx, repo, now).await?;
    insert_link(&mut tx, repo_id, digest, now).await?;
    tx.commit().await?;
    Ok(Some(from_db(size, "blob size")?))
}

pub(crate) async fn link_claim(
    pool: &PgPool,
    repo: &RepoName,
    digest: &Digest,
    stale_before: i64,
) -> Result<Option<u64>, MetaError> {
    let row: Option<(i64, i64)> = sqlx::query_as(LINK_CLAIMED)
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(pool)
        .await?;
    let Some((size, claimed)) = row else {
        return Ok(None);
    };
    if claimed < stale_before {
        let n = sqlx::query(LINK_TOUCH)
            .bind(now_ms())
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(None);
        }
    }
    Ok(Some(from_db(size, "blob size")?))
}

/// Judges one candidate on `conn` (inside a transaction); whether it stays queued.
async fn examine(
    conn: &mut PgConnection,
    pass: &GcPass,
    (kind, repo_id, digest): (&str, i64, &str),
    lock: bool,
    out: &mut GcBatch,
) -> Result<bool, MetaError> {
    let lock_sql = |q: &str| {
        if lock {
            format!("{q} FOR UPDATE")
        } else {
            q.to_string()
        }
    };
    let in_repo = |q| sqlx::query(q).bind(repo_id).bind(digest).bind(pass.cutoff);
    match kind {
        "manifest" => {
            let delete = in_repo(DELETE_MANIFEST)
                .bind(pass.delete_untagged)
                .bind(pass.referrers_follow_subject);
            let claim = lock_sql(MANIFEST_CLAIM);
            let (deleted, keep) =
                claim_then_delete(conn, &claim, (repo_id, digest), delete, pass).await?;
            out.manifests_deleted += u64::from(deleted);
            Ok(keep)
        }
        "link" => {
            let claim = lock_sql(LINK_CLAIM);
            let (deleted, keep) =
                claim_then_delete(conn, &claim, (repo_id, digest), in_repo(DELETE_LINK), pass)
                    .await?;
            out.links_deleted += u64::from(deleted);
            Ok(keep)
        }
        _ => {
            let row: Option<(i64, Option<i64>)> = sqlx::query_as(&lock_sql(
                "SELECT claimed_at, deleting FROM blobs WHERE digest = $1",
            ))
            .bind(digest)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((claimed, None)) = row else {
                return Ok(false);
            };
            let size: Option<i64> = sqlx::query_scalar(TOMBSTONE_BLOB)
                .bind(pass.now)
                .bind(digest)
                .bind(pass.cutoff)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(size) = size {
                out.blobs
                    .push((stored_digest(digest)?, from_db(size, "blob size")?));
                return Ok(false);
            }
            Ok(claimed >= pass.cutoff)
        }
    }
}

/// A manifest or link candidate: reads its claim with `claim` (locking the row), then
/// runs `delete`, which re-checks that it is garbage. (deleted, stays queued): a row
/// that is gone or deleted leaves the queue, one too young to judge stays.
async fn claim_then_delete(
    conn: &mut PgConnection,
    claim: &str,
    (repo_id, digest): (i64, &str),
    delete: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pass: &GcPass,
) -> Result<(bool, bool), MetaError> {
    let claimed: Option<i64> = sqlx::query_scalar(claim)
        .bind(repo_id)
        .bind(digest)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(claimed) = claimed else {
        return Ok((false, false));
    };
    if delete.execute(&mut *conn).await?.rows_affected() > 0 {
        return Ok((true, false));
    }
    Ok((false, claimed >= pass.cutoff))
}

async fn page(
    conn: &mut PgConnection,
    after: i64,
    n: u64,
) -> Result<Vec<(i64, String, i64, String)>, MetaError> {
    Ok(sqlx::query_as(GC_CANDIDATES)
        .bind(after)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?)
}

async fn drop_candidate(conn: &mut PgConnection, id: i64) -> Result<(), MetaError> {
    sqlx::query(GC_CANDIDATE_DROP)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn gc_collect(pool: &PgPool, c: Collect) -> Result<GcBatch, MetaError> {
    let (pass, after, limit) = (&c.pass, c.after, c.limit);
    let mut out = c.start();
    if c.dry_run {
        // Everything in one transaction, rolled back: cascades are seen, nothing changes.
        let mut tx = pool.begin().await?;
        loop {
            let left = u64::from(limit).saturating_sub(out.examined);
            let rows = page(&mut tx, out.cursor, left.min(500)).await?;
            if left == 0 || rows.is_empty() {
                break;
            }
            for (id, kind, repo_id, digest) in rows {
                let candidate = (kind.as_str(), repo_id, digest.as_str());
                if !examine(&mut tx, pass, candidate, false, &mut out).await? {
                    drop_candidate(&mut tx, id).await?;
                }
                out.examined += 1;
                out.cursor = id;
            }
        }
        tx.rollback().await?;
        return Ok(out);
    }
    let mut conn = pool.acquire().await?;
    let rows = page(&mut conn, after, u64::from(limit)).await?;
    drop(conn);
    for (id, kind, repo_id, digest) in rows {
        let mut tx = pool.begin().await?;
        let candidate = (kind.as_str(), repo_id, digest.as_str());
        if !examine(&mut tx, pass, candidate, true, &mut out).await? {
            drop_candidate(&mut tx, id).await?;
        }
        tx.commit().await?;
        out.examined += 1;
        out.cursor = id;
    }
    Ok(out)
}

pub(crate) async fn gc_orphan(
    pool: &PgPool,
    digest: &Digest,
    seen_before: i64,
) -> Result<bool, MetaError> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM blobs WHERE digest = $1)")
        .bind(digest.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if known {
        sqlx::query("DELETE FROM gc_orphans WHERE digest = $1")
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(false);
    }
    let first: i64 = sqlx::query_scalar(
        "INSERT INTO gc_orphans (digest, first_seen) VALUES ($1, $2) \
         ON CONFLICT (digest) DO UPDATE SET first_seen = gc_orphans.first_seen \
         RETURNING first_seen",
    )
    .bind(digest.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    if first >= seen_before {
        tx.commit().await?;
        return Ok(false);
    }
    // A claim that raced in first owns the row now; then this is no orphan.
    let inserted = sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, claimed_at, live, generation, deleting) \
         VALUES ($1, 0, $2, 0, 0, $3, $2) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(now)
    .bind(new_generation())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    sqlx::query("DELETE FROM gc_orphans WHERE digest = $1")
        .bind(digest.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

pub(crate) async fn gc_run_save(pool: &PgPool, run: &GcRun) -> Result<i64, MetaError> {
    let errors = run.errors_json()?;
    let counts = run.counts();
    if run.id == 0 {
        let mut q = sqlx::query_scalar(GC_RUN_INSERT)
            .bind(&run.holder)
            .bind(&run.started_by)
            .bind(&run.mode)
            .bind(run.dry_run)
            .bind(&run.status)
            .bind(run.started_at)
            .bind(run.finished_at);
        for c in counts {
            q = q.bind(c);
        }
        Ok(q.bind(errors).fetch_one(pool).await?)
    } else {
        let mut q = sqlx::query(GC_RUN_UPDATE)
            .bind(&run.status)
            .bind(run.finished_at);
        for c in counts {
            q = q.bind(c);
        }
        q.bind(errors).bind(run.id).execute(pool).await?;
        Ok(run.id)
    }
}
