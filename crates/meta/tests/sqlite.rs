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
    use berth_meta::MetaStore;
    use berth_oci::{Digest, RepoName};
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("meta.db");
    let repo = RepoName::parse("library/app").expect("name");
    let digest = Digest::sha256_of(b"layer");
    {
        let store = SqliteMetaStore::open(&path).await.expect("open");
        store.blob_link(&repo, &digest, 5).await.expect("blob_link");
        store.close().await;
    }
    let store = SqliteMetaStore::open(&path).await.expect("reopen");
    assert_eq!(
        store
            .blob_in_repo(&repo, &digest)
            .await
            .expect("blob_in_repo"),
        Some(5)
    );
}

/// Migration 0004 over a database that migrations 0001 to 0003 made: existing
/// repositories belong to the account of their namespace, if there is one.
#[tokio::test]
async fn migration_0004_gives_repositories_their_owner() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let dir = tempfile::tempdir().expect("temporary directory");
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).expect("mkdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for f in ["0001_initial.sql", "0002_identity.sql", "0003_gc.sql"] {
        std::fs::copy(src.join(f), old.join(f)).expect("copy a migration");
    }
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
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("migrations 0001-0003")
        .run(&pool)
        .await
        .expect("migrate to 0003");
    for stmt in berth_meta::conformance::identity::BEFORE_0004 {
        sqlx::query(stmt).execute(&pool).await.expect(stmt);
    }
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
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
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
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .expect("open");
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
            .fetch_optional(
                &SqlitePoolOptions::new()
                    .connect_with(SqliteConnectOptions::new().filename(&path))
                    .await
                    .expect("open"),
            )
            .await
            .expect("query");
    assert!(gone.is_none(), "gc_lease dropped");
}
