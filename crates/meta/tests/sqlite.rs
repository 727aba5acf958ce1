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
