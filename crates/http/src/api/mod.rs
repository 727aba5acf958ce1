//! `/api/v0`: the JSON management API (accounts, organisations, teams, repositories,
//! grants, access tokens, the audit log, the directory). Handlers read HTTP and write
//! JSON; who may do what is `berth_core::manage`'s, so the console can call the same
//! service. Errors leave through `crate::error` in the OCI envelope, extractor rejections
//! included ([`ApiJson`], [`ApiQuery`], [`ApiPath`]).
//!
//! The OpenAPI document (`GET /api/v0/openapi.json`) is generated from the handlers'
//! `#[utoipa::path]` annotations and the types below; every operation also documents the
//! common error answers (added once, by [`ErrorResponses`]).
//!
//! Areas: [`accounts`] (users, service accounts, passwords), [`tokens`] (access and
//! refresh tokens), [`keys`] (the keys and certificates users sign with),
//! [`orgs`] (organisations and members), [`teams`] (teams, team members, namespace
//! grants), [`repos`] (repositories, repository grants, trust data, signature policies
//! and signed status), [`audit`], [`directory`] (settings,
//! sync runs).

pub mod accounts;
pub mod audit;
pub mod directory;
pub mod keys;
pub mod orgs;
pub mod repos;
pub mod teams;
pub mod tokens;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use berth_auth::rbac::{Role, Visibility};
use berth_core::manage::{rfc3339_ms, Manage, ManageError};
use berth_core::Caller;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Response as OaResponse};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// A router that remembers the paths it serves, so that a test can hold the OpenAPI
/// document to exactly what the router answers (nothing served and undocumented).
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    /// Serves `m` at `path`; the methods of several calls for one path are merged.
    pub fn route(mut self, path: &'static str, m: MethodRouter<AppState>) -> Routes {
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
        self.router = self.router.route(path, m);
        self
    }

    /// The paths, as given to the router (`{name}` parameters, `{*rest}` for the rest).
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

impl Default for Routes {
    fn default() -> Routes {
        Routes::new()
    }
}

/// Every `/api/v0` route: the management API's, garbage collection's and the cluster
/// status (merged into the application's router).
pub fn routes() -> Routes {
    let routes = Routes::new()
        .route(
            "/api/v0/meta/cluster_status",
            get(crate::ops::cluster_status),
        )
        .route("/api/v0/openapi.json", get(openapi_json))
        // `{repository}`, `{repository}/grants` and `{repository}/grants/{team}`, with the
        // name encoded or not (see `repos`).
        .route("/api/v0/repositories/{*path}", any(repos::dispatch));
    let areas = [
        accounts::routes,
        tokens::routes,
        keys::routes,
        orgs::routes,
        teams::routes,
        repos::routes,
        audit::routes,
        directory::routes,
        crate::gc_api::routes,
    ];
    areas.into_iter().fold(routes, |routes, area| area(routes))
}

// --- extractors ------------------------------------------------------------------------

/// The authenticated (or anonymous) caller, with a bearer token's subject loaded.
pub struct Who(pub Caller);

impl FromRequestParts<AppState> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Who, ApiError> {
        let c = crate::auth::caller(st, parts).await?;
        Ok(Who(Manage::new(&st.access).resolve(&c).await?))
    }
}

/// What every handler starts from: the management service and the (resolved) caller.
/// Extracting it authenticates the request, before any path or body is read.
pub struct Api {
    access: std::sync::Arc<berth_core::Access>,
    /// The trust service, for the trust data of repositories.
    pub trust: std::sync::Arc<berth_core::trust::Trust>,
    /// Signature policies.
    pub policies: std::sync::Arc<berth_core::policy::Policies>,
    /// The registry, for registered keys and manifests.
    pub registry: std::sync::Arc<berth_core::Registry>,
    pub c: Caller,
}

impl Api {
    /// The management service, to which every rule of who may do what belongs.
    pub fn m(&self) -> Manage<'_> {
        Manage::new(&self.access)
    }
}

