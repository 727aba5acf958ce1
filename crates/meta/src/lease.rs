//! Leases of background jobs: the [`LeaseStore`] trait and its implementation for both
//! backends.
//!
//! A lease names a job (`gc`, `gc-schedule`, `directory-sync`, …; any name) and says which
//! process runs it until when. It is taken when free or expired, renewed by its holder
//! while the holder lives, and released when the holder stops; a holder that dies without
//! releasing loses it when it expires, and another process takes it. One table for every
//! job, so a new job needs no schema change. The statements are the same text in both
//! dialects (`$N` parameters, numbered in the order they first appear, which SQLite binds
//! by position as PostgreSQL does), and [`LeaseStore`] is implemented once, for every
//! store that can run a statement (`shared::Statements`: SQLite's writer thread,
//! PostgreSQL's pool).

use crate::convert::now_ms;
use crate::shared::{Arg, Pool, Statements};
use crate::MetaError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Who holds a lease, since when, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job's name.
    pub name: String,
    /// A replica id or `berth-gc@host`.
    pub holder: String,
    /// Unix ms: when this holder took it (renewals keep it).
    pub acquired_at: i64,
    /// Unix ms; free for others after this unless renewed.
    pub expires_at: i64,
}

impl Lease {
    /// Whether the lease is still held at `now` (unix ms).
    pub fn live_at(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

store_trait! {
/// Leases of named jobs, shared by every process on the same store.
pub trait LeaseStore {
    /// Takes lease `name` for `holder` until now + `ttl_ms` if it is free, expired or
    /// already `holder`'s (then it is extended, keeping `acquired_at`): `true` if `holder`
    /// holds it now.
    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: i64)
        -> Result<bool, MetaError>;

    /// Extends lease `name` to now + `ttl_ms` if `holder` still holds it; `false` if it
    /// does not (released, or expired and taken by another). Unlike
    /// [`lease_acquire`](Self::lease_acquire) it never takes a lease that was lost.
    async fn lease_renew(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, MetaError>;

    /// Gives lease `name` back if `holder` holds it; `true` if it did.
    async fn lease_release(&self, name: &str, holder: &str) -> Result<bool, MetaError>;

    /// Lease `name` as recorded, expired or not.
    async fn lease(&self, name: &str) -> Result<Option<Lease>, MetaError>;

    /// Every recorded lease, expired or not, by name.
    async fn leases(&self) -> Result<Vec<Lease>, MetaError>;
}
}

const ACQUIRE: &str = "INSERT INTO leases (name, holder, acquired_at, expires_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (name) DO UPDATE SET \
         acquired_at = CASE WHEN leases.holder = excluded.holder \
             THEN leases.acquired_at ELSE excluded.acquired_at END, \
         holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at < $3";
const RENEW: &str = "UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3";
const RELEASE: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";
const GET: &str = "SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = $1";
const LIST: &str = "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name";

type Row = (String, String, i64, i64);

fn lease((name, holder, acquired_at, expires_at): Row) -> Lease {
    Lease {
        name,
        holder,
        acquired_at,
        expires_at,
    }
}

/// Now and now + `ttl_ms`.
fn window(ttl_ms: i64) -> (i64, i64) {
    let now = now_ms();
    (now, now.saturating_add(ttl_ms))
}

/// Every statement above, for the check that their parameters are in order.
#[cfg(test)]
pub(crate) const STATEMENTS: &[&str] = &[ACQUIRE, RENEW, RELEASE, GET, LIST];

#[async_trait]
impl<S: Statements> LeaseStore for S {
    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
        let (now, until) = window(ttl_ms);
        let args = vec![name.into(), holder.into(), Arg::Int(now), Arg::Int(until)];
        Ok(self.run(ACQUIRE, args).await? > 0)
    }

    async fn lease_renew(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, MetaError> {
        let (_, until) = window(ttl_ms);
        let args = vec![Arg::Int(until), name.into(), holder.into()];
        Ok(self.run(RENEW, args).await? > 0)
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<bool, MetaError> {
        Ok(self.run(RELEASE, vec![name.into(), holder.into()]).await? > 0)
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, MetaError> {
        let row: Option<Row> = on_pool!(self.pool(), p => {
            sqlx::query_as(GET).bind(name).fetch_optional(p).await?
        });
        Ok(row.map(lease))
    }

    async fn leases(&self) -> Result<Vec<Lease>, MetaError> {
        let rows: Vec<Row> = on_pool!(self.pool(), p => sqlx::query_as(LIST).fetch_all(p).await?);
        Ok(rows.into_iter().map(lease).collect())
    }
}
