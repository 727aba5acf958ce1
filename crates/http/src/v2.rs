//! The distribution API: one handler per [`Endpoint`] variant, all behind one entry point
//! that parses the path, so a request that is not a known endpoint never reaches a store.

use crate::endpoint::Endpoint;
use crate::error::{upload_range, ApiError};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::rbac::Permission;
use berth_blob::ByteStream;
use berth_core::policy::Outcome;
use berth_core::registry::ByteRange;
use berth_core::{Caller, CoreError, Verdict};
use berth_oci::{Algorithm, Digest, Reference, RepoName};
use futures::{StreamExt, TryStreamExt};

type Result<T> = std::result::Result<T, ApiError>;

const API_VERSION: HeaderValue = HeaderValue::from_static("registry/2.0");

/// Entry point for everything under `/v2`.
pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let method = req.method().clone();
    let endpoint = match Endpoint::parse(&method, req.uri().path()) {
        Ok(e) => e,
        Err(e) => return labelled(ApiError::from(e).into_response(), "v2_invalid"),
    };
    let route = endpoint.name();
    crate::trace::record_route(route);
    let (parts, body) = req.into_parts();
    let caller = match crate::auth::caller(&st, &parts).await {
        Ok(c) => c,
        Err(e) => return with_version(e.into_response(), route),
    };
    if let Err(e) = crate::auth::check(&st, &caller, &endpoint, &parts).await {
        return with_version(e.into_response(), route);
    }
    let req = Request::from_parts(parts, body);
    let resp = match dispatch(&st, &caller, endpoint, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    with_version(resp, route)
}

fn with_version(mut resp: Response, route: &'static str) -> Response {
    resp.headers_mut()
        .insert("docker-distribution-api-version", API_VERSION);
    labelled(resp, route)
}

/// Tells [`crate::ops::observe`] the endpoint, for the metrics' `route` label.
fn labelled(mut resp: Response, route: &'static str) -> Response {
    resp.extensions_mut().insert(crate::ops::V2Route(route));
    resp
}

struct Query(Vec<(String, String)>);

/// The query string's fields, in order.
pub(crate) fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

impl Query {
    fn from(req: &Request) -> Query {
        Query(query_pairs(req))
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    fn n(&self) -> Result<Option<u32>> {
        match self.get("n") {
            None => Ok(None),
            Some(v) => v
                .parse::<u32>()
                .map(Some)
                .map_err(|_| ApiError::unsupported(format!("invalid page size n={v:?}"))),
        }
    }
    fn digest(&self, k: &str) -> Result<Option<Digest>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => Digest::parse(v)
                .map(Some)
                .map_err(|e| ApiError::digest_invalid(e.to_string())),
        }
    }
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(ApiError::content_length_invalid),
    }
}

/// Parses `Content-Range: start-end` (also `bytes start-end/total` and `bytes=start-end`).
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = ApiError::content_range_invalid;
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// Parses a `Range: bytes=...` request header (one range only).
fn byte_range(h: &HeaderMap) -> Result<Option<ByteRange>> {
    let Some(v) = h.get(header::RANGE) else {
        return Ok(None);
    };
    let bad = ApiError::range_invalid;
    let s = v.to_str().map_err(|_| bad())?.trim();
    let spec = s.strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return Ok(Some(ByteRange::Suffix(b.parse().map_err(|_| bad())?)));
    }
    let start: u64 = a.parse().map_err(|_| bad())?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse::<u64>().map_err(|_| bad())?)
    };
    if end.is_some_and(|e| e < start) {
        return Err(bad());
    }
    Ok(Some(ByteRange::From(start, end)))
}

fn body_stream(body: Body) -> ByteStream {
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .boxed()
}

fn has_body(h: &HeaderMap) -> bool {
    match h.get(header::CONTENT_LENGTH) {
        Some(v) => v.as_bytes() != b"0",
        None => h.contains_key(header::TRANSFER_ENCODING),
    }
}

fn location(kind: &str, repo: &RepoName, tail: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v2/{repo}/{kind}/{tail}"))
        .unwrap_or(HeaderValue::from_static("/v2/"))
}

