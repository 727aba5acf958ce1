//! Users and service accounts: create, list, read, change (activation, system
//! administrator flag), passwords, delete.

use super::{
    created, done, json, time, Api, ApiJson, ApiPath, ApiQuery, NoOrg, NoUser, NotAdmin,
    NotAllowed, Paging, UserPath,
};
use axum::response::Response;
use axum::Json;
use berth_core::manage::{LocalUser, UserChange};
use berth_meta::identity::{Origin, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user or service account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub name: String,
    pub full_name: String,
    /// Shown to the user and to system administrators; null for everyone else.
    #[schema(nullable)]
    pub email: Option<String>,
    /// `local` or `directory`.
    pub origin: String,
    pub active: bool,
    pub is_system_admin: bool,
    pub is_service_account: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<UserRecord> for UserOut {
    fn from(u: UserRecord) -> UserOut {
        UserOut {
            name: u.name,
            full_name: u.full_name,
            email: u.email,
            origin: match u.origin {
                Origin::Local => "local".into(),
                Origin::Directory { .. } => "directory".into(),
            },
            active: u.active,
            is_system_admin: u.is_system_admin,
            is_service_account: u.is_service_account,
            created_at: time(u.created_at),
            updated_at: time(u.updated_at),
        }
    }
}

super::page_of!(
    /// A page of users.
    UserPage,
    UserOut
);

/// A local user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserIn {
    /// Lowercase letters and digits separated by single `.`, `_` or `-`; at most 64.
    #[schema(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub name: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub full_name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub email: Option<String>,
    #[serde(default)]
    pub is_system_admin: Option<bool>,
    /// Take the repositories that the name's namespace holds without an owner (pushed
    /// where no account existed, or left by a deleted account): without it, such a name
    /// is refused with 409 `CONFLICT`. System administrators only. Default false.
    #[serde(default)]
    pub claim_namespace: Option<bool>,
}

/// A service account to create (no password: it uses access tokens).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccountIn {
    #[schema(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub full_name: Option<String>,
    /// The organisation it joins (required unless the caller is a system administrator).
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub org: Option<String>,
    /// Take the repositories that the name's namespace holds without an owner (pushed
    /// where no account existed, or left by a deleted account): without it, such a name
    /// is refused with 409 `CONFLICT`. System administrators only. Default false.
    #[serde(default)]
    pub claim_namespace: Option<bool>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchIn {
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub full_name: Option<String>,
    /// An empty string clears the address.
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub email: Option<String>,
    /// System administrators only.
    #[serde(default)]
    pub active: Option<bool>,
    /// System administrators only.
    #[serde(default)]
    pub is_system_admin: Option<bool>,
}

/// A new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordIn {
    /// Required when users change their own password (system administrators may omit it).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub current_password: Option<String>,
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

super::operations! {
    tag = "accounts", routes;

    /// List users (any authenticated caller).
    get "/api/v0/users", params(Paging);
    responses((status = 200, description = "A page of users by name", body = UserPage));
    fn list(api: Api, ApiQuery(p): ApiQuery<Paging>) -> Json<UserPage> {
        json(api.m().users_list(&api.c, p.last.as_deref(), p.n()).await)
    }

    /// Create a local user with a password (system administrators).
    post "/api/v0/users", request_body = NewUserIn;
    responses(
        (status = 201, description = "Created", body = UserOut),
        NotAdmin,
        (status = 409, description = "The name is taken, or its namespace holds repositories that no account owns and claim_namespace is not set (CONFLICT)", body = super::ErrorBody),
    );
    fn create(api: Api, ApiJson(b): ApiJson<NewUserIn>) -> Response {
        created::<UserOut, _>(
            api.m()
                .user_create(
                    &api.c,
                    LocalUser {
                        name: b.name,
                        password: b.password,
                        full_name: b.full_name.unwrap_or_default(),
                        email: b.email.filter(|e| !e.is_empty()),
                        is_system_admin: b.is_system_admin.unwrap_or(false),
                        claim_namespace: b.claim_namespace.unwrap_or(false),
                    },
                )
                .await,
        )
    }

    /// Create a service account (system administrators; organisation owners inside their
    /// organisation).
    post "/api/v0/service-accounts", request_body = NewServiceAccountIn;
    responses(
        (status = 201, description = "Created", body = UserOut),
        (status = 403, description = "Neither a system administrator nor an owner of the organisation (DENIED)", body = super::ErrorBody),
        NoOrg,
        (status = 409, description = "The name is taken, or its namespace holds repositories that no account owns and claim_namespace is not set (CONFLICT)", body = super::ErrorBody),
    );
    fn create_service(api: Api, ApiJson(b): ApiJson<NewServiceAccountIn>) -> Response {
        created::<UserOut, _>(
            api.m()
                .service_account_create(
                    &api.c,
                    &b.name,
                    b.full_name.as_deref().unwrap_or(""),
                    b.org.as_deref(),
                    b.claim_namespace.unwrap_or(false),
                )
                .await,
        )
    }

    /// Read a user (any authenticated caller).
    get "/api/v0/users/{user}", params(UserPath);
    responses((status = 200, description = "The user", body = UserOut), NoUser);
    fn get_one(api: Api, ApiPath(UserPath { user }): ApiPath<UserPath>) -> Json<UserOut> {
        json(api.m().user_get(&api.c, &user).await)
    }

    /// Change a user: full name and e-mail (the user, system administrators), activation and
    /// the system administrator flag (system administrators; not on themselves).
    patch "/api/v0/users/{user}", request_body = UserPatchIn, params(UserPath);
    responses(
        (status = 200, description = "The changed user", body = UserOut),
        NotAllowed,
        (status = 409, description = "Administrators may not deactivate or demote themselves (CONFLICT)", body = super::ErrorBody),
        NoUser,
    );
    fn update(
        api: Api,
        ApiPath(UserPath { user }): ApiPath<UserPath>,
        ApiJson(b): ApiJson<UserPatchIn>,
    ) -> Json<UserOut> {
        let ch = UserChange {
            full_name: b.full_name,
            email: b.email.map(|e| (!e.is_empty()).then_some(e)),
            active: b.active,
            is_system_admin: b.is_system_admin,
        };
        json(api.m().user_update(&api.c, &user, ch).await)
    }

    /// Set a local user's password (the user, with the current password; system
    /// administrators).
    put "/api/v0/users/{user}/password", request_body = PasswordIn, params(UserPath);
    responses(
        (status = 204, description = "Changed"),
        (status = 403, description = "Not allowed, or the current password is wrong (DENIED)", body = super::ErrorBody),
        (status = 409, description = "A service or directory account has no password here (CONFLICT)", body = super::ErrorBody),
        NoUser,
    );
    fn set_password(
        api: Api,
        ApiPath(UserPath { user }): ApiPath<UserPath>,
        ApiJson(b): ApiJson<PasswordIn>,
    ) -> Response {
        done(
            api.m()
                .user_set_password(
                    &api.c,
                    &user,
                    b.current_password.as_deref(),
                    &b.new_password,
                )
                .await,
        )
    }

    /// Delete a user with their memberships and tokens (system administrators).
    delete "/api/v0/users/{user}", params(UserPath);
    responses(
        (status = 204, description = "Deleted"),
        NotAdmin, NoUser,
        (status = 409, description = "Administrators may not delete themselves (CONFLICT)", body = super::ErrorBody),
    );
    fn delete(api: Api, ApiPath(UserPath { user }): ApiPath<UserPath>) -> Response {
        done(api.m().user_delete(&api.c, &user).await)
    }
}
