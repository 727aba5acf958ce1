//! Identity and access storage: the identity traits ([`AccountStore`], [`TeamStore`],
//! [`AccessStore`], [`TokenStore`], [`AuditStore`], gathered by [`IdentityStore`]) and the
//! records they keep.
//!
//! Accounts (users and organisations, one namespace of names), organisation membership,
//! teams and their members, repository settings (visibility, creator), team grants on
//! repositories and namespaces, access and refresh tokens (hashes only), the token
//! service's signing keys, and the audit log. The decision itself is `berth_auth::rbac`'s;
//! this store loads what it needs ([`AccessStore::access_for`]) in one round trip, since
//! that runs on every authenticated request.
//!
//! Separate traits from [`MetaStore`](crate::MetaStore)'s so that each stays readable and
//! so that the registry's pull and push paths do not depend on account management; all
//! are implemented by [`SqliteMetaStore`](crate::SqliteMetaStore) and
//! [`PgMetaStore`](crate::PgMetaStore) over the same database.
//!
//! The store checks what it must to stay consistent (a name is taken once across users and
//! organisations, names are lowercase, rows exist before they are referenced); it does not
//! decide who may do what, nor validate names beyond that.

use crate::MetaError;
use berth_auth::rbac::{Grant, NamespaceKind, Repository, Restriction, Role, Subject, Visibility};
use berth_auth::secret::{SecretHash, SecretId};
use berth_oci::RepoName;

/// The store's key of an account (user or organisation).
pub type AccountId = i64;

/// How a user is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKey<'a> {
    /// By account id.
    Id(AccountId),
    /// By (lowercase) name.
    Name(&'a str),
}

/// Where a user's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Created in Berth; authenticates with its stored password hash.
    Local,
    /// Created by directory sync; authenticates by an LDAP bind as this DN.
    Directory {
        /// The user's distinguished name in the directory.
        dn: String,
        /// The directory's immutable identifier of the entry (`entryUUID`, `objectGUID`)
        /// the account belongs to; `None` until known (an account made before Berth kept
        /// it adopts it at its next sync or login). Unique among accounts.
        id: Option<String>,
    },
}

/// A user to create. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Lowercase; unique among users and organisations.
    pub name: String,
    pub full_name: String,
    pub email: Option<String>,
    /// argon2id PHC string; `None` for directory users (and users who cannot log in).
    pub password: Option<String>,
    pub origin: Origin,
    pub active: bool,
    pub is_system_admin: bool,
    /// A non-person account for CI; authenticates with access tokens.
    pub is_service_account: bool,
    /// Take the repositories that the name's namespace holds without an owner (see
    /// [`IdentityStore::user_create`]). Only a system administrator's explicit request
    /// sets this.
    pub claim_namespace: bool,
}

/// A stored user. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: AccountId,
    pub name: String,
    pub full_name: String,
    pub email: Option<String>,
    /// argon2id PHC string.
    pub password: Option<String>,
    pub origin: Origin,
    pub active: bool,
    pub is_system_admin: bool,
    pub is_service_account: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last change through [`IdentityStore::user_update`].
    pub updated_at: i64,
    /// Generation of the user's password: [`IdentityStore::user_update`] moves it when the
    /// password changes or the account is deactivated. Refresh tokens issued at a password
    /// login record it ([`TokenParent::Password`]) and end when it moves.
    pub credential_epoch: i64,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub full_name: Option<String>,
    pub email: Option<Option<String>>,
    pub password: Option<Option<String>>,
    pub origin: Option<Origin>,
    pub active: Option<bool>,
    pub is_system_admin: Option<bool>,
    pub is_service_account: Option<bool>,
}

/// An organisation's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgSettings {
    /// Every member may create repositories by pushing.
    pub members_can_create: bool,
    /// Visibility of repositories created in the namespace.
    pub default_visibility: Visibility,
}

impl Default for OrgSettings {
    fn default() -> Self {
        OrgSettings {
            members_can_create: false,
            default_visibility: Visibility::Private,
        }
    }
}

/// A stored organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    pub id: AccountId,
    pub name: String,
    pub full_name: String,
    pub settings: OrgSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A member of an organisation or a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: AccountId,
    pub name: String,
    /// Organisation owner (always `false` in team listings).
    pub is_owner: bool,
}

/// A stored team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    pub id: i64,
    pub org: String,
    pub name: String,
    /// DN or name of the directory group whose members sync into this team.
    pub directory_group: Option<String>,
    pub created_at: i64,
}

/// A repository's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSettings {
    pub name: RepoName,
    pub visibility: Visibility,
    /// The kind of the account that owns the repository (the one whose namespace held it
    /// when it was created, or that claimed it), as the access decision needs it;
    /// [`NamespaceKind::Unknown`] when no account owns it (an account of the same name
    /// created later does not own it).
    pub namespace: NamespaceKind,
    /// The account that created it, if known (`None` for repositories created before
    /// accounts existed, or whose creator was deleted).
    pub created_by: Option<AccountId>,
    pub created_at: i64,
}

/// Where the repositories a caller may see can be: what [`IdentityStore::repos_visible`]
/// reads, each part with its own index range scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisibleScope {
    /// Public repositories (a partial index holds exactly those).
    pub public: bool,
    /// Every repository of these namespaces.
    pub namespaces: Vec<String>,
    /// These repositories, by full name.
    pub repos: Vec<String>,
}

/// Everything the access decision needs for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessContext {
    /// The caller (anonymous if no user was asked for or the user does not exist), without
    /// any token restriction: the caller adds that.
    pub subject: Subject,
    /// The repository and its namespace's owner.
    pub repository: Repository,
    /// The grants of the subject's teams that apply to the repository (on it, or on its
    /// namespace).
    pub grants: Vec<Grant>,
}

