//! Repositories: create (empty), list (only what the caller may pull), read, visibility,
//! delete; team grants on one repository.
//!
//! The repository name in a path is written either in one segment with `/` as `%2F`
//! (`/api/v0/repositories/acme%2Fapp`) or as it is, over several segments, as on `/v2`
//! (`/api/v0/repositories/acme/app`). Unencoded, a last segment `grants`, or `grants` and
//! one more segment, name the grants sub-resources: `acme/app/grants` is the grants of
//! `acme/app`. A repository whose own name ends so (`acme/grants`) is written encoded
//! (`acme%2Fgrants`). All these paths go through one route, [`dispatch`], which reads the
//! raw path (axum's router cannot tell `%2F` from `/` once decoded).

use super::{
    created, done, json, time, views, Answer, Api, ApiJson, ApiPath, ApiQuery, BadPolicy, GrantOut,
    NoRepo, NotAllowed, NotOwner, NotRepoAdmin, OrgPath, PolicyIn, RoleIn, VisibilityName,
};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::manage::repo_name;
use berth_core::policy::Scope;
use berth_meta::identity::RepoSettings;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A repository.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepoOut {
    /// Full name, `namespace/...`.
    pub name: String,
    /// The user or organisation that owns it.
    pub namespace: String,
    pub visibility: VisibilityName,
    /// RFC 3339.
    pub created_at: String,
}

impl From<RepoSettings> for RepoOut {
    fn from(r: RepoSettings) -> RepoOut {
        RepoOut {
            namespace: r.name.namespace().to_string(),
            name: r.name.as_str().to_string(),
            visibility: r.visibility.into(),
            created_at: time(r.created_at),
        }
    }
}

super::page_of!(
    /// A page of repositories.
    RepoPage,
    RepoOut
);

/// Which repositories to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RepoQuery {
    /// Only this namespace's repositories.
    #[param(max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*$")]
    pub namespace: Option<String>,
    /// The `next` of the previous page.
    #[param(max_length = 512)]
    pub last: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub n: Option<u32>,
}

/// A page of [`signatures`].
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignaturesQuery {
    /// The `next` of the previous page.
    #[param(max_length = 128)]
    pub last: Option<String>,
    /// Page size (default and most: 100).
    #[param(minimum = 1, maximum = 100)]
    pub n: Option<u32>,
}

/// What [`policy_check`] asks about.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyCheckQuery {
    /// A tag or a digest.
    #[param(min_length = 1, max_length = 200)]
    pub reference: String,
    /// The user to ask for (default: the caller).
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub user: Option<String>,
}

/// `{repository}` (documentation only: [`dispatch`] reads the raw path).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RepoParams {
    /// Full name, '/' written %2F (or unencoded over several segments)
    #[param(
        max_length = 255,
        pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$"
    )]
    pub repository: String,
}

/// `{team}` of `{repository}/grants/{team}`, after [`RepoParams`] (documentation only).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GrantTeamParams {
    /// A team of the repository's organisation
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub team: String,
}

/// A repository to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRepoIn {
    /// Full name (`namespace/name`).
    #[schema(
        max_length = 255,
        pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$"
    )]
    pub name: String,
    /// Default: the namespace's default visibility (private when it has none).
    #[serde(default)]
    pub visibility: Option<VisibilityName>,
}

/// A repository's visibility.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoPatchIn {
    pub visibility: VisibilityName,
}

