//! The authorization matrix of `/v2`: every endpoint x every kind of caller x a public and a
//! private repository, against the expected results in `v2_matrix.tsv` (data a person can
//! read and review). Real router, real core, real SQLite store and filesystem blob store in
//! a temporary directory; every request carries its credentials as a client would.
//!
//! Each cell first prepares what the endpoint needs as the system administrator (a
//! manifest to get or delete, an upload to continue, a blob to delete), so an allowed
//! request really succeeds and a refused one really had something to refuse.

use axum::body::Body;
use axum::http::StatusCode;
use base64::Engine as _;
use berth_oci::Digest;
use berth_testkit::wire::OCI_MANIFEST;
use berth_testkit::world::{repo_of, Resp, World};

/// Prepares and sends the request of one cell.
async fn cell(w: &World, endpoint: &str, auth: Option<&str>, vis: &str, n: usize) -> Resp {
    let repo = repo_of(vis);
    let (m, _) = w.manifest(repo, Some("v1"), "base").await;
    match endpoint {
        "base" => w.call("GET", "/v2/", auth).await,
        "catalog" => w.call("GET", "/v2/_catalog", auth).await,
        "tags_list" => w.call("GET", &format!("/v2/{repo}/tags/list"), auth).await,
        "manifest_get" | "manifest_head" => {
            let method = if endpoint == "manifest_get" {
                "GET"
            } else {
                "HEAD"
            };
            w.req(
                method,
                &format!("/v2/{repo}/manifests/v1"),
                auth,
                &[("accept", OCI_MANIFEST)],
                Body::empty(),
            )
            .await
        }
        "blob_get" | "blob_head" => {
            let d = w.blob(repo, b"layer base").await;
            let method = if endpoint == "blob_get" {
                "GET"
            } else {
                "HEAD"
            };
            w.call(method, &format!("/v2/{repo}/blobs/{d}"), auth).await
        }
        "referrers" => {
            w.call("GET", &format!("/v2/{repo}/referrers/{m}"), auth)
                .await
        }
        "manifest_put" => {
            let (_, bytes) = w.manifest(repo, None, &format!("put {n}")).await;
            w.req(
                "PUT",
                &format!("/v2/{repo}/manifests/put-{n}"),
                auth,
                &[("content-type", OCI_MANIFEST)],
                bytes,
            )
            .await
        }
        "manifest_delete" => {
            let (d, _) = w
                .manifest(repo, Some(&format!("del-{n}")), &format!("del {n}"))
                .await;
            w.call("DELETE", &format!("/v2/{repo}/manifests/{d}"), auth)
                .await
        }
        "blob_delete" => {
            let d = w.blob(repo, format!("doomed {n}").as_bytes()).await;
            w.call("DELETE", &format!("/v2/{repo}/blobs/{d}"), auth)
                .await
        }
        "upload_start" => {
            w.call("POST", &format!("/v2/{repo}/blobs/uploads/"), auth)
                .await
        }
        "upload_get" | "upload_patch" | "upload_put" | "upload_delete" => {
            let id = w.upload(repo).await;
            let uri = format!("/v2/{repo}/blobs/uploads/{id}");
            let data = format!("chunk {n}").into_bytes();
            let len = data.len().to_string();
            match endpoint {
                "upload_get" => w.call("GET", &uri, auth).await,
                "upload_patch" => {
                    w.req("PATCH", &uri, auth, &[("content-length", &len)], data)
                        .await
                }
                "upload_put" => {
                    let d = Digest::sha256_of(&data);
                    w.req(
                        "PUT",
                        &format!("{uri}?digest={d}"),
                        auth,
                        &[("content-length", &len)],
                        data,
                    )
                    .await
                }
                _ => w.call("DELETE", &uri, auth).await,
            }
        }
        "upload_mount_any" => {
            let d = w
                .blob("hidden/store", format!("hidden {n}").as_bytes())
                .await;
            w.call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?mount={d}"),
                auth,
            )
            .await
        }
        "token" => {
            w.call(
                "GET",
                &format!("/auth/token?service=berth&scope=repository:{repo}:pull,push,delete"),
                auth,
            )
            .await
        }
        other => panic!("v2_matrix.tsv names an unknown endpoint {other:?}"),
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
    let text = include_str!("../v2_matrix.tsv");
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
    let w = World::new(crate::app).await;
    let rows = table();
    assert!(
        rows.len() >= 18 * 11 * 2,
        "the table covers the whole matrix"
    );
    let mut failures = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let auth = w
            .creds
            .get(row.subject.as_str())
            .unwrap_or_else(|| panic!("line {}: unknown subject {}", row.line, row.subject));
        let r = cell(&w, &row.endpoint, auth.as_deref(), &row.vis, n).await;
        let mut code = observed(row, &r);
        // HEAD cannot carry the error body; its status says it all.
        if row.endpoint == "manifest_head" || row.endpoint == "blob_head" {
            code = row.code.clone();
        }
        if r.status.as_u16() != row.status || code != row.code {
            failures.push(format!(
                "line {}: {} as {} on {}: expected {} {}, got {} {}",
                row.line,
                row.endpoint,
                row.subject,
                row.vis,
                row.status,
                row.code,
                r.status.as_u16(),
                code
            ));
        }
        if r.status == StatusCode::UNAUTHORIZED && row.endpoint != "token" {
            let challenge = r
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !challenge
                .starts_with("Bearer realm=\"http://localhost/auth/token\",service=\"berth\"")
            {
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
/// service will again refuse; and for a mount without `from`, which no bearer token
/// allows (it would need pull on every repository).
#[tokio::test]
async fn the_matrix_holds_with_bearer_tokens() {
    let w = World::new(crate::app).await;
    let mut failures = Vec::new();
    let rows: Vec<Row> = table()
        .into_iter()
        .filter(|r| !matches!(r.endpoint.as_str(), "token" | "base" | "catalog"))
        .filter(|r| {
            !matches!(
                r.subject.as_str(),
                "expired-token" | "revoked-token" | "restricted-bearer"
            )
        })
        .collect();
    for (n, row) in rows.iter().enumerate() {
        let basic = w.creds[row.subject.as_str()].clone();
        let t = w
            .call(
                "GET",
                &format!(
                    "/auth/token?service=berth&scope=repository:{}:pull,push,delete",
                    repo_of(&row.vis)
                ),
                basic.as_deref(),
            )
            .await;
        assert_eq!(t.status, StatusCode::OK, "token for {}", row.subject);
        let bearer = format!("Bearer {}", t.json()["token"].as_str().unwrap());
        let r = cell(&w, &row.endpoint, Some(&bearer), &row.vis, 10_000 + n).await;
        let (mut status, mut code) = (row.status, row.code.clone());
        // (Only where the user's own roles would allow it: on the ownerless repository the
        // user has no right either, so the answer is the table's refused write.)
        if row.subject == "reduced-token" && row.status == 403 && row.vis != "ownerless" {
            (status, code) = (401, "UNAUTHORIZED".into());
        }
        // A bearer token names its repositories: it never "may pull everything", so a mount
        // without `from` becomes an ordinary upload even for the system administrator.
        if row.endpoint == "upload_mount_any" && row.status == 201 {
            (status, code) = (202, "-".into());
        }
        let mut got = observed(row, &r);
        if row.endpoint.ends_with("_head") {
            got = code.clone();
        }
        if r.status.as_u16() != status || got != code {
            failures.push(format!(
                "line {}: {} as {} (bearer) on {}: expected {} {}, got {} {}",
                row.line,
                row.endpoint,
                row.subject,
                row.vis,
                status,
                code,
                r.status.as_u16(),
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 11: a write the caller may not make is answered alike whether the repository
/// exists (private, invisible to the caller), exists and is visible (public), or does not
/// exist at all, in a namespace of nobody's or of an organisation: 403 `DENIED` with the
/// docker client's usual message, so the answer tells nothing about the repository and the
/// caller learns that the right is missing. Anonymous callers get the challenge.
#[tokio::test]
async fn refused_writes_answer_alike_whether_the_repository_exists_or_not() {
    let w = World::new(crate::app).await;
    let no_role = w.creds["no-role"].clone();
    let mut answers = Vec::new();
    for repo in [
        "acme/private-app",
        "acme/public-app",
        "acme/none",
        "top/app",
    ] {
        for (method, path) in [
            ("POST", format!("/v2/{repo}/blobs/uploads/")),
            ("PUT", format!("/v2/{repo}/manifests/v1")),
            (
                "DELETE",
                format!("/v2/{repo}/manifests/sha256:{}", "0".repeat(64)),
            ),
        ] {
            let r = w.call(method, &path, no_role.as_deref()).await;
            let message = r.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .replace(repo, "REPO");
            answers.push((method, repo, r.status.as_u16(), r.code(), message));
            let anon = w.call(method, &path, None).await;
            assert_eq!(anon.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
    for (method, repo, status, code, message) in &answers {
        assert_eq!(
            (*status, code.as_str()),
            (403, "DENIED"),
            "{method} {repo}: {message}"
        );
        assert!(
            message.starts_with("requested access to the resource is denied"),
            "{method} {repo}: {message}"
        );
        let same = answers.iter().find(|a| a.0 == *method).expect("an answer");
        assert_eq!(message, &same.4, "{method}: {repo} and {} differ", same.1);
    }
}
