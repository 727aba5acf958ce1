//! The GC invariant as a property (issue 4, must-show 2), over random sequences of push,
//! tag, untag, delete, mount and GC steps, some of them racing a GC run, on the real
//! SQLite metadata store and the in-memory blob store:
//!
//! - every manifest whose push was acknowledged and that is still tagged pulls
//!   completely, each blob with the right digest;
//! - whatever HEAD reports as existing can be read, with the right digest, and every live
//!   blob row has its bytes (a blob GC deleted is never reported as existing);
//! - after a GC with no grace and nothing running beside it, blob storage holds exactly
//!   the blobs the tagged manifests reference (the garbage is gone).

use berth_blob::memory::MemoryBlobStore;
use berth_blob::BlobStore;
use berth_core::gc::{self, GcMode, GcOptions};
use berth_core::{CoreError, Registry, RegistryConfig};
use berth_meta::prelude::*;
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const REPOS: [&str; 2] = ["model/a", "model/b"];
const TAGS: [&str; 3] = ["t0", "t1", "t2"];

fn content(i: u8) -> Bytes {
    Bytes::from(format!("blob content number {i}"))
}

#[derive(Debug, Clone)]
enum Op {
    /// Push an image of these layers (indices into the content pool) with this tag; a
    /// blob HEAD finds is not uploaded again (as Docker does), `mount` tries the other
    /// repository first.
    Push {
        repo: usize,
        tag: usize,
        config: u8,
        layers: Vec<u8>,
        mount: bool,
    },
    Untag {
        repo: usize,
        tag: usize,
    },
    /// Deletes the manifest a tag points at, by digest.
    Delete {
        repo: usize,
        tag: usize,
    },
    Mount {
        repo: usize,
        blob: u8,
    },
    Gc {
        no_grace: bool,
    },
    /// A push and a GC run at the same time.
    PushDuringGc {
        repo: usize,
        tag: usize,
        config: u8,
        layers: Vec<u8>,
        no_grace: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let push = (
        0..2usize,
        0..3usize,
        0..2u8,
        prop::collection::vec(2..7u8, 1..3),
        any::<bool>(),
    );
    prop_oneof![
        4 => push.clone().prop_map(|(repo, tag, config, layers, mount)| Op::Push { repo, tag, config, layers, mount }),
        2 => (0..2usize, 0..3usize).prop_map(|(repo, tag)| Op::Untag { repo, tag }),
        1 => (0..2usize, 0..3usize).prop_map(|(repo, tag)| Op::Delete { repo, tag }),
        1 => (0..2usize, 0..7u8).prop_map(|(repo, blob)| Op::Mount { repo, blob }),
        2 => any::<bool>().prop_map(|no_grace| Op::Gc { no_grace }),
        3 => push.prop_map(|(repo, tag, config, layers, no_grace)| Op::PushDuringGc { repo, tag, config, layers, no_grace }),
    ]
}

struct World {
    registry: Arc<Registry>,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    /// (repo, tag) -> (manifest digest, blobs it references), for acknowledged pushes.
    tagged: BTreeMap<(usize, usize), (Digest, Vec<Digest>)>,
}

fn repo(i: usize) -> RepoName {
    RepoName::parse(REPOS[i]).expect("name")
}

fn tag(i: usize) -> Tag {
    Tag::parse(TAGS[i]).expect("tag")
}

fn gc_options(no_grace: bool) -> GcOptions {
    GcOptions {
        grace: if no_grace {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        mode: GcMode::Online,
        holder: "model".into(),
        read_only_settle: Duration::ZERO,
        batch: 5,
        ..GcOptions::default()
    }
}

/// Pushes an image; the manifest digest and its blobs if the push was acknowledged.
async fn push(
    registry: &Registry,
    r: usize,
    t: usize,
    config: u8,
    layers: &[u8],
    mount: bool,
) -> Result<(Digest, Vec<Digest>), CoreError> {
    let name = repo(r);
    let mut descs = Vec::new();
    let mut all = Vec::new();
    for (i, &c) in std::iter::once(&config).chain(layers).enumerate() {
        let bytes = content(c);
        let d = Digest::sha256_of(&bytes);
        let mut have = registry.blob_head(&name, &d).await.is_ok();
        if !have && mount {
            have = registry
                .mount(&name, Some(&repo(1 - r)), &d)
                .await?
                .is_some();
        }
        if !have {
            let body = futures::stream::once(async move { Ok(bytes) }).boxed();
            registry.upload_monolithic(&name, &d, body, None).await?;
        }
        let media = if i == 0 {
            "application/vnd.oci.image.config.v1+json"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        descs.push(format!(
            r#"{{"mediaType":"{media}","digest":"{d}","size":{}}}"#,
            content(c).len()
        ));
        all.push(d);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        descs[0],
        descs[1..].join(",")
    );
    let put = registry
        .manifest_put(
            &name,
            &Reference::Tag(tag(t)),
            Some("application/vnd.oci.image.manifest.v1+json"),
            Bytes::from(manifest),
        )
        .await?;
    all.sort();
    all.dedup();
    Ok((put.digest, all))
}

async fn read_all(registry: &Registry, r: &RepoName, d: &Digest) -> Result<Digest, String> {
    let body = registry
        .blob_get(r, d, None)
        .await
        .map_err(|e| format!("GET {r}@{d}: {e}"))?;
    let mut s = body.stream;
    let mut h = berth_oci::Digester::new(d.algorithm());
    while let Some(chunk) = s.next().await {
        h.update(&chunk.map_err(|e| format!("reading {d}: {e}"))?);
    }
    Ok(h.finish())
}

impl World {
    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Push {
                repo: r,
                tag: t,
                config,
                layers,
                mount,
            } => {
                if let Ok(ack) = push(&self.registry, *r, *t, *config, layers, *mount).await {
                    self.tagged.insert((*r, *t), ack);
                }
            }
            Op::Untag { repo: r, tag: t } => {
                let _ = self
                    .registry
                    .manifest_delete(&repo(*r), &Reference::Tag(tag(*t)))
                    .await;
                self.tagged.remove(&(*r, *t));
            }
            Op::Delete { repo: r, tag: t } => {
                if let Some((d, _)) = self.tagged.get(&(*r, *t)).cloned() {
                    let _ = self
                        .registry
                        .manifest_delete(&repo(*r), &Reference::Digest(d.clone()))
                        .await;
                    self.tagged
                        .retain(|(rr, _), (m, _)| !(*rr == *r && *m == d));
                }
            }
            Op::Mount { repo: r, blob } => {
                let d = Digest::sha256_of(&content(*blob));
                let _ = self.registry.mount(&repo(*r), Some(&repo(1 - r)), &d).await;
            }
            Op::Gc { no_grace } => {
                // Claims made in this very millisecond are younger than "now".
                tokio::time::sleep(Duration::from_millis(3)).await;
                let out = gc::run(
                    self.meta.clone(),
                    self.blobs.clone(),
                    &gc_options(*no_grace),
                )
                .await
                .expect("gc");
                assert_eq!(out.run.status, "finished", "{:?}", out.run.errors);
                if *no_grace {
                    self.check_no_garbage().await;
                }
            }
            Op::PushDuringGc {
                repo: r,
                tag: t,
                config,
                layers,
                no_grace,
            } => {
                let opts = gc_options(*no_grace);
                let (pushed, collected) = tokio::join!(
                    push(&self.registry, *r, *t, *config, layers, false),
                    gc::run(self.meta.clone(), self.blobs.clone(), &opts)
                );
                collected.expect("gc");
                if let Ok(ack) = pushed {
                    self.tagged.insert((*r, *t), ack);
                }
            }
        }
    }

    /// The invariant.
    async fn check(&self) {
        for ((r, t), (m, blobs)) in &self.tagged {
            let name = repo(*r);
            let got = self
                .registry
                .manifest_get(&name, &Reference::Tag(tag(*t)), &[])
                .await
                .unwrap_or_else(|e| panic!("acknowledged {name}:{} lost: {e}", TAGS[*t]));
            assert_eq!(&got.digest, m);
            for d in blobs {
                let actual = read_all(&self.registry, &name, d)
                    .await
                    .unwrap_or_else(|e| panic!("blob of acknowledged {name}:{}: {e}", TAGS[*t]));
                assert_eq!(&actual, d);
            }
        }
        for r in 0..2 {
            for c in 0..7u8 {
                let d = Digest::sha256_of(&content(c));
                if self.registry.blob_head(&repo(r), &d).await.is_ok() {
                    let actual = read_all(&self.registry, &repo(r), &d)
                        .await
                        .unwrap_or_else(|e| panic!("HEAD said {d} exists: {e}"));
                    assert_eq!(actual, d);
                }
            }
        }
        for (d, _) in self.meta.all_blobs().await.expect("all blobs") {
            assert!(
                self.blobs.stat(&d).await.expect("stat").is_some(),
                "live row {d} without bytes"
            );
        }
    }

    /// After a GC without grace and with nothing beside it: storage holds exactly what
    /// tagged manifests reference.
    async fn check_no_garbage(&self) {
        let wanted: BTreeSet<Digest> = self
            .tagged
            .values()
            .flat_map(|(_, b)| b.iter().cloned())
            .collect();
        let mut stored = BTreeSet::new();
        let mut list = self.blobs.list();
        while let Some(item) = list.next().await {
            stored.insert(item.expect("list").0);
        }
        assert_eq!(stored, wanted, "storage after a GC without grace");
    }
}

fn check_sequence(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let meta = crate::sqlite_meta(dir.path()).await;
        let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
        let registry = Arc::new(Registry::new(
            meta.clone(),
            blobs.clone(),
            RegistryConfig::default(),
        ));
        registry.set_link_claim_refresh(Duration::from_secs(1800));
        let mut world = World {
            registry,
            meta,
            blobs,
            tagged: BTreeMap::new(),
        };
        for op in &ops {
            world.apply(op).await;
            world.check().await;
        }
        world.apply(&Op::Gc { no_grace: true }).await;
        world.check().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn gc_never_deletes_what_is_referenced(ops in prop::collection::vec(op(), 1..24)) {
        check_sequence(ops);
    }
}