/// Access token (used as a password) or refresh token (offline token of the token
/// protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<TokenKind, MetaError> {
        match s {
            "access" => Ok(TokenKind::Access),
            "refresh" => Ok(TokenKind::Refresh),
            other => Err(MetaError::Backend(format!("stored token kind {other:?}"))),
        }
    }
}

/// The credential a refresh token was issued against. A refresh token never outlives it:
/// it is usable only while its parent is (see [`IdentityStore::token_create`],
/// [`IdentityStore::token_revoke`] and [`IdentityStore::user_update`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenParent {
    /// A login with the user's password (or a directory bind), when the user's
    /// [`UserRecord::credential_epoch`] was `epoch`.
    Password { epoch: i64 },
    /// An access token of the same user, used as a password.
    Token(SecretId),
}

/// A token to store. The secret itself is never given to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub id: SecretId,
    pub kind: TokenKind,
    pub user_id: AccountId,
    pub description: String,
    pub hash: SecretHash,
    /// Unix milliseconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Reduced scope; `None` carries the user's full rights.
    pub restriction: Option<Restriction>,
    /// Required for a refresh token, absent for an access token.
    pub parent: Option<TokenParent>,
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: SecretId,
    pub kind: TokenKind,
    pub user_id: AccountId,
    pub description: String,
    pub hash: SecretHash,
    pub expires_at: Option<i64>,
    pub restriction: Option<Restriction>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
    /// What a refresh token was issued against; `None` for access tokens.
    pub parent: Option<TokenParent>,
}

impl TokenRecord {
    /// Not revoked and not expired at `now` (unix milliseconds).
    pub fn usable_at(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A signing key of the token service. `Debug` leaves the private key out.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The libtrust key id (JWT header `kid`).
    pub kid: String,
    /// The private key as `core` stores it: sealed under the key-encryption key, or, in a
    /// row written before keys were sealed, PKCS#8 PEM (sealed in place when read).
    pub pem: String,
    pub created_at: i64,
    /// Retired keys only verify; the newest key that is not retired signs.
    pub retired: bool,
}

/// `Debug` for an account record: its fields, and the password hash as `<redacted>`.
macro_rules! account_debug {
    ($($t:ident { $($field:ident),* })*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($field), &self.$field))*
                    .field("password", &self.password.as_ref().map(|_| "<redacted>"))
                    .finish_non_exhaustive()
            }
        }
    )*};
}

account_debug! {
    NewUser { name, origin, active, is_system_admin, is_service_account }
    UserRecord { id, name, origin, active, is_system_admin, is_service_account }
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("pem", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired", &self.retired)
            .finish()
    }
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// Unix milliseconds.
    pub at: i64,
    /// The user, or `None` for an anonymous caller.
    pub actor: Option<AccountId>,
    /// The caller's address.
    pub source: Option<String>,
    /// `login.success`, `login.failure`, `token.issue`, `repo.create`, `push`, `delete`,
    /// `grant.change`, ...
    pub action: String,
    /// What it was done to (a repository, an account, a team, ...).
    pub target: String,
    /// Further structured detail.
    pub detail: serde_json::Value,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Increases with each append: the paging key.
    pub id: i64,
    pub at: i64,
    pub actor: Option<AccountId>,
    pub source: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Which audit events to list; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<AccountId>,
    /// Exact action.
    pub action: Option<String>,
    /// `at >= since`.
    pub since: Option<i64>,
    /// `at < until`.
    pub until: Option<i64>,
    /// Targets starting with this (compared literally: `%` and `_` are not wildcards).
    pub target_prefix: Option<String>,
}