super::operations! {
    tag = "repositories", routes;

    /// List repositories the caller may pull (anyone; anonymous callers see public ones).
    get "/api/v0/repositories", params(RepoQuery),
        security((), ("basic" = []), ("bearer" = []));
    responses((status = 200, description = "A page of repositories by name", body = RepoPage));
    fn list(api: Api, ApiQuery(q): ApiQuery<RepoQuery>) -> Json<RepoPage> {
        json(
            api.m()
                .repos_list(
                    &api.c,
                    q.namespace.as_deref(),
                    q.last.as_deref().filter(|l| !l.is_empty()),
                    q.n.unwrap_or(100),
                )
                .await,
        )
    }

    /// The signature policy set on a namespace (authenticated callers).
    get "/api/v0/namespaces/{org}/policy", params(OrgPath);
    responses(
        (status = 200, description = "`{mode, formats, all_of, signers}`", body = Object),
        (status = 404, description = "None is set (NOT_FOUND)", body = super::ErrorBody),
    );
    fn namespace_policy_get(
        api: Api,
        ApiPath(OrgPath { org }): ApiPath<OrgPath>,
    ) -> Json<berth_core::policy::Policy> {
        json(api.m().policy_get(&api.c, &api.policies, &namespace(&org)?).await)
    }

    /// Set a namespace's signature policy, for every repository in it without one of its
    /// own (owners and system administrators; a user for their own namespace).
    put "/api/v0/namespaces/{org}/policy", request_body = PolicyIn, params(OrgPath);
    responses(
        (status = 204, description = "Set"), BadPolicy, NotOwner,
    );
    fn namespace_policy_set(api: Api, path: ApiPath<OrgPath>, b: ApiJson<PolicyIn>) -> Response {
        let scope = namespace(&path.0.org)?;
        done(api.m().policy_set(&api.c, &api.policies, &scope, &b.0.policy()?).await)
    }

    /// Remove a namespace's signature policy (owners and system administrators; none is no
    /// error).
    delete "/api/v0/namespaces/{org}/policy", params(OrgPath);
    responses((status = 204, description = "Removed"), NotOwner);
    fn namespace_policy_delete(api: Api, ApiPath(OrgPath { org }): ApiPath<OrgPath>) -> Response {
        done(api.m().policy_delete(&api.c, &api.policies, &namespace(&org)?).await)
    }

    /// Create an empty repository (whoever may create in its namespace by pushing).
    post "/api/v0/repositories", request_body = NewRepoIn;
    responses(
        (status = 201, description = "Created", body = RepoOut),
        (status = 403, description = "The caller may not create repositories in the namespace (DENIED)", body = super::ErrorBody),
        (status = 409, description = "The repository exists (CONFLICT)", body = super::ErrorBody),
    );
    fn create(api: Api, ApiJson(b): ApiJson<NewRepoIn>) -> Response {
        let name = repo_name(&b.name)?;
        created::<RepoOut, _>(
            api.m()
                .repo_create(&api.c, &name, b.visibility.map(Into::into))
                .await,
        )
    }
}

