//! The replicas of the registry: the [`ReplicaStore`] trait and its implementation for both
//! backends.
//!
//! Every `berth serve` keeps one row up to date: written at start and at every heartbeat
//! (its address, version, start time, whether it refuses writes), deleted when it stops
//! cleanly, forgotten when it has been silent for long. Whether a replica is up is the
//! reader's judgement from the heartbeat's age:
//! this store keeps times, not verdicts. The heartbeat time is the writer's clock, so
//! replicas' clocks must agree to well within the time a replica is allowed to miss. Like
//! the leases, the statements are the same text in both dialects.

use crate::shared::{Arg, Pool, Statements, Step};
use crate::MetaError;
use async_trait::async_trait;
use serde::Serialize;

/// A replica as it last said it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub id: String,
    /// Where the others and an operator reach it (`host:port`).
    pub address: String,
    pub version: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms of its last heartbeat.
    pub heartbeat_at: i64,
    pub read_only: bool,
}

/// The most replicas [`ReplicaStore::replicas`] lists.
pub const MAX_REPLICAS: u32 = 1000;

store_trait! {
/// The registry's replicas, each row kept by its own replica.
pub trait ReplicaStore {
    /// Writes `replica`'s row (creating or replacing it): at start and every heartbeat.
    async fn replica_beat(&self, replica: &Replica) -> Result<(), MetaError>;

    /// Deletes the row of `id` (a clean stop); whether there was one.
    async fn replica_remove(&self, id: &str) -> Result<bool, MetaError>;

    /// Every replica, by id, at most [`MAX_REPLICAS`].
    async fn replicas(&self) -> Result<Vec<Replica>, MetaError>;

    /// Deletes the rows of replicas whose last heartbeat is older than `before` (unix ms):
    /// replicas gone for good.
    async fn replicas_forget(&self, before: i64) -> Result<(), MetaError>;
}
}

const BEAT: &str =
    "INSERT INTO replicas (id, address, version, started_at, heartbeat_at, read_only) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET address = $2, version = $3, \
     started_at = $4, heartbeat_at = $5, read_only = $6";
const REMOVE: &str = "DELETE FROM replicas WHERE id = $1";
const FORGET: &str = "DELETE FROM replicas WHERE heartbeat_at < $1";
const LIST: &str = "SELECT id, address, version, started_at, heartbeat_at, read_only \
     FROM replicas ORDER BY id LIMIT 1000";

/// Every statement above, for the check that their parameters are in order.
#[cfg(test)]
pub(crate) const STATEMENTS: &[&str] = &[BEAT, REMOVE, FORGET, LIST];

#[async_trait]
impl<S: Statements> ReplicaStore for S {
    async fn replica_beat(&self, r: &Replica) -> Result<(), MetaError> {
        let args = vec![
            r.id.as_str().into(),
            r.address.as_str().into(),
            r.version.as_str().into(),
            Arg::Int(r.started_at),
            Arg::Int(r.heartbeat_at),
            Arg::Int(i64::from(r.read_only)),
        ];
        self.run_all(vec![Step::changes(BEAT, args)]).await
    }

    async fn replica_remove(&self, id: &str) -> Result<bool, MetaError> {
        match self
            .run_all(vec![Step::changes(REMOVE, vec![id.into()])])
            .await
        {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn replicas_forget(&self, before: i64) -> Result<(), MetaError> {
        self.run_all(vec![Step::any(FORGET, vec![Arg::Int(before)])])
            .await
    }

    async fn replicas(&self) -> Result<Vec<Replica>, MetaError> {
        let rows: Vec<(String, String, String, i64, i64, i64)> = on_pool!(self.pool(), p => {
            sqlx::query_as(LIST).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, address, version, started_at, heartbeat_at, read_only)| Replica {
                    id,
                    address,
                    version,
                    started_at,
                    heartbeat_at,
                    read_only: read_only != 0,
                },
            )
            .collect())
    }
}