fn upload_accepted(
    st: &AppState,
    repo: &RepoName,
    id: &str,
    offset: u64,
    status: StatusCode,
) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, location("blobs/uploads", repo, id));
    h.insert(
        header::RANGE,
        HeaderValue::from_str(&upload_range(offset)).unwrap_or(HeaderValue::from_static("0-0")),
    );
    h.insert(
        "docker-upload-uuid",
        HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    let min = st.registry.config().chunk_min_length;
    if min > 0 {
        h.insert("oci-chunk-min-length", HeaderValue::from(min));
    }
    r
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, location("blobs", repo, digest.as_str()));
    h.insert("docker-content-digest", digest_header(digest));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn digest_header(d: &Digest) -> HeaderValue {
    HeaderValue::from_str(d.as_str()).unwrap_or(HeaderValue::from_static(""))
}

fn link_next(
    path: &str,
    n: Option<u32>,
    last: Option<&String>,
    extra: &str,
) -> Option<HeaderValue> {
    let last = last?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(n) = n {
        q.append_pair("n", &n.to_string());
    }
    q.append_pair("last", last);
    HeaderValue::from_str(&format!("<{path}?{}{extra}>; rel=\"next\"", q.finish())).ok()
}

async fn read_manifest_body(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes> {
    let limit = berth_oci::manifest::MAX_MANIFEST_SIZE;
    let too_large = || ApiError::from(CoreError::ManifestTooLarge(limit));
    if content_length(headers)?.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::from(CoreError::BodyFailed(e.to_string())))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn dispatch(st: &AppState, caller: &Caller, ep: Endpoint, req: Request) -> Result<Response> {
    let reg = &st.registry;
    let query = Query::from(&req);
    let (parts, body) = req.into_parts();
    match ep {
        Endpoint::Base => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        Endpoint::Catalog => catalog(st, caller, &query).await,
        Endpoint::TrustChanges => {
            let req = Request::from_parts(parts, body);
            Box::pin(crate::trust::changes_all(st, caller, req)).await
        }
        Endpoint::Trust { host, repo, op } => {
            // Boxed: every request's future would otherwise be sized for this path.
            let req = Request::from_parts(parts, body);
            Box::pin(crate::trust::handle(st, caller, host, repo, op, req)).await
        }
        Endpoint::TagsList { repo } => tags_list(st, repo, &query).await,
        Endpoint::GetManifest { repo, reference } | Endpoint::HeadManifest { repo, reference } => {
            get_manifest(st, caller, repo, reference, &parts).await
        }
        Endpoint::PutManifest { repo, reference } => {
            put_manifest(st, caller, repo, reference, &parts.headers, body).await
        }
        Endpoint::DeleteManifest { repo, reference } => {
            reg.manifest_delete(&repo, &reference).await?;
            let detail = serde_json::json!({ "reference": reference.to_string() });
            Ok(deleted(st, caller, &repo, detail).await)
        }
        Endpoint::HeadBlob { repo, digest } => head_blob(st, repo, digest).await,
        Endpoint::GetBlob { repo, digest } => get_blob(st, repo, digest, &parts.headers).await,
        Endpoint::DeleteBlob { repo, digest } => {
            reg.blob_delete(&repo, &digest).await?;
            let detail = serde_json::json!({ "blob": digest.as_str() });
            Ok(deleted(st, caller, &repo, detail).await)
        }
        Endpoint::StartUpload { repo } => {
            start_upload(st, caller, repo, &query, &parts.headers, body).await
        }
        Endpoint::GetUpload { repo, id } => {
            let up = reg.upload_status(&repo, &id).await?;
            Ok(upload_accepted(
                st,
                &repo,
                &up.id,
                up.offset,
                StatusCode::NO_CONTENT,
            ))
        }
        // Boxed: their futures are several KiB, and every request's future, the reads'
        // too, would otherwise carry and copy that size.
        Endpoint::PatchUpload { repo, id } => {
            Box::pin(patch_upload(st, repo, id, &parts.headers, body)).await
        }
        Endpoint::PutUpload { repo, id } => {
            Box::pin(put_upload(st, repo, id, &query, &parts.headers, body)).await
        }
        Endpoint::DeleteUpload { repo, id } => {
            reg.upload_cancel(&repo, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Endpoint::Referrers { repo, digest } => referrers(st, repo, digest, &query).await,
    }
}

/// `GET /v2/_catalog`: every repository the caller may see, a page at a time.
async fn catalog(st: &AppState, caller: &Caller, query: &Query) -> Result<Response> {
    let reg = &st.registry;
    let n = query.n()?;
    let max = reg.config().max_page;
    let size = n.unwrap_or(max).min(max);
    // Whoever may read everything walks the repository index directly (the pull
    // path's read connections); everyone else gets it filtered by their rights.
    let (items, next) = if st.access.may_read_everything(caller).await? {
        let page = reg.catalog(query.get("last"), Some(size)).await?;
        let next = page.more.then(|| page.items.last().cloned()).flatten();
        (page.items, next)
    } else {
        st.access.catalog(caller, query.get("last"), size).await?
    };
    let link = link_next("/v2/_catalog", n, next.as_ref(), "");
    let mut r = axum::Json(serde_json::json!({ "repositories": items })).into_response();
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, l);
    }
    Ok(r)
}

/// `GET /v2/<name>/tags/list`.
async fn tags_list(st: &AppState, repo: RepoName, query: &Query) -> Result<Response> {
    let reg = &st.registry;
    let n = query.n()?;
    let page = reg.tags_list(&repo, query.get("last"), n).await?;
    let path = format!("/v2/{repo}/tags/list");
    let link = page
        .more
        .then(|| link_next(&path, n, page.items.last(), ""))
        .flatten();
    let mut r = axum::Json(serde_json::json!({ "name": repo.as_str(), "tags": page.items }))
        .into_response();
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, l);
    }
    Ok(r)
}

