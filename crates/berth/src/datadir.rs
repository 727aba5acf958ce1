//! The start-up check of the local stores: `berth serve` refuses a data directory, SQLite
//! file or blob directory it cannot write, with a message that says which and why, instead
//! of listening and answering every write with 500.

use crate::config::{BlobsKind, Config};
use anyhow::Context;
use std::path::Path;

/// Checks that every local path the configured stores write to is writable (creating the
/// directories that do not exist yet, as the stores would).
pub fn check_writable(cfg: &Config) -> anyhow::Result<()> {
    let url = cfg.metadata_url();
    if let Some(db) = url.strip_prefix("sqlite:") {
        let db = Path::new(db);
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            writable_dir(dir)?;
        }
        if db.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(db)
                .map_err(|e| refuse(db, &e))?;
        }
    }
    if cfg.blobs.kind == BlobsKind::Filesystem {
        writable_dir(&cfg.blob_path())?;
    }
    Ok(())
}

/// Creates `dir` if missing, then a file in it (removed at once): SQLite needs to create
/// its journal beside the database, and blobs are written to temporary files first.
fn writable_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| refuse(dir, &e))?;
    let probe = dir.join(format!(".berth-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| refuse(dir, &e))?;
    std::fs::remove_file(&probe)
        .with_context(|| format!("removing the write check {}", probe.display()))
}

fn refuse(path: &Path, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not writable ({e}): berth serve needs to write its data there; give the user \
         it runs as write access, or choose another place with --data-dir (BERTH_DATA_DIR)",
        path.display()
    )
}
