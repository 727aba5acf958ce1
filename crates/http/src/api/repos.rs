//! Repositories: create (empty), list (only what the caller may pull), read, visibility,
//! delete; team grants on one repository. The repository name is one path segment with
//! `/` written `%2F`.

use super::{
    created, no_content, time, ApiJson, ApiPath, ApiQuery, GrantOut, RoleIn, VisibilityName, Who,
};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use berth_core::manage::{repo_name, Manage};
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

/// A page of repositories.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepoPage {
    pub items: Vec<RepoOut>,
    /// Pass as `last` for the next page; null on the last page.
    #[schema(nullable)]
    pub next: Option<String>,
}

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

/// List repositories the caller may pull (anyone; anonymous callers see public ones).
#[utoipa::path(
    get, path = "/api/v0/repositories", tag = "repositories", params(RepoQuery),
    responses((status = 200, description = "A page of repositories by name", body = RepoPage)),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Who(c): Who,
    ApiQuery(q): ApiQuery<RepoQuery>,
) -> Result<Json<RepoPage>, ApiError> {
    let page = Manage::new(&st.access)
        .repos_list(
            &c,
            q.namespace.as_deref(),
            q.last.as_deref().filter(|l| !l.is_empty()),
            q.n.unwrap_or(100),
        )
        .await?;
    Ok(Json(RepoPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Create an empty repository (whoever may create in its namespace by pushing).
#[utoipa::path(
    post, path = "/api/v0/repositories", tag = "repositories", request_body = NewRepoIn,
    responses(
        (status = 201, description = "Created", body = RepoOut),
        (status = 403, description = "The caller may not create repositories in the namespace (DENIED)", body = super::ErrorBody),
        (status = 409, description = "The repository exists (CONFLICT)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn create(
    State(st): State<AppState>,
    Who(c): Who,
    ApiJson(b): ApiJson<NewRepoIn>,
) -> Result<Response, ApiError> {
    let name = repo_name(&b.name)?;
    let r = Manage::new(&st.access)
        .repo_create(&c, &name, b.visibility.map(Into::into))
        .await?;
    Ok(created(RepoOut::from(r)))
}

/// Read a repository (whoever may pull it).
#[utoipa::path(
    get, path = "/api/v0/repositories/{repository}", tag = "repositories",
    params(("repository" = String, Path, description = "Full name, '/' written %2F", max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$")),
    responses(
        (status = 200, description = "The repository", body = RepoOut),
        (status = 404, description = "No such repository, or one the caller may not pull (NAME_UNKNOWN)", body = super::ErrorBody),
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn get_one(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(repo): ApiPath<String>,
) -> Result<Json<RepoOut>, ApiError> {
    let name = repo_name(&repo)?;
    Ok(Json(
        Manage::new(&st.access).repo_get(&c, &name).await?.into(),
    ))
}

/// Make a repository public or private (repository admins).
#[utoipa::path(
    patch, path = "/api/v0/repositories/{repository}", tag = "repositories", request_body = RepoPatchIn,
    params(("repository" = String, Path, description = "Full name, '/' written %2F", max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$")),
    responses(
        (status = 200, description = "The changed repository", body = RepoOut),
        (status = 403, description = "The caller may pull but not administer it (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such repository, or one the caller may not pull (NAME_UNKNOWN)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn update(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(repo): ApiPath<String>,
    ApiJson(b): ApiJson<RepoPatchIn>,
) -> Result<Json<RepoOut>, ApiError> {
    let name = repo_name(&repo)?;
    let r = Manage::new(&st.access)
        .repo_set_visibility(&c, &name, b.visibility.into())
        .await?;
    Ok(Json(r.into()))
}

/// Delete a repository with its manifests, tags and grants (whoever may delete in it).
#[utoipa::path(
    delete, path = "/api/v0/repositories/{repository}", tag = "repositories",
    params(("repository" = String, Path, description = "Full name, '/' written %2F", max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The caller may pull but not delete it (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such repository, or one the caller may not pull (NAME_UNKNOWN)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn delete(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(repo): ApiPath<String>,
) -> Result<Response, ApiError> {
    let name = repo_name(&repo)?;
    Manage::new(&st.access).repo_delete(&c, &name).await?;
    Ok(no_content())
}

/// The team grants that apply to a repository, namespace grants included (repository
/// admins).
#[utoipa::path(
    get, path = "/api/v0/repositories/{repository}/grants", tag = "repositories",
    params(("repository" = String, Path, description = "Full name, '/' written %2F", max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$")),
    responses(
        (status = 200, description = "The grants", body = Vec<GrantOut>),
        (status = 403, description = "The caller may pull but not administer it (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such repository, or one the caller may not pull (NAME_UNKNOWN)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn grants(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(repo): ApiPath<String>,
) -> Result<Json<Vec<GrantOut>>, ApiError> {
    let name = repo_name(&repo)?;
    let g = Manage::new(&st.access).repo_grants(&c, &name).await?;
    Ok(Json(g.into_iter().map(Into::into).collect()))
}

/// Give a team of the repository's organisation a role on it (repository admins).
#[utoipa::path(
    put, path = "/api/v0/repositories/{repository}/grants/{team}", tag = "repositories", request_body = RoleIn,
    params(
        ("repository" = String, Path, description = "Full name, '/' written %2F", max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$"),
        ("team" = String, Path, description = "A team of the repository's organisation", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Set (replacing any role)"),
        (status = 403, description = "The caller may pull but not administer it (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such repository (NAME_UNKNOWN) or team (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn grant_set(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((repo, team)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<RoleIn>,
) -> Result<Response, ApiError> {
    let name = repo_name(&repo)?;
    Manage::new(&st.access)
        .repo_grant_set(&c, &name, &team, b.role.into())
        .await?;
    Ok(no_content())
}

/// Remove a team's role on a repository (repository admins).
#[utoipa::path(
    delete, path = "/api/v0/repositories/{repository}/grants/{team}", tag = "repositories",
    params(
        ("repository" = String, Path, description = "Full name, '/' written %2F", max_length = 255, pattern = "^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$"),
        ("team" = String, Path, description = "A team of the repository's organisation", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The caller may pull but not administer it (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such repository (NAME_UNKNOWN), team or grant (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn grant_remove(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((repo, team)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let name = repo_name(&repo)?;
    Manage::new(&st.access)
        .repo_grant_remove(&c, &name, &team)
        .await?;
    Ok(no_content())
}