// The operations on one repository, served through [`dispatch`] (the name may hold `/`).
super::operations! {
    tag = "repositories";

    /// Read a repository (whoever may pull it).
    get "/api/v0/repositories/{repository}", params(RepoParams),
        security((), ("basic" = []), ("bearer" = []));
    responses((status = 200, description = "The repository", body = RepoOut), NoRepo);
    fn get_one(api: &Api, repo: &str) -> Json<RepoOut> {
        json(api.m().repo_get(&api.c, &repo_name(repo)?).await)
    }

    /// Make a repository public or private (repository admins).
    patch "/api/v0/repositories/{repository}", request_body = RepoPatchIn, params(RepoParams);
    responses(
        (status = 200, description = "The changed repository", body = RepoOut),
        NotRepoAdmin, NoRepo,
    );
    fn update(api: &Api, repo: &str, b: RepoPatchIn) -> Json<RepoOut> {
        let name = repo_name(repo)?;
        json(
            api.m()
                .repo_set_visibility(&api.c, &name, b.visibility.into())
                .await,
        )
    }

    /// Delete a repository with its manifests, tags and grants (whoever may delete in it).
    delete "/api/v0/repositories/{repository}", params(RepoParams);
    responses(
        (status = 204, description = "Deleted"),
        NotAllowed, NoRepo,
    );
    fn delete(api: &Api, repo: &str) -> Response {
        done(api.m().repo_delete(&api.c, &repo_name(repo)?).await)
    }

    /// A repository's Docker Content Trust data: its current roles (version, expiry,
    /// signing keys) and its signed tags (whoever may pull it).
    get "/api/v0/repositories/{repository}/trust", params(RepoParams),
        security((), ("basic" = []), ("bearer" = []));
    responses(
        (status = 200, description = "`{repository, signed, expires, roles: [{role, version, \
            expires, key_ids, threshold}], targets: [{tag, digest, size, role}]}`: `signed` \
            false, no `expires` and no roles without trust data; times in RFC 3339", body = Object),
        NoRepo,
    );
    fn trust_status(api: &Api, repo: &str) -> Json<berth_core::trust::TrustStatus> {
        json(api.m().trust_status(&api.c, &api.trust, &repo_name(repo)?).await)
    }

    /// Delete a repository's trust data (whoever may delete in it; none is no error): its
    /// tags are unsigned until a new root is published.
    delete "/api/v0/repositories/{repository}/trust", params(RepoParams);
    responses(
        (status = 204, description = "Deleted"),
        NotAllowed, NoRepo,
    );
    fn trust_delete(api: &Api, repo: &str) -> Response {
        let deleted = api.m().trust_delete(&api.c, &api.trust, &repo_name(repo)?).await;
        api.policies.invalidate();
        done(deleted)
    }

    /// The signature policy that applies to a repository (its own, else its namespace's,
    /// else the registry default) and where it comes from (whoever may pull it).
    get "/api/v0/repositories/{repository}/policy", params(RepoParams);
    responses(
        (status = 200, description = "`{policy: {mode, formats, all_of, signers}, source: \
            {kind: repository|namespace|default, scope}}`", body = Object),
        NoRepo,
    );
    fn policy_effective(api: &Api, repo: &str) -> Json<berth_core::policy::Effective> {
        json(api.m().policy_effective(&api.c, &api.policies, &repo_name(repo)?).await)
    }

    /// Set a repository's own signature policy, which replaces its namespace's (repository
    /// admins).
    put "/api/v0/repositories/{repository}/policy", request_body = PolicyIn, params(RepoParams);
    responses(
        (status = 204, description = "Set"), BadPolicy, NotRepoAdmin, NoRepo,
    );
    fn policy_set(api: &Api, repo: &str, b: PolicyIn) -> Response {
        let scope = Scope::Repository(repo_name(repo)?);
        done(api.m().policy_set(&api.c, &api.policies, &scope, &b.policy()?).await)
    }

    /// Remove a repository's own signature policy: its namespace's applies again
    /// (repository admins; none is no error).
    delete "/api/v0/repositories/{repository}/policy", params(RepoParams);
    responses((status = 204, description = "Removed"), NotRepoAdmin, NoRepo);
    fn policy_delete(api: &Api, repo: &str) -> Response {
        let scope = Scope::Repository(repo_name(repo)?);
        done(api.m().policy_delete(&api.c, &api.policies, &scope).await)
    }

    /// A page of a repository's tags, each with its signatures in every format (Docker
    /// Content Trust, cosign, Notation: signer, valid or why not, expiry) and whether it
    /// satisfies the signature policy that applies (whoever may pull it).
    get "/api/v0/repositories/{repository}/signatures", params(RepoParams, SignaturesQuery);
    responses(
        (status = 200, description = "`{policy: {policy, source}, tags: [{tag, digest, \
            satisfied, missing, signatures: [{format, evidence, key, signer, valid, reason, \
            expires_at}]}], next}`: pass `next` as `last` for the following page", body = Object),
        NoRepo,
    );
    fn signatures(api: &Api, repo: &str, q: SignaturesQuery) -> Json<berth_core::policy::SignedTags> {
        let n = q.n.unwrap_or(berth_core::policy::STATUS_PAGE);
        let page = berth_core::policy::STATUS_PAGE;
        if !(1..=page).contains(&n) || q.last.as_ref().is_some_and(|l| l.len() > 128) {
            let why = format!("n is 1 to {page}, last a tag (at most 128 characters)");
            return Err(berth_core::manage::ManageError::Invalid(why).into());
        }
        json(api.m().signed_tags(&api.c, &api.policies, &repo_name(repo)?, q.last.as_deref(), n).await)
    }

    /// Dry run of the signature policy: whether a tag or digest would be served to a user
    /// now, and why (the user themselves, and repository admins). Nothing is audited.
    get "/api/v0/repositories/{repository}/policy/check", params(RepoParams, PolicyCheckQuery);
    responses(
        (status = 200, description = "`{outcome: serve|warn|deny, reason, policy, missing}`", body = Object),
        NotRepoAdmin, NoRepo,
        (status = 404, description = "No such repository (NAME_UNKNOWN), user or manifest (NOT_FOUND)", body = super::ErrorBody),
    );
    fn policy_check(api: &Api, repo: &str, q: PolicyCheckQuery) -> Json<berth_core::policy::Decision> {
        // A reference that cannot name a manifest names none.
        let reference = berth_oci::Reference::parse(&q.reference).map_err(|_| {
            berth_core::manage::ManageError::NotFound(format!("manifest {repo}:{}", q.reference))
        })?;
        let user = q.user.or_else(|| api.c.name.clone()).ok_or(
            berth_core::manage::ManageError::Unauthenticated,
        )?;
        json(
            api.m()
                .policy_dry_run(&api.c, &api.policies, &api.registry, &repo_name(repo)?, &reference, &user)
                .await,
        )
    }

    /// The team grants that apply to a repository, namespace grants included (repository
    /// admins).
    get "/api/v0/repositories/{repository}/grants", params(RepoParams);
    responses(
        (status = 200, description = "The grants", body = Vec<GrantOut>),
        NotRepoAdmin, NoRepo,
    );
    fn grants(api: &Api, repo: &str) -> Json<Vec<GrantOut>> {
        views(api.m().repo_grants(&api.c, &repo_name(repo)?).await)
    }

    /// Give a team of the repository's organisation a role on it (repository admins).
    put "/api/v0/repositories/{repository}/grants/{team}", request_body = RoleIn,
        params(RepoParams, GrantTeamParams);
    responses(
        (status = 204, description = "Set (replacing any role)"),
        NotRepoAdmin,
        (status = 404, description = "No such repository (NAME_UNKNOWN) or team (NOT_FOUND)", body = super::ErrorBody),
    );
    fn grant_set(api: &Api, (repo, team): (&str, &str), b: RoleIn) -> Response {
        let name = repo_name(repo)?;
        done(
            api.m()
                .repo_grant_set(&api.c, &name, team, b.role.into())
                .await,
        )
    }

    /// Remove a team's role on a repository (repository admins).
    delete "/api/v0/repositories/{repository}/grants/{team}",
        params(RepoParams, GrantTeamParams);
    responses(
        (status = 204, description = "Removed"),
        NotRepoAdmin,
        (status = 404, description = "No such repository (NAME_UNKNOWN), team or grant (NOT_FOUND)", body = super::ErrorBody),
    );
    fn grant_remove(api: &Api, (repo, team): (&str, &str)) -> Response {
        let name = repo_name(repo)?;
        done(api.m().repo_grant_remove(&api.c, &name, team).await)
    }
}

