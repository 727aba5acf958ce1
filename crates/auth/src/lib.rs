//! Identity and access decisions, with no IO: password hashing, the Docker registry token
//! (ES256 JWT) format, scope parsing, access-token secrets, and role-based access control
//! as a pure function. The directory (LDAP / Active Directory) client lives in
//! `berth-directory`, so this crate stays free of network code.
//!
//! Modules:
//! - [`password`]: argon2id hashes of local passwords (PHC strings), rehash detection.
//! - [`scope`]: the `type:name:actions` scopes a client asks the token endpoint for.
//! - [`token`]: the ES256 registry bearer token (JWT), its signing keys and verification.
//! - [`secret`]: access and refresh tokens, shown once and stored as a hash.
//! - [`rbac`]: the access decision over a subject, a repository and a permission.

pub mod password;
pub mod rbac;
pub mod scope;
pub mod secret;
pub mod token;
