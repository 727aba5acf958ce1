//! The Notary routes through the real router over a real SQLite store. Tampered updates:
//! each refused with Notary's answer (status, code and the typed detail its clients print),
//! and the stored trust data unchanged, every role file and the changefeed; a valid update
//! after them all shows the refusals were not an accident of the set-up. The changefeed of
//! every repository, filtered by what the caller may pull.

use axum::http::StatusCode;
use berth_testkit::world::{Resp, World};
use berth_trust::metadata::{Root, Targets};
use berth_trust::testing::{delegate, sign, Repo, Signer};
use berth_trust::PublicKey;
use chrono::{Duration, Utc};

/// A GUN of the test router's registry (`registry.test`), for `acme/private-app`.
const GUN: &str = "registry.test/acme/private-app";

/// The body of a Notary update: one part per role, named by its `filename`.
fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "berth-tampering-boundary";
    let mut body = Vec::new();
    for (role, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"files\"; \
                 filename=\"{role}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

struct Client<'w> {
    w: &'w World,
    auth: Option<&'w str>,
}

impl Client<'_> {
    async fn post(&self, gun: &str, parts: &[(&str, &[u8])]) -> Resp {
        let (content_type, body) = multipart(parts);
        let uri = format!("/v2/{gun}/_trust/tuf/");
        let headers = [("content-type", content_type.as_str())];
        self.w.req("POST", &uri, self.auth, &headers, body).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.w
            .call("GET", &format!("/v2/{GUN}/_trust/{path}"), self.auth)
            .await
    }

    /// The server's key for `role` of `gun`, as a client asks for it before its first
    /// publish.
    async fn server_key_of(&self, gun: &str, role: &str) -> PublicKey {
        let uri = format!("/v2/{gun}/_trust/tuf/{role}.key");
        let r = self.w.call("GET", &uri, self.auth).await;
        assert_eq!(r.status, StatusCode::OK, "{role}.key: {r:?}");
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Everything a client can read of the GUN's trust data.
    async fn stored(&self) -> Vec<(String, StatusCode, Vec<u8>)> {
        let mut all = Vec::new();
        let roles = "root targets targets/releases snapshot timestamp";
        for role in roles.split(' ') {
            let r = self.get(&format!("tuf/{role}.json")).await;
            all.push((role.to_string(), r.status, r.body.to_vec()));
        }
        let r = self.get("changefeed?records=100").await;
        all.push(("changefeed".into(), r.status, r.body.to_vec()));
        all
    }
}

/// `root` with the server's snapshot and timestamp keys in place of the repository's.
fn with_server_keys(mut root: Root, snapshot: &PublicKey, timestamp: &PublicKey) -> Root {
    for (role, key) in [("snapshot", snapshot), ("timestamp", timestamp)] {
        let r = root.roles.get_mut(role).unwrap();
        for id in std::mem::replace(&mut r.keyids, vec![key.key_id()]) {
            root.keys.remove(&id);
        }
        root.keys.insert(key.key_id(), key.clone());
    }
    root
}

/// A root of `version` whose root role is every one of `keys`, at `threshold`.
fn root_of(base: &Root, version: i64, keys: &[&Signer], threshold: i64) -> Root {
    let mut root = base.clone();
    root.common.version = version;
    let old = std::mem::take(&mut root.roles.get_mut("root").unwrap().keyids);
    for id in old {
        root.keys.remove(&id);
    }
    for k in keys {
        root.keys.insert(k.id(), k.public.clone());
    }
    let role = root.roles.get_mut("root").unwrap();
    role.keyids = keys.iter().map(|k| k.id()).collect();
    role.threshold = threshold;
    root
}

fn targets(version: i64, tags: &[(&str, &[u8])], repo: &Repo) -> Targets {
    let mut t = repo.targets(version, tags);
    t.common.expires = Utc::now() + Duration::days(1095);
    t
}