/// The namespace `name` as a policy scope.
fn namespace(name: &str) -> Result<Scope, berth_core::manage::ManageError> {
    Scope::namespace(name).map_err(|e| berth_core::manage::ManageError::NameInvalid(e.0))
}

/// What a path under `/api/v0/repositories/` names (see the module documentation).
#[derive(Debug, PartialEq, Eq)]
pub enum RepoPath {
    Repository(String),
    Grants(String),
    Grant(String, String),
    Trust(String),
    Policy(String),
    PolicyCheck(String),
    Signatures(String),
}

impl RepoPath {
    /// Parses the raw (still percent-encoded) path after `/api/v0/repositories/`; `None`
    /// for an empty segment or one that is not UTF-8 once decoded.
    pub fn parse(raw: &str) -> Option<RepoPath> {
        let segs = raw
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .filter(|d| !d.is_empty())
                    .map(|d| d.into_owned())
            })
            .collect::<Option<Vec<String>>>()?;
        let n = segs.len();
        Some(match segs.as_slice() {
            [name @ .., g] if n >= 2 && g == "grants" => RepoPath::Grants(name.join("/")),
            [name @ .., t] if n >= 2 && t == "trust" => RepoPath::Trust(name.join("/")),
            [name @ .., p] if n >= 2 && p == "policy" => RepoPath::Policy(name.join("/")),
            [name @ .., s] if n >= 2 && s == "signatures" => RepoPath::Signatures(name.join("/")),
            [name @ .., p, c] if n >= 3 && p == "policy" && c == "check" => {
                RepoPath::PolicyCheck(name.join("/"))
            }
            [name @ .., g, team] if n >= 3 && g == "grants" => {
                RepoPath::Grant(name.join("/"), team.clone())
            }
            name => RepoPath::Repository(name.join("/")),
        })
    }
}

