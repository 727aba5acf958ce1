//! cosign and Notation signatures as `core` records them, on the real SQLite store and
//! the memory blob store: a signature pushed before its key is registered counts once the
//! `signature-reverify` job has verified it again (as after a replica died between
//! registering a key and verifying), for the key's owner; a key removed stops counting at
//! once; a manifest that is no signature records nothing.

use berth_blob::memory::MemoryBlobStore;
use berth_core::signatures::reverify_job;
use berth_core::{Registry, RegistryConfig};
use berth_meta::identity::{NewUser, Origin};
use berth_meta::prelude::*;
use berth_meta::{RegisteredKey, SqliteMetaStore};
use berth_oci::{Digest, Reference, RepoName};
use berth_trust::testing::{self as signer, ArtifactKey};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;

async fn push_blob(reg: &Registry, repo: &RepoName, b: &[u8]) -> Digest {
    let d = Digest::sha256_of(b);
    let body = futures::stream::once({
        let b = Bytes::copy_from_slice(b);
        async move { Ok(b) }
    })
    .boxed();
    reg.upload_monolithic(repo, &d, body, Some(b.len() as u64))
        .await
        .expect("blob");
    d
}

async fn push_manifest(reg: &Registry, repo: &RepoName, reference: &str, bytes: &[u8]) -> Digest {
    let r = Reference::parse(reference).expect("reference");
    let put = reg
        .manifest_put(repo, &r, None, Bytes::copy_from_slice(bytes))
        .await
        .expect("manifest");
    put.digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_count_once_verified_against_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .expect("open"),
    );
    let meta: Arc<dyn MetaStore> = store.clone();
    let reg = Arc::new(Registry::new(
        meta.clone(),
        Arc::new(MemoryBlobStore::new()),
        RegistryConfig::default(),
    ));
    let repo = RepoName::parse("acme/app").unwrap();
    let config = push_blob(&reg, &repo, b"{}").await;
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let subject = push_manifest(&reg, &repo, "v1", image.as_bytes()).await;
    let key = ArtifactKey::new();
    let sig = signer::cosign_bundle(
        (
            "application/vnd.oci.image.manifest.v1+json",
            subject.as_str(),
            image.len() as u64,
        ),
        &key,
    );
    for b in &sig.blobs {
        push_blob(&reg, &repo, b).await;
    }
    let sig_digest = Digest::sha256_of(&sig.manifest);
    let put = reg
        .manifest_put(
            &repo,
            &Reference::Digest(sig_digest.clone()),
            Some(&sig.media_type),
            Bytes::from(sig.manifest.clone()),
        )
        .await
        .expect("signature");
    assert!(put.signature, "a signature is recorded");
    let counted = || meta.signatures_counted("acme/app", subject.as_str());
    assert!(
        counted().await.unwrap().is_empty(),
        "no key verifies it yet"
    );
    let facts = meta.facts_of("acme/app", subject.as_str()).await.unwrap();
    assert_eq!(facts.len(), 1);
    assert!(
        !facts[0].0.valid && facts[0].0.reason.contains("no registered key"),
        "{facts:?}"
    );

    // The key registered by a replica that died before verifying again: the job does it.
    let alice = store
        .user_create(&NewUser {
            name: "alice".into(),
            full_name: String::new(),
            email: None,
            password: None,
            origin: Origin::Local,
            active: true,
            is_system_admin: false,
            is_service_account: false,
            claim_namespace: false,
        })
        .await
        .unwrap()
        .id;
    let trusted = berth_trust::artifacts::TrustedKey::from_pem(&key.public_pem()).unwrap();
    meta.key_add(&RegisteredKey {
        id: trusted.id.clone(),
        account: alice,
        kind: "public-key".into(),
        name: "alice".into(),
        pem: key.public_pem(),
        created_at: 0,
    })
    .await
    .unwrap();
    assert!(
        counted().await.unwrap().is_empty(),
        "not verified again yet"
    );
    reverify_job(reg.clone()).run_once().await;
    let now = counted().await.unwrap();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!((now[0].format.as_str(), now[0].account), ("cosign", alice));
    assert_eq!(now[0].key_id, trusted.id);
    assert!(meta
        .facts_stale(meta.keys_revision().await.unwrap(), 10)
        .await
        .unwrap()
        .is_empty());

    // Removed, the key stops counting at once.
    assert!(reg.signing_key_delete(alice, &trusted.id).await.unwrap());
    assert!(counted().await.unwrap().is_empty());

    // An SBOM referrer is no signature: nothing recorded.
    let sbom = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/spdx+json","digest":"{config}","size":2}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":{}}}}}"#,
        image.len()
    );
    let d = Digest::sha256_of(sbom.as_bytes());
    let put = reg
        .manifest_put(&repo, &Reference::Digest(d), None, Bytes::from(sbom))
        .await
        .unwrap();
    assert!(!put.signature);
}
