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
    Ok((meta, identity, open_blobs(cfg)?))
}

/// Opens the blob store named by `cfg`.
pub fn open_blobs(cfg: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
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
    Ok(Arc::new(berth_blob::instrument::Instrumented::new(blobs)))
}

/// The key-encryption key: read from `keys.kek_file` (32 bytes in base64), or on the
/// embedded default from `<data_dir>/kek`, made with owner-only permissions at the first
/// start. On PostgreSQL it must be configured: replicas share the sealed keys, so they
/// must share the key that opens them, and a key made on one would open nothing on another.
pub fn kek(cfg: &Config) -> anyhow::Result<berth_core::Kek> {
    use base64::Engine;
    let embedded = cfg.metadata_url().starts_with("sqlite:");
    let path = match (cfg.keys.kek_file.as_str(), embedded) {
        ("", true) => cfg.data_dir.join("kek"),
        ("", false) => anyhow::bail!(
            "keys.kek_file (or BERTH_KEK_FILE) must name a file holding 32 random bytes in \
             base64 when the metadata is on PostgreSQL, the same file on every replica: make \
             one with `head -c 32 /dev/urandom | base64 > kek && chmod 600 kek`, and back it \
             up apart from the database (without it the trust keys cannot be opened)"
        ),
        (file, _) => Path::new(file).to_path_buf(),
    };
    if embedded && cfg.keys.kek_file.is_empty() && !path.exists() {
        let kek = berth_core::Kek::generate();
        let text = base64::engine::general_purpose::STANDARD.encode(kek.bytes());
        write_private(&path, format!("{text}\n").as_bytes())
            .with_context(|| format!("writing the key-encryption key {}", path.display()))?;
        tracing::info!(path = %path.display(), "made a key-encryption key (back it up apart from the data)");
        return Ok(kek);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the key-encryption key {}", path.display()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not hold 32 bytes in base64 (a key-encryption key)",
                path.display()
            )
        })?;
    Ok(berth_core::Kek::new(bytes))
}

/// Creates `path` (which must not exist) readable by its owner only, with `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The access service over `identity`, its signing keys opened with `kek`.
pub async fn access(
    cfg: &Config,
    identity: Arc<dyn IdentityStore>,
    directory: Option<berth_directory::DirectoryClient>,
    kek: &berth_core::Kek,
) -> anyhow::Result<berth_core::Access> {
    let access_cfg = cfg.auth.access_config();
    Ok(berth_core::Access::new(identity, directory, access_cfg, kek.clone()).await?)
}
