//! Authentication on the wire: credentials from the `Authorization` header, the
//! `WWW-Authenticate` challenge of the Docker token protocol, the access check of each
//! `/v2` endpoint, and the token endpoint (`GET`/`POST /auth/token`).
//!
//! The decisions are `berth_core::Access`'s; this module only reads and writes HTTP.

use crate::endpoint::{Access as Need, Endpoint};
use crate::error::ApiError;
use crate::server::ConnInfo;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_auth::rbac::Permission;
use berth_auth::scope::{merge_scopes, parse_scopes, ResourceName};
use berth_core::access::AuthMethod;
use berth_core::manage::ManageError;
use berth_core::{AccessError, Caller, Credentials, Verdict};
use berth_oci::RepoName;
use std::net::IpAddr;

/// Largest token request form accepted.
const MAX_FORM: usize = 64 * 1024;

/// Reads `Authorization: Basic ...` or `Authorization: Bearer ...`.
pub fn credentials(h: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    let Some(v) = h.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = |m: &str| ApiError::unauthorized(m);
    let v = v
        .to_str()
        .map_err(|_| bad("malformed Authorization header"))?
        .trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| bad("malformed Basic credentials"))?;
        let s = String::from_utf8(raw).map_err(|_| bad("malformed Basic credentials"))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| bad("malformed Basic credentials"))?;
        Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }))
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Ok(Some(Credentials::Bearer(rest.to_string())))
    } else {
        Err(bad(
            "unsupported Authorization scheme (use Basic or Bearer)",
        ))
    }
}

/// The caller's address.
pub fn source(req: &Parts) -> Option<IpAddr> {
    req.extensions.get::<ConnInfo>().map(|c| c.peer.ip())
}

fn is_tls(req: &Parts) -> bool {
    req.extensions.get::<ConnInfo>().is_some_and(|c| c.tls)
}

/// The token endpoint's URL, as clients reach this server.
fn realm(st: &AppState, req: &Parts) -> String {
    if let Some(r) = &st.realm {
        return r.to_string();
    }
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the `:authority` pseudo-header, which
    // arrives as the request URI's authority.
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if is_tls(req) { "https" } else { "http" };
    format!("{scheme}://{host}/auth/token")
}

/// 401 with the Bearer challenge: where to get a token, for which service and scope.
pub fn challenge(
    st: &AppState,
    req: &Parts,
    scope: Option<String>,
    insufficient: bool,
    message: &str,
) -> ApiError {
    let mut v = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(st, req),
        st.access.config().service
    );
    if let Some(s) = scope {
        v.push_str(&format!(",scope=\"{s}\""));
    }
    if insufficient {
        v.push_str(",error=\"insufficient_scope\"");
    }
    ApiError::unauthorized(message).with_header(header::WWW_AUTHENTICATE, v)
}

fn scope_of(repo: &RepoName, need: Need) -> String {
    let actions = match need {
        Need::Push => "pull,push",
        Need::Delete => "delete",
        _ => "pull",
    };
    format!("repository:{repo}:{actions}")
}

/// Authenticates the request's caller (anonymous without credentials).
pub async fn caller(st: &AppState, req: &Parts) -> Result<Caller, ApiError> {
    let creds =
        credentials(&req.headers).map_err(|e| challenge(st, req, None, false, &e.message))?;
    st.access
        .authenticate(creds.as_ref(), source(req))
        .await
        .map_err(|e| match e {
            AccessError::Unauthorized(m) => challenge(st, req, None, false, &m),
            other => ApiError::from(other),
        })
}

/// Checks that `caller` may use `ep`. `Ok` lets the request through.
pub async fn check(
    st: &AppState,
    caller: &Caller,
    ep: &Endpoint,
    req: &Parts,
) -> Result<(), ApiError> {
    let (need, repo) = ep.access();
    let perm = match need {
        // `/v2/` tells anonymous clients to authenticate: that is how the Docker client
        // learns where the token service is.
        Need::None => {
            return if caller.is_anonymous() && !st.access.config().anonymous_push {
                Err(challenge(st, req, None, false, "authentication required"))
            } else {
                Ok(())
            };
        }
        // Everyone may list; the listing shows only what the caller may pull.
        Need::Catalog => return Ok(()),
        Need::Pull => Permission::Pull,
        Need::Push => Permission::Push,
        Need::Delete => Permission::Delete,
    };
    let Some(repo) = repo else { return Ok(()) };
    match st.access.authorize(caller, repo, perm).await? {
        Verdict::Allowed => Ok(()),
        v @ (Verdict::Denied | Verdict::Invisible) => Err(ApiError::refused(v, perm, repo)),
        Verdict::Challenge => Err(challenge(
            st,
            req,
            Some(scope_of(repo, need)),
            caller.method == AuthMethod::Bearer,
            "authentication required",
        )),
    }
}

