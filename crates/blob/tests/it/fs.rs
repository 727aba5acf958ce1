//! The conformance suite against the filesystem store, each case in its own temporary
//! directory, plus the filesystem's own crash-leftover cases.

use berth_blob::conformance::{self, Fixture};
use berth_blob::fs::FsBlobStore;
use berth_blob::{BlobError, BlobStore};
use futures::TryStreamExt;
use std::path::Path;

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("store");
    Fixture::new(dir, move || FsBlobStore::open(root.clone()))
}

berth_blob::blob_store_conformance!(fs, async { fixture() });

fn write(root: &Path, rel: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, b"leftover").expect("write");
}

/// What a crash or a careless operator leaves behind is foreign, never a blob or an upload,
/// and delete_foreign removes exactly that.
#[tokio::test]
async fn crash_leftovers_are_foreign() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
    let data = conformance::test_bytes(1, 4000);
    let d = conformance::upload(&store, "good-1", &[&data]).await;
    let hex = d.hex().to_string();
    let root = dir.path();
    // Files listed as they are, and where a whole directory is foreign, its top.
    let as_is = [
        "tmp/half-written".to_string(),
        "stray.txt".to_string(),
        format!("blobs/sha256/00/{hex}"),
        format!("blobs/sha256/{}/{}", &hex[..2], hex.to_uppercase()),
        format!("blobs/sha256/{}/{hex}.partial", &hex[..2]),
        "blobs/sha256/loose-file".to_string(),
        "uploads/bad.name".to_string(),
    ];
    let in_dirs = [
        ("tmp/dir/nested", "tmp/dir"),
        ("blobs/sha256/zz/whatever", "blobs/sha256/zz"),
        ("blobs/md5/ab/abcdef", "blobs/md5"),
    ];
    for rel in as_is
        .iter()
        .map(String::as_str)
        .chain(in_dirs.map(|(f, _)| f))
    {
        write(root, rel);
    }
    std::fs::create_dir_all(root.join("uploads/a-dir")).expect("mkdir");
    let mut want: Vec<String> = as_is.to_vec();
    want.extend(in_dirs.map(|(_, top)| top.to_string()));
    want.push("uploads/a-dir".to_string());
    want.sort();
    assert_eq!(conformance::foreign(&store).await, want);

    let listed: Vec<_> = store.list().try_collect().await.expect("list");
    assert_eq!(
        listed,
        vec![(d.clone(), 4000)],
        "list shows only the good blob"
    );
    let uploads: Vec<_> = store
        .list_uploads()
        .try_collect()
        .await
        .expect("list_uploads");
    assert!(uploads.is_empty(), "uploads: {uploads:?}");

    // Keys that are not foreign are refused, and nothing is removed.
    for key in [
        "blobs",
        "blobs/sha256",
        &format!("blobs/sha256/{}", &hex[..2]),
        "tmp",
        "../x",
        "/etc",
    ] {
        assert!(
            matches!(store.delete_foreign(key).await, Err(BlobError::NotFound)),
            "{key}"
        );
    }
    for key in &want {
        store.delete_foreign(key).await.expect("delete_foreign");
    }
    assert_eq!(conformance::foreign(&store).await, Vec::<String>::new());
    conformance::assert_blob(&store, &d, &data).await;
    assert!(root.join("tmp").is_dir() && root.join("uploads").is_dir());
}

/// A leftover upload file from a crash is listed as an upload, with its age, and can be
/// aborted without state.
#[tokio::test]
async fn leftover_upload_is_listed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
    write(dir.path(), "uploads/crashed-1");
    let uploads: Vec<(String, u64)> = store.list_uploads().try_collect().await.expect("list");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].0, "crashed-1");
    store
        .upload_abort("crashed-1", &Default::default())
        .await
        .expect("abort");
    assert!(!dir.path().join("uploads/crashed-1").exists());
}