store_trait! {
    /// Accounts: users, organisations and their members. Every method is one transaction.
    pub trait AccountStore {
        // --- users ---------------------------------------------------------------------

        /// Creates a user. `Conflict` if a user or an organisation has the name; `Invalid` if
        /// the name is not lowercase or empty. A name is also a namespace: if repositories
        /// that no account owns are in it (pushed where no account existed, or left by a
        /// deleted account), `NamespaceHeld` unless `claim_namespace` is set, in which case
        /// the new account owns them, in the same transaction. Every way of creating an
        /// account goes through this check (and [`org_create`](Self::org_create)'s).
        async fn user_create(&self, user: &NewUser) -> Result<UserRecord, MetaError>;

        /// The user, if it exists (organisations are not users).
        async fn user_get(&self, key: UserKey<'_>) -> Result<Option<UserRecord>, MetaError>;

        /// Users by name, strictly after `last`, at most `n`.
        async fn users_list(&self, last: Option<&str>, n: u32) -> Result<Vec<UserRecord>, MetaError>;

        /// Changes a user; `NotFound` if there is none. A new password (a different hash) or
        /// a deactivation moves [`UserRecord::credential_epoch`] and revokes the refresh
        /// tokens issued at a password login under an earlier epoch.
        async fn user_update(&self, id: AccountId, patch: &UserPatch) -> Result<UserRecord, MetaError>;

        /// Deletes a user with their memberships and tokens; `false` if absent. Their
        /// repositories stay, owned by no account.
        async fn user_delete(&self, id: AccountId) -> Result<bool, MetaError>;

        // --- organisations -------------------------------------------------------------

        /// Creates an organisation. `Conflict` if a user or an organisation has the name;
        /// `NamespaceHeld` or a claim of the namespace's repositories exactly as
        /// [`user_create`](Self::user_create).
        async fn org_create(
            &self,
            name: &str,
            full_name: &str,
            settings: &OrgSettings,
            claim_namespace: bool,
        ) -> Result<OrgRecord, MetaError>;

        async fn org_get(&self, name: &str) -> Result<Option<OrgRecord>, MetaError>;

        /// Organisations by name, strictly after `last`, at most `n`.
        async fn orgs_list(&self, last: Option<&str>, n: u32) -> Result<Vec<OrgRecord>, MetaError>;

        /// Replaces the settings; `NotFound` if there is no such organisation.
        async fn org_update(&self, name: &str, settings: &OrgSettings) -> Result<OrgRecord, MetaError>;

        /// Deletes an organisation with its memberships, teams and grants; its repositories
        /// stay, owned by no account. `false` if absent.
        async fn org_delete(&self, name: &str) -> Result<bool, MetaError>;

        /// Adds a user to an organisation or changes their owner flag. `NotFound` if either
        /// is missing.
        async fn org_member_set(
            &self,
            org: &str,
            user: AccountId,
            is_owner: bool,
        ) -> Result<(), MetaError>;

        /// Removes a user from an organisation and from its teams; `false` if not a member.
        async fn org_member_remove(&self, org: &str, user: AccountId) -> Result<bool, MetaError>;

        /// Members by name; `NotFound` if there is no such organisation.
        async fn org_members(&self, org: &str) -> Result<Vec<Member>, MetaError>;
    }
}

store_trait! {
    /// Teams of an organisation and their members. Every method is one transaction.
    pub trait TeamStore {
        // --- teams ---------------------------------------------------------------------

        /// Creates a team. `NotFound` without the organisation, `Conflict` if the name is taken
        /// in it.
        async fn team_create(
            &self,
            org: &str,
            name: &str,
            directory_group: Option<&str>,
        ) -> Result<TeamRecord, MetaError>;

        async fn team_get(&self, org: &str, name: &str) -> Result<Option<TeamRecord>, MetaError>;

        /// Teams of an organisation by name.
        async fn teams_list(&self, org: &str) -> Result<Vec<TeamRecord>, MetaError>;

        /// Sets or clears the directory group mapped to a team; `false` if no such team.
        async fn team_set_directory_group(
            &self,
            org: &str,
            name: &str,
            group: Option<&str>,
        ) -> Result<bool, MetaError>;

        /// Deletes a team with its memberships and grants; `false` if absent.
        async fn team_delete(&self, org: &str, name: &str) -> Result<bool, MetaError>;

        /// Adds a user to a team, and to its organisation (not as owner) if needed.
        /// Idempotent; `NotFound` if the team or the user is missing.
        async fn team_member_add(
            &self,
            org: &str,
            team: &str,
            user: AccountId,
        ) -> Result<(), MetaError>;

        /// Removes a user from a team (they stay in the organisation); `false` if absent.
        async fn team_member_remove(
            &self,
            org: &str,
            team: &str,
            user: AccountId,
        ) -> Result<bool, MetaError>;

        /// Members of a team by name; `NotFound` if there is no such team.
        async fn team_members(&self, org: &str, team: &str) -> Result<Vec<Member>, MetaError>;
    }
}

store_trait! {
    /// Repository settings, grants and the inputs of the access decision. Every method is
    /// one transaction.
    pub trait AccessStore {
        // --- repositories --------------------------------------------------------------

        /// Creates a repository (management API, or core before a first push) with its
        /// creator, with `visibility` or else the namespace's default, owned by the
        /// namespace's account if there is one. `Conflict` if it exists.
        async fn repo_create(
            &self,
            repo: &RepoName,
            created_by: Option<AccountId>,
            visibility: Option<Visibility>,
        ) -> Result<RepoSettings, MetaError>;

        async fn repo_settings(&self, repo: &RepoName) -> Result<Option<RepoSettings>, MetaError>;

        /// Sets a repository's visibility; `false` if it does not exist.
        async fn repo_set_visibility(
            &self,
            repo: &RepoName,
            visibility: Visibility,
        ) -> Result<bool, MetaError>;

        /// Repositories by name, strictly after `last`, at most `n`, optionally only those of
        /// one namespace.
        async fn repos_list(
            &self,
            namespace: Option<&str>,
            last: Option<&str>,
            n: u32,
        ) -> Result<Vec<RepoSettings>, MetaError>;

        /// The repositories of `scope` (optionally only those of `namespace`), by name,
        /// strictly after `last`, at most `n`. Each part of the scope is its own index range
        /// scan of at most `n` rows, so a page costs work in proportion to the page and the
        /// scope's parts, never to the repositories the scope leaves out.
        async fn repos_visible(
            &self,
            scope: &VisibleScope,
            namespace: Option<&str>,
            last: Option<&str>,
            n: u32,
        ) -> Result<Vec<RepoSettings>, MetaError>;

        /// Deletes a repository with its manifests, tags, links, uploads and grants (blob rows
        /// stay for garbage collection); `false` if absent.
        async fn repo_delete(&self, repo: &RepoName) -> Result<bool, MetaError>;

        // --- grants --------------------------------------------------------------------

        /// Gives a team a role on one repository of its organisation (replacing any role it
        /// had there). `NotFound` if the team or the repository is missing; `Invalid` if the
        /// repository is in another namespace.
        async fn grant_repo_set(
            &self,
            org: &str,
            team: &str,
            repo: &RepoName,
            role: Role,
        ) -> Result<(), MetaError>;

        /// `false` if the team had no role there.
        async fn grant_repo_remove(
            &self,
            org: &str,
            team: &str,
            repo: &RepoName,
        ) -> Result<bool, MetaError>;

        /// Gives a team a role on its organisation's whole namespace (replacing any).
        async fn grant_namespace_set(&self, org: &str, team: &str, role: Role)
            -> Result<(), MetaError>;

        /// `false` if the team had no namespace role.
        async fn grant_namespace_remove(&self, org: &str, team: &str) -> Result<bool, MetaError>;

        /// Grants of every team of an organisation: namespace grants first, then repository
        /// grants by repository; each by team.
        async fn grants_of_org(&self, org: &str) -> Result<Vec<Grant>, MetaError>;

        /// Grants naming one repository, and namespace grants covering it.
        async fn grants_on_repo(&self, repo: &RepoName) -> Result<Vec<Grant>, MetaError>;

        /// Grants of every team a user belongs to (for filtering listings).
        async fn grants_of_user(&self, user: AccountId) -> Result<Vec<Grant>, MetaError>;

        // --- the access decision's inputs --------------------------------------------------

        /// The subject of an active or inactive user, with organisations and teams; `None` if
        /// there is no such user.
        async fn subject_for(&self, key: UserKey<'_>) -> Result<Option<Subject>, MetaError>;

        /// The repository as the decision sees it: visibility if it exists, its namespace's
        /// owner kind (for an existing repository, its owning account's; for a missing one,
        /// the account of the namespace's name, which would own it).
        async fn repository_for_access(&self, repo: &RepoName) -> Result<Repository, MetaError>;

        /// [`subject_for`](Self::subject_for), [`repository_for_access`](Self::repository_for_access)
        /// and the user's grants in the repository's namespace, in one round trip. An unknown
        /// user gives the anonymous subject.
        async fn access_for(
            &self,
            user: Option<UserKey<'_>>,
            repo: &RepoName,
        ) -> Result<AccessContext, MetaError>;
    }
}

store_trait! {
    /// Access tokens and the token-signing keys. Every method is one transaction.
    pub trait TokenStore {
        // --- tokens --------------------------------------------------------------------

        /// Stores a token; `Conflict` if the id exists, `NotFound` if the user (or a parent
        /// token of the same user) does not, `Invalid` for a refresh token without a parent,
        /// an access token with one, or a parent token that is not an access token. A refresh
        /// token expires no later than its parent token, and is stored revoked if its parent
        /// no longer holds (a revoked parent token, a password epoch that has moved).
        async fn token_create(&self, token: &NewToken) -> Result<TokenRecord, MetaError>;

        /// A token by id, revoked or expired ones included (the caller checks
        /// [`TokenRecord::usable_at`]).
        async fn token_get(&self, id: &SecretId) -> Result<Option<TokenRecord>, MetaError>;

        /// A user's tokens of one kind, newest first.
        async fn tokens_list(
            &self,
            user: AccountId,
            kind: TokenKind,
        ) -> Result<Vec<TokenRecord>, MetaError>;

        /// Records a use at `at` (unix milliseconds); `false` if absent.
        async fn token_touch(&self, id: &SecretId, at: i64) -> Result<bool, MetaError>;

        /// Revokes a token and the refresh tokens issued against it; `false` if absent
        /// (revoking twice is `true`).
        async fn token_revoke(&self, id: &SecretId) -> Result<bool, MetaError>;

        /// Revokes every token of a user; how many were not revoked before.
        async fn tokens_revoke_all(&self, user: AccountId) -> Result<u64, MetaError>;

        // --- signing keys --------------------------------------------------------------

        /// Adds a key; `Conflict` if the kid exists (two replicas generating at once: the
        /// loser reads the keys again).
        async fn signing_key_add(&self, kid: &str, pem: &str) -> Result<SigningKeyRecord, MetaError>;

        /// Every key, newest first.
        async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetaError>;

        /// Retires a key; `false` if absent.
        async fn signing_key_retire(&self, kid: &str) -> Result<bool, MetaError>;

        /// Replaces the stored form of a key (`from` by `to`: the same key, sealed);
        /// `false` if the key is absent or no longer stored as `from`.
        async fn signing_key_reseal(&self, kid: &str, from: &str, to: &str)
            -> Result<bool, MetaError>;
    }
}

store_trait! {
    /// The audit log. Every method is one transaction.
    pub trait AuditStore {
        // --- audit ---------------------------------------------------------------------

        /// Appends an event; its id.
        async fn audit_append(&self, event: &NewAuditEvent) -> Result<i64, MetaError>;

        /// Deletes at most `max` audit events older than `before` (Unix milliseconds), oldest
        /// first, and returns how many it deleted: the retention job calls it until it
        /// deletes fewer than `max`, so no transaction grows with the log.
        async fn audit_prune(&self, before: i64, max: u32) -> Result<u64, MetaError>;

        /// Events matching `filter` with ids below `before` (all if `None`), newest first, at
        /// most `n`. The next page passes the last id returned as `before`.
        async fn audit_query(
            &self,
            filter: &AuditFilter,
            before: Option<i64>,
            n: u32,
        ) -> Result<Vec<AuditEvent>, MetaError>;
    }
}

store_trait! {
    /// The revision of everything an access decision depends on (migration
    /// `0015_identity_revision.sql`: triggers move it on with every change of an account's
    /// state, a membership, a grant, a repository's visibility, a token's revocation).
    pub trait RevisionStore {
        async fn identity_revision(&self) -> Result<i64, MetaError>;
    }
}

#[async_trait::async_trait]
impl<S: crate::shared::Statements> RevisionStore for S {
    async fn identity_revision(&self) -> Result<i64, MetaError> {
        use crate::shared::Pool;
        let (revision,): (i64,) = on_pool!(self.pool(), p => {
            sqlx::query_as(IDENTITY_REVISION).fetch_one(p).await?
        });
        Ok(revision)
    }
}

store_trait! {
    /// Refused logins counted per key in a window, shared by every replica (migration
    /// `0016_login_failures.sql`).
    pub trait LoginFailureStore {
        /// Counts one failure under each of `keys` at `now` (unix ms); a count whose window
        /// (`window_ms`) has passed starts again at 1. Rows past their window are deleted.
        async fn login_failures_add(&self, keys: &[String], now: i64, window_ms: i64)
            -> Result<(), MetaError>;

        /// The counts of `keys` whose window started after `since` (unix ms): (key,
        /// failures, window start).
        async fn login_failures(&self, keys: &[String], since: i64)
            -> Result<Vec<(String, i64, i64)>, MetaError>;

        /// Forgets the failures of `key` (a login that succeeded).
        async fn login_failures_clear(&self, key: &str) -> Result<(), MetaError>;
    }
}

const FAILURE_ADD: &str = "INSERT INTO login_failures (key, failures, window_start) \
     VALUES ($1, 1, $2) ON CONFLICT (key) DO UPDATE SET \
     failures = CASE WHEN login_failures.window_start <= $3 THEN 1 \
         ELSE login_failures.failures + 1 END, \
     window_start = CASE WHEN login_failures.window_start <= $3 THEN $2 \
         ELSE login_failures.window_start END";
const FAILURES_PRUNE: &str = "DELETE FROM login_failures WHERE window_start <= $1";
const FAILURES_GET: &str = "SELECT key, failures, window_start FROM login_failures \
     WHERE (key = $1 OR key = $2 OR key = $3) AND window_start > $4";
const FAILURES_CLEAR: &str = "DELETE FROM login_failures WHERE key = $1";

/// The login-failure statements, for the check that their parameters are in order.
#[cfg(test)]
pub(crate) const FAILURE_STATEMENTS: &[&str] =
    &[FAILURE_ADD, FAILURES_PRUNE, FAILURES_GET, FAILURES_CLEAR];

#[async_trait::async_trait]
impl<S: crate::shared::Statements> LoginFailureStore for S {
    async fn login_failures_add(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> Result<(), MetaError> {
        use crate::shared::{Arg, Step};
        let expired = now.saturating_sub(window_ms);
        let mut steps = vec![Step::any(FAILURES_PRUNE, vec![Arg::Int(expired)])];
        for k in keys {
            let args = vec![k.as_str().into(), Arg::Int(now), Arg::Int(expired)];
            steps.push(Step::any(FAILURE_ADD, args));
        }
        self.run_all(steps).await
    }

    async fn login_failures(
        &self,
        keys: &[String],
        since: i64,
    ) -> Result<Vec<(String, i64, i64)>, MetaError> {
        use crate::shared::Pool;
        // Up to three keys; fewer repeat the last.
        let key = |i: usize| keys.get(i).or(keys.last()).cloned().unwrap_or_default();
        let rows: Vec<(String, i64, i64)> = on_pool!(self.pool(), p => {
            sqlx::query_as(FAILURES_GET)
                .bind(key(0)).bind(key(1)).bind(key(2)).bind(since)
                .fetch_all(p).await?
        });
        Ok(rows)
    }

    async fn login_failures_clear(&self, key: &str) -> Result<(), MetaError> {
        use crate::shared::Step;
        self.run_all(vec![Step::any(FAILURES_CLEAR, vec![key.into()])])
            .await
    }
}

pub(crate) const IDENTITY_REVISION: &str = "SELECT revision FROM identity_revision WHERE id = 1";

/// Every identity and access trait, as one value (`Arc<dyn IdentityStore>`); implemented
/// for whatever implements all of them.
pub trait IdentityStore:
    AccountStore + TeamStore + AccessStore + TokenStore + AuditStore + RevisionStore + LoginFailureStore
{
}

impl<
        S: AccountStore
            + TeamStore
            + AccessStore
            + TokenStore
            + AuditStore
            + RevisionStore
            + LoginFailureStore
            + ?Sized,
    > IdentityStore for S
{
}

// ---------------------------------------------------------------------------------------
// Conversions both implementations share

/// Checks an account or team name the store is asked to create.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), MetaError> {
    if name.is_empty() {
        return Err(MetaError::Invalid(format!("{what} name is empty")));
    }
    if name != name.to_lowercase() {
        return Err(MetaError::Invalid(format!("{what} name must be lowercase")));
    }
    Ok(())
}

pub(crate) fn visibility_str(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

pub(crate) fn parse_visibility(s: &str) -> Result<Visibility, MetaError> {
    match s {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(MetaError::Backend(format!("stored visibility {other:?}"))),
    }
}

pub(crate) fn parse_role(s: &str) -> Result<Role, MetaError> {
    Role::parse(s).ok_or_else(|| MetaError::Backend(format!("stored role {s:?}")))
}

/// The stored columns of an origin: `origin`, `directory_dn`, `directory_id`.
pub(crate) fn origin_parts(o: &Origin) -> (&'static str, Option<&str>, Option<&str>) {
    match o {
        Origin::Local => ("local", None, None),
        Origin::Directory { dn, id } => ("directory", Some(dn.as_str()), id.as_deref()),
    }
}

pub(crate) fn parse_origin(
    kind: &str,
    dn: Option<String>,
    id: Option<String>,
) -> Result<Origin, MetaError> {
    match kind {
        "local" => Ok(Origin::Local),
        "directory" => Ok(Origin::Directory {
            dn: dn.unwrap_or_default(),
            id,
        }),
        other => Err(MetaError::Backend(format!("stored origin {other:?}"))),
    }
}

pub(crate) fn restriction_json(r: &Option<Restriction>) -> Result<Option<String>, MetaError> {
    r.as_ref()
        .map(|r| {
            serde_json::to_string(r)
                .map_err(|e| MetaError::Backend(format!("serialising a restriction: {e}")))
        })
        .transpose()
}

pub(crate) fn parse_restriction(s: Option<String>) -> Result<Option<Restriction>, MetaError> {
    s.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| MetaError::Backend(format!("stored restriction is invalid: {e}")))
    })
    .transpose()
}

