//! Teams of an organisation: create, list, read, directory group mapping, delete; team
//! members; the team's role on the organisation's whole namespace; the organisation's
//! grants.

use super::{created, no_content, time, ApiJson, ApiPath, GrantOut, MemberOut, RoleIn, Who};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use berth_core::manage::Manage;
use berth_meta::identity::TeamRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A team.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamOut {
    pub org: String,
    pub name: String,
    /// DN or name of the directory group whose members sync into the team.
    #[schema(nullable)]
    pub directory_group: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl From<TeamRecord> for TeamOut {
    fn from(t: TeamRecord) -> TeamOut {
        TeamOut {
            org: t.org,
            name: t.name,
            directory_group: t.directory_group,
            created_at: time(t.created_at),
        }
    }
}

/// A team to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeamIn {
    /// Lowercase letters and digits separated by single `.`, `_` or `-`; at most 64.
    #[schema(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub directory_group: Option<String>,
}

/// The team's directory group mapping.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamPatchIn {
    /// The group's DN or name; null or absent clears the mapping.
    #[serde(default)]
    #[schema(max_length = 1024, nullable, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub directory_group: Option<String>,
}

/// Every team grant of an organisation (owners, system administrators).
#[utoipa::path(
    get, path = "/api/v0/orgs/{org}/grants", tag = "teams",
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 200, description = "Namespace grants first, then repository grants", body = Vec<GrantOut>),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn org_grants(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<GrantOut>>, ApiError> {
    let g = Manage::new(&st.access).org_grants(&c, &org).await?;
    Ok(Json(g.into_iter().map(Into::into).collect()))
}

/// List an organisation's teams (any authenticated caller).
#[utoipa::path(
    get, path = "/api/v0/orgs/{org}/teams", tag = "teams",
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 200, description = "Teams by name", body = Vec<TeamOut>),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<TeamOut>>, ApiError> {
    let t = Manage::new(&st.access).teams_list(&c, &org).await?;
    Ok(Json(t.into_iter().map(Into::into).collect()))
}

/// Create a team (owners, system administrators).
#[utoipa::path(
    post, path = "/api/v0/orgs/{org}/teams", tag = "teams", request_body = NewTeamIn,
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 201, description = "Created", body = TeamOut),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
        (status = 409, description = "The organisation has a team of that name (CONFLICT)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn create(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
    ApiJson(b): ApiJson<NewTeamIn>,
) -> Result<Response, ApiError> {
    let group = b.directory_group.filter(|g| !g.is_empty());
    let t = Manage::new(&st.access)
        .team_create(&c, &org, &b.name, group.as_deref())
        .await?;
    Ok(created(TeamOut::from(t)))
}

/// Read a team (any authenticated caller).
#[utoipa::path(
    get, path = "/api/v0/orgs/{org}/teams/{team}", tag = "teams",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 200, description = "The team", body = TeamOut),
        (status = 404, description = "No such organisation or team (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_one(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Json<TeamOut>, ApiError> {
    Ok(Json(
        Manage::new(&st.access)
            .team_get(&c, &org, &team)
            .await?
            .into(),
    ))
}

/// Map the team to a directory group, or clear the mapping (owners, system
/// administrators).
#[utoipa::path(
    patch, path = "/api/v0/orgs/{org}/teams/{team}", tag = "teams", request_body = TeamPatchIn,
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 200, description = "The changed team", body = TeamOut),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation or team (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn update(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<TeamPatchIn>,
) -> Result<Json<TeamOut>, ApiError> {
    let group = b.directory_group.filter(|g| !g.is_empty());
    let t = Manage::new(&st.access)
        .team_set_group(&c, &org, &team, group.as_deref())
        .await?;
    Ok(Json(t.into()))
}

/// Delete a team with its memberships and grants (owners, system administrators).
#[utoipa::path(
    delete, path = "/api/v0/orgs/{org}/teams/{team}", tag = "teams",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation or team (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn delete(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access).team_delete(&c, &org, &team).await?;
    Ok(no_content())
}

/// List a team's members (any authenticated caller).
#[utoipa::path(
    get, path = "/api/v0/orgs/{org}/teams/{team}/members", tag = "teams",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 200, description = "Members by name", body = Vec<MemberOut>),
        (status = 404, description = "No such organisation or team (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn members(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Json<Vec<MemberOut>>, ApiError> {
    let m = Manage::new(&st.access)
        .team_members(&c, &org, &team)
        .await?;
    Ok(Json(m.into_iter().map(Into::into).collect()))
}

/// Add a user to a team, and to the organisation if needed (owners, system
/// administrators).
#[utoipa::path(
    put, path = "/api/v0/orgs/{org}/teams/{team}/members/{user}", tag = "teams",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("user" = String, Path, description = "User name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Added (or already a member)"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation, team or user (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn member_add(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team, user)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access)
        .team_member_add(&c, &org, &team, &user)
        .await?;
    Ok(no_content())
}

/// Remove a user from a team; they stay in the organisation (owners, system
/// administrators).
#[utoipa::path(
    delete, path = "/api/v0/orgs/{org}/teams/{team}/members/{user}", tag = "teams",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("user" = String, Path, description = "User name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation, team, user or membership (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn member_remove(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team, user)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access)
        .team_member_remove(&c, &org, &team, &user)
        .await?;
    Ok(no_content())
}

/// Give the team a role on every repository of its organisation (owners, system
/// administrators).
#[utoipa::path(
    put, path = "/api/v0/orgs/{org}/teams/{team}/namespace-grant", tag = "teams", request_body = RoleIn,
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Set (replacing any role)"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation or team (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn grant_set(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<RoleIn>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access)
        .namespace_grant_set(&c, &org, &team, b.role.into())
        .await?;
    Ok(no_content())
}

/// Remove the team's role on the organisation namespace (owners, system administrators).
#[utoipa::path(
    delete, path = "/api/v0/orgs/{org}/teams/{team}/namespace-grant", tag = "teams",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("team" = String, Path, description = "Team name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation, team or grant (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn grant_remove(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access)
        .namespace_grant_remove(&c, &org, &team)
        .await?;
    Ok(no_content())
}