impl FromRequestParts<AppState> for Api {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Api, ApiError> {
        let Who(c) = Who::from_request_parts(parts, st).await?;
        Ok(Api {
            access: st.access.clone(),
            trust: st.trust.clone(),
            policies: st.policies.clone(),
            registry: st.registry.clone(),
            c,
        })
    }
}

/// A JSON object body; anything else (a malformed body, an array, a wrong field) is 400
/// `INVALID` in the error envelope. (serde would read a struct from an array too.)
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &S) -> Result<ApiJson<T>, ApiError> {
        let axum::Json(v) = axum::Json::<serde_json::Value>::from_request(req, st).await?;
        if !v.is_object() {
            return Err(ManageError::Invalid("the body must be a JSON object".into()).into());
        }
        serde_json::from_value(v)
            .map(ApiJson)
            .map_err(|e| ManageError::Invalid(format!("invalid body: {e}")).into())
    }
}

/// An unsigned integer of a JSON body, also written with a zero fraction (`60.0`), which
/// JSON Schema counts as an integer.
pub fn json_u64(n: &serde_json::Number, what: &str) -> Result<u64, ApiError> {
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        })
        .ok_or_else(|| ManageError::Invalid(format!("{what} must be a positive integer")).into())
}

/// A query string; a malformed one is 400 `INVALID`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<ApiQuery<T>, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, st).await?;
        Ok(ApiQuery(v))
    }
}

/// Path parameters; malformed ones are 400 `INVALID`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<ApiPath<T>, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, st).await?;
        Ok(ApiPath(v))
    }
}

/// What a handler answers: `T` (a response unless said), or an error in the envelope.
pub type Answer<T = axum::response::Response> = Result<T, ApiError>;

// The answers to a management call's result, each the one way its status is chosen.

/// `200 OK` with the wire view of what the call returned.
pub fn json<V, T: Into<V>>(r: Result<T, ManageError>) -> Answer<axum::Json<V>> {
    Ok(axum::Json(r?.into()))
}

/// `200 OK` with the wire views of the list the call returned.
pub fn views<V, T: Into<V>>(r: Result<Vec<T>, ManageError>) -> Answer<axum::Json<Vec<V>>> {
    Ok(axum::Json(r?.into_iter().map(Into::into).collect()))
}

/// `201 Created` with the wire view `V` of what the call created.
pub fn created<V: Serialize, T: Into<V>>(r: Result<T, ManageError>) -> Answer {
    let v: V = r?.into();
    Ok((axum::http::StatusCode::CREATED, axum::Json(v)).into_response())
}

/// `204 No Content` once the call succeeded.
pub fn done(r: Result<(), ManageError>) -> Answer {
    r?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `202 Accepted` with a JSON body (work started in the background).
pub fn accepted<T: Serialize>(v: T) -> axum::response::Response {
    (axum::http::StatusCode::ACCEPTED, axum::Json(v)).into_response()
}

// --- shared wire types -------------------------------------------------------------------

/// Keyset paging: names strictly after `last`, at most `n` (default 100, at most 1000).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// The `next` of the previous page.
    #[param(max_length = 512)]
    pub last: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000)]
    pub n: Option<u32>,
}

impl Paging {
    pub fn n(&self) -> u32 {
        self.n.unwrap_or(100)
    }
}

/// `{org}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// Organisation name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub org: String,
}

/// `{user}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// User name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub user: String,
}

/// `{org}/members/{user}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgUserPath {
    /// Organisation name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub org: String,
    /// User name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub user: String,
}

/// `{org}/teams/{team}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TeamPath {
    /// Organisation name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub org: String,
    /// Team name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub team: String,
}

/// `{org}/teams/{team}/members/{user}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TeamUserPath {
    /// Organisation name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub org: String,
    /// Team name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub team: String,
    /// User name
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub user: String,
}