/// The token endpoint: `GET` (Basic credentials optional) and `POST` (OAuth2 form with
/// `grant_type=password` or `refresh_token`).
pub async fn token(State(st): State<AppState>, req: Request) -> Response {
    match token_inner(&st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

struct TokenRequest {
    service: Option<String>,
    scopes: Vec<String>,
    offline: bool,
    client_id: Option<String>,
}

/// The fields of a query string or form, in order (a field may repeat, as `scope` does).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(text: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(text).into_owned().collect())
    }

    /// The first value of `k`.
    fn get(&self, k: &str) -> Option<String> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone())
    }

    /// What a token request asks for; `offline` is the field and value asking for a
    /// refresh token (`offline_token=true` in a GET, `access_type=offline` in a POST).
    fn token_request(&self, offline: (&str, &str)) -> TokenRequest {
        TokenRequest {
            service: self.get("service"),
            scopes: (self.0.iter())
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect(),
            offline: self.get(offline.0).as_deref() == Some(offline.1),
            client_id: self.get("client_id"),
        }
    }
}

async fn token_inner(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let (req, body) = req.into_parts();
    let src = source(&req);
    let bad = |m: String| ApiError::unsupported(m);
    let (caller, tr, post) = match req.method {
        Method::GET => {
            let q = Fields::parse(req.uri.query().unwrap_or_default().as_bytes());
            let tr = q.token_request(("offline_token", "true"));
            let creds = credentials(&req.headers)?;
            let caller = match creds {
                None => Caller::anonymous(src),
                Some(Credentials::Basic { username, password }) => {
                    st.access.login(&username, &password, src).await?
                }
                Some(Credentials::Bearer(_)) => {
                    return Err(bad(
                        "the token endpoint takes Basic credentials or a POST form".into(),
                    ))
                }
            };
            (caller, tr, false)
        }
        Method::POST => {
            let ct = req
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/x-www-form-urlencoded") {
                return Err(bad(
                    "expected an application/x-www-form-urlencoded form".into()
                ));
            }
            let body = axum::body::to_bytes(body, MAX_FORM)
                .await
                .map_err(|_| bad(format!("the form is larger than {MAX_FORM} bytes")))?;
            let f = Fields::parse(&body);
            let get = |k: &str| f.get(k);
            let tr = f.token_request(("access_type", "offline"));
            let caller = match get("grant_type").as_deref() {
                Some("password") => {
                    let (Some(u), Some(p)) = (get("username"), get("password")) else {
                        return Err(bad("grant_type=password needs username and password".into()));
                    };
                    st.access.login(&u, &p, src).await?
                }
                Some("refresh_token") => {
                    let Some(t) = get("refresh_token") else {
                        return Err(bad("grant_type=refresh_token needs refresh_token".into()));
                    };
                    st.access.login_refresh(&t, src).await?
                }
                Some(other) => {
                    return Err(bad(format!(
                        "unsupported grant_type {:?}",
                        other.chars().take(64).collect::<String>()
                    )))
                }
                None => return Err(bad("grant_type is required".into())),
            };
            (caller, tr, true)
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "GET, POST",
                "the token endpoint takes GET or POST",
            ))
        }
    };
    let mut scopes = parse_scopes(&tr.scopes).map_err(|e| bad(e.to_string()))?;
    // Notary asks for its GUN (`host:port/team/app`): when the host is this registry's,
    // the scope is the repository's (and the token names the repository).
    let host = req.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    for scope in &mut scopes {
        if let ResourceName::Qualified(gun) = &scope.name {
            if st.trust.is_ours(gun.host(), host) {
                scope.name = ResourceName::Repository(gun.path());
            }
        }
    }
    let scopes = merge_scopes(scopes);
    // A refresh token only goes to a caller who proved a password (or a token) just now.
    let offline = tr.offline && caller.method != AuthMethod::RefreshToken;
    let issued = st
        .access
        .issue(&caller, tr.service.as_deref(), &scopes, offline)
        .await?;
    let _ = tr.client_id;
    if caller.is_anonymous() && issued.access.is_empty() {
        // Not audited (see `Access::issue`); counted.
        metrics::counter!("berth_token_anonymous_empty_total").increment(1);
    }
    let mut body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    });
    if let Some(r) = issued.refresh_token {
        body["refresh_token"] = r.into();
    }
    if post {
        let scope: Vec<String> = issued
            .access
            .iter()
            .map(|a| format!("{}:{}:{}", a.resource_type, a.name, a.actions.join(",")))
            .collect();
        body["scope"] = scope.join(" ").into();
    }
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A request from a system administrator, for `/api/v0` endpoints: like the rest of the
/// management API, 401 (Basic challenge) to an anonymous caller, 403 `DENIED` to anyone else.
pub struct SystemAdmin(pub Caller);

impl axum::extract::FromRequestParts<AppState> for SystemAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let caller = caller(st, parts).await?;
        let caller = st.access.resolve(&caller).await?;
        if caller.is_system_admin() {
            Ok(SystemAdmin(caller))
        } else if caller.is_anonymous() {
            Err(ManageError::Unauthenticated.into())
        } else {
            Err(ManageError::Denied("this is for system administrators".into()).into())
        }
    }
}
