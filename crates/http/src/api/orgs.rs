//! Organisations: create, list, read, settings (`members_can_create`,
//! `default_visibility`), delete; members and the owner flag.

use super::{
    created, done, json, time, views, Api, ApiJson, ApiPath, ApiQuery, MemberOut, NoOrg,
    NoOrgMember, NoOrgOrUser, NotAdmin, NotOwner, OrgPath, OrgUserPath, Paging, VisibilityName,
};
use axum::response::Response;
use axum::Json;
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

super::page_of!(
    /// A page of organisations.
    OrgPage,
    OrgOut
);

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

super::operations! {
    tag = "organisations", routes;

    /// List organisations (any authenticated caller).
    get "/api/v0/orgs", params(Paging);
    responses((status = 200, description = "A page of organisations by name", body = OrgPage));
    fn list(api: Api, ApiQuery(p): ApiQuery<Paging>) -> Json<OrgPage> {
        json(api.m().orgs_list(&api.c, p.last.as_deref(), p.n()).await)
    }

    /// Create an organisation (system administrators).
    post "/api/v0/orgs", request_body = NewOrgIn;
    responses(
        (status = 201, description = "Created", body = OrgOut),
        NotAdmin,
        (status = 409, description = "The name is taken by a user or an organisation, or its namespace holds repositories that no account owns and claim_namespace is not set (CONFLICT)", body = super::ErrorBody),
    );
    fn create(api: Api, ApiJson(b): ApiJson<NewOrgIn>) -> Response {
        let settings = OrgSettings {
            members_can_create: b.members_can_create.unwrap_or(false),
            default_visibility: b
                .default_visibility
                .map(Into::into)
                .unwrap_or(berth_auth::rbac::Visibility::Private),
        };
        created::<OrgOut, _>(
            api.m()
                .org_create(
                    &api.c,
                    &b.name,
                    b.full_name.as_deref().unwrap_or(""),
                    settings,
                    b.claim_namespace.unwrap_or(false),
                )
                .await,
        )
    }

    /// Read an organisation (any authenticated caller).
    get "/api/v0/orgs/{org}", params(OrgPath);
    responses((status = 200, description = "The organisation", body = OrgOut), NoOrg);
    fn get_one(api: Api, ApiPath(OrgPath { org }): ApiPath<OrgPath>) -> Json<OrgOut> {
        json(api.m().org_get(&api.c, &org).await)
    }

    /// Change an organisation's settings (owners, system administrators).
    patch "/api/v0/orgs/{org}", request_body = OrgPatchIn, params(OrgPath);
    responses(
        (status = 200, description = "The changed organisation", body = OrgOut),
        NotOwner, NoOrg,
    );
    fn update(
        api: Api,
        ApiPath(OrgPath { org }): ApiPath<OrgPath>,
        ApiJson(b): ApiJson<OrgPatchIn>,
    ) -> Json<OrgOut> {
        json(
            api.m()
                .org_update(
                    &api.c,
                    &org,
                    b.members_can_create,
                    b.default_visibility.map(Into::into),
                )
                .await,
        )
    }

    /// Delete an organisation with its teams, memberships and grants; its repositories stay
    /// (system administrators).
    delete "/api/v0/orgs/{org}", params(OrgPath);
    responses((status = 204, description = "Deleted"), NotAdmin, NoOrg);
    fn delete(api: Api, ApiPath(OrgPath { org }): ApiPath<OrgPath>) -> Response {
        done(api.m().org_delete(&api.c, &org).await)
    }

    /// List an organisation's members (any authenticated caller).
    get "/api/v0/orgs/{org}/members", params(OrgPath);
    responses((status = 200, description = "Members by name", body = Vec<MemberOut>), NoOrg);
    fn members(api: Api, ApiPath(OrgPath { org }): ApiPath<OrgPath>) -> Json<Vec<MemberOut>> {
        views(api.m().org_members(&api.c, &org).await)
    }

    /// Add a member, or set their owner flag (owners, system administrators).
    put "/api/v0/orgs/{org}/members/{user}", request_body = MemberIn, params(OrgUserPath);
    responses((status = 204, description = "Set"), NotOwner, NoOrgOrUser);
    fn member_set(
        api: Api,
        ApiPath(OrgUserPath { org, user }): ApiPath<OrgUserPath>,
        ApiJson(b): ApiJson<MemberIn>,
    ) -> Response {
        done(
            api.m()
                .org_member_set(&api.c, &org, &user, b.is_owner)
                .await,
        )
    }

    /// Remove a member from the organisation and its teams (owners, system administrators).
    delete "/api/v0/orgs/{org}/members/{user}", params(OrgUserPath);
    responses((status = 204, description = "Removed"), NotOwner, NoOrgMember);
    fn member_remove(
        api: Api,
        ApiPath(OrgUserPath { org, user }): ApiPath<OrgUserPath>,
    ) -> Response {
        done(api.m().org_member_remove(&api.c, &org, &user).await)
    }
}
