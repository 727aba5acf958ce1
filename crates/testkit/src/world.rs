//! A world for access-control tests: the real router over a real SQLite store and
//! filesystem blob store, with an organisation `acme` holding a public and a private
//! repository, teams with each role, and a caller of every kind (see the http crate's
//! `tests/v2_matrix.tsv`). The kit does not depend on `berth-http` (whose tests use it):
//! the test names the router to put over the registry ([`App`]).

use crate::wire::{basic_auth, OCI_MANIFEST};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_auth::password::{hash_password, PasswordParams};
use berth_auth::rbac::{Restriction, RestrictionEntry, RestrictionTarget, Role, Visibility};
use berth_blob::fs::FsBlobStore;
use berth_core::{Access, AccessConfig, Caller, Kek, Registry, RegistryConfig};
use berth_meta::identity::{NewUser, OrgSettings, Origin};
use berth_meta::prelude::*;
use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::{Digest, RepoName};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// The router a test puts over a registry and its access service (the http crate's
/// `router` with its state).
pub type App = fn(Arc<Registry>, Arc<Access>) -> axum::Router;

/// The password of every person in the world.
pub const PASSWORD: &str = "correct horse battery staple";

/// A finished in-process exchange, read whole.
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

/// The status and the body as text: what a failed assertion should show.
impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl Resp {
    /// A header's value, `""` when it is absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON; fails the test when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.status, self.body))
    }

    /// Fails the test unless the answer is `status` with the OCI error `code` (as
    /// [`Resp::code`] gives it).
    #[track_caller]
    pub fn assert_is(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "body: {:?}",
            self.body
        );
    }

    /// The code of the body's first OCI error: `-` for a success or an empty body (a HEAD),
    /// `?` for an error body that names none; fails the test when an error body is not JSON.
    pub fn code(&self) -> String {
        if self.status.is_success() || self.body.is_empty() {
            return "-".into();
        }
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }
}

