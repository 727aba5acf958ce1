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

/// A one-connection pool on the database file at `path` (created if missing), without
/// the store's migrations: for building an older schema by hand.
async fn bare_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open")
}

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
    let dir = tempfile::tempdir().expect("temporary directory");
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).expect("mkdir");
    let path = dir.path().join("meta.db");
    let pool = bare_pool(&path).await;
    berth_meta::conformance::identity::schema_before_0004(&pool, "sqlite", &old).await;
    pool.close().await;
    let store = SqliteMetaStore::open(&path)
        .await
        .expect("open and migrate");
    berth_meta::conformance::identity::owners_after_0004(std::sync::Arc::new(store)).await;
}

/// Migration 0009 over a database with a GC lease in the old `gc_lease` table: the lease
/// becomes job lease `gc`, with its holder and times, and the old table is gone.
#[tokio::test]
async fn migration_0009_carries_the_gc_lease_over() {
    use berth_meta::LeaseStore;
    let dir = tempfile::tempdir().expect("temporary directory");
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).expect("mkdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&src).expect("migrations") {
        let name = entry.expect("entry").file_name();
        if name.to_string_lossy().as_ref() < "0009" {
            std::fs::copy(src.join(&name), old.join(&name)).expect("copy a migration");
        }
    }
    let path = dir.path().join("meta.db");
    let pool = bare_pool(&path).await;
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("migrations 0001-0008")
        .run(&pool)
        .await
        .expect("migrate to 0008");
    let far = i64::MAX / 2;
    sqlx::query("INSERT INTO gc_lease (name, holder, acquired_at, expires_at) VALUES ('gc', 'replica-1', 1000, ?1)")
        .bind(far)
        .execute(&pool)
        .await
        .expect("a held GC lease");
    pool.close().await;
    let store = SqliteMetaStore::open(&path)
        .await
        .expect("open and migrate");
    let lease = store
        .lease("gc")
        .await
        .expect("lease")
        .expect("carried over");
    assert_eq!(
        (lease.holder.as_str(), lease.acquired_at, lease.expires_at),
        ("replica-1", 1000, far)
    );
    assert!(
        !store
            .lease_acquire("gc", "replica-2", 60_000)
            .await
            .expect("acquire"),
        "still held after the migration"
    );
    let gone: Option<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE name = 'gc_lease'")
            .fetch_optional(&bare_pool(&path).await)
            .await
            .expect("query");
    assert!(gone.is_none(), "gc_lease dropped");
}

/// A schema a newer berth migrated is refused with a message saying so, before anything
/// is written (a replica of the previous version restarted during a rolling upgrade).
#[tokio::test]
async fn a_schema_newer_than_this_version_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("meta.db");
    let store = SqliteMetaStore::open(&path).await.expect("open");
    store.close().await;
    drop(store);
    let pool = bare_pool(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) VALUES (999999, 'from a newer berth', CURRENT_TIMESTAMP, 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .expect("a newer migration");
    pool.close().await;
    let err = SqliteMetaStore::open(&path)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("at migration 999999, newer than this berth") && err.contains("knows ("),
        "{err}"
    );
}