/// Every `/api/v0/repositories/...` request: parses the path ([`RepoPath`]) and hands the
/// request to the operation its method names.
pub async fn dispatch(State(st): State<AppState>, req: Request) -> Answer {
    let raw = req
        .uri()
        .path()
        .strip_prefix("/api/v0/repositories/")
        .unwrap_or_default()
        .to_string();
    let Some(target) = RepoPath::parse(&raw) else {
        return Err(crate::error::not_found().await);
    };
    let (mut parts, body) = req.into_parts();
    let api = Api::from_request_parts(&mut parts, &st).await?;
    let method = parts.method.clone();
    let req = Request::from_parts(parts, body);
    let (st, api) = (&st, &api);
    match (&target, &method) {
        // HEAD as GET (the server leaves the body out), as axum's `get` routes do.
        (RepoPath::Repository(r), &Method::GET | &Method::HEAD) => {
            get_one(api, r).await.map(IntoResponse::into_response)
        }
        (RepoPath::Repository(r), &Method::PATCH) => {
            let ApiJson(b) = ApiJson::from_request(req, st).await?;
            update(api, r, b).await.map(IntoResponse::into_response)
        }
        (RepoPath::Repository(r), &Method::DELETE) => delete(api, r).await,
        (RepoPath::Grants(r), &Method::GET | &Method::HEAD) => {
            grants(api, r).await.map(IntoResponse::into_response)
        }
        (RepoPath::Grant(r, t), &Method::PUT) => {
            let ApiJson(b) = ApiJson::from_request(req, st).await?;
            grant_set(api, (r, t), b).await
        }
        (RepoPath::Grant(r, t), &Method::DELETE) => grant_remove(api, (r, t)).await,
        (RepoPath::Trust(r), &Method::GET | &Method::HEAD) => {
            trust_status(api, r).await.map(IntoResponse::into_response)
        }
        (RepoPath::Trust(r), &Method::DELETE) => trust_delete(api, r).await,
        (RepoPath::Policy(r), &Method::GET | &Method::HEAD) => policy_effective(api, r)
            .await
            .map(IntoResponse::into_response),
        (RepoPath::Policy(r), &Method::PUT) => {
            let ApiJson(b) = ApiJson::from_request(req, st).await?;
            policy_set(api, r, b).await
        }
        (RepoPath::Policy(r), &Method::DELETE) => policy_delete(api, r).await,
        (RepoPath::Signatures(r), &Method::GET | &Method::HEAD) => {
            let ApiQuery(q) = ApiQuery::from_request(req, st).await?;
            signatures(api, r, q).await.map(IntoResponse::into_response)
        }
        (RepoPath::PolicyCheck(r), &Method::GET | &Method::HEAD) => {
            let ApiQuery(q) = ApiQuery::from_request(req, st).await?;
            policy_check(api, r, q)
                .await
                .map(IntoResponse::into_response)
        }
        (t, m) => {
            let allow = match t {
                RepoPath::Repository(_) => "GET, HEAD, PATCH, DELETE",
                RepoPath::Grants(_) => "GET, HEAD",
                RepoPath::Grant(..) => "PUT, DELETE",
                RepoPath::Trust(_) => "GET, HEAD, DELETE",
                RepoPath::Policy(_) => "GET, HEAD, PUT, DELETE",
                RepoPath::Signatures(_) | RepoPath::PolicyCheck(_) => "GET, HEAD",
            };
            Err(ApiError::method_not_allowed(
                allow,
                format!("{m} is not an operation of this path"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RepoPath::{self, *};

    #[test]
    fn repository_paths_encoded_and_not() {
        let s = |x: &str| x.to_string();
        for (raw, want) in [
            ("acme%2Fapp", Some(Repository(s("acme/app")))),
            ("acme/app", Some(Repository(s("acme/app")))),
            ("acme/team/app", Some(Repository(s("acme/team/app")))),
            ("acme", Some(Repository(s("acme")))),
            ("acme%2Fapp/grants", Some(Grants(s("acme/app")))),
            ("acme/app/grants", Some(Grants(s("acme/app")))),
            (
                "acme/app/grants/readers",
                Some(Grant(s("acme/app"), s("readers"))),
            ),
            (
                "acme%2Fapp/grants/readers",
                Some(Grant(s("acme/app"), s("readers"))),
            ),
            // A repository whose name ends in `grants` is written encoded.
            ("acme%2Fgrants", Some(Repository(s("acme/grants")))),
            ("acme/grants", Some(Grants(s("acme")))),
            ("", None),
            ("acme//app", None),
            ("acme/app/", None),
            ("%FF", None),
        ] {
            assert_eq!(RepoPath::parse(raw), want, "{raw}");
        }
    }
}
