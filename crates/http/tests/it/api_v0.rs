//! In-process tests of the `/api/v0` management API: the real router, the real core and a
//! real SQLite store in a temporary directory.
//!
//! The authorization matrix (`api_v0_matrix.tsv`, data a person reviews) lists, for every
//! endpoint and every kind of caller (and, for endpoints about one repository, a public
//! and a private repository), the expected status and error code. Each cell runs against a
//! fresh world, so a cell that deletes something does not change the next one.

use axum::body::Body;
use axum::http::Request;
use berth_auth::password::{hash_password, PasswordParams};
use berth_auth::rbac::Role;
use berth_auth::secret;
use berth_blob::memory::MemoryBlobStore;
use berth_core::{Access, AccessConfig, Caller, Registry, RegistryConfig};
use berth_meta::identity::{NewToken, TokenKind};
use berth_meta::prelude::*;
use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::RepoName;
use berth_testkit::wire::basic_auth;
use berth_testkit::world::{local_account, request, send, Resp};
use std::sync::Arc;

struct World {
    router: axum::Router,
    access: Arc<Access>,
    /// The id of an access token of the service account `bot`.
    bot_token: String,
    /// The id of a signing key `reader` registered.
    reader_key: String,
    /// The `Authorization` header of each subject.
    creds: Vec<(&'static str, Option<String>)>,
    _dir: tempfile::TempDir,
}

fn pw(user: &str) -> String {
    format!("password-of-{user}")
}

const SUBJECTS: [&str; 11] = [
    "anonymous",
    "no-role",
    "read-only",
    "read-write",
    "admin",
    "org-owner",
    "sysadmin",
    "expired-token",
    "revoked-token",
    "reduced-token",
    "restricted-bearer",
];

async fn world() -> World {
    world_with(None).await
}

async fn world_with(directory: Option<berth_directory::DirectoryClient>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(
        SqliteMetaStore::open(&dir.path().join("m.db"))
            .await
            .unwrap(),
    );
    let reg = Registry::new(
        meta.clone(),
        Arc::new(MemoryBlobStore::new()),
        RegistryConfig::default(),
    );
    let access = Arc::new(
        Access::new(
            meta.clone(),
            directory,
            AccessConfig {
                password_params: PasswordParams::insecure_fast_for_tests(),
                login_failures_per_account: 1000,
                login_failures_per_source: 1000,
                ..AccessConfig::default()
            },
            berth_core::Kek::generate(),
        )
        .await
        .unwrap(),
    );
    let id: &dyn IdentityStore = meta.as_ref();
    let fast = PasswordParams::insecure_fast_for_tests();
    let mut users = std::collections::HashMap::new();
    for (name, admin, service) in [
        ("root", true, false),
        ("owner", false, false),
        ("nobody", false, false),
        ("reader", false, false),
        ("writer", false, false),
        ("repoadmin", false, false),
        ("bot", false, true),
    ] {
        let phc = (!service).then(|| hash_password(pw(name).as_bytes(), &fast).unwrap());
        users.insert(name, local_account(id, name, phc, admin, service).await);
    }
    berth_testkit::world::create_acme(id, users["owner"]).await;
    id.org_member_set("acme", users["bot"], false)
        .await
        .unwrap();
    berth_testkit::world::create_acme_repositories(id).await;
    for (team, user, role) in [
        ("readers", "reader", Role::ReadOnly),
        ("writers", "writer", Role::ReadWrite),
        ("admins", "repoadmin", Role::Admin),
    ] {
        id.team_create("acme", team, None).await.unwrap();
        id.team_member_add("acme", team, users[user]).await.unwrap();
        for r in ["acme/public-app", "acme/private-app"] {
            id.grant_repo_set("acme", team, &RepoName::parse(r).unwrap(), role)
                .await
                .unwrap();
        }
    }
    // A team with no members and a namespace grant, for the grant endpoints.
    id.team_create("acme", "spare", None).await.unwrap();
    id.grant_namespace_set("acme", "spare", Role::ReadOnly)
        .await
        .unwrap();
    // A tag `v1` (an empty index) in both repositories, and a key of reader's.
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    for r in ["acme/public-app", "acme/private-app"] {
        reg.manifest_put(
            &RepoName::parse(r).unwrap(),
            &berth_oci::Reference::parse("v1").unwrap(),
            Some("application/vnd.oci.image.index.v1+json"),
            bytes::Bytes::from_static(index),
        )
        .await
        .unwrap();
    }
    let pem = berth_trust::testing::ArtifactKey::new().public_pem();
    let reader_key = reg
        .signing_key_add(users["reader"], "reader's key", &pem)
        .await
        .unwrap()
        .id;
    let anon = Caller::anonymous(None);
    let bot = access
        .create_access_token(&anon, users["bot"], "ci", None, None)
        .await
        .unwrap();
    let token = |expires_at: Option<i64>| {
        let s = secret::generate();
        (
            NewToken {
                id: s.id.clone(),
                kind: TokenKind::Access,
                user_id: users["writer"],
                description: "t".into(),
                hash: s.hash,
                expires_at,
                restriction: None,
                parent: None,
            },
            s.token,
        )
    };
    let (expired, expired_secret) = token(Some(1));
    id.token_create(&expired).await.unwrap();
    let (revoked, revoked_secret) = token(None);
    id.token_create(&revoked).await.unwrap();
    id.token_revoke(&revoked.id).await.unwrap();
    let reduced = berth_testkit::world::reduced_token(&access, users["owner"]).await;
    let bearer = berth_testkit::world::restricted_bearer(&access, users["root"]).await;
    let c = |u: &str, p: String| Some(basic_auth(u, &p));
    let creds = vec![
        ("anonymous", None),
        ("no-role", c("nobody", pw("nobody"))),
        ("read-only", c("reader", pw("reader"))),
        ("read-write", c("writer", pw("writer"))),
        ("admin", c("repoadmin", pw("repoadmin"))),
        ("org-owner", c("owner", pw("owner"))),
        ("sysadmin", c("root", pw("root"))),
        ("expired-token", c("writer", expired_secret)),
        ("revoked-token", c("writer", revoked_secret)),
        ("reduced-token", c("owner", reduced)),
        ("restricted-bearer", Some(bearer)),
    ];
    World {
        router: crate::app(Arc::new(reg), access.clone()),
        access,
        bot_token: bot.record.id.as_str().to_string(),
        reader_key,
        creds,
        _dir: dir,
    }
}

impl World {
    fn auth(&self, subject: &str) -> Option<String> {
        let (_, c) = self
            .creds
            .iter()
            .find(|(s, _)| *s == subject)
            .unwrap_or_else(|| panic!("unknown subject {subject}"));
        c.clone()
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Resp {
        let r = match body {
            Some(v) => request(
                method,
                uri,
                auth,
                &[("content-type", "application/json")],
                serde_json::to_vec(&v).unwrap(),
            ),
            None => request(method, uri, auth, &[], Body::empty()),
        };
        send(&self.router, r).await
    }

    async fn as_(
        &self,
        subject: &str,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Resp {
        let a = self.auth(subject);
        self.req(method, uri, a.as_deref(), body).await
    }
}

/// The request of one matrix cell: method, path and body, with `{repository}` replaced.
fn cell_request(
    w: &World,
    endpoint: &str,
    vis: &str,
) -> (String, String, Option<serde_json::Value>) {
    use serde_json::json;
    let (method, path) = endpoint.split_once(' ').unwrap();
    let repo = match vis {
        "public" => "acme%2Fpublic-app",
        "private" => "acme%2Fprivate-app",
        _ => "",
    };
    // Account creation under a name whose namespace holds a repository no account owns.
    let claim = match vis {
        "ownerless" => Some(false),
        "claim" => Some(true),
        _ => None,
    };
    let body = match (endpoint, claim) {
        ("POST /api/v0/users", Some(c)) => Some(json!({
            "name": "library", "password": "a-long-password", "claim_namespace": c})),
        ("POST /api/v0/service-accounts", Some(c)) => Some(json!({
            "name": "library", "org": "acme", "claim_namespace": c})),
        ("POST /api/v0/orgs", Some(c)) => Some(json!({"name": "library", "claim_namespace": c})),
        _ => None,
    };
    let body = body.or(match endpoint {
        "POST /api/v0/users" => Some(json!({"name": "newuser", "password": "a-long-password"})),
        "PATCH /api/v0/users/{user}" => Some(json!({"full_name": "Reader"})),
        "PUT /api/v0/users/{user}/password" => Some(json!({
            "current_password": pw("reader"), "new_password": "another-password"})),
        "POST /api/v0/service-accounts" => Some(json!({"name": "newbot", "org": "acme"})),
        "POST /api/v0/users/{user}/tokens" => {
            Some(json!({"description": "ci", "expires_in": 3600}))
        }
        "POST /api/v0/orgs" => Some(json!({"name": "neworg"})),
        "PATCH /api/v0/orgs/{org}" => Some(json!({"members_can_create": true})),
        "PUT /api/v0/orgs/{org}/members/{user}" => Some(json!({"is_owner": false})),
        "POST /api/v0/orgs/{org}/teams" => Some(json!({"name": "newteam"})),
        "PATCH /api/v0/orgs/{org}/teams/{team}" => {
            Some(json!({"directory_group": "cn=readers,ou=groups,dc=example,dc=org"}))
        }
        "PUT /api/v0/orgs/{org}/teams/{team}/namespace-grant" => {
            Some(json!({"role": "read-write"}))
        }
        "POST /api/v0/repositories" => Some(json!({"name": "acme/new-app"})),
        "POST /api/v0/gc/runs" => Some(json!({"dry_run": true, "wait": true})),
        "PUT /api/v0/gc/schedule" => Some(json!({"schedule": "0 3 * * *"})),
        "PATCH /api/v0/repositories/{repository}" => Some(json!({
            "visibility": if vis == "public" { "private" } else { "public" }})),
        "PUT /api/v0/repositories/{repository}/grants/{team}" => {
            Some(json!({"role": "read-write"}))
        }
        "POST /api/v0/users/{user}/keys" => Some(json!({
            "name": "ci", "pem": berth_trust::testing::ArtifactKey::new().public_pem()})),
        "PUT /api/v0/repositories/{repository}/policy" | "PUT /api/v0/namespaces/{org}/policy" => {
            Some(json!({"mode": "audit", "signers": ["team:acme/readers"]}))
        }
        _ => None,
    });
    // Which objects the templated paths name: what the request is about must exist, so
    // an allowed request really succeeds.
    let (user, team) = match endpoint {
        "PUT /api/v0/orgs/{org}/members/{user}"
        | "PUT /api/v0/orgs/{org}/teams/{team}/members/{user}" => ("nobody", "readers"),
        "DELETE /api/v0/orgs/{org}/teams/{team}"
        | "PUT /api/v0/orgs/{org}/teams/{team}/namespace-grant"
        | "DELETE /api/v0/orgs/{org}/teams/{team}/namespace-grant"
        | "PUT /api/v0/repositories/{repository}/grants/{team}" => ("reader", "spare"),
        e if e.contains("/tokens") => ("bot", "readers"),
        _ => ("reader", "readers"),
    };
    let path = path
        .replace("{repository}", repo)
        .replace("{org}", "acme")
        .replace("{team}", team)
        .replace("{user}", user)
        .replace("{token}", &w.bot_token)
        .replace("{key}", &w.reader_key);
    // The dry run asks about tag v1 for the caller.
    let path = match endpoint {
        e if e.ends_with("/policy/check") => format!("{path}?reference=v1"),
        _ => path,
    };
    (method.to_string(), path, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let table = include_str!("../api_v0_matrix.tsv");
    let mut rows = Vec::new();
    for line in table.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 5, "malformed row: {line:?}");
        rows.push((f[0], f[1], f[2], f[3].parse::<u16>().unwrap(), f[4]));
    }
    // Every route of the OpenAPI document is in the table, with every subject.
    let doc = world()
        .await
        .req("GET", "/api/v0/openapi.json", None, None)
        .await
        .json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let ep = format!("{} {path}", method.to_uppercase());
            for s in SUBJECTS {
                assert!(
                    rows.iter().any(|r| r.0 == ep && r.1 == s),
                    "the matrix has no row for {ep} x {s}"
                );
            }
        }
    }
    let mut failures = Vec::new();
    for (endpoint, subject, vis, status, code) in &rows {
        let w = world().await;
        if matches!(*vis, "ownerless" | "claim") {
            // An administrator's repository in a namespace without an account.
            w.access
                .identity()
                .repo_create(&RepoName::parse("library/base").unwrap(), None, None)
                .await
                .unwrap();
        }
        let (method, path, body) = cell_request(&w, endpoint, vis);
        let r = w.as_(subject, &method, &path, body).await;
        let got = (r.status.as_u16(), r.code());
        if got.0 != *status || got.1 != *code {
            failures.push(format!(
                "{endpoint}\t{subject}\t{vis}\texpected {status} {code}, got {} {} ({})",
                got.0,
                got.1,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cells differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn listing_shows_only_what_the_caller_may_pull() {
    let w = world().await;
    let names = |r: &Resp| -> Vec<String> {
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = w.req("GET", "/api/v0/repositories", None, None).await;
    assert_eq!(names(&r), ["acme/public-app"]);
    let r = w.as_("no-role", "GET", "/api/v0/repositories", None).await;
    assert_eq!(names(&r), ["acme/public-app"]);
    for s in ["read-only", "org-owner", "sysadmin", "reduced-token"] {
        let r = w
            .as_(s, "GET", "/api/v0/repositories?namespace=acme", None)
            .await;
        assert_eq!(names(&r), ["acme/private-app", "acme/public-app"], "{s}");
    }
    // Paging.
    let r = w
        .as_("sysadmin", "GET", "/api/v0/repositories?n=1", None)
        .await;
    assert_eq!(names(&r), ["acme/private-app"]);
    assert_eq!(r.json()["next"], "acme/private-app");
    let r = w
        .as_(
            "sysadmin",
            "GET",
            "/api/v0/repositories?n=1&last=acme/private-app",
            None,
        )
        .await;
    assert_eq!(names(&r), ["acme/public-app"]);
    assert!(r.json()["next"].is_null());
    let r = w
        .as_(
            "sysadmin",
            "GET",
            "/api/v0/repositories?namespace=other",
            None,
        )
        .await;
    assert!(names(&r).is_empty());
}

#[tokio::test]
async fn users_page_by_name() {
    let w = world().await;
    let mut seen = Vec::new();
    let mut last = String::new();
    loop {
        let r = w
            .as_(
                "no-role",
                "GET",
                &format!("/api/v0/users?n=3&last={last}"),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        let j = r.json();
        for i in j["items"].as_array().unwrap() {
            seen.push(i["name"].as_str().unwrap().to_string());
            assert!(i.get("password").is_none());
        }
        match j["next"].as_str() {
            Some(n) => last = n.to_string(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "bot",
            "nobody",
            "owner",
            "reader",
            "repoadmin",
            "root",
            "writer"
        ]
    );
}

#[tokio::test]
async fn bad_input_is_400_never_500() {
    let w = world().await;
    let long = "a".repeat(5000);
    let cases: Vec<(&str, String, Option<serde_json::Value>, &str)> = vec![
        (
            "POST",
            "/api/v0/users".into(),
            Some(
                serde_json::json!({"name": "Robert'); DROP TABLE accounts;--", "password": "long-enough"}),
            ),
            "NAME_INVALID",
        ),
        (
            "POST",
            "/api/v0/users".into(),
            Some(serde_json::json!({"name": long, "password": "long-enough"})),
            "NAME_INVALID",
        ),
        (
            "POST",
            "/api/v0/users".into(),
            Some(serde_json::json!({"name": "UPPER", "password": "long-enough"})),
            "NAME_INVALID",
        ),
        (
            "POST",
            "/api/v0/users".into(),
            Some(serde_json::json!({"name": "fine", "password": "short"})),
            "INVALID",
        ),
        (
            "POST",
            "/api/v0/users".into(),
            Some(serde_json::json!({"name": "fine", "password": "long-enough", "full_name": long})),
            "INVALID",
        ),
        (
            "POST",
            "/api/v0/users".into(),
            Some(serde_json::json!({"name": "fine"})),
            "INVALID",
        ),
        (
            "POST",
            "/api/v0/users".into(),
            Some(serde_json::json!({"name": "fine", "password": "long-enough", "extra": 1})),
            "INVALID",
        ),
        (
            "POST",
            "/api/v0/orgs".into(),
            Some(serde_json::json!({"name": "a%' OR 1=1 --"})),
            "NAME_INVALID",
        ),
        (
            "POST",
            "/api/v0/repositories".into(),
            Some(serde_json::json!({"name": "acme/Bad Name"})),
            "NAME_INVALID",
        ),
        (
            "POST",
            "/api/v0/repositories".into(),
            Some(serde_json::json!({"name": format!("acme/{long}")})),
            "NAME_INVALID",
        ),
        ("GET", format!("/api/v0/users/{long}"), None, "NAME_INVALID"),
        ("GET", "/api/v0/users/x'%3B--".into(), None, "NAME_INVALID"),
        (
            "GET",
            "/api/v0/repositories/acme%2F%27%3B--".into(),
            None,
            "NAME_INVALID",
        ),
        ("GET", "/api/v0/users?n=0".into(), None, "INVALID"),
        ("GET", "/api/v0/users?n=abc".into(), None, "INVALID"),
        ("GET", "/api/v0/users?n=99999999999".into(), None, "INVALID"),
        (
            "GET",
            "/api/v0/audit?since=yesterday".into(),
            None,
            "INVALID",
        ),
        (
            "GET",
            "/api/v0/repositories?namespace=a%2Fb".into(),
            None,
            "NAME_INVALID",
        ),
        (
            "PUT",
            "/api/v0/orgs/acme/teams/spare/namespace-grant".into(),
            Some(serde_json::json!({"role": "owner"})),
            "INVALID",
        ),
        (
            "POST",
            "/api/v0/users/root/tokens".into(),
            Some(serde_json::json!({"expires_in": -1})),
            "INVALID",
        ),
        (
            "POST",
            "/api/v0/users/root/tokens".into(),
            Some(serde_json::json!({"restriction": []})),
            "INVALID",
        ),
    ];
    for (method, path, body, code) in cases {
        let r = w.as_("sysadmin", method, &path, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (400, code),
            "{method} {} {body:?}: {:?}",
            &path[..path.len().min(80)],
            String::from_utf8_lossy(&r.body)
        );
    }
    // Not JSON at all, and the wrong content type.
    let r = send(
        &w.router,
        Request::post("/api/v0/orgs")
            .header("authorization", basic_auth("root", &pw("root")))
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn tokens_show_their_secret_once_and_stop_working_when_revoked() {
    let w = world().await;
    let r = w
        .as_("read-write", "POST", "/api/v0/users/writer/tokens", Some(serde_json::json!({
            "description": "laptop",
            "restriction": [{"kind": "repository", "pattern": "acme/public-app", "max_role": "read-only"}]
        })))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let j = r.json();
    let secret = j["token"].as_str().unwrap().to_string();
    let id = j["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("berth_"));
    let r = w
        .as_("read-write", "GET", "/api/v0/users/writer/tokens", None)
        .await;
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains(&secret));
    assert_eq!(r.json()[0]["restriction"][0]["max_role"], "read-only");
    // The token works, with its reduced scope: it may read but not change the repository.
    let auth = basic_auth("writer", &secret);
    let r = w
        .req(
            "GET",
            "/api/v0/repositories/acme%2Fpublic-app",
            Some(&auth),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = w
        .req(
            "GET",
            "/api/v0/repositories/acme%2Fprivate-app",
            Some(&auth),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    // A reduced token may not mint tokens.
    let r = w
        .req(
            "POST",
            "/api/v0/users/writer/tokens",
            Some(&auth),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 403);
    // Another user may not revoke it; its user may.
    let r = w
        .as_(
            "read-only",
            "DELETE",
            &format!("/api/v0/users/writer/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    let r = w
        .as_(
            "read-write",
            "DELETE",
            &format!("/api/v0/users/writer/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = w
        .req(
            "GET",
            "/api/v0/repositories/acme%2Fpublic-app",
            Some(&auth),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    // An owner acts for a service account only if they own every organisation it is in.
    let r = w
        .as_(
            "org-owner",
            "POST",
            "/api/v0/users/bot/tokens",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = w
        .as_(
            "sysadmin",
            "POST",
            "/api/v0/orgs",
            Some(serde_json::json!({"name": "other"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = w
        .as_(
            "sysadmin",
            "PUT",
            "/api/v0/orgs/other/members/bot",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 204);
    for (m, p) in [
        ("POST", "/api/v0/users/bot/tokens"),
        ("GET", "/api/v0/users/bot/tokens"),
    ] {
        let body = (m == "POST").then(|| serde_json::json!({}));
        let r = w.as_("org-owner", m, p, body).await;
        assert_eq!(r.status, 403, "{m} {p}");
    }
    // A system administrator may not mint a token for a person, only for a service account.
    let r = w
        .as_(
            "sysadmin",
            "POST",
            "/api/v0/users/writer/tokens",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn permission_changes_are_audited() {
    let w = world().await;
    let steps: Vec<(&str, &str, Option<serde_json::Value>)> = vec![
        (
            "PUT",
            "/api/v0/orgs/acme/members/nobody",
            Some(serde_json::json!({"is_owner": true})),
        ),
        ("DELETE", "/api/v0/orgs/acme/members/nobody", None),
        (
            "PUT",
            "/api/v0/orgs/acme/teams/readers/members/nobody",
            None,
        ),
        (
            "DELETE",
            "/api/v0/orgs/acme/teams/readers/members/nobody",
            None,
        ),
        (
            "PUT",
            "/api/v0/orgs/acme/teams/spare/namespace-grant",
            Some(serde_json::json!({"role": "admin"})),
        ),
        (
            "DELETE",
            "/api/v0/orgs/acme/teams/spare/namespace-grant",
            None,
        ),
        (
            "PUT",
            "/api/v0/repositories/acme%2Fpublic-app/grants/spare",
            Some(serde_json::json!({"role": "read-only"})),
        ),
        (
            "DELETE",
            "/api/v0/repositories/acme%2Fpublic-app/grants/spare",
            None,
        ),
        (
            "PATCH",
            "/api/v0/repositories/acme%2Fpublic-app",
            Some(serde_json::json!({"visibility": "private"})),
        ),
        (
            "POST",
            "/api/v0/repositories",
            Some(serde_json::json!({"name": "acme/made", "visibility": "public"})),
        ),
        ("DELETE", "/api/v0/repositories/acme%2Fmade", None),
        (
            "PATCH",
            "/api/v0/users/nobody",
            Some(serde_json::json!({"is_system_admin": true})),
        ),
    ];
    for (m, p, b) in steps {
        let r = w.as_("sysadmin", m, p, b).await;
        assert!(r.status.is_success(), "{m} {p}: {:?}", r.body);
    }
    let r = w
        .as_("sysadmin", "GET", "/api/v0/audit?actor=root&n=1000", None)
        .await;
    assert_eq!(r.status, 200);
    let actions: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        // The world's own set-up logs in and fetches a bearer token.
        .filter(|e| e["action"] != "login.success" && e["action"] != "token.issue")
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .rev()
        .collect();
    assert_eq!(
        actions,
        [
            "org.member.set acme/nobody",
            "org.member.remove acme/nobody",
            "team.member.add acme/readers/nobody",
            "team.member.remove acme/readers/nobody",
            "grant.set acme",
            "grant.remove acme",
            "grant.set acme/public-app",
            "grant.remove acme/public-app",
            "repo.visibility acme/public-app",
            "repo.create acme/made",
            "repo.delete acme/made",
            "user.system_admin nobody",
        ]
    );
    // Filters and paging.
    let r = w
        .as_(
            "sysadmin",
            "GET",
            "/api/v0/audit?action=grant.set&target_prefix=acme/",
            None,
        )
        .await;
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor"], "root");
    let r = w.as_("sysadmin", "GET", "/api/v0/audit?n=2", None).await;
    let next = r.json()["next"].as_i64().unwrap();
    let r = w
        .as_(
            "sysadmin",
            "GET",
            &format!("/api/v0/audit?n=2&before={next}"),
            None,
        )
        .await;
    assert!(r.json()["items"][0]["id"].as_i64().unwrap() < next);
    let r = w
        .as_("sysadmin", "GET", "/api/v0/audit?since=0&until=1", None)
        .await;
    assert!(r.json()["items"].as_array().unwrap().is_empty());
    // Others see only their own events, and may not ask for someone else's.
    let r = w.as_("read-only", "GET", "/api/v0/audit", None).await;
    for e in r.json()["items"].as_array().unwrap() {
        assert_eq!(e["actor"], "reader");
    }
    let r = w
        .as_("read-only", "GET", "/api/v0/audit?actor=root", None)
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn accounts_passwords_and_activation() {
    let w = world().await;
    // Self-service password change needs the current password.
    let r = w
        .as_(
            "read-only",
            "PUT",
            "/api/v0/users/reader/password",
            Some(serde_json::json!({"new_password": "brand-new-pass"})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = w
        .as_("read-only", "PUT", "/api/v0/users/reader/password", Some(serde_json::json!({"current_password": "wrong-one", "new_password": "brand-new-pass"})))
        .await;
    assert_eq!(r.status, 403);
    let r = w
        .as_("read-only", "PUT", "/api/v0/users/reader/password", Some(serde_json::json!({"current_password": pw("reader"), "new_password": "brand-new-pass"})))
        .await;
    assert_eq!(r.status, 204);
    let r = w
        .req(
            "GET",
            "/api/v0/users/reader",
            Some(&basic_auth("reader", &pw("reader"))),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let r = w
        .req(
            "GET",
            "/api/v0/users/reader",
            Some(&basic_auth("reader", "brand-new-pass")),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // A user may not promote themselves; an administrator may deactivate them.
    let r = w
        .req(
            "PATCH",
            "/api/v0/users/reader",
            Some(&basic_auth("reader", "brand-new-pass")),
            Some(serde_json::json!({"is_system_admin": true})),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = w
        .as_(
            "sysadmin",
            "PATCH",
            "/api/v0/users/reader",
            Some(serde_json::json!({"active": false})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["active"], false);
    let r = w
        .req(
            "GET",
            "/api/v0/users/reader",
            Some(&basic_auth("reader", "brand-new-pass")),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    // Create, conflict, delete.
    let body = serde_json::json!({"name": "carol", "password": "carols-password", "email": "c@example.org"});
    let r = w
        .as_("sysadmin", "POST", "/api/v0/users", Some(body.clone()))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["email"], "c@example.org");
    let r = w.as_("sysadmin", "POST", "/api/v0/users", Some(body)).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (409, "CONFLICT"));
    let r = w
        .as_(
            "sysadmin",
            "POST",
            "/api/v0/orgs",
            Some(serde_json::json!({"name": "carol"})),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = w
        .as_("sysadmin", "DELETE", "/api/v0/users/carol", None)
        .await;
    assert_eq!(r.status, 204);
    let r = w.as_("sysadmin", "GET", "/api/v0/users/carol", None).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (404, "NOT_FOUND"));
    // E-mail addresses are for the user and system administrators.
    let r = w
        .as_(
            "sysadmin",
            "PATCH",
            "/api/v0/users/writer",
            Some(serde_json::json!({"email": "w@example.org"})),
        )
        .await;
    assert_eq!(r.json()["email"], "w@example.org");
    let r = w
        .as_("read-write", "GET", "/api/v0/users/writer", None)
        .await;
    assert_eq!(r.json()["email"], "w@example.org");
    let r = w.as_("no-role", "GET", "/api/v0/users/writer", None).await;
    assert!(r.json()["email"].is_null());
    let r = w.as_("no-role", "GET", "/api/v0/users?n=1000", None).await;
    assert!(!String::from_utf8_lossy(&r.body).contains("w@example.org"));
    let _ = &w.access;
}

#[tokio::test]
async fn org_settings_shape_new_repositories() {
    let w = world().await;
    let r = w
        .as_(
            "org-owner",
            "PATCH",
            "/api/v0/orgs/acme",
            Some(serde_json::json!({"members_can_create": true, "default_visibility": "public"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["default_visibility"], "public");
    // Every member may now create; the new repository takes the default visibility.
    let r = w
        .as_(
            "read-only",
            "POST",
            "/api/v0/repositories",
            Some(serde_json::json!({"name": "acme/by-member"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["visibility"], "public");
    let r = w
        .as_(
            "no-role",
            "POST",
            "/api/v0/repositories",
            Some(serde_json::json!({"name": "acme/by-stranger"})),
        )
        .await;
    assert_eq!(r.status, 403);
    // A user creates in their own namespace.
    let r = w
        .as_(
            "no-role",
            "POST",
            "/api/v0/repositories",
            Some(serde_json::json!({"name": "nobody/mine"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["visibility"], "private");
    let r = w
        .as_("no-role", "GET", "/api/v0/repositories/nobody%2Fmine", None)
        .await;
    assert_eq!(r.status, 200);
    let r = w
        .as_(
            "read-only",
            "GET",
            "/api/v0/repositories/nobody%2Fmine",
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (404, "NAME_UNKNOWN")
    );
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let w = world().await;
    let r = w.req("GET", "/api/v0/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    let mut n = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            n += 1;
            assert!(
                op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.starts_with('2')),
                "{method} {path}"
            );
            if path != "/api/v0/openapi.json" {
                for code in ["400", "401", "500"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} lacks {code}"
                    );
                }
                assert!(
                    op["security"].as_array().is_some_and(|s| !s.is_empty()),
                    "{method} {path}"
                );
            }
            // Every documented route answers (not the router's 404 for unknown paths).
            let concrete = path
                .replace("{repository}", "acme%2Fpublic-app")
                .replace("{org}", "acme")
                .replace("{team}", "readers")
                .replace("{user}", "reader")
                .replace("{token}", "0000000000000000");
            let r = w
                .as_("no-role", &method.to_uppercase(), &concrete, None)
                .await;
            assert!(
                !(r.status == 404 && r.code() == "UNSUPPORTED") && r.status != 405,
                "{method} {path}: {} {:?}",
                r.status,
                r.body
            );
        }
    }
    assert!(n >= 39, "only {n} operations documented");
}

#[tokio::test]
async fn directory_settings_hide_the_bind_password_and_sync_runs_are_recorded() {
    let cfg = berth_directory::DirectoryConfig {
        // Nothing listens on the discard port: the directory is unreachable.
        url: "ldap://127.0.0.1:9".into(),
        bind_dn: "cn=svc,dc=example,dc=org".into(),
        bind_password: berth_directory::Secret::new("s3cret-bind-pw"),
        user_base: "ou=people,dc=example,dc=org".into(),
        group_base: "ou=groups,dc=example,dc=org".into(),
        connect_timeout_secs: 2,
        ..Default::default()
    };
    let w = world_with(Some(berth_directory::DirectoryClient::new(cfg).unwrap())).await;
    let r = w
        .as_("sysadmin", "GET", "/api/v0/directory/settings", None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["url"], "ldap://127.0.0.1:9");
    assert_eq!(r.json()["bind_password"], "<redacted>");
    assert!(!String::from_utf8_lossy(&r.body).contains("s3cret"));
    let r = w
        .as_("org-owner", "GET", "/api/v0/directory/settings", None)
        .await;
    assert_eq!(r.status, 403);
    let r = w
        .as_("sysadmin", "POST", "/api/v0/directory/sync-runs", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let report = r.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["unreachable"], true);
    assert_eq!(report["trigger"], "api");
    let r = w
        .as_("sysadmin", "GET", "/api/v0/directory/sync-runs", None)
        .await;
    let runs = r.json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["actor"], "root");
    assert_eq!(runs[0]["report"]["ok"], false);
    let r = w
        .as_("read-only", "POST", "/api/v0/directory/sync-runs", None)
        .await;
    assert_eq!(r.status, 403);
}

/// A registry bearer token is trusted on /api/v0 for exactly its `access` claim: it reads,
/// and uses repositories as the claim allows, but never manages accounts (even a system
/// administrator's), and one minted from a reduced access token stays reduced.
#[tokio::test]
async fn bearer_tokens_are_bounded_by_their_access_claim() {
    let w = world().await;
    let jwt = |subject: &'static str, scope: &'static str| {
        let w = &w;
        async move {
            let uri = format!("/auth/token?service=berth&scope={scope}");
            let r = w.as_(subject, "GET", &uri, None).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            format!("Bearer {}", r.json()["token"].as_str().unwrap())
        }
    };
    let private = "/api/v0/repositories/acme%2Fprivate-app";
    let reader = jwt("read-only", "repository:acme/private-app:pull").await;
    let r = w.req("GET", private, Some(&reader), None).await;
    assert_eq!(r.status, 200);
    let r = w.req("GET", "/api/v0/users", Some(&reader), None).await;
    assert_eq!(r.status, 200);
    // The admin team's token without the scope in it: visible through its roles? No:
    // the claim bounds it, so the private repository is not even visible.
    let unscoped = jwt("admin", "repository:acme/public-app:pull").await;
    let r = w.req("GET", private, Some(&unscoped), None).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (404, "NAME_UNKNOWN")
    );
    let r = w
        .req(
            "PATCH",
            "/api/v0/repositories/acme%2Fpublic-app",
            Some(&unscoped),
            Some(serde_json::json!({"visibility": "private"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (403, "DENIED"));
    let admin = jwt("admin", "repository:acme/public-app:*").await;
    let r = w
        .req(
            "PATCH",
            "/api/v0/repositories/acme%2Fpublic-app",
            Some(&admin),
            Some(serde_json::json!({"visibility": "private"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A system administrator's bearer token does not manage accounts.
    let root = jwt("sysadmin", "repository:acme/public-app:pull").await;
    let r = w
        .req(
            "POST",
            "/api/v0/orgs",
            Some(&root),
            Some(serde_json::json!({"name": "viajwt"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (403, "DENIED"));
    // A token minted from a reduced access token is no owner either.
    let reduced = jwt("reduced-token", "repository:acme/public-app:pull").await;
    let r = w
        .req(
            "PATCH",
            "/api/v0/orgs/acme",
            Some(&reduced),
            Some(serde_json::json!({"members_can_create": true})),
        )
        .await;
    assert_eq!(r.status, 403);
}

/// Issue 11: every path and method the router serves under `/api/v0` is in the OpenAPI
/// document (the GC routes and the cluster status were missing). The paths come from the
/// router itself ([`berth_http::api::routes`]); each method is probed against the real
/// router, so one added without documentation fails here.
#[tokio::test]
async fn every_routed_path_and_method_is_in_the_openapi_document() {
    let w = world().await;
    let doc = w
        .req("GET", "/api/v0/openapi.json", None, None)
        .await
        .json();
    let documented = doc["paths"].as_object().unwrap().clone();
    let routes = berth_http::api::routes();
    assert!(routes.paths().len() >= 25, "{:?}", routes.paths());
    let sample = |p: &str| {
        p.replace("{org}", "acme")
            .replace("{team}", "readers")
            .replace("{user}", "reader")
            .replace("{token}", "0000000000000000")
    };
    let mut missing = Vec::new();
    for path in routes.paths() {
        assert!(path.starts_with("/api/v0/"), "{path}");
        // The repositories' catch-all serves three documented templates.
        let cases: Vec<(String, String)> = match path.strip_suffix("{*path}") {
            Some(prefix) => [
                ("acme%2Fpublic-app", "{repository}"),
                ("acme%2Fpublic-app/grants", "{repository}/grants"),
                (
                    "acme%2Fpublic-app/grants/readers",
                    "{repository}/grants/{team}",
                ),
            ]
            .into_iter()
            .map(|(c, t)| (format!("{prefix}{c}"), format!("{prefix}{t}")))
            .collect(),
            None => vec![(sample(path), path.to_string())],
        };
        for (concrete, template) in cases {
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let r = w.as_("no-role", method, &concrete, None).await;
                if r.status == 405 {
                    continue;
                }
                let op = documented
                    .get(&template)
                    .and_then(|item| item.get(method.to_lowercase()));
                if op.is_none() {
                    missing.push(format!("{method} {template} ({})", r.status));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "served but not in openapi.json:\n{}",
        missing.join("\n")
    );
}

/// Issue 11: a repository name with its `/` unencoded is accepted as `/v2` accepts it,
/// for the repository and its grants; a name ending in `grants` is written encoded.
#[tokio::test]
async fn repository_paths_take_the_name_with_its_slash() {
    let w = world().await;
    for path in [
        "/api/v0/repositories/acme/public-app",
        "/api/v0/repositories/acme%2Fpublic-app",
    ] {
        let r = w.as_("no-role", "GET", path, None).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(r.json()["name"], "acme/public-app");
    }
    for path in [
        "/api/v0/repositories/acme/private-app/grants",
        "/api/v0/repositories/acme%2Fprivate-app/grants",
    ] {
        let r = w.as_("sysadmin", "GET", path, None).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert!(r.json().is_array(), "{path}");
    }
    let r = w
        .as_(
            "sysadmin",
            "PUT",
            "/api/v0/repositories/acme/private-app/grants/readers",
            Some(serde_json::json!({"role": "read-only"})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A missing repository, unencoded: the same answer as encoded.
    for path in [
        "/api/v0/repositories/acme/none",
        "/api/v0/repositories/acme%2Fnone",
    ] {
        let r = w.as_("no-role", "GET", path, None).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (404, "NAME_UNKNOWN"),
            "{path}"
        );
    }
    // A method the path does not take.
    let r = w
        .as_(
            "sysadmin",
            "POST",
            "/api/v0/repositories/acme/public-app",
            None,
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, HEAD, PATCH, DELETE");
}
