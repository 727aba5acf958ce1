//! Conformance cases of the job leases ([`LeaseStore`](crate::LeaseStore)) and the replicas
//! ([`ReplicaStore`](crate::ReplicaStore)). Leases: one holder at a
//! time per name, renewal by the holder only, release, expiry and take-over.

use super::Store;

fn now() -> i64 {
    crate::convert::now_ms()
}

/// Whether `holder` takes (or keeps) lease `name` for `ttl` ms.
async fn acquire(store: &Store, name: &str, holder: &str, ttl: i64) -> bool {
    let got = store.lease_acquire(name, holder, ttl).await;
    got.unwrap_or_else(|e| panic!("lease_acquire {name} by {holder}: {e}"))
}

/// Whether `holder` renews lease `name` for `ttl` ms.
async fn renew(store: &Store, name: &str, holder: &str, ttl: i64) -> bool {
    let got = store.lease_renew(name, holder, ttl).await;
    got.unwrap_or_else(|e| panic!("lease_renew {name} by {holder}: {e}"))
}

/// Whether `holder` releases lease `name`.
async fn release(store: &Store, name: &str, holder: &str) -> bool {
    let got = store.lease_release(name, holder).await;
    got.unwrap_or_else(|e| panic!("lease_release {name} by {holder}: {e}"))
}

/// Lease `name`, which must be recorded.
async fn held(store: &Store, name: &str) -> crate::Lease {
    let lease = store.lease(name).await.expect("lease");
    lease.unwrap_or_else(|| panic!("lease {name} is not recorded"))
}

/// One holder at a time; the holder renews (keeping `acquired_at`) and releases; a
/// release or renewal by another changes nothing.
pub async fn lease_acquire_renew_release(store: Store) {
    assert!(store.lease("job").await.expect("lease").is_none());
    assert!(store.leases().await.expect("leases").is_empty());
    assert!(acquire(&store, "job", "a", 60_000).await);
    let first = held(&store, "job").await;
    assert_eq!((first.name.as_str(), first.holder.as_str()), ("job", "a"));
    assert!(first.live_at(now()));
    assert!(!acquire(&store, "job", "b", 60_000).await);
    assert!(!renew(&store, "job", "b", 60_000).await);
    assert!(!release(&store, "job", "b").await);
    assert!(renew(&store, "job", "a", 120_000).await);
    assert!(acquire(&store, "job", "a", 120_000).await);
    let renewed = held(&store, "job").await;
    assert_eq!(renewed.holder, "a");
    assert_eq!(renewed.acquired_at, first.acquired_at, "a renewal keeps it");
    assert!(renewed.expires_at >= first.expires_at + 59_000);
    assert!(release(&store, "job", "a").await);
    assert!(store.lease("job").await.expect("lease").is_none());
    assert!(
        !renew(&store, "job", "a", 60_000).await,
        "a released lease is not renewed"
    );
    assert!(acquire(&store, "job", "b", 60_000).await);
}

/// An expired lease is taken by another process at once; the old holder can then neither
/// renew nor release it.
pub async fn lease_expiry_hands_over(store: Store) {
    assert!(acquire(&store, "job", "a", -1).await);
    let dead = store.lease("job").await.expect("lease").expect("recorded");
    assert!(!dead.live_at(now()), "expired, still recorded");
    assert!(acquire(&store, "job", "b", 60_000).await);
    let taken = held(&store, "job").await;
    assert_eq!(taken.holder, "b");
    assert!(taken.acquired_at >= dead.acquired_at);
    assert!(!renew(&store, "job", "a", 60_000).await);
    assert!(!release(&store, "job", "a").await);
    assert_eq!(held(&store, "job").await.holder, "b");
    // A holder whose lease expired but was not taken may still renew it.
    assert!(acquire(&store, "other", "a", -1).await);
    assert!(renew(&store, "other", "a", 60_000).await);
    assert!(held(&store, "other").await.live_at(now()));
}

/// Names are independent: one holder may hold several, and hostile names round-trip.
pub async fn leases_are_per_name(store: Store) {
    let odd = "gc'; DROP TABLE leases; --\u{e9}";
    for name in ["gc", "directory-sync", odd] {
        assert!(acquire(&store, name, "a", 60_000).await);
    }
    assert!(acquire(&store, "audit-retention", "b", 60_000).await);
    let all = store.leases().await.expect("leases");
    let names: Vec<_> = all.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "by name");
    assert_eq!(all.len(), 4);
    assert_eq!(held(&store, odd).await.holder, "a");
    assert!(release(&store, "gc", "a").await);
    assert_eq!(
        held(&store, "directory-sync").await.holder,
        "a",
        "releasing one name keeps the others"
    );
    assert_eq!(store.leases().await.expect("leases").len(), 3);
}

/// Processes racing for a free lease: exactly one gets it.
pub async fn concurrent_lease_acquire_one_wins(store: Store) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .lease_acquire("race", &format!("holder-{i}"), 60_000)
                    .await
                    .expect("lease_acquire")
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("task"));
    }
    assert_eq!(won, 1, "exactly one process takes the lease");
}

/// Replicas: a heartbeat writes or replaces the row, a clean stop deletes it, the list is
/// by id, a long silence is forgotten.
pub async fn replicas_beat_and_leave(store: Store) {
    use crate::Replica;
    assert!(store.replicas().await.unwrap().is_empty());
    let replica = |id: &str, at: i64| Replica {
        id: id.into(),
        address: format!("{id}.example:5000"),
        version: "0.1.0".into(),
        started_at: 1_000,
        heartbeat_at: at,
        read_only: false,
    };
    store.replica_beat(&replica("b", 2_000)).await.unwrap();
    store.replica_beat(&replica("a", 2_000)).await.unwrap();
    let later = Replica {
        read_only: true,
        ..replica("b", 7_000)
    };
    store.replica_beat(&later).await.unwrap();
    assert_eq!(
        store.replicas().await.unwrap(),
        [replica("a", 2_000), later.clone()]
    );
    assert!(store.replica_remove("a").await.unwrap());
    assert!(!store.replica_remove("a").await.unwrap());
    assert_eq!(
        store.replicas().await.unwrap(),
        std::slice::from_ref(&later)
    );
    store.replica_beat(&replica("c", 3_000)).await.unwrap();
    store.replicas_forget(5_000).await.unwrap();
    assert_eq!(store.replicas().await.unwrap(), [later]);
}
