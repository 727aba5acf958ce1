//! Teams of an organisation: create, list, read, directory group mapping, delete; team
//! members; the team's role on the organisation's whole namespace; the organisation's
//! grants.

use super::{
    created, done, json, time, views, Api, ApiJson, ApiPath, GrantOut, MemberOut, NoOrg, NoTeam,
    NotOwner, OrgPath, RoleIn, TeamPath, TeamUserPath,
};
use axum::response::Response;
use axum::Json;
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

super::operations! {
    tag = "teams", routes;

    /// Every team grant of an organisation (owners, system administrators).
    get "/api/v0/orgs/{org}/grants", params(OrgPath);
    responses(
        (status = 200, description = "Namespace grants first, then repository grants", body = Vec<GrantOut>),
        NotOwner, NoOrg,
    );
    fn org_grants(api: Api, ApiPath(OrgPath { org }): ApiPath<OrgPath>) -> Json<Vec<GrantOut>> {
        views(api.m().org_grants(&api.c, &org).await)
    }

    /// List an organisation's teams (any authenticated caller).
    get "/api/v0/orgs/{org}/teams", params(OrgPath);
    responses((status = 200, description = "Teams by name", body = Vec<TeamOut>), NoOrg);
    fn list(api: Api, ApiPath(OrgPath { org }): ApiPath<OrgPath>) -> Json<Vec<TeamOut>> {
        views(api.m().teams_list(&api.c, &org).await)
    }

    /// Create a team (owners, system administrators).
    post "/api/v0/orgs/{org}/teams", request_body = NewTeamIn, params(OrgPath);
    responses(
        (status = 201, description = "Created", body = TeamOut),
        NotOwner, NoOrg,
        (status = 409, description = "The organisation has a team of that name (CONFLICT)", body = super::ErrorBody),
    );
    fn create(
        api: Api,
        ApiPath(OrgPath { org }): ApiPath<OrgPath>,
        ApiJson(b): ApiJson<NewTeamIn>,
    ) -> Response {
        let group = b.directory_group.filter(|g| !g.is_empty());
        created::<TeamOut, _>(
            api.m()
                .team_create(&api.c, &org, &b.name, group.as_deref())
                .await,
        )
    }

    /// Read a team (any authenticated caller).
    get "/api/v0/orgs/{org}/teams/{team}", params(TeamPath);
    responses((status = 200, description = "The team", body = TeamOut), NoTeam);
    fn get_one(api: Api, ApiPath(TeamPath { org, team }): ApiPath<TeamPath>) -> Json<TeamOut> {
        json(api.m().team_get(&api.c, &org, &team).await)
    }

    /// Map the team to a directory group, or clear the mapping (owners, system
    /// administrators).
    patch "/api/v0/orgs/{org}/teams/{team}", request_body = TeamPatchIn, params(TeamPath);
    responses((status = 200, description = "The changed team", body = TeamOut), NotOwner, NoTeam);
    fn update(
        api: Api,
        ApiPath(TeamPath { org, team }): ApiPath<TeamPath>,
        ApiJson(b): ApiJson<TeamPatchIn>,
    ) -> Json<TeamOut> {
        let group = b.directory_group.filter(|g| !g.is_empty());
        json(
            api.m()
                .team_set_group(&api.c, &org, &team, group.as_deref())
                .await,
        )
    }

    /// Delete a team with its memberships and grants (owners, system administrators).
    delete "/api/v0/orgs/{org}/teams/{team}", params(TeamPath);
    responses((status = 204, description = "Deleted"), NotOwner, NoTeam);
    fn delete(api: Api, ApiPath(TeamPath { org, team }): ApiPath<TeamPath>) -> Response {
        done(api.m().team_delete(&api.c, &org, &team).await)
    }

    /// List a team's members (any authenticated caller).
    get "/api/v0/orgs/{org}/teams/{team}/members", params(TeamPath);
    responses((status = 200, description = "Members by name", body = Vec<MemberOut>), NoTeam);
    fn members(
        api: Api,
        ApiPath(TeamPath { org, team }): ApiPath<TeamPath>,
    ) -> Json<Vec<MemberOut>> {
        views(api.m().team_members(&api.c, &org, &team).await)
    }

    /// Add a user to a team, and to the organisation if needed (owners, system
    /// administrators).
    put "/api/v0/orgs/{org}/teams/{team}/members/{user}", params(TeamUserPath);
    responses(
        (status = 204, description = "Added (or already a member)"),
        NotOwner,
        (status = 404, description = "No such organisation, team or user (NOT_FOUND)", body = super::ErrorBody),
    );
    fn member_add(
        api: Api,
        ApiPath(TeamUserPath { org, team, user }): ApiPath<TeamUserPath>,
    ) -> Response {
        done(api.m().team_member_add(&api.c, &org, &team, &user).await)
    }

    /// Remove a user from a team; they stay in the organisation (owners, system
    /// administrators).
    delete "/api/v0/orgs/{org}/teams/{team}/members/{user}", params(TeamUserPath);
    responses(
        (status = 204, description = "Removed"),
        NotOwner,
        (status = 404, description = "No such organisation, team, user or membership (NOT_FOUND)", body = super::ErrorBody),
    );
    fn member_remove(
        api: Api,
        ApiPath(TeamUserPath { org, team, user }): ApiPath<TeamUserPath>,
    ) -> Response {
        done(api.m().team_member_remove(&api.c, &org, &team, &user).await)
    }

    /// Give the team a role on every repository of its organisation (owners, system
    /// administrators).
    put "/api/v0/orgs/{org}/teams/{team}/namespace-grant", request_body = RoleIn, params(TeamPath);
    responses((status = 204, description = "Set (replacing any role)"), NotOwner, NoTeam);
    fn grant_set(
        api: Api,
        ApiPath(TeamPath { org, team }): ApiPath<TeamPath>,
        ApiJson(b): ApiJson<RoleIn>,
    ) -> Response {
        done(
            api.m()
                .namespace_grant_set(&api.c, &org, &team, b.role.into())
                .await,
        )
    }

    /// Remove the team's role on the organisation namespace (owners, system administrators).
    delete "/api/v0/orgs/{org}/teams/{team}/namespace-grant", params(TeamPath);
    responses(
        (status = 204, description = "Removed"),
        NotOwner,
        (status = 404, description = "No such organisation, team or grant (NOT_FOUND)", body = super::ErrorBody),
    );
    fn grant_remove(api: Api, ApiPath(TeamPath { org, team }): ApiPath<TeamPath>) -> Response {
        done(api.m().namespace_grant_remove(&api.c, &org, &team).await)
    }
}