pub(crate) fn stored_secret_id(s: &str) -> Result<SecretId, MetaError> {
    SecretId::parse(s).map_err(|_| MetaError::Backend(format!("stored token id {s:?} is invalid")))
}

pub(crate) fn stored_hash(s: &str) -> Result<SecretHash, MetaError> {
    SecretHash::from_hex(s).map_err(|_| MetaError::Backend("stored token hash is invalid".into()))
}

pub(crate) fn parse_detail(s: &str) -> Result<serde_json::Value, MetaError> {
    serde_json::from_str(s)
        .map_err(|e| MetaError::Backend(format!("stored audit detail is invalid: {e}")))
}

/// A user row's columns, in the order both implementations select them
/// (see [`USER_COLUMNS`]).
pub(crate) type UserRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    bool,
    bool,
    bool,
    i64,
    i64,
    i64,
    Option<String>,
);

pub(crate) const USER_COLUMNS: &str = "id, name, full_name, email, password, origin, \
     directory_dn, active, system_admin, service_account, created_at, updated_at, \
     credential_epoch, directory_id";

pub(crate) fn user_record(r: UserRow) -> Result<UserRecord, MetaError> {
    let (
        id,
        name,
        full_name,
        email,
        password,
        origin,
        dn,
        active,
        admin,
        service,
        c,
        u,
        epoch,
        did,
    ) = r;
    Ok(UserRecord {
        id,
        name,
        full_name,
        email,
        password,
        origin: parse_origin(&origin, dn, did)?,
        active,
        is_system_admin: admin,
        is_service_account: service,
        created_at: c,
        updated_at: u,
        credential_epoch: epoch,
    })
}