/// A request with an optional `Authorization` header and other headers.
pub fn request(
    method: &str,
    uri: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

/// Creates an active local account (a service account has no password), as `berth admin`
/// would, and returns its id.
pub async fn local_account(
    id: &dyn IdentityStore,
    name: &str,
    password_phc: Option<String>,
    is_system_admin: bool,
    is_service_account: bool,
) -> berth_meta::identity::AccountId {
    id.user_create(&NewUser {
        name: name.into(),
        full_name: String::new(),
        email: None,
        password: password_phc,
        origin: Origin::Local,
        active: true,
        is_system_admin,
        is_service_account,
        claim_namespace: false,
    })
    .await
    .unwrap()
    .id
}

/// Sends `request` through `router` and reads the whole answer.
pub async fn send(router: &axum::Router, request: Request<Body>) -> Resp {
    let resp = router.clone().oneshot(request).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// The registry in process with its accounts, behind the router a test chose.
pub struct World {
    pub router: axum::Router,
    pub access: Arc<Access>,
    pub meta: Arc<SqliteMetaStore>,
    /// The key-encryption key the token signing keys are sealed with.
    pub kek: Kek,
    /// Authorization header value of each subject (`None`: anonymous).
    pub creds: BTreeMap<&'static str, Option<String>>,
    _dir: tempfile::TempDir,
}

/// A token restriction to the repositories matching `pattern`, with at most `max_role`.
pub fn repositories_only(pattern: &str, max_role: Role) -> Restriction {
    Restriction {
        entries: vec![RestrictionEntry {
            target: RestrictionTarget::Repository(pattern.into()),
            max_role,
        }],
    }
}

/// The acme repository of a visibility in the matrices (`public`, `private`,
/// `ownerless`).
pub fn repo_of(vis: &str) -> &'static str {
    match vis {
        "public" => "acme/public-app",
        "private" => "acme/private-app",
        // Pushed by the system administrator where no account exists (issue 10).
        "ownerless" => "library/base",
        other => panic!("unknown visibility {other}"),
    }
}

/// The secret of a new access token of `user` restricted to the repositories matching
/// `pattern`, with at most `max_role`.
pub async fn restricted_token(
    access: &Access,
    user: berth_meta::identity::AccountId,
    description: &str,
    pattern: &str,
    max_role: Role,
) -> String {
    access
        .create_access_token(
            &Caller::anonymous(None),
            user,
            description,
            None,
            Some(repositories_only(pattern, max_role)),
        )
        .await
        .unwrap()
        .token
}

/// The secret of the matrices' `reduced-token` subject: an access token of `owner`
/// restricted to read-only on acme/*.
pub async fn reduced_token(access: &Access, owner: berth_meta::identity::AccountId) -> String {
    restricted_token(access, owner, "reduced", "acme/*", Role::ReadOnly).await
}

/// Creates the organisation `acme`, owned by `owner`.
pub async fn create_acme(id: &dyn IdentityStore, owner: berth_meta::identity::AccountId) {
    id.org_create("acme", "Acme", &OrgSettings::default(), false)
        .await
        .unwrap();
    id.org_member_set("acme", owner, true).await.unwrap();
}

/// Creates acme's public and private repositories ([`repo_of`]).
pub async fn create_acme_repositories(id: &dyn IdentityStore) {
    for (vis, v) in [
        ("public", Visibility::Public),
        ("private", Visibility::Private),
    ] {
        id.repo_create(&RepoName::parse(repo_of(vis)).unwrap(), None, Some(v))
            .await
            .unwrap();
    }
}

/// The `Authorization` header of the matrices' `restricted-bearer` subject: the system
/// administrator `root`'s access token restricted to read-write on ci/*, exchanged for a
/// bearer token for both acme repositories and the catalog (the token service's own path,
/// minus HTTP).
pub async fn restricted_bearer(access: &Access, root: berth_meta::identity::AccountId) -> String {
    let ci_only = restricted_token(access, root, "ci only", "ci/*", Role::ReadWrite).await;
    let caller = access.login("root", &ci_only, None).await.unwrap();
    let scopes = berth_auth::scope::parse_scopes(&[
        "repository:acme/public-app:pull,push,delete",
        "repository:acme/private-app:pull,push,delete",
        "registry:catalog:*",
    ])
    .unwrap();
    let issued = access
        .issue(&caller, Some("berth"), &scopes, false)
        .await
        .unwrap();
    format!("Bearer {}", issued.token)
}

impl World {
    /// The world with rate limits out of the way (the matrices' expired and revoked
    /// tokens fail on every cell).
    pub async fn new(app: App) -> World {
        Self::with(
            app,
            AccessConfig {
                // The expired and revoked tokens fail on every cell; the rate limit has
                // its own test.
                login_failures_per_account: 100_000,
                login_failures_per_source: 100_000,
                ..AccessConfig::default()
            },
        )
        .await
    }

    /// The world with the access service configured as `cfg`.
    pub async fn with(app: App, cfg: AccessConfig) -> World {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(
            SqliteMetaStore::open(&dir.path().join("m.db"))
                .await
                .unwrap(),
        );
        let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
        let registry = Arc::new(Registry::new(
            meta.clone(),
            blobs,
            RegistryConfig::default(),
        ));
        let kek = Kek::generate();
        let access = Arc::new(
            Access::new(meta.clone(), None, cfg, kek.clone())
                .await
                .unwrap(),
        );
        let id: &dyn IdentityStore = meta.as_ref();
        let phc = hash_password(
            PASSWORD.as_bytes(),
            &PasswordParams::insecure_fast_for_tests(),
        )
        .unwrap();
        let mut users = BTreeMap::new();
        for (name, admin) in [
            ("nobody", false),
            ("reader", false),
            ("writer", false),
            ("repoadmin", false),
            ("owner", false),
            ("root", true),
            ("tokenuser", false),
        ] {
            users.insert(
                name,
                local_account(id, name, Some(phc.clone()), admin, false).await,
            );
        }
        create_acme(id, users["owner"]).await;
        create_acme_repositories(id).await;
        for (team, member, role) in [
            ("readers", "reader", Role::ReadOnly),
            ("writers", "writer", Role::ReadWrite),
            ("writers", "tokenuser", Role::ReadWrite),
            ("admins", "repoadmin", Role::Admin),
        ] {
            if id.team_get("acme", team).await.unwrap().is_none() {
                id.team_create("acme", team, None).await.unwrap();
                for vis in ["public", "private"] {
                    id.grant_repo_set("acme", team, &RepoName::parse(repo_of(vis)).unwrap(), role)
                        .await
                        .unwrap();
                }
            }
            id.team_member_add("acme", team, users[member])
                .await
                .unwrap();
        }
        let actor = Caller::anonymous(None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let expired = access
            .create_access_token(
                &actor,
                users["tokenuser"],
                "expired",
                Some(now - 1000),
                None,
            )
            .await
            .unwrap();
        let revoked = access
            .create_access_token(&actor, users["tokenuser"], "revoked", None, None)
            .await
            .unwrap();
        id.token_revoke(&revoked.record.id).await.unwrap();
        let reduced = reduced_token(&access, users["owner"]).await;
        let mut creds = BTreeMap::new();
        creds.insert("anonymous", None);
        creds.insert("no-role", Some(basic_auth("nobody", PASSWORD)));
        creds.insert("read-only", Some(basic_auth("reader", PASSWORD)));
        creds.insert("read-write", Some(basic_auth("writer", PASSWORD)));
        creds.insert("admin", Some(basic_auth("repoadmin", PASSWORD)));
        creds.insert("org-owner", Some(basic_auth("owner", PASSWORD)));
        creds.insert("sysadmin", Some(basic_auth("root", PASSWORD)));
        creds.insert(
            "expired-token",
            Some(basic_auth("tokenuser", &expired.token)),
        );
        creds.insert(
            "revoked-token",
            Some(basic_auth("tokenuser", &revoked.token)),
        );
        creds.insert("reduced-token", Some(basic_auth("owner", &reduced)));
        creds.insert(
            "restricted-bearer",
            Some(restricted_bearer(&access, users["root"]).await),
        );
        World {
            router: app(registry, access.clone()),
            access,
            meta,
            kek,
            creds,
            _dir: dir,
        }
    }

    /// A request through the router, with `auth` as its `Authorization` header.
    pub async fn req(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        send(&self.router, request(method, uri, auth, headers, body)).await
    }

    /// A request with no other header than `auth` and no body.
    pub async fn call(&self, method: &str, uri: &str, auth: Option<&str>) -> Resp {
        self.req(method, uri, auth, &[], Body::empty()).await
    }

    /// The system administrator's `Authorization` header.
    pub fn root(&self) -> Option<&str> {
        self.creds["sysadmin"].as_deref()
    }

    /// Pushes `data` as a blob of `repo`, as the system administrator; its digest.
    pub async fn blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                self.root(),
                &[("content-length", &data.len().to_string())],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "setup blob: {:?}", r.body);
        d
    }

    /// A manifest whose blobs are in `repo`, tagged `tag` when given.
    pub async fn manifest(&self, repo: &str, tag: Option<&str>, salt: &str) -> (Digest, Vec<u8>) {
        let cfg = self.blob(repo, b"{}").await;
        let layer = format!("layer {salt}");
        let l = self.blob(repo, layer.as_bytes()).await;
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.as_str(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.as_str(), "size": layer.len()}],
        }))
        .unwrap();
        let d = Digest::sha256_of(&m);
        if let Some(tag) = tag {
            let r = self
                .req(
                    "PUT",
                    &format!("/v2/{repo}/manifests/{tag}"),
                    self.root(),
                    &[("content-type", OCI_MANIFEST)],
                    m.clone(),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::CREATED,
                "setup manifest: {:?}",
                r.body
            );
        }
        (d, m)
    }

    /// Opens an upload session in `repo` as the system administrator; its id.
    pub async fn upload(&self, repo: &str) -> String {
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                self.root(),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "setup upload");
        r.headers["location"]
            .to_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    }
}
