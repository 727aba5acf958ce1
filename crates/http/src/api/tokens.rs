//! Access tokens (`berth_<id>_<secret>`, used as a Basic password): create (the secret is
//! in the answer, once), list without secrets, revoke. The refresh tokens the token
//! service issues (`offline_token=true`, `access_type=offline`) are listed (`?kind=refresh`)
//! and revoked through the same two endpoints.

use super::{
    created, done, time, views, Api, ApiJson, ApiPath, ApiQuery, NoUser, NotAllowed, RoleName,
    UserPath,
};
use axum::response::Response;
use axum::Json;
use berth_auth::rbac::{Restriction, RestrictionEntry, RestrictionTarget};
use berth_core::access::CreatedToken;
use berth_core::manage::TokenRequest;
use berth_meta::identity::{TokenKind, TokenParent, TokenRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a restriction entry covers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RestrictionKind {
    /// Repositories whose name matches `pattern` (`*` matches any run of characters).
    Repository,
    /// Every repository of the namespace `pattern`.
    Namespace,
}

/// One entry of a token's reduced scope: at most `max_role` on what `pattern` covers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictionEntryIo {
    pub kind: RestrictionKind,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub pattern: String,
    pub max_role: RoleName,
}

/// An access token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub description: Option<String>,
    /// Lifetime in seconds (at most ten years); absent: until revoked.
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 315360000)]
    pub expires_in: Option<serde_json::Number>,
    /// Reduced scope (1 to 100 entries): the token may do at most this, and never more
    /// than its user. Absent: the user's full rights.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub restriction: Option<Vec<RestrictionEntryIo>>,
}

/// Which tokens to list.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenKindIo {
    /// Access tokens, used as passwords.
    #[default]
    Access,
    /// Refresh tokens issued by the token service for offline use (`docker login` and
    /// OAuth clients asking for `offline_token=true` or `access_type=offline`).
    Refresh,
}

/// The query of a token listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// `access` (the default) or `refresh`.
    pub kind: Option<TokenKindIo>,
}

/// An access or refresh token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: String,
    pub kind: TokenKindIo,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; null: never.
    #[schema(nullable)]
    pub expires_at: Option<String>,
    /// RFC 3339; null: never used.
    #[schema(nullable)]
    pub last_used_at: Option<String>,
    pub revoked: bool,
    #[schema(nullable)]
    pub restriction: Option<Vec<RestrictionEntryIo>>,
    /// Refresh tokens only: `password` (issued at a password or directory login; ends
    /// when the password changes or the account is deactivated) or `token` (issued against
    /// the access token `parent_token`; ends when that token is revoked or expires, and
    /// expires no later than it). Null for access tokens.
    #[schema(nullable)]
    pub issued_against: Option<String>,
    /// The id of the access token a refresh token was issued against; null otherwise.
    #[schema(nullable)]
    pub parent_token: Option<String>,
}

/// A new access token: `token` is the secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTokenOut {
    /// Use as the password with the user's name.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenOut,
}

impl From<CreatedToken> for CreatedTokenOut {
    fn from(t: CreatedToken) -> CreatedTokenOut {
        CreatedTokenOut {
            token: t.token,
            info: t.record.into(),
        }
    }
}

impl From<TokenRecord> for TokenOut {
    fn from(t: TokenRecord) -> TokenOut {
        let (issued_against, parent_token) = match &t.parent {
            None => (None, None),
            Some(TokenParent::Password { .. }) => (Some("password".to_string()), None),
            Some(TokenParent::Token(p)) => {
                (Some("token".to_string()), Some(p.as_str().to_string()))
            }
        };
        TokenOut {
            id: t.id.as_str().to_string(),
            kind: match t.kind {
                TokenKind::Access => TokenKindIo::Access,
                TokenKind::Refresh => TokenKindIo::Refresh,
            },
            description: t.description,
            created_at: time(t.created_at),
            expires_at: t.expires_at.map(time),
            last_used_at: t.last_used_at.map(time),
            revoked: t.revoked,
            restriction: t.restriction.map(|r| {
                r.entries
                    .into_iter()
                    .map(|e| {
                        let (kind, pattern) = match e.target {
                            RestrictionTarget::Repository(p) => (RestrictionKind::Repository, p),
                            RestrictionTarget::Namespace(n) => (RestrictionKind::Namespace, n),
                        };
                        RestrictionEntryIo {
                            kind,
                            pattern,
                            max_role: e.max_role.into(),
                        }
                    })
                    .collect()
            }),
            issued_against,
            parent_token,
        }
    }
}

super::operations! {
    tag = "tokens", routes;

    /// List a user's access tokens, or with `kind=refresh` the refresh tokens the token
    /// service issued to them (the user; system administrators; for a service account, its
    /// organisations' owners).
    get "/api/v0/users/{user}/tokens", params(UserPath, TokenQuery);
    responses(
        (status = 200, description = "The tokens, newest first, without secrets", body = Vec<TokenOut>),
        NotAllowed, NoUser,
    );
    fn list(
        api: Api,
        ApiPath(UserPath { user }): ApiPath<UserPath>,
        ApiQuery(q): ApiQuery<TokenQuery>,
    ) -> Json<Vec<TokenOut>> {
        let kind = match q.kind.unwrap_or_default() {
            TokenKindIo::Access => TokenKind::Access,
            TokenKindIo::Refresh => TokenKind::Refresh,
        };
        views(api.m().tokens_list(&api.c, &user, kind).await)
    }

    /// Create an access token for oneself, or for a service account (system administrators,
    /// its organisations' owners). The secret is in this answer only.
    post "/api/v0/users/{user}/tokens", request_body = TokenIn, params(UserPath);
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedTokenOut),
        NotAllowed, NoUser,
    );
    fn create(
        api: Api,
        ApiPath(UserPath { user }): ApiPath<UserPath>,
        ApiJson(b): ApiJson<TokenIn>,
    ) -> Response {
        let restriction = b.restriction.map(|es| Restriction {
            entries: es
                .into_iter()
                .map(|e| RestrictionEntry {
                    target: match e.kind {
                        RestrictionKind::Repository => RestrictionTarget::Repository(e.pattern),
                        RestrictionKind::Namespace => RestrictionTarget::Namespace(e.pattern),
                    },
                    max_role: e.max_role.into(),
                })
                .collect(),
        });
        let t = api
            .m()
            .token_create(
                &api.c,
                &user,
                TokenRequest {
                    description: b.description.unwrap_or_default(),
                    expires_in: b
                        .expires_in
                        .as_ref()
                        .map(|n| super::json_u64(n, "expires_in"))
                        .transpose()?,
                    restriction,
                },
            )
            .await;
        created::<CreatedTokenOut, _>(t)
    }

    /// Revoke an access token (and the refresh tokens issued against it) or a refresh token.
    delete "/api/v0/users/{user}/tokens/{token}", params(
        ("user" = String, Path, description = "User name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("token" = String, Path, description = "Token id", pattern = "^[0-9a-f]{16}$"),
    );
    responses(
        (status = 204, description = "Revoked"),
        NotAllowed,
        (status = 404, description = "No such user or token (NOT_FOUND)", body = super::ErrorBody),
    );
    fn revoke(api: Api, ApiPath((user, token)): ApiPath<(String, String)>) -> Response {
        done(api.m().token_revoke(&api.c, &user, &token).await)
    }
}
