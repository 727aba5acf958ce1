//! The authorization matrix of `/v2`: every endpoint x every kind of caller x a public and a
//! private repository, against the expected results in `v2_matrix.tsv` (data a person can
//! read and review). Real router, real core, real SQLite store and filesystem blob store in
//! a temporary directory; every request carries its credentials as a client would.
//!
//! Each cell first prepares what the endpoint needs as the system administrator (a
//! manifest to get or delete, an upload to continue, a blob to delete), so an allowed
//! request really succeeds and a refused one really had something to refuse.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use berth_auth::password::{hash_password, PasswordParams};
use berth_auth::rbac::{Restriction, RestrictionEntry, RestrictionTarget, Role, Visibility};
use berth_blob::fs::FsBlobStore;
use berth_core::{Access, AccessConfig, Caller, Registry, RegistryConfig};
use berth_http::{router, server::Counters, AppState, ReplicaInfo};
use berth_meta::identity::{NewUser, OrgSettings, Origin};
use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::IdentityStore;
use berth_oci::{Digest, RepoName};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Resp {
    fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| "-".into())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

struct World {
    router: axum::Router,
    /// Authorization header value of each subject (`None`: anonymous).
    creds: BTreeMap<&'static str, Option<String>>,
    _dir: tempfile::TempDir,
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn repo_of(vis: &str) -> &'static str {
    match vis {
        "public" => "acme/public-app",
        "private" => "acme/private-app",
        other => panic!("unknown visibility {other}"),
    }
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(
            SqliteMetaStore::open(&dir.path().join("m.db"))
                .await
                .unwrap(),
        );
        let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
        let reg = Registry::new(meta.clone(), blobs, RegistryConfig::default());
        let access = Arc::new(
            Access::new(
                meta.clone(),
                None,
                AccessConfig {
                    // The expired and revoked tokens fail on every cell; the rate limit has
                    // its own test.
                    login_failures_per_account: 100_000,
                    login_failures_per_source: 100_000,
                    ..AccessConfig::default()
                },
            )
            .await
            .unwrap(),
        );
        let state = AppState {
            registry: Arc::new(reg),
            access: access.clone(),
            realm: None,
            replica: Arc::new(ReplicaInfo {
                id: "test".into(),
                version: "0",
                started: Instant::now(),
                started_at: 0,
            }),
            counters: Arc::new(Counters::default()),
        };
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
            let u = id
                .user_create(&NewUser {
                    name: name.into(),
                    full_name: String::new(),
                    email: None,
                    password: Some(phc.clone()),
                    origin: Origin::Local,
                    active: true,
                    is_system_admin: admin,
                    is_service_account: false,
                })
                .await
                .unwrap();
            users.insert(name, u.id);
        }
        id.org_create("acme", "Acme", &OrgSettings::default())
            .await
            .unwrap();
        id.org_member_set("acme", users["owner"], true)
            .await
            .unwrap();
        for vis in ["public", "private"] {
            let v = if vis == "public" {
                Visibility::Public
            } else {
                Visibility::Private
            };
            id.repo_create(&RepoName::parse(repo_of(vis)).unwrap(), None, Some(v))
                .await
                .unwrap();
        }
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
            .create_access_token(&actor, users["tokenuser"], "expired", Some(now - 1000), None)
            .await
            .unwrap();
        let revoked = access
            .create_access_token(&actor, users["tokenuser"], "revoked", None, None)
            .await
            .unwrap();
        id.token_revoke(&revoked.record.id).await.unwrap();
        let reduced = access
            .create_access_token(
                &actor,
                users["owner"],
                "reduced",
                None,
                Some(Restriction {
                    entries: vec![RestrictionEntry {
                        target: RestrictionTarget::Repository("acme/*".into()),
                        max_role: Role::ReadOnly,
                    }],
                }),
            )
            .await
            .unwrap();
        let mut creds = BTreeMap::new();
        creds.insert("anonymous", None);
        creds.insert("no-role", Some(basic("nobody", PASSWORD)));
        creds.insert("read-only", Some(basic("reader", PASSWORD)));
        creds.insert("read-write", Some(basic("writer", PASSWORD)));
        creds.insert("admin", Some(basic("repoadmin", PASSWORD)));
        creds.insert("org-owner", Some(basic("owner", PASSWORD)));
        creds.insert("sysadmin", Some(basic("root", PASSWORD)));
        creds.insert("expired-token", Some(basic("tokenuser", &expired.token)));
        creds.insert("revoked-token", Some(basic("tokenuser", &revoked.token)));
        creds.insert("reduced-token", Some(basic("owner", &reduced.token)));
        World {
            router: router(state),
            creds,
            _dir: dir,
        }
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(b.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn root(&self) -> Option<&str> {
        self.creds["sysadmin"].as_deref()
    }

    async fn blob(&self, repo: &str, data: &[u8]) -> Digest {
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
    async fn manifest(&self, repo: &str, tag: Option<&str>, salt: &str) -> (Digest, Vec<u8>) {
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
            assert_eq!(r.status, StatusCode::CREATED, "setup manifest: {:?}", r.body);
        }
        (d, m)
    }

    async fn upload(&self, repo: &str) -> String {
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

    /// Prepares and sends the request of one cell.
    async fn cell(&self, endpoint: &str, auth: Option<&str>, vis: &str, n: usize) -> Resp {
        let repo = repo_of(vis);
        let (m, _) = self.manifest(repo, Some("v1"), "base").await;
        match endpoint {
            "base" => self.req("GET", "/v2/", auth, &[], Body::empty()).await,
            "catalog" => self.req("GET", "/v2/_catalog", auth, &[], Body::empty()).await,
            "tags_list" => {
                self.req("GET", &format!("/v2/{repo}/tags/list"), auth, &[], Body::empty())
                    .await
            }
            "manifest_get" | "manifest_head" => {
                let method = if endpoint == "manifest_get" { "GET" } else { "HEAD" };
                self.req(
                    method,
                    &format!("/v2/{repo}/manifests/v1"),
                    auth,
                    &[("accept", OCI_MANIFEST)],
                    Body::empty(),
                )
                .await
            }
            "blob_get" | "blob_head" => {
                let d = self.blob(repo, b"layer base").await;
                let method = if endpoint == "blob_get" { "GET" } else { "HEAD" };
                self.req(method, &format!("/v2/{repo}/blobs/{d}"), auth, &[], Body::empty())
                    .await
            }
            "referrers" => {
                self.req("GET", &format!("/v2/{repo}/referrers/{m}"), auth, &[], Body::empty())
                    .await
            }
            "manifest_put" => {
                let (_, bytes) = self.manifest(repo, None, &format!("put {n}")).await;
                self.req(
                    "PUT",
                    &format!("/v2/{repo}/manifests/put-{n}"),
                    auth,
                    &[("content-type", OCI_MANIFEST)],
                    bytes,
                )
                .await
            }
            "manifest_delete" => {
                let (d, _) = self
                    .manifest(repo, Some(&format!("del-{n}")), &format!("del {n}"))
                    .await;
                self.req("DELETE", &format!("/v2/{repo}/manifests/{d}"), auth, &[], Body::empty())
                    .await
            }
            "blob_delete" => {
                let d = self.blob(repo, format!("doomed {n}").as_bytes()).await;
                self.req("DELETE", &format!("/v2/{repo}/blobs/{d}"), auth, &[], Body::empty())
                    .await
            }
            "upload_start" => {
                self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), auth, &[], Body::empty())
                    .await
            }
            "upload_get" | "upload_patch" | "upload_put" | "upload_delete" => {
                let id = self.upload(repo).await;
                let uri = format!("/v2/{repo}/blobs/uploads/{id}");
                let data = format!("chunk {n}").into_bytes();
                let len = data.len().to_string();
                match endpoint {
                    "upload_get" => self.req("GET", &uri, auth, &[], Body::empty()).await,
                    "upload_patch" => {
                        self.req("PATCH", &uri, auth, &[("content-length", &len)], data)
                            .await
                    }
                    "upload_put" => {
                        let d = Digest::sha256_of(&data);
                        self.req(
                            "PUT",
                            &format!("{uri}?digest={d}"),
                            auth,
                            &[("content-length", &len)],
                            data,
                        )
                        .await
                    }
                    _ => self.req("DELETE", &uri, auth, &[], Body::empty()).await,
                }
            }
            "token" => {
                self.req(
                    "GET",
                    &format!("/auth/token?service=berth&scope=repository:{repo}:pull,push,delete"),
                    auth,
                    &[],
                    Body::empty(),
                )
                .await
            }
            other => panic!("v2_matrix.tsv names an unknown endpoint {other:?}"),
        }
    }
}

