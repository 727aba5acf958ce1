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
    use berth_meta::conformance::{assert_linked, link_one};
    let url = pg_test_url();
    let schema = unique_schema("berth_test");
    let first = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("first replica");
    let second = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("second replica");
    assert_linked(&second, &link_one(&first).await).await;
}

/// Schemas isolate: a store in another schema sees nothing.
#[tokio::test]
async fn schemas_are_isolated() {
    use berth_meta::RegistryStore;
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
    berth_meta::conformance::identity::schema_before_0004(&pool, "postgres", dir.path()).await;
    pool.close().await;
    let store = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("connect and migrate");
    berth_meta::conformance::identity::owners_after_0004(std::sync::Arc::new(store)).await;
}

/// A schema a newer berth migrated is refused with a message saying so (a replica of the
/// previous version restarted during a rolling upgrade), while the replicas already
/// running on it go on.
#[tokio::test]
async fn a_schema_newer_than_this_version_is_refused() {
    use berth_meta::RegistryStore;
    let url = pg_test_url();
    let schema = unique_schema("berth_test");
    let running = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect("first start");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\"._sqlx_migrations (version, description, installed_on, success, \
         checksum, execution_time) VALUES (999999, 'from a newer berth', now(), true, '\\x00', 0)"
    ))
    .execute(&mut conn)
    .await
    .expect("a newer migration");
    let err = PgMetaStore::connect_with_schema(&url, &schema)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("at migration 999999, newer than this berth") && err.contains("knows ("),
        "{err}"
    );
    running.ping().await.expect("the running replica goes on");
}
