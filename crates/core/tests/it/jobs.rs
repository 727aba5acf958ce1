//! Background jobs on a real SQLite store: an exclusive job runs on one holder at a time
//! and moves to another when its holder shuts down; shutdown cancels work that checks its
//! token, waits for it, aborts work that outlives the deadline, and releases leases.

use berth_core::jobs::{Job, Jobs};
use berth_meta::{LeaseStore, SqliteMetaStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn store() -> (tempfile::TempDir, Arc<dyn LeaseStore>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .expect("open");
    (dir, Arc::new(store))
}

/// Who holds the lease `name`, which must be held.
async fn holder(leases: &dyn LeaseStore, name: &str) -> String {
    leases
        .lease(name)
        .await
        .expect("lease")
        .expect("held")
        .holder
}

fn counting(name: &str, count: &Arc<AtomicUsize>) -> Job {
    let count = count.clone();
    Job::new(name, Duration::from_millis(50), move |_| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_job_runs_on_one_holder_and_moves_at_shutdown() {
    let (_dir, leases) = store().await;
    let ttl = Duration::from_millis(600);
    let (ran_a, ran_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = Jobs::new(leases.clone(), "a", ttl);
    a.start(counting("tick", &ran_a).exclusive());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = Jobs::new(leases.clone(), "b", ttl);
    b.start(counting("tick", &ran_b).exclusive());
    // Longer than the lease: a renews it, b never runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(ran_a.load(Ordering::SeqCst) >= 5, "a runs every 50 ms");
    assert_eq!(
        ran_b.load(Ordering::SeqCst),
        0,
        "b waits while a holds the lease"
    );
    assert_eq!(holder(leases.as_ref(), "tick").await, "a");

    assert!(a.shutdown(Duration::from_secs(5)).await, "a stops in time");
    let stopped = ran_a.load(Ordering::SeqCst);
    // Released: b takes it on its next try (a third of the lease), not after expiry.
    tokio::time::sleep(ttl / 3 + Duration::from_millis(150)).await;
    assert_eq!(holder(leases.as_ref(), "tick").await, "b");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ran_b.load(Ordering::SeqCst) > 0, "b runs the job now");
    assert_eq!(
        ran_a.load(Ordering::SeqCst),
        stopped,
        "a ran nothing after shutdown"
    );
    assert!(b.shutdown(Duration::from_secs(5)).await);
    assert!(leases.lease("tick").await.expect("lease").is_none());
}

#[tokio::test]
async fn shutdown_cancels_waits_and_aborts_at_the_deadline() {
    let (_dir, leases) = store().await;
    let jobs = Jobs::new(leases.clone(), "a", Duration::from_secs(30));
    let finished = Arc::new(AtomicUsize::new(0));
    // Work that stops when cancelled, and work that ignores the token.
    let f = finished.clone();
    jobs.start(
        Job::new("polite", Duration::from_secs(3600), move |token| {
            let f = f.clone();
            async move {
                token.cancelled().await;
                f.fetch_add(1, Ordering::SeqCst);
            }
        })
        .exclusive(),
    );
    jobs.start(
        Job::new("stubborn", Duration::from_secs(3600), |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .exclusive(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(leases.leases().await.expect("leases").len(), 2);
    let started = std::time::Instant::now();
    assert!(
        !jobs.shutdown(Duration::from_millis(500)).await,
        "the stubborn job is aborted"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the polite job saw the token"
    );
    assert!(
        leases.leases().await.expect("leases").is_empty(),
        "both leases released, the aborted job's too"
    );

    // run_once: the work, now, without a lease.
    let ran = Arc::new(AtomicUsize::new(0));
    counting("once", &ran).run_once().await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(leases.lease("once").await.expect("lease").is_none());
}
