//! The conformance suite against [`PgMetaStore`]. Needs a PostgreSQL server: the URL comes
//! from `BERTH_TEST_PG_URL`, and the tests fail (they never skip) when it is unset. Each
//! test works in a fresh schema of its own, so they run in parallel on one database.

use berth_meta::conformance::{pg_test_url, unique_schema};
use berth_meta::PgMetaStore;

async fn fresh_store() -> PgMetaStore {
    let url = pg_test_url();
    let schema = unique_schema("berth_test");
    PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {url} (schema {schema}): {e}"))
}

berth_meta::meta_store_conformance!(postgres, async { (fresh_store().await, ()) });

/// Two stores on the same schema (two replicas) see each other's writes, and opening an
/// existing schema again does not re-run migrations.
#[tokio::test]
async fn two_replicas_share_a_schema() {
    use berth_meta::MetaStore;
    use berth_oci::{Digest, RepoName};
    let url = pg_test_url();
    let schema = unique_schema("berth_test");
    let first = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("first replica");
    let second = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("second replica");
    let repo = RepoName::parse("shared/app").expect("name");
    let digest = Digest::sha256_of(b"layer");
    first.blob_link(&repo, &digest, 9).await.expect("blob_link");
    assert_eq!(
        second
            .blob_in_repo(&repo, &digest)
            .await
            .expect("blob_in_repo"),
        Some(9)
    );
}

/// Schemas isolate: a store in another schema sees nothing.
#[tokio::test]
async fn schemas_are_isolated() {
    use berth_meta::MetaStore;
    use berth_oci::{Digest, RepoName};
    let a = fresh_store().await;
    let b = fresh_store().await;
    let repo = RepoName::parse("isolated").expect("name");
    a.blob_link(&repo, &Digest::sha256_of(b"x"), 1)
        .await
        .expect("blob_link");
    assert!(!b.repo_exists(&repo).await.expect("repo_exists"));
    assert!(b.catalog(None, 10).await.expect("catalog").is_empty());
}

/// Migration 0004 over a schema that migrations 0001 to 0003 made: existing repositories
/// belong to the account of their namespace, if there is one.
#[tokio::test]
async fn migration_0004_gives_repositories_their_owner() {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::Executor;
    use std::str::FromStr;
    let dir = tempfile::tempdir().expect("temporary directory");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for f in ["0001_initial.sql", "0002_identity.sql", "0003_gc.sql"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy a migration");
    }
    let url = pg_test_url();
    let schema = unique_schema("berth_test");
    let options = PgConnectOptions::from_str(&url).expect("url");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("connect");
    pool.execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
        .await
        .expect("create schema");
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .expect("migrations 0001-0003")
        .run(&pool)
        .await
        .expect("migrate to 0003");
    for stmt in berth_meta::conformance::identity::BEFORE_0004 {
        sqlx::query(stmt).execute(&pool).await.expect(stmt);
    }
    pool.close().await;
    let store = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("connect and migrate");
    berth_meta::conformance::identity::owners_after_0004(std::sync::Arc::new(store)).await;
}