#[tokio::test]
async fn tampered_updates_are_refused_and_change_nothing() {
    let w = World::new(crate::app).await;
    let c = Client {
        w: &w,
        auth: w.creds["read-write"].as_deref(),
    };
    // A repository signed as the docker CLI signs one: two root certificates at threshold
    // two, the client's targets with a delegation, the server's snapshot and timestamp.
    let repo = Repo::of(GUN);
    let second_root = Signer::cert(GUN);
    let releases = Signer::ecdsa();
    let snapshot = c.server_key_of(GUN, "snapshot").await;
    let timestamp = c.server_key_of(GUN, "timestamp").await;
    let base = with_server_keys(repo.root(1), &snapshot, &timestamp);
    let root = root_of(&base, 1, &[&repo.root, &second_root], 2);
    let mut top = targets(1, &[("v1", b"manifest one")], &repo);
    delegate(&mut top, "targets/releases", &releases, &["releases/"]);
    let rel = targets(1, &[("releases/1.0", b"manifest r")], &repo);
    let first = c
        .post(
            GUN,
            &[
                ("root", &sign(&root, &[&repo.root, &second_root])),
                ("targets", &sign(&top, &[&repo.targets])),
                ("targets/releases", &sign(&rel, &[&releases])),
            ],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let before = c.stored().await;
    assert!(
        before.iter().all(|(_, s, _)| *s == StatusCode::OK),
        "{before:?}"
    );

    let stranger = Signer::cert("registry.test/acme/other-app");
    let outsider = Signer::ecdsa();
    let mut outside = targets(2, &[], &repo);
    delegate(&mut outside, "targets/releases/qa", &outsider, &["other/"]);
    let mut modified: serde_json::Value =
        serde_json::from_slice(&sign(&targets(2, &[("v1", b"x")], &repo), &[&repo.targets]))
            .unwrap();
    modified["signed"]["targets"]["v1"]["length"] = 9.into();
    let modified = serde_json::to_vec(&modified).unwrap();
    let mut expired = targets(2, &[], &repo);
    expired.common.expires = Utc::now() - Duration::seconds(1);
    let mut top2 = targets(2, &[("v1", b"manifest one")], &repo);
    delegate(&mut top2, "targets/releases", &releases, &["releases/"]);
    let replayed = sign(&top, &[&repo.targets]);

    // What, the files posted, Notary's code and its detail's `Name` ("": none).
    type Case<'a> = (&'a str, Vec<(&'a str, Vec<u8>)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a root that lowers the threshold without the old keys",
            vec![(
                "root",
                sign(&root_of(&base, 2, &[&repo.root], 1), &[&repo.root]),
            )],
            "INVALID_UPDATE",
            "ErrBadRoot",
        ),
        (
            "a replayed older version",
            vec![("targets", replayed)],
            "VERSION",
            "",
        ),
        (
            "a targets file signed by an unknown key",
            vec![("targets", sign(&targets(2, &[], &repo), &[&outsider]))],
            "INVALID_UPDATE",
            "ErrBadTargets",
        ),
        (
            "a delegation that claims paths outside its parent",
            vec![("targets/releases", sign(&outside, &[&releases]))],
            "INVALID_UPDATE",
            "ErrBadTargets",
        ),
        (
            "a signature over modified bytes",
            vec![("targets", modified)],
            "INVALID_UPDATE",
            "ErrBadTargets",
        ),
        (
            "an expired role",
            vec![("targets", sign(&expired, &[&repo.targets]))],
            "INVALID_UPDATE",
            "ErrBadTargets",
        ),
        (
            "a root certificate whose CN names another GUN",
            vec![(
                "root",
                sign(
                    &root_of(&base, 2, &[&stranger], 1),
                    &[&repo.root, &second_root, &stranger],
                ),
            )],
            "INVALID_UPDATE",
            "ErrBadRoot",
        ),
    ];
    for (what, parts, code, name) in cases {
        let parts: Vec<(&str, &[u8])> = parts.iter().map(|(r, b)| (*r, b.as_slice())).collect();
        let r = c.post(GUN, &parts).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, code),
            "{what}: {r:?}"
        );
        if !name.is_empty() {
            let detail = &r.json()["errors"][0]["detail"];
            assert_eq!(detail["Name"], name, "{what}: {detail}");
        }
        assert_eq!(c.stored().await, before, "{what} changed the stored data");
    }

    // A GUN whose host is not this registry's is not found, even with valid files.
    let elsewhere = "elsewhere.example/acme/private-app";
    let r = c
        .post(elsewhere, &[("targets", &sign(&top2, &[&repo.targets]))])
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "METADATA_NOT_FOUND"),
        "{r:?}"
    );
    assert_eq!(c.stored().await, before);

    // The control: the valid next version is taken.
    let r = c
        .post(GUN, &[("targets", &sign(&top2, &[&repo.targets]))])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_ne!(c.stored().await, before);
}

/// `/v2/_trust/changefeed` lists the changes of every repository, each only to a caller
/// who may pull it: a user with no role sees the public repository's, a member both;
/// like `/v2/`, it asks anonymous callers to authenticate.
#[tokio::test]
async fn the_global_changefeed_shows_what_the_caller_may_pull() {
    let w = World::new(crate::app).await;
    let writer = w.creds["read-write"].as_deref();
    for repo in ["acme/public-app", "acme/private-app"] {
        let gun = format!("registry.test/{repo}");
        let c = Client {
            w: &w,
            auth: writer,
        };
        let r = Repo::of(&gun);
        let snapshot = c.server_key_of(&gun, "snapshot").await;
        let timestamp = c.server_key_of(&gun, "timestamp").await;
        let root = with_server_keys(r.root(1), &snapshot, &timestamp);
        let done = c
            .post(
                &gun,
                &[
                    ("root", &sign(&root, &[&r.root])),
                    ("targets", &sign(&targets(1, &[], &r), &[&r.targets])),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{repo}: {done:?}");
    }
    let feed = |who: &'static str| {
        let w = &w;
        async move {
            let r = w
                .req(
                    "GET",
                    "/v2/_trust/changefeed?records=10",
                    w.creds[who].as_deref(),
                    &[("host", "registry.test")],
                    axum::body::Body::empty(),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{who}: {r:?}");
            let body = r.json();
            let guns: Vec<String> = body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["GUN"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(body["count"], guns.len());
            guns
        }
    };
    let r = w.call("GET", "/v2/_trust/changefeed", None).await;
    r.assert_is(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(feed("no-role").await, ["registry.test/acme/public-app"]);
    assert_eq!(
        feed("read-write").await,
        [
            "registry.test/acme/public-app",
            "registry.test/acme/private-app"
        ]
    );
    let r = w.call("POST", "/v2/_trust/changefeed", writer).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{r:?}");
}
