//! The registered-key and signature-fact cases ([`SignatureStore`](crate::SignatureStore)),
//! run with the identity cases: keys belong to accounts.

use super::identity::user;
use super::FullStore;
use super::{blob, image, push, referrer, repo, Store};
use crate::{RegisteredKey, SignatureFact, StaleSignature};

fn key(id: &str, account: i64) -> RegisteredKey {
    RegisteredKey {
        id: id.to_string(),
        account,
        kind: "public-key".into(),
        name: format!("{id} key"),
        pem: "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n".into(),
        created_at: 0,
    }
}

fn fact(signature: &str, subject: &str, key_id: &str, via_tag: &str) -> SignatureFact {
    SignatureFact {
        signature: signature.to_string(),
        layer: 0,
        key_id: key_id.to_string(),
        subject: subject.to_string(),
        format: "cosign".into(),
        via_tag: via_tag.to_string(),
        valid: !key_id.is_empty(),
        reason: if key_id.is_empty() {
            "no registered key verifies the signature".into()
        } else {
            String::new()
        },
        expires_at: 0,
    }
}

/// Keys are registered once, listed by owner, removed by their owner only, and go with
/// their account; facts count while their key is registered and their cosign tag points
/// at them, go with their manifest, are never replaced by older verifications, and are
/// found stale when the keys change; every change moves the policy revision on.
pub async fn registered_keys_and_signature_facts(store: FullStore) {
    let meta: Store = store.clone();
    let alice = user(&store, "alice").await.id;
    let bob = user(&store, "bob").await.id;
    let r0 = store.policy_revision().await.unwrap();
    let k0 = store.keys_revision().await.unwrap();
    store.key_add(&key("aa", alice)).await.unwrap();
    store.key_add(&key("bb", bob)).await.unwrap();
    let again = store.key_add(&key("aa", bob)).await;
    assert!(
        matches!(again, Err(crate::MetaError::Conflict(_))),
        "{again:?}"
    );
    let k1 = store.keys_revision().await.unwrap();
    assert_eq!(k1, k0 + 2);
    assert!(store.policy_revision().await.unwrap() >= r0 + 2);
    let mine = store.keys(Some(alice), 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].id.as_str(), mine[0].account), ("aa", alice));
    assert!(mine[0].created_at > 0);
    assert_eq!(store.keys(None, 10).await.unwrap().len(), 2);
    assert_eq!(store.keys(None, 1).await.unwrap().len(), 1);
    assert!(!store.key_delete(bob, "aa").await.unwrap(), "not bob's key");

    // An image, a referrer signing it and a cosign tag signing it.
    let r = repo("acme/app");
    let img = image(&blob("c"), &[blob("l")], "img");
    push(&meta, &r, &img, Some("v1")).await;
    let subject = img.digest.to_string();
    let by_ref = referrer(
        &img.digest,
        "application/vnd.cncf.notary.signature",
        &blob("e"),
        "n",
    );
    push(&meta, &r, &by_ref, None).await;
    let sig_tag = format!("sha256-{}.sig", img.digest.hex());
    let by_tag = image(&blob("c2"), &[blob("p")], "sig");
    push(&meta, &r, &by_tag, Some(&sig_tag)).await;
    let (ref_d, tag_d) = (by_ref.digest.to_string(), by_tag.digest.to_string());

    let r1 = store.policy_revision().await.unwrap();
    let notation = SignatureFact {
        format: "notation".into(),
        ..fact(&ref_d, &subject, "aa", "")
    };
    store
        .facts_put("acme/app", &ref_d, "", std::slice::from_ref(&notation), k1)
        .await
        .unwrap();
    let cosign = [
        fact(&tag_d, &subject, "bb", &sig_tag),
        fact(&tag_d, &subject, "", &sig_tag),
    ];
    store
        .facts_put("acme/app", &tag_d, &sig_tag, &cosign, k1)
        .await
        .unwrap();
    assert!(store.policy_revision().await.unwrap() > r1);
    assert_eq!(
        counted(&store, &subject).await,
        [
            ("cosign".into(), "bb".into(), bob),
            ("notation".into(), "aa".into(), alice)
        ]
    );
    assert_eq!(store.facts_of("acme/app", &subject).await.unwrap().len(), 3);
    assert!(store
        .facts_of("acme/other", &subject)
        .await
        .unwrap()
        .is_empty());

    // Facts verified against older keys never replace newer ones; a missing manifest
    // takes no facts.
    store
        .facts_put("acme/app", &ref_d, "", &[], k0)
        .await
        .unwrap();
    assert_eq!(store.facts_of("acme/app", &subject).await.unwrap().len(), 3);
    let ghost = blob("ghost").to_string();
    store
        .facts_put(
            "acme/app",
            &ghost,
            "",
            &[fact(&ghost, &subject, "aa", "")],
            k1,
        )
        .await
        .unwrap();
    assert_eq!(store.facts_of("acme/app", &subject).await.unwrap().len(), 3);

    // The cosign tag moved away: its signature no longer counts.
    push(
        &meta,
        &r,
        &image(&blob("c3"), &[blob("q")], "other"),
        Some(&sig_tag),
    )
    .await;
    assert_eq!(
        counted(&store, &subject).await,
        [("notation".into(), "aa".into(), alice)]
    );

    // Keys changed: every fact verified before is stale, until verified again.
    assert!(store.facts_stale(k1, 10).await.unwrap().is_empty());
    let r2 = store.policy_revision().await.unwrap();
    assert!(store.key_delete(alice, "aa").await.unwrap());
    assert!(store.policy_revision().await.unwrap() > r2);
    assert!(
        counted(&store, &subject).await.is_empty(),
        "the key is gone"
    );
    let k2 = store.keys_revision().await.unwrap();
    let mut expected = vec![
        StaleSignature {
            repo: "acme/app".into(),
            signature: ref_d.clone(),
            via_tag: String::new(),
        },
        StaleSignature {
            repo: "acme/app".into(),
            signature: tag_d.clone(),
            via_tag: sig_tag.clone(),
        },
    ];
    expected.sort_by(|a, b| a.signature.cmp(&b.signature));
    assert_eq!(store.facts_stale(k2, 10).await.unwrap(), expected);
    store
        .facts_put(
            "acme/app",
            &ref_d,
            "",
            &[fact(&ref_d, &subject, "", "")],
            k2,
        )
        .await
        .unwrap();
    assert_eq!(store.facts_stale(k2, 10).await.unwrap().len(), 1);

    // The signature manifest deleted takes its facts along; the account deleted takes
    // its keys.
    let r3 = store.policy_revision().await.unwrap();
    assert!(meta.manifest_delete(&r, &by_ref.digest).await.unwrap());
    assert!(store.policy_revision().await.unwrap() > r3);
    assert_eq!(store.facts_of("acme/app", &subject).await.unwrap().len(), 2);
    // The same manifest under another cosign tag claims another subject: verified apart.
    let (other_subject, other_tag) = (blob("x"), format!("sha256-{}.sig", blob("x").hex()));
    let other = fact(&tag_d, other_subject.as_str(), "bb", &other_tag);
    store
        .facts_put("acme/app", &tag_d, &other_tag, &[other], k2)
        .await
        .unwrap();
    assert_eq!(store.facts_of("acme/app", &subject).await.unwrap().len(), 2);
    assert_eq!(
        store
            .facts_of("acme/app", other_subject.as_str())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.user_delete(bob).await.unwrap());
    assert!(store.keys(None, 10).await.unwrap().is_empty());
}

/// The (format, key, account) of the signatures of `subject` in acme/app that count, sorted.
async fn counted(store: &FullStore, subject: &str) -> Vec<(String, String, i64)> {
    let mut v: Vec<(String, String, i64)> = store
        .signatures_counted("acme/app", subject)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.format, c.key_id, c.account))
        .collect();
    v.sort();
    v
}
