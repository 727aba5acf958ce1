//! Conformance cases of the job leases ([`LeaseStore`](crate::LeaseStore)): one holder at a
//! time per name, renewal by the holder only, release, expiry and take-over.

use super::Store;

fn now() -> i64 {
    crate::convert::now_ms()
}

/// One holder at a time; the holder renews (keeping `acquired_at`) and releases; a
/// release or renewal by another changes nothing.
pub async fn lease_acquire_renew_release(store: Store) {
    assert!(store.lease("job").await.expect("lease").is_none());
    assert!(store.leases().await.expect("leases").is_empty());
    assert!(store.lease_acquire("job", "a", 60_000).await.expect("a"));
    let first = store.lease("job").await.expect("lease").expect("held");
    assert_eq!((first.name.as_str(), first.holder.as_str()), ("job", "a"));
    assert!(first.live_at(now()));
    assert!(!store.lease_acquire("job", "b", 60_000).await.expect("b"));
    assert!(!store.lease_renew("job", "b", 60_000).await.expect("b"));
    assert!(!store.lease_release("job", "b").await.expect("not b's"));
    assert!(store.lease_renew("job", "a", 120_000).await.expect("renew"));
    assert!(store
        .lease_acquire("job", "a", 120_000)
        .await
        .expect("again"));
    let renewed = store.lease("job").await.expect("lease").expect("held");
    assert_eq!(renewed.holder, "a");
    assert_eq!(renewed.acquired_at, first.acquired_at, "a renewal keeps it");
    assert!(renewed.expires_at >= first.expires_at + 59_000);
    assert!(store.lease_release("job", "a").await.expect("release"));
    assert!(store.lease("job").await.expect("lease").is_none());
    assert!(
        !store.lease_renew("job", "a", 60_000).await.expect("renew"),
        "a released lease is not renewed"
    );
    assert!(store
        .lease_acquire("job", "b", 60_000)
        .await
        .expect("free: b"));
}

/// An expired lease is taken by another process at once; the old holder can then neither
/// renew nor release it.
pub async fn lease_expiry_hands_over(store: Store) {
    assert!(store.lease_acquire("job", "a", -1).await.expect("a"));
    let dead = store.lease("job").await.expect("lease").expect("recorded");
    assert!(!dead.live_at(now()), "expired, still recorded");
    assert!(store
        .lease_acquire("job", "b", 60_000)
        .await
        .expect("taken over"));
    let taken = store.lease("job").await.expect("lease").expect("held");
    assert_eq!(taken.holder, "b");
    assert!(taken.acquired_at >= dead.acquired_at);
    assert!(!store.lease_renew("job", "a", 60_000).await.expect("a"));
    assert!(!store.lease_release("job", "a").await.expect("a"));
    assert_eq!(
        store
            .lease("job")
            .await
            .expect("lease")
            .expect("held")
            .holder,
        "b"
    );
    // A holder whose lease expired but was not taken may still renew it.
    assert!(store.lease_acquire("other", "a", -1).await.expect("a"));
    assert!(store
        .lease_renew("other", "a", 60_000)
        .await
        .expect("renew"));
    assert!(store
        .lease("other")
        .await
        .expect("lease")
        .expect("held")
        .live_at(now()));
}

/// Names are independent: one holder may hold several, and hostile names round-trip.
pub async fn leases_are_per_name(store: Store) {
    let odd = "gc'; DROP TABLE leases; --\u{e9}";
    for name in ["gc", "directory-sync", odd] {
        assert!(store.lease_acquire(name, "a", 60_000).await.expect(name));
    }
    assert!(store
        .lease_acquire("audit-retention", "b", 60_000)
        .await
        .expect("b"));
    let all = store.leases().await.expect("leases");
    let names: Vec<_> = all.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "by name");
    assert_eq!(all.len(), 4);
    assert_eq!(
        store.lease(odd).await.expect("lease").expect("held").holder,
        "a"
    );
    assert!(store.lease_release("gc", "a").await.expect("release"));
    assert_eq!(
        store
            .lease("directory-sync")
            .await
            .expect("lease")
            .expect("held")
            .holder,
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
