//! The keys and certificates users register to sign with: cosign public keys (PEM
//! `PUBLIC KEY`), Notation signing certificates and trust roots (PEM `CERTIFICATE`). A
//! policy names one as `key:ID`; signatures it verifies count as signed by its owner.

use super::{created, done, time, views, Api, ApiJson, ApiPath, NoUser, NotAllowed, UserPath};
use axum::response::Response;
use axum::Json;
use berth_meta::RegisteredKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A key or certificate to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// A label for people.
    #[serde(default)]
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: String,
    /// One PEM block: `PUBLIC KEY` (ECDSA P-256 or P-384, RSA of at least 2048 bits,
    /// Ed25519) or `CERTIFICATE`.
    #[schema(min_length = 1, max_length = 16384)]
    pub pem: String,
}

/// A registered key or certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    /// Lowercase hex SHA-256 of the DER (of the key, or of the certificate): `key:ID` in
    /// a policy.
    pub id: String,
    /// `public-key` or `certificate`.
    pub kind: String,
    pub name: String,
    pub pem: String,
    /// RFC 3339.
    pub created_at: String,
}

impl From<RegisteredKey> for KeyOut {
    fn from(k: RegisteredKey) -> KeyOut {
        KeyOut {
            id: k.id,
            kind: k.kind,
            name: k.name,
            pem: k.pem,
            created_at: time(k.created_at),
        }
    }
}

super::operations! {
    tag = "keys", routes;

    /// The keys and certificates a user registered to sign with (the user; system
    /// administrators; for a service account, its organisations' owners).
    get "/api/v0/users/{user}/keys", params(UserPath);
    responses(
        (status = 200, description = "The keys, oldest first", body = Vec<KeyOut>),
        NotAllowed, NoUser,
    );
    fn list(api: Api, ApiPath(UserPath { user }): ApiPath<UserPath>) -> Json<Vec<KeyOut>> {
        views(api.m().signing_keys(&api.c, &api.registry, &user).await)
    }

    /// Register a public key or certificate for a user: the cosign and Notation
    /// signatures it verifies count as signed by the user. The registry's signatures are
    /// verified again against it before the answer.
    post "/api/v0/users/{user}/keys", request_body = KeyIn, params(UserPath);
    responses(
        (status = 201, description = "Registered", body = KeyOut),
        (status = 400, description = "Not a key or certificate this registry verifies with (INVALID)", body = super::ErrorBody),
        (status = 409, description = "The key is registered already (CONFLICT), or the user has as many keys as allowed", body = super::ErrorBody),
        NotAllowed, NoUser,
    );
    fn add(
        api: Api,
        ApiPath(UserPath { user }): ApiPath<UserPath>,
        ApiJson(b): ApiJson<KeyIn>,
    ) -> Response {
        let key = api.m().signing_key_add(&api.c, &api.registry, &user, &b.name, &b.pem).await;
        api.policies.invalidate();
        created::<KeyOut, _>(key)
    }

    /// Remove a user's key: the signatures it verified stop counting at once.
    delete "/api/v0/users/{user}/keys/{key}", params(
        ("user" = String, Path, description = "User name", max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$"),
        ("key" = String, Path, description = "Key id", pattern = "^[0-9a-f]{64}$"),
    );
    responses(
        (status = 204, description = "Removed"),
        NotAllowed,
        (status = 404, description = "No such user or key (NOT_FOUND)", body = super::ErrorBody),
    );
    fn delete(api: Api, ApiPath((user, key)): ApiPath<(String, String)>) -> Response {
        let deleted = api.m().signing_key_delete(&api.c, &api.registry, &user, &key).await;
        api.policies.invalidate();
        done(deleted)
    }
}
