//! `berth fsck`: checks that the metadata store and blob storage agree.
//!
//! Findings: a blob recorded in metadata but missing from storage; a stored blob whose
//! bytes do not hash to its digest or whose size differs; a stored manifest whose bytes do
//! not hash to its digest; a file in blob storage that metadata does not know (an orphan).
//! It reads every blob once, so it costs a full read of storage: an operator's tool, not a
//! request path.

use berth_blob::BlobStore;
use berth_meta::MetaStore;
use berth_oci::{Digest, Digester};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Finding {
    MissingBlob {
        digest: String,
    },
    CorruptBlob {
        digest: String,
        actual: String,
    },
    SizeMismatch {
        digest: String,
        recorded: u64,
        stored: u64,
    },
    CorruptManifest {
        repository: String,
        digest: String,
    },
    OrphanBlob {
        digest: String,
        size: u64,
    },
    OrphanFile {
        key: String,
    },
}

async fn hash_blob(
    blobs: &dyn BlobStore,
    d: &Digest,
) -> Result<(Digest, u64), berth_blob::BlobError> {
    let read = blobs.get(d, None).await?;
    let mut stream = read.stream;
    let mut h = Digester::new(d.algorithm());
    while let Some(chunk) = stream.next().await {
        h.update(&chunk?);
    }
    let n = h.len();
    Ok((h.finish(), n))
}

/// Runs every check; returns whether the stores are consistent.
pub async fn run(
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    json: bool,
) -> anyhow::Result<bool> {
    let mut findings = vec![];
    let recorded: HashMap<Digest, u64> = meta.all_blobs().await?.into_iter().collect();
    let mut stored: HashMap<Digest, u64> = HashMap::new();
    let mut list = blobs.list();
    while let Some(item) = list.next().await {
        let (d, size) = item?;
        stored.insert(d, size);
    }
    for (d, &size) in &recorded {
        match stored.get(d) {
            None => findings.push(Finding::MissingBlob {
                digest: d.to_string(),
            }),
            Some(&s) if s != size => findings.push(Finding::SizeMismatch {
                digest: d.to_string(),
                recorded: size,
                stored: s,
            }),
            Some(_) => {}
        }
    }
    for (d, &size) in &stored {
        match hash_blob(blobs.as_ref(), d).await {
            Ok((actual, _)) if &actual != d => findings.push(Finding::CorruptBlob {
                digest: d.to_string(),
                actual: actual.to_string(),
            }),
            Ok(_) => {}
            Err(e) => anyhow::bail!("reading {d}: {e}"),
        }
        if !recorded.contains_key(d) {
            findings.push(Finding::OrphanBlob {
                digest: d.to_string(),
                size,
            });
        }
    }
    for (repo, m) in meta.all_manifests().await? {
        if Digest::of(m.digest.algorithm(), &m.bytes) != m.digest {
            findings.push(Finding::CorruptManifest {
                repository: repo.to_string(),
                digest: m.digest.to_string(),
            });
        }
    }
    let mut foreign = blobs.list_foreign();
    while let Some(k) = foreign.next().await {
        findings.push(Finding::OrphanFile { key: k? });
    }
    for f in &findings {
        if json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!("{f:?}");
        }
    }
    if !json {
        println!(
            "fsck: {} blobs recorded, {} stored, {} finding(s)",
            recorded.len(),
            stored.len(),
            findings.len()
        );
    }
    Ok(findings.is_empty())
}
