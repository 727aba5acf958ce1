//! Organisations: create, list, read, settings (`members_can_create`,
//! `default_visibility`), delete; members and the owner flag.

use super::{
    created, no_content, time, ApiJson, ApiPath, ApiQuery, MemberOut, Paging, VisibilityName, Who,
};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use berth_core::manage::Manage;
use berth_meta::identity::{OrgRecord, OrgSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgOut {
    pub name: String,
    pub full_name: String,
    /// Every member may create repositories in the namespace by pushing.
    pub members_can_create: bool,
    /// Visibility of repositories created in the namespace.
    pub default_visibility: VisibilityName,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<OrgRecord> for OrgOut {
    fn from(o: OrgRecord) -> OrgOut {
        OrgOut {
            name: o.name,
            full_name: o.full_name,
            members_can_create: o.settings.members_can_create,
            default_visibility: o.settings.default_visibility.into(),
            created_at: time(o.created_at),
            updated_at: time(o.updated_at),
        }
    }
}

/// A page of organisations.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgPage {
    pub items: Vec<OrgOut>,
    /// Pass as `last` for the next page; null on the last page.
    #[schema(nullable)]
    pub next: Option<String>,
}

/// An organisation to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrgIn {
    /// Lowercase letters and digits separated by single `.`, `_` or `-`; at most 64.
    #[schema(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub full_name: Option<String>,
    /// Default false.
    #[serde(default)]
    pub members_can_create: Option<bool>,
    /// Default private.
    #[serde(default)]
    pub default_visibility: Option<VisibilityName>,
    /// Take the repositories that the name's namespace holds without an owner (pushed
    /// where no account existed, or left by a deleted account): without it, such a name
    /// is refused with 409 `CONFLICT`. System administrators only. Default false.
    #[serde(default)]
    pub claim_namespace: Option<bool>,
}

/// Changes to an organisation's settings; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPatchIn {
    #[serde(default)]
    pub members_can_create: Option<bool>,
    #[serde(default)]
    pub default_visibility: Option<VisibilityName>,
}

/// A membership to set.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberIn {
    /// Owners administer the organisation and every repository in it. Default false.
    #[serde(default)]
    pub is_owner: bool,
}

/// List organisations (any authenticated caller).
#[utoipa::path(
    get, path = "/api/v0/orgs", tag = "organisations", params(Paging),
    responses((status = 200, description = "A page of organisations by name", body = OrgPage)),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Who(c): Who,
    ApiQuery(p): ApiQuery<Paging>,
) -> Result<Json<OrgPage>, ApiError> {
    let page = Manage::new(&st.access)
        .orgs_list(&c, p.last.as_deref(), p.n())
        .await?;
    Ok(Json(OrgPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Create an organisation (system administrators).
#[utoipa::path(
    post, path = "/api/v0/orgs", tag = "organisations", request_body = NewOrgIn,
    responses(
        (status = 201, description = "Created", body = OrgOut),
        (status = 403, description = "Not a system administrator (DENIED)", body = super::ErrorBody),
        (status = 409, description = "The name is taken by a user or an organisation, or its namespace holds repositories that no account owns and claim_namespace is not set (CONFLICT)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn create(
    State(st): State<AppState>,
    Who(c): Who,
    ApiJson(b): ApiJson<NewOrgIn>,
) -> Result<Response, ApiError> {
    let settings = OrgSettings {
        members_can_create: b.members_can_create.unwrap_or(false),
        default_visibility: b
            .default_visibility
            .map(Into::into)
            .unwrap_or(berth_auth::rbac::Visibility::Private),
    };
    let o = Manage::new(&st.access)
        .org_create(
            &c,
            &b.name,
            b.full_name.as_deref().unwrap_or(""),
            settings,
            b.claim_namespace.unwrap_or(false),
        )
        .await?;
    Ok(created(OrgOut::from(o)))
}

/// Read an organisation (any authenticated caller).
#[utoipa::path(
    get, path = "/api/v0/orgs/{org}", tag = "organisations",
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 200, description = "The organisation", body = OrgOut),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_one(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<OrgOut>, ApiError> {
    Ok(Json(
        Manage::new(&st.access).org_get(&c, &org).await?.into(),
    ))
}

/// Change an organisation's settings (owners, system administrators).
#[utoipa::path(
    patch, path = "/api/v0/orgs/{org}", tag = "organisations", request_body = OrgPatchIn,
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 200, description = "The changed organisation", body = OrgOut),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn update(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
    ApiJson(b): ApiJson<OrgPatchIn>,
) -> Result<Json<OrgOut>, ApiError> {
    let o = Manage::new(&st.access)
        .org_update(
            &c,
            &org,
            b.members_can_create,
            b.default_visibility.map(Into::into),
        )
        .await?;
    Ok(Json(o.into()))
}

/// Delete an organisation with its teams, memberships and grants; its repositories stay
/// (system administrators).
#[utoipa::path(
    delete, path = "/api/v0/orgs/{org}", tag = "organisations",
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a system administrator (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn delete(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access).org_delete(&c, &org).await?;
    Ok(no_content())
}

/// List an organisation's members (any authenticated caller).
#[utoipa::path(
    get, path = "/api/v0/orgs/{org}/members", tag = "organisations",
    params(("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")),
    responses(
        (status = 200, description = "Members by name", body = Vec<MemberOut>),
        (status = 404, description = "No such organisation (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn members(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<MemberOut>>, ApiError> {
    let m = Manage::new(&st.access).org_members(&c, &org).await?;
    Ok(Json(m.into_iter().map(Into::into).collect()))
}

/// Add a member, or set their owner flag (owners, system administrators).
#[utoipa::path(
    put, path = "/api/v0/orgs/{org}/members/{user}", tag = "organisations", request_body = MemberIn,
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("user" = String, Path, description = "User name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Set"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation or user (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn member_set(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, user)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<MemberIn>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access)
        .org_member_set(&c, &org, &user, b.is_owner)
        .await?;
    Ok(no_content())
}

/// Remove a member from the organisation and its teams (owners, system administrators).
#[utoipa::path(
    delete, path = "/api/v0/orgs/{org}/members/{user}", tag = "organisations",
    params(
        ("org" = String, Path, description = "Organisation name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("user" = String, Path, description = "User name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not an owner (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No such organisation, user or membership (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn member_remove(
    State(st): State<AppState>,
    Who(c): Who,
    ApiPath((org, user)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    Manage::new(&st.access)
        .org_member_remove(&c, &org, &user)
        .await?;
    Ok(no_content())
}