/// `GET` and `HEAD /v2/<name>/manifests/<reference>`.
async fn get_manifest(
    st: &AppState,
    caller: &Caller,
    repo: RepoName,
    reference: Reference,
    parts: &Parts,
) -> Result<Response> {
    let reg = &st.registry;
    let headers = &parts.headers;
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let m = reg.manifest_get(&repo, &reference, &accept).await?;
    let outcome = st
        .policies
        .check(&st.access, caller, &repo, &reference, &m)
        .await?;
    let mut r = if parts.method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(m.bytes.clone()))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&m.media_type)
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.bytes.len()));
    h.insert("docker-content-digest", digest_header(&m.digest));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", m.digest)).unwrap_or(HeaderValue::from_static("")),
    );
    if let Outcome::Warn(message) = outcome {
        // RFC 7234 warn-code 299, the text quoted (a quote or backslash escaped).
        let text = message.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            h.insert(header::WARNING, v);
        }
    }
    Ok(r)
}

/// `PUT /v2/<name>/manifests/<reference>`: creates the repository on first push.
async fn put_manifest(
    st: &AppState,
    caller: &Caller,
    repo: RepoName,
    reference: Reference,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reg = &st.registry;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_manifest_body(headers, body).await?;
    st.access.create_on_push(caller, &repo).await?;
    let put = reg
        .manifest_put(&repo, &reference, ct.as_deref(), bytes)
        .await?;
    if put.signature {
        st.policies.invalidate();
    }
    st.access
        .audit(
            caller,
            "push",
            repo.as_str(),
            serde_json::json!({ "reference": reference.to_string(), "digest": put.digest.as_str() }),
        )
        .await;
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location("manifests", &repo, put.digest.as_str()),
    );
    h.insert("docker-content-digest", digest_header(&put.digest));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(s) = &put.subject {
        h.insert("oci-subject", digest_header(s));
    }
    Ok(r)
}

/// The answer to a `DELETE` (of a manifest or a blob) that succeeded, recorded in the audit log first.
async fn deleted(
    st: &AppState,
    caller: &Caller,
    repo: &RepoName,
    detail: serde_json::Value,
) -> Response {
    st.access
        .audit(caller, "delete", repo.as_str(), detail)
        .await;
    StatusCode::ACCEPTED.into_response()
}

/// `HEAD /v2/<name>/blobs/<digest>`.
async fn head_blob(st: &AppState, repo: RepoName, digest: Digest) -> Result<Response> {
    let reg = &st.registry;
    let size = reg.blob_head(&repo, &digest).await?;
    let mut r = Response::new(Body::empty());
    blob_headers(r.headers_mut(), size, &digest);
    Ok(r)
}

/// The headers of a blob's bytes (`len` of them) in a `HEAD` or `GET` answer.
fn blob_headers(h: &mut HeaderMap, len: u64, digest: &Digest) {
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("docker-content-digest", digest_header(digest));
}

