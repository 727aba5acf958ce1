//! The Notary v1 routes under `/v2/<gun>/_trust/`: Docker Content Trust served by the
//! registry itself, on its own listener, TLS and tokens. A GUN is `<host>/<repository>`;
//! its host must be a name of this registry (`trust::Trust::is_ours`), anything else is
//! Notary's 404. Access was decided before this runs, as for every `/v2` endpoint
//! (`Endpoint::access`): reading is pulling, signing is pushing, deleting is deleting.
//! `/v2/_trust/changefeed` lists every repository's changes, each kept only for a caller
//! who may pull that repository (`Manage::trust_changes`).

use crate::endpoint::TrustOp;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::access::Caller;
use berth_core::manage::Manage;
use berth_core::trust::{Lookup, TrustError};
use berth_oci::RepoName;
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, ApiError>;

/// The largest update accepted, all parts together (Notary sets none; real ones are a few
/// KiB, a repository with thousands of signed tags a few MiB).
pub const MAX_UPDATE_BYTES: u64 = 16 << 20;
/// The most parts (role files) in one update.
const MAX_PARTS: usize = 1000;

/// How long clients and caches may keep what a GET returns: the current file briefly, a
/// file named by version or checksum (which never changes) for 30 days.
const CACHE_CURRENT: &str = "public, max-age=300, s-maxage=300, must-revalidate";
const CACHE_CONSISTENT: &str = "public, max-age=2592000, s-maxage=2592000";

/// Serves one Notary route of `repo`, whose GUN's host part is `host`.
pub async fn handle(
    st: &AppState,
    caller: &Caller,
    host: String,
    repo: RepoName,
    op: TrustOp,
    req: Request,
) -> Result<Response> {
    let request_host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !st.trust.is_ours(&host, request_host) {
        return Err(TrustError::NotFound.into());
    }
    let gun = format!("{host}/{repo}");
    let trust = &st.trust;
    match op {
        TrustOp::Get { role, lookup } => {
            let file = trust.get(&repo, &role, &lookup).await?;
            let cache = match lookup {
                Lookup::Current => CACHE_CURRENT,
                _ => CACHE_CONSISTENT,
            };
            let modified = chrono::DateTime::from_timestamp_millis(file.created_at)
                .unwrap_or_default()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            let mut r = (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, cache),
                ],
                file.data,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&modified) {
                r.headers_mut().insert(header::LAST_MODIFIED, v);
            }
            Ok(r)
        }
        TrustOp::Update => {
            let uploads = read_update(req).await?;
            // Trust data belongs to a repository, with its visibility and grants: the
            // first signing creates it, as a first push does.
            st.access.create_on_push(caller, &repo).await?;
            // The account the update's new keys sign for (a bearer caller's, resolved).
            let by = st.access.resolve(caller).await?.account.unwrap_or(0);
            if let Err(e) = trust.update(&repo, &gun, &uploads, by).await {
                let roles: Vec<&String> = uploads.keys().collect();
                tracing::info!(repo = %repo, ?roles, error = %e, "trust update refused");
                return Err(e.into());
            }
            // Signature policies read the signed targets: decided anew at once here.
            st.policies.invalidate();
            let roles: Vec<&String> = uploads.keys().collect();
            let detail = serde_json::json!({ "trust": "update", "roles": roles });
            st.access
                .audit(caller, "trust", repo.as_str(), detail)
                .await;
            Ok(StatusCode::OK.into_response())
        }
        TrustOp::Key(role) | TrustOp::RotateKey(role) => {
            let rotate = matches!(op, TrustOp::RotateKey(_));
            let key = trust.key(&repo, role, rotate).await?;
            if rotate {
                let detail = serde_json::json!({ "trust": "key rotated", "role": role.as_str() });
                st.access
                    .audit(caller, "trust", repo.as_str(), detail)
                    .await;
            }
            Ok(axum::Json(key).into_response())
        }
        TrustOp::Delete => {
            trust.delete(&repo).await?;
            st.policies.invalidate();
            let detail = serde_json::json!({ "trust": "delete" });
            st.access
                .audit(caller, "delete", repo.as_str(), detail)
                .await;
            Ok(StatusCode::OK.into_response())
        }
        TrustOp::Changes => {
            let (change_id, records) = changefeed_query(&req);
            let changes = trust.changes(Some(&repo), &change_id, &records).await?;
            Ok(changefeed(&host, &changes))
        }
    }
}

/// `GET /v2/_trust/changefeed`: the changes of every repository the caller may pull, their
/// GUNs under the host the request names (the registry's first configured name without
/// one).
pub async fn changes_all(st: &AppState, caller: &Caller, req: Request) -> Result<Response> {
    let (change_id, records) = changefeed_query(&req);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| st.trust.hostname().to_string());
    let changes = Manage::new(&st.access)
        .trust_changes(caller, &st.trust, &change_id, &records)
        .await?;
    Ok(changefeed(&host, &changes))
}

/// The `change_id` and `records` a changefeed request asks for ("" when absent).
fn changefeed_query(req: &Request) -> (String, String) {
    let query = crate::v2::query_pairs(req);
    let get = |k: &str| {
        query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    (get("change_id"), get("records"))
}

/// Notary's changefeed answer: `count` and the records, each GUN under `host`.
fn changefeed(host: &str, changes: &[berth_meta::TrustChange]) -> Response {
    let records: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| {
            let at = chrono::DateTime::from_timestamp_millis(c.created_at).unwrap_or_default();
            serde_json::json!({
                "ID": c.id.to_string(),
                "CreatedAt": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "GUN": format!("{host}/{}", c.repo),
                "Version": c.version,
                "SHA256": c.sha256,
                "Category": c.category,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "count": records.len(), "records": records })).into_response()
}

/// The parts of a multipart update, each named by its `filename` (the role, which may
/// contain `/`: the raw parameter, not a path-sanitised name), bounded in size and count.
async fn read_update(req: Request) -> Result<BTreeMap<String, Vec<u8>>> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::trust_malformed_upload(format!("not multipart/form-data: {e}")))?;
    let limits = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(MAX_UPDATE_BYTES));
    let body = req.into_body().into_data_stream();
    let mut form = multer::Multipart::with_constraints(body, boundary, limits);
    let mut parts = BTreeMap::new();
    let bad = |e: multer::Error| ApiError::trust_malformed_upload(e.to_string());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field
            .file_name()
            .map(str::to_string)
            .ok_or(TrustError::NoFilename)?;
        let bytes = field.bytes().await.map_err(bad)?;
        if parts.len() >= MAX_PARTS {
            return Err(ApiError::trust_malformed_upload(format!(
                "more than {MAX_PARTS} files in one update"
            )));
        }
        parts.insert(name, bytes.to_vec());
    }
    Ok(parts)
}
