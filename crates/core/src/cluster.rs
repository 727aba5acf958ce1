//! The registry's replicas: this one's heartbeat in the metadata store, and the cluster as
//! the store says it is.
//!
//! Every `berth serve` writes its row ([`berth_meta::Replica`]) at start and then every
//! [`Membership::heartbeat`] (the `replica-heartbeat` job, on every replica), and deletes
//! it when it stops cleanly. A replica whose last heartbeat is older than `heartbeat *
//! missed` is down; one silent for [`FORGET_AFTER`] is forgotten. [`Membership::view`] is
//! what cluster status shows: every replica with its health, the job leases it holds, and
//! the current issues (a replica down, versions that differ, fewer healthy replicas than
//! expected, a store failing or slow as this replica sees it).

use crate::jobs::Job;
use crate::registry::Registry;
use crate::status::{LeaseView, StoreHealth};
use crate::time::{now_ms, rfc3339_ms};
use berth_meta::{MetaError, Replica};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a silent replica stays listed (as down) before the others forget it.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A store answering slower than this is an issue.
pub const SLOW_STORE: Duration = Duration::from_secs(1);

/// This replica, as it announces itself, and how the cluster is judged.
#[derive(Debug, Clone)]
pub struct Membership {
    pub id: String,
    /// Where it is reached (`cluster.advertise_address`, else the listen address).
    pub address: String,
    pub version: String,
    /// Unix ms.
    pub started_at: i64,
    /// How often it writes its heartbeat.
    pub heartbeat: Duration,
    /// How many heartbeats a replica may miss before it is down.
    pub missed: u32,
    /// How many healthy replicas the cluster should have.
    pub expected: u32,
}

/// A replica as cluster status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub id: String,
    pub address: String,
    pub version: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub last_heartbeat: String,
    pub healthy: bool,
    pub read_only: bool,
    /// The jobs whose lease it holds now.
    pub leases: Vec<String>,
}

/// Something an operator should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub critical: bool,
    pub description: String,
}

/// The cluster as this replica sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// This replica first, then the others by id.
    pub replicas: Vec<ReplicaView>,
    pub healthy_replicas: u32,
    pub expected_replicas: u32,
    pub issues: Vec<Issue>,
}

impl Membership {
    /// How long a replica may be silent before it is down.
    pub fn down_after(&self) -> Duration {
        self.heartbeat.saturating_mul(self.missed.max(1))
    }

    /// Writes this replica's row now, and forgets replicas silent for [`FORGET_AFTER`].
    pub async fn beat(&self, registry: &Registry) -> Result<(), MetaError> {
        let now = now_ms();
        let row = Replica {
            id: self.id.clone(),
            address: self.address.clone(),
            version: self.version.clone(),
            started_at: self.started_at,
            heartbeat_at: now,
            read_only: registry.read_only_reason().is_some(),
        };
        registry.meta().replica_beat(&row).await?;
        let forget = i64::try_from(FORGET_AFTER.as_millis()).unwrap_or(i64::MAX);
        registry.meta().replicas_forget(now - forget).await
    }

    /// The heartbeat, a job of every replica.
    pub fn heartbeat_job(self: Arc<Self>, registry: Arc<Registry>) -> Job {
        let every = self.heartbeat;
        Job::new("replica-heartbeat", every, move |_| {
            let (me, registry) = (self.clone(), registry.clone());
            async move {
                if let Err(e) = me.beat(&registry).await {
                    tracing::warn!(error = %e, "replica heartbeat not written");
                }
            }
        })
    }

    /// Deletes this replica's row: it stopped cleanly.
    pub async fn leave(&self, registry: &Registry) -> Result<bool, MetaError> {
        registry.meta().replica_remove(&self.id).await
    }

    /// The cluster: every registered replica (this one first, as it is now) with the job
    /// `leases` it holds, and the issues, with the stores' health as this replica measured
    /// it.
    pub async fn view(
        &self,
        registry: &Registry,
        leases: &[LeaseView],
        stores: &[(&str, &StoreHealth)],
    ) -> Result<ClusterView, MetaError> {
        let now = now_ms();
        let rows = registry.meta().replicas().await?;
        let down_after = i64::try_from(self.down_after().as_millis()).unwrap_or(i64::MAX);
        let stores_ok = stores.iter().all(|(_, h)| h.healthy());
        let mine = Replica {
            id: self.id.clone(),
            address: self.address.clone(),
            version: self.version.clone(),
            started_at: self.started_at,
            heartbeat_at: rows
                .iter()
                .find(|r| r.id == self.id)
                .map_or(now, |r| r.heartbeat_at),
            read_only: registry.read_only_reason().is_some(),
        };
        let mut replicas = vec![(mine, stores_ok)];
        for r in rows.into_iter().filter(|r| r.id != self.id) {
            let healthy = now - r.heartbeat_at <= down_after;
            replicas.push((r, healthy));
        }
        let mut issues = Vec::new();
        let views: Vec<ReplicaView> = replicas
            .iter()
            .map(|(r, healthy)| {
                if !healthy && r.id != self.id {
                    issues.push(Issue {
                        critical: true,
                        description: format!(
                            "replica {} ({}) is down: no heartbeat for {} s (down after {} s)",
                            r.id,
                            r.address,
                            (now - r.heartbeat_at) / 1000,
                            down_after / 1000
                        ),
                    });
                }
                ReplicaView {
                    id: r.id.clone(),
                    address: r.address.clone(),
                    version: r.version.clone(),
                    started_at: rfc3339_ms(r.started_at),
                    last_heartbeat: rfc3339_ms(r.heartbeat_at),
                    healthy: *healthy,
                    read_only: r.read_only,
                    leases: leases
                        .iter()
                        .filter(|l| l.live && l.holder == r.id)
                        .map(|l| l.job.clone())
                        .collect(),
                }
            })
            .collect();
        let mut versions: Vec<(&str, &str)> = views
            .iter()
            .filter(|v| v.healthy)
            .map(|v| (v.version.as_str(), v.id.as_str()))
            .collect();
        versions.sort();
        if versions.first().map(|v| v.0) != versions.last().map(|v| v.0) {
            let list: Vec<String> = versions.iter().map(|(v, id)| format!("{id} {v}")).collect();
            issues.push(Issue {
                critical: false,
                description: format!("replicas run different versions: {}", list.join(", ")),
            });
        }
        for (name, h) in stores {
            if let Some(e) = &h.error {
                issues.push(Issue {
                    critical: true,
                    description: format!("the {name} store ({}) fails: {e}", h.kind),
                });
            } else if h.latency >= SLOW_STORE {
                issues.push(Issue {
                    critical: false,
                    description: format!(
                        "the {name} store ({}) is slow: {} ms",
                        h.kind,
                        h.latency.as_millis()
                    ),
                });
            }
        }
        let healthy = u32::try_from(views.iter().filter(|v| v.healthy).count()).unwrap_or(u32::MAX);
        if healthy < self.expected {
            issues.push(Issue {
                critical: true,
                description: format!(
                    "{healthy} of {} expected replicas are healthy",
                    self.expected
                ),
            });
        }
        Ok(ClusterView {
            replicas: views,
            healthy_replicas: healthy,
            expected_replicas: self.expected,
            issues,
        })
    }
}