struct Row {
    line: usize,
    endpoint: String,
    subject: String,
    vis: String,
    status: u16,
    code: String,
}

fn table() -> Vec<Row> {
    let text = include_str!("v2_matrix.tsv");
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 5, "v2_matrix.tsv line {}: five columns", i + 1);
        rows.push(Row {
            line: i + 1,
            endpoint: f[0].into(),
            subject: f[1].into(),
            vis: f[2].into(),
            status: f[3].parse().expect("status"),
            code: f[4].into(),
        });
    }
    rows
}

/// What a cell showed, in the table's terms.
fn observed(row: &Row, r: &Resp) -> String {
    match row.endpoint.as_str() {
        "catalog" if r.status == StatusCode::OK => {
            let listed = r.json()["repositories"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == repo_of(&row.vis)));
            if listed { "listed" } else { "hidden" }.to_string()
        }
        "token" if r.status == StatusCode::OK => {
            let token = r.json()["token"].as_str().unwrap_or_default().to_string();
            let claims = token.split('.').nth(1).unwrap_or_default();
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(claims)
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            let actions: Vec<String> = claims["access"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["name"] == repo_of(&row.vis))
                .flat_map(|e| e["actions"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            if actions.is_empty() {
                "-".into()
            } else {
                actions.join(",")
            }
        }
        // HEAD answers carry no body.
        _ if r.body.is_empty() => "-".into(),
        _ => r.code(),
    }
}

#[tokio::test]
async fn every_v2_endpoint_for_every_caller_and_visibility() {
    let w = World::new().await;
    let rows = table();
    assert!(rows.len() >= 16 * 10 * 2, "the table covers the whole matrix");
    let mut failures = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let auth = w
            .creds
            .get(row.subject.as_str())
            .unwrap_or_else(|| panic!("line {}: unknown subject {}", row.line, row.subject));
        let r = w.cell(&row.endpoint, auth.as_deref(), &row.vis, n).await;
        let mut code = observed(row, &r);
        // HEAD cannot carry the error body; its status says it all.
        if row.endpoint == "manifest_head" || row.endpoint == "blob_head" {
            code = row.code.clone();
        }
        if r.status.as_u16() != row.status || code != row.code {
            failures.push(format!(
                "line {}: {} as {} on {}: expected {} {}, got {} {}",
                row.line, row.endpoint, row.subject, row.vis, row.status, row.code, r.status.as_u16(), code
            ));
        }
        if r.status == StatusCode::UNAUTHORIZED && row.endpoint != "token" {
            let challenge = r
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !challenge.starts_with("Bearer realm=\"http://localhost/auth/token\",service=\"berth\"") {
                failures.push(format!(
                    "line {}: 401 without the Bearer challenge: {challenge:?}",
                    row.line
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cells differ from v2_matrix.tsv:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The same table through the token protocol: each caller fetches a bearer token for the
/// repository and presents it. A bearer token is trusted for what its claims hold; what
/// they do not hold is decided from the store, so the answers are the table's — except
/// for a restricted access token, whose bearer token simply lacks the action: the client
/// is told to fetch a token with that scope (401, `insufficient_scope`), which the token
/// service will again refuse.
#[tokio::test]
async fn the_matrix_holds_with_bearer_tokens() {
    let w = World::new().await;
    let mut failures = Vec::new();
    let rows: Vec<Row> = table()
        .into_iter()
        .filter(|r| !matches!(r.endpoint.as_str(), "token" | "base" | "catalog"))
        .filter(|r| !matches!(r.subject.as_str(), "expired-token" | "revoked-token"))
        .collect();
    for (n, row) in rows.iter().enumerate() {
        let basic = w.creds[row.subject.as_str()].clone();
        let t = w
            .req(
                "GET",
                &format!(
                    "/auth/token?service=berth&scope=repository:{}:pull,push,delete",
                    repo_of(&row.vis)
                ),
                basic.as_deref(),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(t.status, StatusCode::OK, "token for {}", row.subject);
        let bearer = format!("Bearer {}", t.json()["token"].as_str().unwrap());
        let r = w.cell(&row.endpoint, Some(&bearer), &row.vis, 10_000 + n).await;
        let (mut status, mut code) = (row.status, row.code.clone());
        if row.subject == "reduced-token" && row.status == 403 {
            (status, code) = (401, "UNAUTHORIZED".into());
        }
        let mut got = observed(row, &r);
        if row.endpoint.ends_with("_head") {
            got = code.clone();
        }
        if r.status.as_u16() != status || got != code {
            failures.push(format!(
                "line {}: {} as {} (bearer) on {}: expected {} {}, got {} {}",
                row.line, row.endpoint, row.subject, row.vis, status, code, r.status.as_u16(), got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