/// Declares the operations of one area of `/api/v0`, each written as what varies: its
/// summary (the doc comment), method and path, the other `utoipa::path` arguments it needs
/// (`params`, `request_body`, `security`), its answers (`responses`: tuples, and the types
/// `error_answers!` declares) and its handler, which answers [`Answer`]`<T>`. The tag is
/// given once for the area. Each becomes a `pub async fn` under the `#[utoipa::path]` the
/// document is generated from. With `, routes` after the tag, the area also gets `pub fn
/// routes(Routes) -> Routes`, which serves each operation at the path and method its
/// document names (so a path is written once).
macro_rules! operations {
    (tag = $tag:tt, routes; $($operations:tt)*) => {
        $crate::api::operations!(tag = $tag; $($operations)*);
        $crate::api::operations!(@routes $($operations)*);
    };
    (@routes $(
        $(#[doc = $doc:tt])*
        $method:ident $path:tt $(, $key:ident $(= $value:ident)? $(($($list:tt)*))?)*;
        responses($($answers:tt)*);
        fn $name:ident($($args:tt)*) -> $ret:ty $body:block
    )*) => {
        /// Serves the operations above at their paths.
        pub fn routes(routes: $crate::api::Routes) -> $crate::api::Routes {
            routes $(.route($path, axum::routing::$method($name)))*
        }
    };
    (tag = $tag:tt; $(
        $(#[doc = $doc:tt])*
        $method:ident $path:tt $(, $key:ident $(= $value:ident)? $(($($list:tt)*))?)*;
        responses($($answers:tt)*);
        fn $name:ident($($args:tt)*) -> $ret:ty $body:block
    )*) => {$(
        $(#[doc = $doc])*
        #[utoipa::path(
            $method, path = $path, tag = $tag $(, $key $(= $value)? $(($($list)*))?)*,
            responses($($answers)*)
        )]
        pub async fn $name($($args)*) -> $crate::api::Answer<$ret> $body
    )*};
}
pub(crate) use operations;

/// A page of a keyset-paged listing, as `$page` with `$item`s; made from
/// `berth_core::manage::Page` of anything that converts into `$item`.
macro_rules! page_of {
    ($(#[$doc:meta])* $page:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $page {
            pub items: Vec<$item>,
            /// Pass as `last` for the next page; null on the last page.
            #[schema(nullable)]
            pub next: Option<String>,
        }

        impl<T: Into<$item>> From<berth_core::manage::Page<T>> for $page {
            fn from(p: berth_core::manage::Page<T>) -> $page {
                $page {
                    items: p.items.into_iter().map(Into::into).collect(),
                    next: p.next,
                }
            }
        }
    };
}
pub(crate) use page_of;

/// The error envelope of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorItem {
    /// `UNAUTHORIZED` (401), `DENIED` (403), `NAME_UNKNOWN` (404, a repository that does
    /// not exist or that the caller may not pull), `NOT_FOUND` (404, anything else),
    /// `NAME_INVALID` / `INVALID` (400), `CONFLICT` (409), `TOOMANYREQUESTS` (429),
    /// `UNAVAILABLE` (503), `UNKNOWN` (500).
    pub code: String,
    pub message: String,
    /// Always null.
    #[schema(nullable)]
    pub detail: Option<serde_json::Value>,
}

/// Declares error answers that several operations give, each a type that an operation
/// names among its `responses(...)`, so that the same refusal reads the same everywhere.
/// Every one has the error envelope as its body.
macro_rules! error_answers {
    ($($name:ident = $status:tt, $description:tt;)*) => {
        $(
            #[doc = $description]
            #[derive(utoipa::IntoResponses)]
            #[response(status = $status, description = $description)]
            pub struct $name(pub ErrorBody);
        )*
    };
}

error_answers! {
    NotAdmin = 403, "Not a system administrator (DENIED)";
    NotOwner = 403, "Not an owner (DENIED)";
    NotAllowed = 403, "Not allowed (DENIED)";
    NotRepoAdmin = 403, "The caller may pull but not administer it (DENIED)";
    NoUser = 404, "No such user (NOT_FOUND)";
    NoOrg = 404, "No such organisation (NOT_FOUND)";
    NoOrgOrUser = 404, "No such organisation or user (NOT_FOUND)";
    NoOrgMember = 404, "No such organisation, user or membership (NOT_FOUND)";
    NoTeam = 404, "No such organisation or team (NOT_FOUND)";
    NoRepo = 404, "No such repository, or one the caller may not pull (NAME_UNKNOWN)";
    NoDirectory = 404, "No directory is configured (NOT_FOUND)";
}

