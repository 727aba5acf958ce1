//! The core's integration tests, one test binary: GC as a model and as runs, and the
//! background jobs, the trust service, on the real SQLite store and the memory blob store.

mod gc_model;
mod gc_run;
mod jobs;
mod signatures;
mod trust;

use berth_meta::{MetaStore, SqliteMetaStore};
use std::sync::Arc;

/// A SQLite metadata store in `dir`, as `berth serve` opens it.
pub async fn sqlite_meta(dir: &std::path::Path) -> Arc<dyn MetaStore> {
    Arc::new(
        SqliteMetaStore::open(&dir.join("meta.db"))
            .await
            .expect("open"),
    )
}
