//! The audit log's retention: events older than the configured retention are deleted by a
//! background job, in batches, so the log does not grow without bound. One replica at a
//! time runs it (an exclusive job); deleting what was already deleted would be harmless.

use crate::jobs::Job;
use berth_meta::{IdentityStore, MetaError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Events deleted per statement.
const BATCH: u32 = 1_000;

/// Deletes every audit event older than `retention` before `now_ms` (Unix milliseconds);
/// returns how many. The job's `run_once`.
pub async fn prune(
    identity: &dyn IdentityStore,
    retention: Duration,
    now_ms: i64,
) -> Result<u64, MetaError> {
    let before = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut total = 0;
    loop {
        let n = identity.audit_prune(before, BATCH).await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
    }
}

/// The name of the retention job (and of its lease).
pub const JOB: &str = "audit-retention";

/// The retention as an exclusive background job: [`prune`] when the lease is taken and
/// then every `every`.
pub fn job(identity: Arc<dyn IdentityStore>, retention: Duration, every: Duration) -> Job {
    Job::new(JOB, every, move |_| {
        let identity = identity.clone();
        async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            match prune(identity.as_ref(), retention, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "audit events past their retention deleted"),
                Err(e) => tracing::warn!(error = %e, "could not apply the audit retention"),
            }
        }
    })
    .exclusive()
}