error_answers! { BadPolicy = 400, "A malformed policy (INVALID)"; }

/// Whether anonymous callers may pull a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VisibilityName {
    Public,
    Private,
}

impl From<VisibilityName> for Visibility {
    fn from(v: VisibilityName) -> Visibility {
        match v {
            VisibilityName::Public => Visibility::Public,
            VisibilityName::Private => Visibility::Private,
        }
    }
}

impl From<Visibility> for VisibilityName {
    fn from(v: Visibility) -> VisibilityName {
        match v {
            Visibility::Public => VisibilityName::Public,
            Visibility::Private => VisibilityName::Private,
        }
    }
}

/// A team's role: `read-only` (pull), `read-write` (pull, push), `admin` (also delete and
/// manage access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    ReadOnly,
    ReadWrite,
    Admin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::ReadOnly => Role::ReadOnly,
            RoleName::ReadWrite => Role::ReadWrite,
            RoleName::Admin => Role::Admin,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::ReadOnly => RoleName::ReadOnly,
            Role::ReadWrite => RoleName::ReadWrite,
            Role::Admin => RoleName::Admin,
        }
    }
}

/// A signature policy to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyIn {
    pub mode: PolicyMode,
    /// Accepted formats; absent or empty: all.
    #[serde(default)]
    #[schema(max_items = 3)]
    pub formats: Vec<SignatureFormat>,
    /// Every signer must have signed (default: any one).
    #[serde(default)]
    pub all_of: bool,
    /// Required signers; empty: any valid signature.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub signers: Vec<SignerName>,
}

/// What a policy does with what it does not find signed.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    Off,
    Audit,
    Enforce,
}

/// A signature format.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureFormat {
    Dct,
    Cosign,
    Notation,
}

/// `user:NAME`, `team:ORG/TEAM` or `key:ID`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    pattern = "^(user:[a-z0-9]+([._-][a-z0-9]+)*|team:[a-z0-9]+([._-][a-z0-9]+)*/[a-z0-9]+([._-][a-z0-9]+)*|key:[A-Za-z0-9]{1,128})$"
)]
pub struct SignerName(pub String);

impl PolicyIn {
    /// The policy, checked.
    pub fn policy(&self) -> Result<berth_core::policy::Policy, ManageError> {
        if self.formats.len() > 3 {
            return Err(ManageError::Invalid("at most 3 formats".into()));
        }
        let mode = match self.mode {
            PolicyMode::Off => "off",
            PolicyMode::Audit => "audit",
            PolicyMode::Enforce => "enforce",
        };
        let formats: Vec<String> = self
            .formats
            .iter()
            .map(|f| {
                match f {
                    SignatureFormat::Dct => "dct",
                    SignatureFormat::Cosign => "cosign",
                    SignatureFormat::Notation => "notation",
                }
                .to_string()
            })
            .collect();
        let signers: Vec<String> = self.signers.iter().map(|s| s.0.clone()).collect();
        berth_core::policy::Policy::parse(mode, &formats, self.all_of, &signers)
            .map_err(|e| ManageError::Invalid(e.0))
    }
}

/// A role to give.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    pub role: RoleName,
}

/// A member of an organisation or a team.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOut {
    pub name: String,
    /// Organisation owner (always false in team listings).
    pub is_owner: bool,
}

impl From<berth_meta::identity::Member> for MemberOut {
    fn from(m: berth_meta::identity::Member) -> MemberOut {
        MemberOut {
            name: m.name,
            is_owner: m.is_owner,
        }
    }
}

/// A team's role on a repository or on its organisation's namespace.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantOut {
    pub org: String,
    pub team: String,
    /// The repository, or null for the whole organisation namespace.
    #[schema(nullable)]
    pub repository: Option<String>,
    pub role: RoleName,
}

impl From<berth_auth::rbac::Grant> for GrantOut {
    fn from(g: berth_auth::rbac::Grant) -> GrantOut {
        GrantOut {
            org: g.team.org,
            team: g.team.team,
            repository: match g.target {
                berth_auth::rbac::GrantTarget::Repository(r) => Some(r),
                berth_auth::rbac::GrantTarget::Namespace => None,
            },
            role: g.role.into(),
        }
    }
}

