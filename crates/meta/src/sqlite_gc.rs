//! The garbage-collection statements of the SQLite store, run by its writer thread (so
//! every check and the write it guards are one transaction, serialised with every other
//! write of the process and, through `BEGIN IMMEDIATE`, of other processes).

use crate::convert::{from_db, now_ms, stored_digest, to_db};
use crate::gc::{BlobClaim, Collect, Completion, GcBatch, GcPass, GcRun};
use crate::shared::{BLOB_COMPLETE, DELETE_LINK, DELETE_MANIFEST, TOMBSTONE_BLOB, UPLOAD_DELETE};
use crate::shared::{GC_CANDIDATES, GC_CANDIDATE_DROP, GC_RUN_INSERT, GC_RUN_UPDATE};
use crate::shared::{LINK_CLAIM, LINK_TOUCH, MANIFEST_CLAIM};
use crate::sqlite::{ensure_repo, insert_link, sql};
use crate::MetaError;
use berth_oci::{Digest, RepoName};
use rusqlite::{Connection, OptionalExtension};

/// A generation for a new blob row: random, so a row re-created after collection is told
/// apart from the one an upload claimed.
pub(crate) fn new_generation() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    (h.finish() >> 1) as i64 | 1
}

pub(crate) fn blob_claim(conn: &Connection, digest: &Digest) -> Result<BlobClaim, MetaError> {
    let now = now_ms();
    let row: Option<(Option<i64>, i64, bool)> = conn
        .prepare_cached(
            "SELECT deleting, generation, live = 1 AND verified = 1 FROM blobs WHERE digest = ?1",
        )
        .and_then(|mut st| {
            st.query_row([digest.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(sql)?;
    match row {
        Some((Some(_), _, _)) => Ok(BlobClaim::Deleting),
        Some((None, generation, verified)) => {
            conn.prepare_cached("UPDATE blobs SET claimed_at = ?2 WHERE digest = ?1")
                .and_then(|mut st| st.execute((digest.as_str(), now)))
                .map_err(sql)?;
            Ok(BlobClaim::Claimed {
                generation,
                verified,
            })
        }
        None => {
            let generation = new_generation();
            conn.prepare_cached(
                "INSERT INTO blobs (digest, size, created_at, claimed_at, live, generation) \
                 VALUES (?1, 0, ?2, ?2, 0, ?3)",
            )
            .and_then(|mut st| st.execute((digest.as_str(), now, generation)))
            .map_err(sql)?;
            Ok(BlobClaim::Claimed {
                generation,
                verified: false,
            })
        }
    }
}

pub(crate) fn upload_complete(conn: &Connection, c: &Completion) -> Result<(), MetaError> {
    let now = now_ms();
    let size = to_db(c.size, "blob size")?;
    let n = conn
        .prepare_cached(BLOB_COMPLETE)
        .and_then(|mut st| st.execute((size, now, c.digest.as_str(), c.generation)))
        .map_err(sql)?;
    if n == 0 {
        return Err(MetaError::ClaimLost(c.digest.clone()));
    }
    let repo_id = ensure_repo(conn, &c.repo, now)?;
    insert_link(conn, repo_id, &c.digest, now)?;
    if let Some(id) = &c.upload {
        conn.prepare_cached(UPLOAD_DELETE)
            .and_then(|mut st| st.execute([id]))
            .map_err(sql)?;
    }
    Ok(())
}

pub(crate) fn blob_mount_any(
    conn: &Connection,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>, MetaError> {
    let size: Option<i64> = conn
        .prepare_cached(
            "SELECT size FROM blobs WHERE digest = ?1 AND live = 1 AND deleting IS NULL \
             AND EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)",
        )
        .and_then(|mut st| st.query_row([digest.as_str()], |r| r.get(0)).optional())
        .map_err(sql)?;
    crate::sqlite::link_found(conn, repo, digest, size)
}

/// Claims a link again; its size if it is still there.
pub(crate) fn link_touch(
    conn: &Connection,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>, MetaError> {
    let n = conn
        .prepare_cached(LINK_TOUCH)
        .and_then(|mut st| st.execute((now_ms(), repo.as_str(), digest.as_str())))
        .map_err(sql)?;
    if n == 0 {
        return Ok(None);
    }
    let size: i64 = conn
        .prepare_cached("SELECT size FROM blobs WHERE digest = ?1")
        .and_then(|mut st| st.query_row([digest.as_str()], |r| r.get(0)))
        .map_err(sql)?;
    Ok(Some(from_db(size, "blob size")?))
}

/// Candidates examined per statement page.
const PAGE: u32 = 500;

pub(crate) fn gc_collect(conn: &Connection, c: Collect) -> Result<GcBatch, MetaError> {
    if !c.dry_run {
        return collect(conn, &c);
    }
    // A dry run does the real work (cascades included) and rolls it back.
    conn.execute_batch("SAVEPOINT gc_dry_run").map_err(sql)?;
    let result = collect(conn, &c);
    conn.execute_batch("ROLLBACK TO gc_dry_run; RELEASE gc_dry_run")
        .map_err(sql)?;
    result
}

/// Examines candidates; a dry run goes on to `limit` (cascades included), a real one stops
/// after one page.
fn collect(conn: &Connection, c: &Collect) -> Result<GcBatch, MetaError> {
    let (pass, limit, to_the_end) = (&c.pass, c.limit, c.dry_run);
    let mut out = c.start();
    loop {
        let left = u64::from(limit).saturating_sub(out.examined);
        if left == 0 {
            break;
        }
        let page: Vec<(i64, String, i64, String)> = conn
            .prepare_cached(GC_CANDIDATES)
            .and_then(|mut st| {
                st.query_map((out.cursor, left.min(u64::from(PAGE)) as i64), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect()
            })
            .map_err(sql)?;
        if page.is_empty() {
            break;
        }
        for (id, kind, repo_id, digest) in page {
            let in_repo = (repo_id, digest.as_str());
            let keep = match kind.as_str() {
                "manifest" => {
                    let params = (
                        repo_id,
                        &digest,
                        pass.cutoff,
                        pass.delete_untagged,
                        pass.referrers_follow_subject,
                    );
                    let (deleted, keep) = delete_or_claim(
                        conn,
                        (DELETE_MANIFEST, params),
                        MANIFEST_CLAIM,
                        in_repo,
                        pass,
                    )?;
                    out.manifests_deleted += u64::from(deleted);
                    keep
                }
                "link" => {
                    let params = (repo_id, &digest, pass.cutoff);
                    let (deleted, keep) =
                        delete_or_claim(conn, (DELETE_LINK, params), LINK_CLAIM, in_repo, pass)?;
                    out.links_deleted += u64::from(deleted);
                    keep
                }
                _ => examine_blob(conn, pass, &digest, &mut out)?,
            };
            if !keep {
                conn.prepare_cached(GC_CANDIDATE_DROP)
                    .and_then(|mut st| st.execute([id]))
                    .map_err(sql)?;
            }
            out.examined += 1;
            out.cursor = id;
        }
        if !to_the_end {
            break;
        }
    }
    Ok(out)
}

/// A manifest or link candidate: runs `delete` (which re-checks that it is garbage), else
/// reads its claim with `claim`. (deleted, stays queued): a row that is gone or deleted
/// leaves the queue, one too young to judge stays.
fn delete_or_claim<P: rusqlite::Params>(
    conn: &Connection,
    (delete, params): (&'static str, P),
    claim: &'static str,
    (repo_id, digest): (i64, &str),
    pass: &GcPass,
) -> Result<(bool, bool), MetaError> {
    let n = conn
        .prepare_cached(delete)
        .and_then(|mut st| st.execute(params))
        .map_err(sql)?;
    if n > 0 {
        return Ok((true, false));
    }
    let claimed: Option<i64> = conn
        .prepare_cached(claim)
        .and_then(|mut st| st.query_row((repo_id, digest), |r| r.get(0)).optional())
        .map_err(sql)?;
    Ok((false, claimed.is_some_and(|c| c >= pass.cutoff)))
}

fn examine_blob(
    conn: &Connection,
    pass: &GcPass,
    digest: &str,
    out: &mut GcBatch,
) -> Result<bool, MetaError> {
    let size: Option<i64> = conn
        .prepare_cached(TOMBSTONE_BLOB)
        .and_then(|mut st| {
            st.query_row((pass.now, digest, pass.cutoff), |r| r.get(0))
                .optional()
        })
        .map_err(sql)?;
    if let Some(size) = size {
        out.blobs
            .push((stored_digest(digest)?, from_db(size, "blob size")?));
        return Ok(false);
    }
    let claimed: Option<i64> = conn
        .prepare_cached("SELECT claimed_at FROM blobs WHERE digest = ?1 AND deleting IS NULL")
        .and_then(|mut st| st.query_row([digest], |r| r.get(0)).optional())
        .map_err(sql)?;
    Ok(claimed.is_some_and(|c| c >= pass.cutoff))
}

pub(crate) fn gc_forget(conn: &Connection, digests: &[Digest]) -> Result<u64, MetaError> {
    let mut n = 0;
    for d in digests {
        n += conn
            .prepare_cached("DELETE FROM blobs WHERE digest = ?1 AND deleting IS NOT NULL")
            .and_then(|mut st| st.execute([d.as_str()]))
            .map_err(sql)? as u64;
    }
    Ok(n)
}

pub(crate) fn gc_orphan(
    conn: &Connection,
    digest: &Digest,
    seen_before: i64,
) -> Result<bool, MetaError> {
    let now = now_ms();
    let known = conn
        .prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")
        .and_then(|mut st| st.exists([digest.as_str()]))
        .map_err(sql)?;
    if known {
        conn.prepare_cached("DELETE FROM gc_orphans WHERE digest = ?1")
            .and_then(|mut st| st.execute([digest.as_str()]))
            .map_err(sql)?;
        return Ok(false);
    }
    let first: i64 = conn
        .prepare_cached(
            "INSERT INTO gc_orphans (digest, first_seen) VALUES (?1, ?2) \
             ON CONFLICT (digest) DO UPDATE SET first_seen = first_seen RETURNING first_seen",
        )
        .and_then(|mut st| st.query_row((digest.as_str(), now), |r| r.get(0)))
        .map_err(sql)?;
    if first >= seen_before {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO blobs (digest, size, created_at, claimed_at, live, generation, deleting) \
         VALUES (?1, 0, ?2, 0, 0, ?3, ?2)",
    )
    .and_then(|mut st| st.execute((digest.as_str(), now, new_generation())))
    .map_err(sql)?;
    conn.prepare_cached("DELETE FROM gc_orphans WHERE digest = ?1")
        .and_then(|mut st| st.execute([digest.as_str()]))
        .map_err(sql)?;
    Ok(true)
}

pub(crate) fn gc_run_save(conn: &Connection, run: &GcRun) -> Result<i64, MetaError> {
    use rusqlite::ToSql;
    let errors = run.errors_json()?;
    let counts = run.counts();
    let counts = counts.iter().map(|c| c as &dyn ToSql);
    if run.id == 0 {
        let mut params: Vec<&dyn ToSql> = vec![
            &run.holder,
            &run.started_by,
            &run.mode,
            &run.dry_run,
            &run.status,
            &run.started_at,
            &run.finished_at,
        ];
        params.extend(counts);
        params.push(&errors);
        conn.prepare_cached(GC_RUN_INSERT)
            .and_then(|mut st| st.query_row(&*params, |r| r.get(0)))
            .map_err(sql)
    } else {
        let mut params: Vec<&dyn ToSql> = vec![&run.status, &run.finished_at];
        params.extend(counts);
        params.extend([&errors as &dyn ToSql, &run.id]);
        conn.prepare_cached(GC_RUN_UPDATE)
            .and_then(|mut st| st.execute(&*params))
            .map_err(sql)?;
        Ok(run.id)
    }
}