pub(crate) type OrgRow = (i64, String, String, bool, String, i64, i64);

pub(crate) const ORG_COLUMNS: &str =
    "id, name, full_name, members_can_create, default_visibility, created_at, updated_at";

pub(crate) fn org_record(r: OrgRow) -> Result<OrgRecord, MetaError> {
    let (id, name, full_name, mcc, vis, c, u) = r;
    Ok(OrgRecord {
        id,
        name,
        full_name,
        settings: OrgSettings {
            members_can_create: mcc,
            default_visibility: parse_visibility(&vis)?,
        },
        created_at: c,
        updated_at: u,
    })
}

pub(crate) type TokenRow = (
    String,
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    bool,
    Option<String>,
    Option<i64>,
);

pub(crate) const TOKEN_COLUMNS: &str = "id, kind, user_id, description, hash, expires_at, \
     restriction, created_at, last_used_at, revoked, parent_id, credential_epoch";

pub(crate) fn token_record(r: TokenRow) -> Result<TokenRecord, MetaError> {
    let (id, kind, user_id, description, hash, expires_at, restriction, c, used, revoked, p, e) = r;
    let parent = match (p, e) {
        (Some(p), _) => Some(TokenParent::Token(stored_secret_id(&p)?)),
        (None, Some(epoch)) => Some(TokenParent::Password { epoch }),
        (None, None) => None,
    };
    Ok(TokenRecord {
        id: stored_secret_id(&id)?,
        kind: TokenKind::parse(&kind)?,
        user_id,
        description,
        hash: stored_hash(&hash)?,
        expires_at,
        restriction: parse_restriction(restriction)?,
        created_at: c,
        last_used_at: used,
        revoked,
        parent,
    })
}