/// `GET /v2/<name>/blobs/<digest>`, whole or a byte range.
async fn get_blob(
    st: &AppState,
    repo: RepoName,
    digest: Digest,
    headers: &HeaderMap,
) -> Result<Response> {
    let reg = &st.registry;
    let range = byte_range(headers)?;
    let b = reg.blob_get(&repo, &digest, range).await?;
    let (status, len) = match b.range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, e - s + 1),
        None => (StatusCode::OK, b.size),
    };
    let mut r = Response::new(Body::from_stream(b.stream));
    *r.status_mut() = status;
    let h = r.headers_mut();
    blob_headers(h, len, &digest);
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{digest}\"")).unwrap_or(HeaderValue::from_static("")),
    );
    if let Some((s, e)) = b.range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{}", b.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

/// `POST /v2/<name>/blobs/uploads/`: a mount, a monolithic upload, or a new session.
async fn start_upload(
    st: &AppState,
    caller: &Caller,
    repo: RepoName,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reg = &st.registry;
    st.access.create_on_push(caller, &repo).await?;
    if let Some(mount) = query.digest("mount")? {
        let from = match query.get("from") {
            Some(f) => {
                Some(RepoName::parse(f).map_err(|e| ApiError::from(CoreError::NameInvalid(e)))?)
            }
            None => None,
        };
        // A blob is mounted only from where the caller may pull it; without
        // `from`, only for those who may read everything. Otherwise the client
        // uploads it, and learns nothing about other repositories.
        let may_mount = match &from {
            Some(f) => st.access.authorize(caller, f, Permission::Pull).await? == Verdict::Allowed,
            None => st.access.may_read_everything(caller).await?,
        };
        if may_mount && reg.mount(&repo, from.as_ref(), &mount).await?.is_some() {
            return Ok(blob_created(&repo, &mount));
        }
        // Not mountable: fall back to an ordinary upload, as the spec asks.
    } else if let Some(digest) = query.digest("digest")? {
        let cl = content_length(headers)?;
        reg.upload_monolithic(&repo, &digest, body_stream(body), cl)
            .await?;
        return Ok(blob_created(&repo, &digest));
    }
    // The spec's `digest-algorithm`: hash the session's bytes with it as they arrive.
    let algorithm = match query.get("digest-algorithm") {
        None | Some("sha256") => Algorithm::Sha256,
        Some("sha512") => Algorithm::Sha512,
        Some(other) => {
            return Err(CoreError::Unsupported(format!(
                "digest-algorithm {other:?}: sha256 and sha512 are supported"
            ))
            .into())
        }
    };
    let up = reg.upload_start_with(&repo, algorithm).await?;
    Ok(upload_accepted(
        st,
        &repo,
        &up.id,
        up.offset,
        StatusCode::ACCEPTED,
    ))
}

/// `PATCH` of an upload session: one chunk.
async fn patch_upload(
    st: &AppState,
    repo: RepoName,
    id: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reg = &st.registry;
    let range = content_range(headers)?;
    let cl = content_length(headers)?;
    let up = reg
        .upload_patch(&repo, &id, range, cl, body_stream(body))
        .await?;
    Ok(upload_accepted(
        st,
        &repo,
        &up.id,
        up.offset,
        StatusCode::ACCEPTED,
    ))
}

/// `PUT` of an upload session: the last chunk (if any) and the digest.
async fn put_upload(
    st: &AppState,
    repo: RepoName,
    id: String,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reg = &st.registry;
    let digest = query
        .digest("digest")?
        .ok_or_else(|| ApiError::digest_invalid("the digest query parameter is required"))?;
    let range = content_range(headers)?;
    let cl = content_length(headers)?;
    let body = has_body(headers).then(|| body_stream(body));
    reg.upload_finish(&repo, &id, &digest, range, cl, body)
        .await?;
    Ok(blob_created(&repo, &digest))
}

/// `GET /v2/<name>/referrers/<digest>`.
async fn referrers(
    st: &AppState,
    repo: RepoName,
    digest: Digest,
    query: &Query,
) -> Result<Response> {
    let reg = &st.registry;
    let at = query.get("artifactType").filter(|s| !s.is_empty());
    let doc = reg.referrers(&repo, &digest, at).await?;
    let mut r = Response::new(Body::from(doc));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(berth_oci::media::OCI_INDEX),
    );
    if at.is_some() {
        h.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}
