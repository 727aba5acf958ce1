//! Opens the configured stores. The only module that names concrete implementations, and
//! where each is wrapped in its instrumenting wrapper (latency and errors per method, on
//! `/metrics`).

use crate::config::{BlobsKind, Config};
use anyhow::Context;
use berth_blob::fs::FsBlobStore;
use berth_blob::s3::S3BlobStore;
use berth_blob::BlobStore;
use berth_meta::postgres::PgMetaStore;
use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{IdentityStore, Instrumented, MetaStore};
use std::path::Path;
use std::sync::Arc;

/// Opens the metadata store named by `cfg`, as both of its traits. Unless `create`, an
/// SQLite database that does not exist yet is refused (not created empty): a command run
/// from the wrong directory or with a mistyped `--data-dir` must not start a new registry.
pub async fn open_meta(
    cfg: &Config,
    create: bool,
) -> anyhow::Result<(Arc<dyn MetaStore>, Arc<dyn IdentityStore>)> {
    let url = cfg.metadata_url();
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = Path::new(path);
        if !create && !path.exists() {
            anyhow::bail!(
                "no registry here: {} does not exist (the data directory is {}); give the \
                 registry's --data-dir or --config, or --init to create a new registry",
                path.display(),
                cfg.data_dir.display()
            );
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let store = Arc::new(
            SqliteMetaStore::open(path)
                .await
                .with_context(|| format!("opening SQLite at {}", path.display()))?,
        );
        Ok(instrumented(store))
    } else {
        let store = Arc::new(
            PgMetaStore::connect_pooled(&url, cfg.metadata.max_connections)
                .await
                .context("connecting to PostgreSQL")?,
        );
        Ok(instrumented(store))
    }
}

/// One store, instrumented, as both of its traits.
fn instrumented<S: MetaStore + IdentityStore>(
    store: Arc<S>,
) -> (Arc<dyn MetaStore>, Arc<dyn IdentityStore>) {
    let store = Arc::new(Instrumented::new(store));
    (store.clone(), store)
}

/// Opens the metadata and blob stores named by `cfg` (`create`: as [`open_meta`]).
pub async fn open(
    cfg: &Config,
    create: bool,
) -> anyhow::Result<(
    Arc<dyn MetaStore>,
    Arc<dyn IdentityStore>,
    Arc<dyn BlobStore>,
)> {
    let (meta, identity) = open_meta(cfg, create).await?;
    let blobs: Arc<dyn BlobStore> = match cfg.blobs.kind {
        BlobsKind::S3 => {
            Arc::new(S3BlobStore::new(cfg.blobs.s3.clone()).context("configuring S3 blob storage")?)
        }
        BlobsKind::Filesystem => {
            let root = cfg.blob_path();
            Arc::new(
                FsBlobStore::open(root.clone())
                    .with_context(|| format!("opening blob storage at {}", root.display()))?,
            )
        }
    };
    let blobs = Arc::new(berth_blob::instrument::Instrumented::new(blobs));
    Ok((meta, identity, blobs))
}