/// The columns a token's parent is stored in: (`parent_id`, `credential_epoch`).
pub(crate) fn parent_columns(p: &Option<TokenParent>) -> (Option<&str>, Option<i64>) {
    match p {
        Some(TokenParent::Token(id)) => (Some(id.as_str()), None),
        Some(TokenParent::Password { epoch }) => (None, Some(*epoch)),
        None => (None, None),
    }
}

/// A refresh token needs a parent; an access token has none.
pub(crate) fn check_token_parent(t: &NewToken) -> Result<(), MetaError> {
    match (t.kind, &t.parent) {
        (TokenKind::Refresh, None) => Err(MetaError::Invalid(
            "a refresh token needs the credential it was issued against".into(),
        )),
        (TokenKind::Access, Some(_)) => Err(MetaError::Invalid(
            "an access token has no parent credential".into(),
        )),
        _ => Ok(()),
    }
}

/// A parent token's row as [`token_create`](IdentityStore::token_create) reads it: kind,
/// owner, expiry, revoked.
pub(crate) type ParentRow = (String, AccountId, Option<i64>, bool);

/// What a new token is stored with, as (expires_at, revoked): a refresh token expires no
/// later than its parent token and is born revoked if its parent no longer holds (the
/// parent token is revoked, or the password epoch it records is not the user's
/// `user_epoch` any more). `parent` is the row of [`TokenParent::Token`], if any.
pub(crate) fn new_token_state(
    t: &NewToken,
    parent: Option<ParentRow>,
    user_epoch: i64,
) -> Result<(Option<i64>, bool), MetaError> {
    match &t.parent {
        None => Ok((t.expires_at, false)),
        Some(TokenParent::Password { epoch }) => Ok((t.expires_at, *epoch != user_epoch)),
        Some(TokenParent::Token(pid)) => {
            let Some((kind, _, expires_at, revoked)) = parent.filter(|p| p.1 == t.user_id) else {
                return Err(MetaError::NotFound(format!("parent token {pid}")));
            };
            if TokenKind::parse(&kind)? != TokenKind::Access {
                return Err(MetaError::Invalid(format!(
                    "parent token {pid} is not an access token"
                )));
            }
            let expires = match (t.expires_at, expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Ok((expires, revoked))
        }
    }
}

/// One grant row: team's organisation, team, repository (`None` for the namespace), role.
pub(crate) type GrantRow = (String, String, Option<String>, String);

pub(crate) fn grant(r: GrantRow) -> Result<Grant, MetaError> {
    use berth_auth::rbac::{GrantTarget, TeamRef};
    let (org, team, repo, role) = r;
    Ok(Grant {
        team: TeamRef { org, team },
        target: match repo {
            Some(name) => GrantTarget::Repository(name),
            None => GrantTarget::Namespace,
        },
        role: parse_role(&role)?,
    })
}

/// The namespace kind from the namespace account's row (`None`: no such account).
pub(crate) fn namespace_kind(
    row: Option<(String, bool)>,
) -> Result<berth_auth::rbac::NamespaceKind, MetaError> {
    use berth_auth::rbac::NamespaceKind;
    Ok(match row {
        None => NamespaceKind::Unknown,
        Some((kind, mcc)) => match kind.as_str() {
            "user" => NamespaceKind::User,
            "org" => NamespaceKind::Organization {
                members_can_create: mcc,
            },
            other => return Err(MetaError::Backend(format!("stored account kind {other:?}"))),
        },
    })
}

/// The subject from a user row's `(id, name, system_admin, active)` and its organisations
/// and teams as JSON arrays (`[{"org":..,"is_owner":..}]`, `[{"org":..,"team":..}]`).
pub(crate) fn subject(
    id: i64,
    name: String,
    admin: bool,
    active: bool,
    orgs: &str,
    teams: &str,
) -> Result<Subject, MetaError> {
    let bad = |e: serde_json::Error| MetaError::Backend(format!("stored memberships: {e}"));
    let mut orgs: Vec<berth_auth::rbac::OrgMembership> = serde_json::from_str(orgs).map_err(bad)?;
    let mut teams: Vec<berth_auth::rbac::TeamRef> = serde_json::from_str(teams).map_err(bad)?;
    orgs.sort_by(|a, b| a.org.cmp(&b.org));
    teams.sort();
    Ok(Subject::user(berth_auth::rbac::User {
        id: id.to_string(),
        name,
        is_system_admin: admin,
        active,
        orgs,
        teams,
    }))
}

/// The statement and its text parameters for one `repos_list` page, written so that
/// every variant is an index range scan on `repositories.name` (a generic
/// `(?1 IS NULL OR name > ?1)` makes SQLite scan the index from its start on every page,
/// and a walk quadratic). `placeholder(i)` spells the i-th parameter (1-based) in the
/// backend's syntax; the caller binds the returned strings in order, then the limit. The
/// rows are [`RepoSettingsRow`]s, for [`repo_settings_rows`]: the owning account's kind
/// comes from a join on `owner_id` (the primary key), never from the name.
///
/// A namespace's repositories are the name `ns` itself and the names in `["ns/", "ns0")`
/// (exactly those starting with `ns/`, since `0` follows `/` in byte order, and names
/// compare byte-wise on both backends): the scan covers `[ns, ns0)` and the filter drops
/// the few names between (`ns-x`, `ns.x`).
pub(crate) fn repos_page_query(
    namespace: Option<&str>,
    last: Option<&str>,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let mut bind = |v: String| {
        binds.push(v);
        placeholder(binds.len())
    };
    match namespace {
        Some(ns) => {
            // One lower bound, so the scan starts at the right place.
            match last.filter(|l| *l >= ns) {
                Some(l) => clauses.push(format!("r.name > {}", bind(l.to_string()))),
                None => clauses.push(format!("r.name >= {}", bind(ns.to_string()))),
            }
            let (slash, after) = namespace_bounds(ns);
            clauses.push(format!("r.name < {}", bind(after)));
            let exact = bind(ns.to_string());
            let slash = bind(slash);
            clauses.push(format!("(r.name = {exact} OR r.name >= {slash})"));
        }
        None => {
            if let Some(l) = last {
                clauses.push(format!("r.name > {}", bind(l.to_string())));
            }
        }
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT r.name, r.visibility, r.created_by, r.created_at, ns.kind, \
         ns.members_can_create FROM repositories r LEFT JOIN accounts ns ON ns.id = r.owner_id \
         {filter} ORDER BY r.name LIMIT {}",
        placeholder(binds.len() + 1)
    );
    (sql, binds)
}

/// The statement and its text parameters for one [`IdentityStore::repos_visible`] page:
/// a `UNION` of range scans (the public partial index; `[ns, ns0)` per namespace; the named
/// repositories), each ordered and limited, then ordered and limited again. Parameter 1 is
/// `last` (`''` for the first page), the last one the limit; both are used by every part.
/// Rows are [`RepoSettingsRow`]s. `None` when the scope is empty.
pub(crate) fn visible_page_query(
    scope: &VisibleScope,
    namespace: Option<&str>,
    last: Option<&str>,
    placeholder: impl Fn(usize) -> String,
) -> Option<(String, Vec<String>)> {
    const COLUMNS: &str = "name, visibility, created_by, created_at, owner_id";
    let mut binds = vec![last.unwrap_or("").to_string()];
    let mut bind = |v: String| {
        binds.push(v);
        placeholder(binds.len())
    };
    // `name` in namespace `ns`: the bounds keep the scan to `[ns, ns0)`.
    let mut within = |ns: &str| {
        let (lo, hi, slash) = (
            bind(ns.to_string()),
            bind(format!("{ns}0")),
            bind(format!("{ns}/")),
        );
        format!("name >= {lo} AND name < {hi} AND (name = {lo} OR name >= {slash})")
    };
    let only = namespace.map(&mut within);
    let mut parts: Vec<String> = Vec::new();
    if scope.public {
        let mut w = vec!["visibility = 'public'".to_string()];
        w.extend(only.clone());
        parts.push(w.join(" AND "));
    }
    for ns in scope
        .namespaces
        .iter()
        .filter(|ns| namespace.is_none_or(|only| only == ns.as_str()))
    {
        parts.push(within(ns));
    }
    let repos: Vec<&String> = scope
        .repos
        .iter()
        .filter(|r| namespace.is_none_or(|ns| r.split('/').next() == Some(ns)))
        .collect();
    if !repos.is_empty() {
        let list: Vec<String> = repos.iter().map(|r| bind(r.to_string())).collect();
        parts.push(format!("name IN ({})", list.join(", ")));
    }
    if parts.is_empty() {
        return None;
    }
    let (last, limit) = (placeholder(1), placeholder(binds.len() + 1));
    let union = parts
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM repositories \
                 WHERE {w} AND name > {last} ORDER BY name LIMIT {limit}) AS part{i}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ");
    Some((
        format!(
            "SELECT v.name, v.visibility, v.created_by, v.created_at, ns.kind, \
             ns.members_can_create FROM ({union}) AS v \
             LEFT JOIN accounts ns ON ns.id = v.owner_id ORDER BY v.name LIMIT {limit}"
        ),
        binds,
    ))
}

