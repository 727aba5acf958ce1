//! The conformance suite against [`SqliteMetaStore`] on a file in a temporary directory
//! (WAL, a reader pool, the writer thread and per-thread readers, as in production).

use berth_meta::SqliteMetaStore;

berth_meta::meta_store_conformance!(sqlite_file, async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .expect("open sqlite store");
    (store, dir)
});

/// What was committed is there after the store is closed and the file opened again.
#[tokio::test]
async fn reopen_keeps_data() {
    use berth_meta::conformance::{assert_linked, link_one};
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("meta.db");
    let store = SqliteMetaStore::open(&path).await.expect("open");
    let link = link_one(&store).await;
    store.close().await;
    drop(store);
    let store = SqliteMetaStore::open(&path).await.expect("reopen");
    assert_linked(&store, &link).await;
}

/// Migration 0004 over a database that migrations 0001 to 0003 made: existing
/// repositories belong to the account of their namespace, if there is one.
#[tokio::test]
async fn migration_0004_gives_repositories_their_owner() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let dir = tempfile::tempdir().expect("temporary directory");
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).expect("mkdir");
    let path = dir.path().join("meta.db");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .expect("open");
    berth_meta::conformance::identity::schema_before_0004(&pool, "sqlite", &old).await;
    pool.close().await;
    let store = SqliteMetaStore::open(&path)
        .await
        .expect("open and migrate");
    berth_meta::conformance::identity::owners_after_0004(std::sync::Arc::new(store)).await;
}