/// RFC 3339 of unix milliseconds.
pub fn time(ms: i64) -> String {
    rfc3339_ms(ms)
}

// --- the OpenAPI document ------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        version = "0",
        description = "Accounts, organisations, teams, repositories, grants, access tokens, \
            the audit log and the directory settings of a Berth registry. Authenticate with \
            HTTP Basic (a password, or an access token as the password) or a registry bearer \
            token; a bearer token is trusted for exactly the repository access it lists and \
            never manages accounts, organisations, teams or tokens. Repository names go in \
            one path segment with '/' written as %2F. Errors use the OCI error envelope."
    ),
    paths(
        openapi_json,
        accounts::list, accounts::create, accounts::get_one, accounts::update,
        accounts::delete, accounts::set_password, accounts::create_service,
        tokens::list, tokens::create, tokens::revoke,
        keys::list, keys::add, keys::delete,
        orgs::list, orgs::create, orgs::get_one, orgs::update, orgs::delete,
        orgs::members, orgs::member_set, orgs::member_remove,
        teams::org_grants, teams::list, teams::create, teams::get_one, teams::update,
        teams::delete, teams::members, teams::member_add, teams::member_remove,
        teams::grant_set, teams::grant_remove,
        repos::list, repos::create, repos::get_one, repos::update, repos::delete,
        repos::grants, repos::grant_set, repos::grant_remove,
        repos::trust_status, repos::trust_delete,
        repos::policy_effective, repos::policy_set, repos::policy_delete,
        repos::signatures, repos::policy_check,
        repos::namespace_policy_get, repos::namespace_policy_set, repos::namespace_policy_delete,
        audit::query,
        directory::settings, directory::sync_run, directory::sync_runs,
        crate::gc_api::list_runs, crate::gc_api::start_run, crate::gc_api::get_schedule,
        crate::gc_api::put_schedule, crate::ops::cluster_status,
    ),
    components(schemas(ErrorBody, ErrorItem)),
    modifiers(&ErrorResponses),
    tags(
        (name = "accounts", description = "Users, service accounts and passwords"),
        (name = "tokens", description = "Access tokens, and the refresh tokens of the token service"),
        (name = "keys", description = "Keys and certificates users sign with (cosign, Notation)"),
        (name = "organisations", description = "Organisations and their members"),
        (name = "teams", description = "Teams, team members and namespace grants"),
        (name = "repositories", description = "Repositories, repository grants and their Docker Content Trust data"),
        (name = "audit", description = "The audit log"),
        (name = "directory", description = "LDAP / Active Directory"),
        (name = "gc", description = "Garbage collection: runs and the schedule"),
        (name = "meta", description = "This document, and the cluster status"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes, and the error answers every operation may give.
pub struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        let err = |d: &str| -> RefOr<OaResponse> {
            RefOr::T(
                utoipa::openapi::ResponseBuilder::new()
                    .description(d)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        let common = [
            (
                "400",
                "Malformed request: a bad name (NAME_INVALID) or value (INVALID)",
            ),
            (
                "401",
                "Authentication required or credentials refused (UNAUTHORIZED)",
            ),
            ("429", "Too many failed logins (TOOMANYREQUESTS)"),
            ("500", "Internal error, logged by the registry (UNKNOWN)"),
            ("503", "A store is unavailable (UNAVAILABLE)"),
        ];
        for (path, item) in api.paths.paths.iter_mut() {
            if path == "/api/v0/openapi.json" {
                continue;
            }
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                // Operations that say nothing take Basic or a bearer token.
                op.security.get_or_insert_with(|| {
                    ["basic", "bearer"]
                        .map(|s| SecurityRequirement::new::<_, _, &str>(s, []))
                        .to_vec()
                });
                for (code, d) in common {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| err(d));
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v0/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of /api/v0", content_type = "application/json", body = Object)),
    security(())
)]
pub async fn openapi_json() -> axum::response::Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.clone(),
    )
        .into_response()
}