/// `("ns/", "ns0")`: a namespace's repositories other than `ns` itself are the names in
/// this half-open range (see [`repos_page_query`]).
pub(crate) fn namespace_bounds(ns: &str) -> (String, String) {
    (format!("{ns}/"), format!("{ns}0"))
}

/// A repository row as listings select it: name, visibility, creator, creation time, the
/// owning account's kind and `members_can_create` (NULL without an owner).
pub(crate) type RepoSettingsRow = (
    String,
    String,
    Option<i64>,
    i64,
    Option<String>,
    Option<bool>,
);

/// Repository settings from [`RepoSettingsRow`]s, keeping only those of `namespace` (a
/// safety net: the queries already select exactly those).
pub(crate) fn repo_settings_rows(
    rows: Vec<RepoSettingsRow>,
    namespace: Option<&str>,
) -> Result<Vec<RepoSettings>, MetaError> {
    let mut out = Vec::with_capacity(rows.len());
    for (name, vis, created_by, created_at, kind, mcc) in rows {
        let name = crate::convert::stored_repo(&name)?;
        if namespace.is_some_and(|ns| name.namespace() != ns) {
            continue;
        }
        out.push(repo_settings(
            name,
            (vis, created_by, created_at, kind, mcc),
        )?);
    }
    Ok(out)
}

/// A repository's settings columns: visibility, creator, creation time, the owning
/// account's kind and `members_can_create` (NULL without an owner).
pub(crate) type SettingsCols = (String, Option<i64>, i64, Option<String>, Option<bool>);

/// The settings of repository `name` from its [`SettingsCols`].
pub(crate) fn repo_settings(
    name: RepoName,
    (vis, created_by, created_at, kind, mcc): SettingsCols,
) -> Result<RepoSettings, MetaError> {
    Ok(RepoSettings {
        name,
        visibility: parse_visibility(&vis)?,
        namespace: namespace_kind(kind.map(|k| (k, mcc.unwrap_or(false))))?,
        created_by,
        created_at,
    })
}

/// The record of token `t` just stored with `state` (expiry, revoked: what
/// [`new_token_state`] decided) at `created_at`.
pub(crate) fn created_token(
    t: NewToken,
    (expires_at, revoked): (Option<i64>, bool),
    created_at: i64,
) -> TokenRecord {
    TokenRecord {
        id: t.id,
        kind: t.kind,
        user_id: t.user_id,
        description: t.description,
        hash: t.hash,
        expires_at,
        restriction: t.restriction,
        created_at,
        last_used_at: None,
        revoked,
        parent: t.parent,
    }
}

/// Refuses to create an account named `name` while repositories that no account owns
/// are in its namespace, unless the caller claims them (`claim`). Both backends call it
/// with the answer of the same query, inside the creating transaction.
pub(crate) fn check_namespace_free(name: &str, held: bool, claim: bool) -> Result<(), MetaError> {
    if held && !claim {
        return Err(MetaError::NamespaceHeld(name.to_string()));
    }
    Ok(())
}

/// The access context from the single row both implementations select.
pub(crate) fn access_context(
    subject_cols: Option<(i64, String, bool, bool, String, String)>,
    visibility: Option<String>,
    ns_kind: Option<String>,
    members_can_create: Option<bool>,
    grants_json: &str,
    repo: &RepoName,
) -> Result<AccessContext, MetaError> {
    let subject = match subject_cols {
        Some((id, name, admin, active, orgs, teams)) => {
            subject(id, name, admin, active, &orgs, &teams)?
        }
        None => Subject::anonymous(),
    };
    let rows: Vec<GrantRow> = serde_json::from_str(grants_json)
        .map_err(|e| MetaError::Backend(format!("stored grants: {e}")))?;
    Ok(AccessContext {
        subject,
        repository: Repository {
            name: repo.clone(),
            visibility: visibility.as_deref().map(parse_visibility).transpose()?,
            namespace: namespace_kind(ns_kind.map(|k| (k, members_can_create.unwrap_or(false))))?,
        },
        grants: rows.into_iter().map(grant).collect::<Result<_, _>>()?,
    })
}

/// An audit row: id, at, actor, source, action, target, detail JSON.
pub(crate) type AuditRow = (
    i64,
    i64,
    Option<i64>,
    Option<String>,
    String,
    String,
    String,
);

pub(crate) fn audit_event(r: AuditRow) -> Result<AuditEvent, MetaError> {
    let (id, at, actor, source, action, target, detail) = r;
    Ok(AuditEvent {
        id,
        at,
        actor,
        source,
        action,
        target,
        detail: parse_detail(&detail)?,
    })
}
