//! The management service: accounts, organisations, teams, repositories, grants, access
//! tokens, the audit log and the directory settings, as the `/api/v0` JSON API (and later
//! the console) offers them. Knows no HTTP type: each method takes the [`Caller`], decides
//! whether they may act with the rules below, does it through the identity store and
//! appends an audit event for every change of permission.
//!
//! Who may do what (system administrators may do everything; a caller authenticated with
//! an access token that carries a [`Restriction`], or with a registry bearer token (bounded
//! by its `access` claim, see [`Manage::resolve`]), is never a system administrator nor an
//! owner here, and may change nothing but repositories its restriction covers):
//! - reading users (e-mail addresses: the user's own, or as a system administrator),
//!   organisations, their members and teams: any authenticated caller;
//! - creating, deleting users and organisations, the system administrator flag and
//!   activation: system administrators;
//! - claiming a namespace that holds repositories no account owns (creating an account
//!   of that name, which the store refuses otherwise): system administrators, explicitly
//!   (`claim_namespace`), audited as `namespace.claim`;
//! - a user's own full name, e-mail and password (with the current password): the user;
//! - organisation settings, members, owners, teams, team members and namespace grants:
//!   the organisation's owners; service accounts of the organisation: its owners too;
//! - repositories: the access decision of `berth_auth::rbac` (pull to see one, push on the
//!   namespace to create one, admin to change visibility and grants, delete to delete); a
//!   private repository the caller may not pull is [`ManageError::RepoUnknown`], exactly as
//!   a missing one; listings show only what the caller may pull;
//! - access tokens: a user's own; a service account's, also system administrators and the
//!   owner of every organisation it belongs to (unless it is a system administrator); any
//!   user's list and revocation, also system administrators. The secret is returned once.
//!   Refresh tokens (issued by the token service) are listed and revoked by the same
//!   rules and the same calls; revoking an access token revokes the refresh tokens issued
//!   against it;
//! - the audit log: system administrators see every event, everyone else only their own;
//! - the directory settings and sync runs: system administrators.

use crate::access::{Access, AccessError, Caller, CreatedToken, Verdict};
use crate::directory_sync::{run_sync, sync_runs, SyncReport, SyncRun, Trigger};
use crate::policy::{Policies, Scope};
use berth_auth::password::{hash_password, verify_password};
use berth_auth::rbac::{self, Grant, Permission, Restriction, Role, User, Visibility};
use berth_auth::secret::SecretId;
use berth_meta::identity::{
    AccountId, AuditEvent, AuditFilter, Member, NewUser, OrgRecord, OrgSettings, Origin,
    RepoSettings, TeamRecord, TokenKind, TokenRecord, UserKey, UserPatch, UserRecord,
};
use berth_meta::MetaError;
use berth_oci::RepoName;
use serde_json::json;

/// Longest free-text field (full name, e-mail, description, directory group).
pub const MAX_TEXT: usize = 1024;
/// Longest account or team name.
pub const MAX_NAME: usize = berth_oci::name::MAX_ACCOUNT_NAME_LEN;
/// Largest page.
pub const MAX_PAGE: u32 = 1000;

/// Why a management request was not done.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// Anonymous caller on an endpoint that needs an account.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller may see the object but not do this.
    #[error("{0}")]
    Denied(String),
    /// A repository that does not exist or that the caller may not pull.
    #[error("repository {0} not known to registry")]
    RepoUnknown(String),
    /// A user, organisation, team or token that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A malformed account, team or repository name.
    #[error("{0}")]
    NameInvalid(String),
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// A name that is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// A well-formed request the object's state does not allow (a password for a service
    /// account, deleting oneself).
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Access(AccessError),
    #[error(transparent)]
    Store(MetaError),
    #[error(transparent)]
    Trust(crate::trust::TrustError),
}

impl From<crate::trust::TrustError> for ManageError {
    fn from(e: crate::trust::TrustError) -> ManageError {
        match e {
            crate::trust::TrustError::Meta(m) => m.into(),
            other => ManageError::Trust(other),
        }
    }
}

impl From<MetaError> for ManageError {
    fn from(e: MetaError) -> ManageError {
        match e {
            MetaError::NotFound(s) => ManageError::NotFound(s),
            MetaError::Conflict(s) => ManageError::Conflict(s),
            MetaError::Invalid(s) => ManageError::Invalid(s),
            e @ MetaError::NamespaceHeld(_) => ManageError::State(e.to_string()),
            other => ManageError::Store(other),
        }
    }
}

impl From<AccessError> for ManageError {
    fn from(e: AccessError) -> ManageError {
        match e {
            AccessError::Store(m) => m.into(),
            other => ManageError::Access(other),
        }
    }
}

/// A policy store or scope error as the management API says it.
fn policy_error(e: crate::error::CoreError) -> ManageError {
    match e {
        crate::error::CoreError::Meta(m) => m.into(),
        other => ManageError::Invalid(other.to_string()),
    }
}

type Result<T> = std::result::Result<T, ManageError>;

/// One page of a listing; `next` is the `last` of the following page, if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A local user to create.
#[derive(Debug, Clone, Default)]
pub struct LocalUser {
    pub name: String,
    pub password: String,
    pub full_name: String,
    pub email: Option<String>,
    pub is_system_admin: bool,
    /// Take the repositories that the name's namespace holds without an owner.
    pub claim_namespace: bool,
}

/// Changes to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub full_name: Option<String>,
    /// `Some(None)` clears the address.
    pub email: Option<Option<String>>,
    pub active: Option<bool>,
    pub is_system_admin: Option<bool>,
}

/// An access token to create.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub description: String,
    /// Seconds from now; `None`: until revoked.
    pub expires_in: Option<u64>,
    pub restriction: Option<Restriction>,
}

/// Which audit events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// An account name.
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<i64>,
    pub target_prefix: Option<String>,
    /// Events with an id below this (the previous page's `next`).
    pub before: Option<i64>,
    pub n: u32,
}

/// A page of the audit log; `next` is the `before` of the following page.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub next: Option<i64>,
}

/// Checks an account or team name: lowercase letters and digits, separated by single
/// `.`, `_` or `-`, at most [`MAX_NAME`] bytes (an account name is also a namespace, the
/// first component of repository names).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if berth_oci::is_valid_account_name(name) {
        Ok(())
    } else {
        Err(ManageError::NameInvalid(format!(
            "invalid {what} name: use 1 to {MAX_NAME} lowercase letters and digits, \
             separated by single '.', '_' or '-'"
        )))
    }
}

/// Parses a repository name.
pub fn repo_name(s: &str) -> Result<RepoName> {
    RepoName::parse(s).map_err(|e| {
        ManageError::NameInvalid(format!(
            "invalid repository name {:?}: {e}",
            s.chars().take(64).collect::<String>()
        ))
    })
}

fn check_text(what: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_TEXT {
        return Err(ManageError::Invalid(format!(
            "{what} is longer than {MAX_TEXT} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(ManageError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

fn check_password(p: &str) -> Result<()> {
    let n = p.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(ManageError::Invalid(
            "a password has 8 to 1024 characters".into(),
        ));
    }
    Ok(())
}

fn check_last(last: Option<&str>) -> Result<()> {
    if last.is_some_and(|l| l.chars().count() > 512) {
        return Err(ManageError::Invalid(
            "last is longer than 512 characters".into(),
        ));
    }
    Ok(())
}

fn check_page(n: u32) -> Result<()> {
    if n == 0 || n > MAX_PAGE {
        return Err(ManageError::Invalid(format!("n must be 1 to {MAX_PAGE}")));
    }
    Ok(())
}

use crate::time::now_ms;
pub use crate::time::rfc3339_ms;

fn denied(what: &str) -> ManageError {
    ManageError::Denied(format!(
        "requested access to the resource is denied: {what}"
    ))
}

/// The management service over one [`Access`].
pub struct Manage<'a> {
    access: &'a Access,
}

impl<'a> Manage<'a> {
    pub fn new(access: &'a Access) -> Manage<'a> {
        Manage { access }
    }

    /// The caller as the management API sees them: a registry bearer token is bounded
    /// by its claim and its credential's restriction ([`Access::resolve`]), so it never
    /// acts as an owner or administrator here. Management needs Basic credentials.
    pub async fn resolve(&self, caller: &Caller) -> Result<Caller> {
        Ok(self.access.resolve(caller).await?)
    }

    fn user<'c>(&self, c: &'c Caller) -> Result<&'c User> {
        c.subject.active_user().ok_or(ManageError::Unauthenticated)
    }

    /// An authenticated caller without a token restriction.
    fn full_user<'c>(&self, c: &'c Caller, what: &str) -> Result<&'c User> {
        let u = self.user(c)?;
        if c.subject.is_restricted() {
            return Err(ManageError::Denied(format!(
                "a token with a reduced scope may not {what}"
            )));
        }
        Ok(u)
    }

    fn require_admin(&self, c: &Caller, what: &str) -> Result<()> {
        self.full_user(c, what)?;
        if c.is_system_admin() {
            Ok(())
        } else {
            Err(denied(&format!("only system administrators may {what}")))
        }
    }

    fn owns(&self, c: &Caller, org: &str) -> bool {
        c.is_system_admin()
            || (!c.subject.is_restricted()
                && c.subject
                    .active_user()
                    .is_some_and(|u| u.orgs.iter().any(|m| m.org == org && m.is_owner)))
    }

    async fn require_owner(&self, c: &Caller, org: &str, what: &str) -> Result<OrgRecord> {
        self.full_user(c, what)?;
        let rec = self.org_get(c, org).await?;
        if self.owns(c, org) {
            Ok(rec)
        } else {
            Err(denied(&format!(
                "only owners of {org} and system administrators may {what}"
            )))
        }
    }

    /// [`Manage::require_owner`] of `org`, and `team` exists in it (else 404).
    async fn require_team_owner(
        &self,
        c: &Caller,
        org: &str,
        team: &str,
        what: &str,
    ) -> Result<()> {
        self.require_owner(c, org, what).await?;
        self.team_get(c, org, team).await.map(drop)
    }

    async fn audit(&self, c: &Caller, action: &str, target: &str, detail: serde_json::Value) {
        self.access.audit(c, action, target, detail).await
    }

    /// The audit event of a namespace claimed by a new account.
    async fn audit_claim(&self, c: &Caller, name: &str, account: &str) {
        self.audit(c, "namespace.claim", name, json!({ "account": account }))
            .await;
    }

    async fn find_user(&self, name: &str) -> Result<UserRecord> {
        check_name("user", name)?;
        self.access
            .identity()
            .user_get(UserKey::Name(name))
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("user {name}")))
    }

    // --- users -----------------------------------------------------------------------

    /// Users by name after `last`.
    pub async fn users_list(
        &self,
        c: &Caller,
        last: Option<&str>,
        n: u32,
    ) -> Result<Page<UserRecord>> {
        self.user(c)?;
        let read = page_request(last, n)?;
        let users = self.access.identity().users_list(last, read).await?;
        let mut page = page_of(users, n, |u| u.name.clone());
        for u in &mut page.items {
            self.redact(c, u);
        }
        Ok(page)
    }

    /// A user; the e-mail address only for the user and system administrators.
    pub async fn user_get(&self, c: &Caller, name: &str) -> Result<UserRecord> {
        self.user(c)?;
        let mut u = self.find_user(name).await?;
        self.redact(c, &mut u);
        Ok(u)
    }

    /// Leaves out what only the user and system administrators may read (the e-mail
    /// address; the password hash is never shown by the HTTP layer anyway).
    fn redact(&self, c: &Caller, u: &mut UserRecord) {
        let own = c.subject.active_user().is_some_and(|me| me.name == u.name);
        if !own && !c.is_system_admin() {
            u.email = None;
        }
        u.password = None;
    }

    /// Creates a local user with a password (system administrators).
    pub async fn user_create(&self, c: &Caller, u: LocalUser) -> Result<UserRecord> {
        check_name("user", &u.name)?;
        check_text("full_name", &u.full_name)?;
        if let Some(e) = &u.email {
            check_text("email", e)?;
        }
        self.require_admin(c, "create users")?;
        // A taken name is the answer, whatever the password (a caller with a good password
        // for a name that exists learns nothing from the password rule).
        if self
            .access
            .identity()
            .user_get(UserKey::Name(&u.name))
            .await?
            .is_some()
        {
            return Err(ManageError::Conflict(format!("user {}", u.name)));
        }
        check_password(&u.password)?;
        let phc = self.hash(&u.password).await?;
        let rec = self
            .access
            .identity()
            .user_create(&NewUser {
                name: u.name.clone(),
                full_name: u.full_name,
                email: u.email,
                password: Some(phc),
                origin: Origin::Local,
                active: true,
                is_system_admin: u.is_system_admin,
                is_service_account: false,
                claim_namespace: u.claim_namespace,
            })
            .await?;
        self.audit(c, "user.create", &rec.name, json!({})).await;
        if u.claim_namespace {
            self.audit_claim(c, &rec.name, "user").await;
        }
        if rec.is_system_admin {
            self.audit(
                c,
                "user.system_admin",
                &rec.name,
                json!({ "system_admin": true }),
            )
            .await;
        }
        Ok(rec)
    }

    /// Creates a service account (no password; it authenticates with access tokens). A
    /// system administrator may create one anywhere; an organisation's owner, as a member
    /// of that organisation. Like every account, never with a name whose namespace holds
    /// repositories that no account owns, unless a system administrator claims them.
    pub async fn service_account_create(
        &self,
        c: &Caller,
        name: &str,
        full_name: &str,
        org: Option<&str>,
        claim_namespace: bool,
    ) -> Result<UserRecord> {
        check_name("user", name)?;
        check_text("full_name", full_name)?;
        if let Some(o) = org {
            check_name("organisation", o)?;
        }
        self.full_user(c, "create service accounts")?;
        match org {
            Some(o) => {
                self.require_owner(c, o, "create service accounts").await?;
            }
            None => self.require_admin(c, "create service accounts outside an organisation")?,
        }
        if claim_namespace {
            self.require_admin(c, "claim a namespace")?;
        }
        let id = self.access.identity();
        let rec = id
            .user_create(&NewUser {
                name: name.to_string(),
                full_name: full_name.to_string(),
                email: None,
                password: None,
                origin: Origin::Local,
                active: true,
                is_system_admin: false,
                is_service_account: true,
                claim_namespace,
            })
            .await?;
        self.audit(c, "user.create", name, json!({ "service_account": true }))
            .await;
        if claim_namespace {
            self.audit_claim(c, name, "service account").await;
        }
        if let Some(o) = org {
            id.org_member_set(o, rec.id, false).await?;
            self.audit(
                c,
                "org.member.set",
                &format!("{o}/{name}"),
                json!({ "owner": false }),
            )
            .await;
        }
        Ok(rec)
    }

    /// Changes a user: full name and e-mail (the user or a system administrator), active
    /// and system administrator (system administrators).
    pub async fn user_update(&self, c: &Caller, name: &str, ch: UserChange) -> Result<UserRecord> {
        if let Some(f) = &ch.full_name {
            check_text("full_name", f)?;
        }
        if let Some(Some(e)) = &ch.email {
            check_text("email", e)?;
        }
        let me = self.full_user(c, "change accounts")?;
        let target = self.find_user(name).await?;
        let is_self = me.name == target.name;
        if !c.is_system_admin() {
            if ch.active.is_some() || ch.is_system_admin.is_some() {
                return Err(denied(
                    "only system administrators may activate, deactivate or promote users",
                ));
            }
            if !is_self {
                return Err(denied(
                    "only the user and system administrators may change a user",
                ));
            }
        }
        if is_self && (ch.active == Some(false) || ch.is_system_admin == Some(false)) {
            return Err(ManageError::State(
                "you may not deactivate or demote yourself".into(),
            ));
        }
        let patch = UserPatch {
            full_name: ch.full_name.clone(),
            email: ch.email.clone(),
            active: ch.active,
            is_system_admin: ch.is_system_admin,
            ..UserPatch::default()
        };
        let rec = self
            .access
            .identity()
            .user_update(target.id, &patch)
            .await?;
        if ch.active.is_some_and(|a| a != target.active) {
            self.access.forget_credentials();
            self.audit(c, "user.active", name, json!({ "active": rec.active }))
                .await;
        }
        if ch
            .is_system_admin
            .is_some_and(|a| a != target.is_system_admin)
        {
            self.audit(
                c,
                "user.system_admin",
                name,
                json!({ "system_admin": rec.is_system_admin }),
            )
            .await;
        }
        if ch.full_name.is_some() || ch.email.is_some() {
            self.audit(c, "user.update", name, json!({})).await;
        }
        Ok(rec)
    }

    /// Sets a local user's password: the user with their current password, or a system
    /// administrator.
    pub async fn user_set_password(
        &self,
        c: &Caller,
        name: &str,
        current: Option<&str>,
        new: &str,
    ) -> Result<()> {
        check_password(new)?;
        if current.is_some_and(|p| p.len() > 4096) {
            return Err(ManageError::Invalid("current_password is too long".into()));
        }
        let me = self.full_user(c, "set passwords")?;
        let target = self.find_user(name).await?;
        let is_self = me.name == target.name;
        if !c.is_system_admin() {
            if !is_self {
                return Err(denied(
                    "only the user and system administrators may set a password",
                ));
            }
            let Some(current) = current else {
                return Err(ManageError::Invalid("current_password is required".into()));
            };
            let ok = match target.password.clone() {
                Some(phc) => {
                    let pw = current.as_bytes().to_vec();
                    let check = move || verify_password(&pw, &phc).unwrap_or(false);
                    self.access.hash(check).await.unwrap_or(false)
                }
                None => false,
            };
            if !ok {
                return Err(denied("the current password is wrong"));
            }
        }
        if !matches!(target.origin, Origin::Local) {
            return Err(ManageError::State(
                "directory accounts use their directory password".into(),
            ));
        }
        if target.is_service_account {
            return Err(ManageError::State(
                "service accounts have no password; they use access tokens".into(),
            ));
        }
        let phc = self.hash(new).await?;
        let patch = UserPatch {
            password: Some(Some(phc)),
            ..UserPatch::default()
        };
        self.access
            .identity()
            .user_update(target.id, &patch)
            .await?;
        self.access.forget_credentials();
        self.audit(c, "user.password", name, json!({})).await;
        Ok(())
    }

    /// Deletes a user with their memberships and tokens (system administrators; not
    /// themselves).
    pub async fn user_delete(&self, c: &Caller, name: &str) -> Result<()> {
        self.require_admin(c, "delete users")?;
        let target = self.find_user(name).await?;
        if c.name.as_deref() == Some(name) {
            return Err(ManageError::State("you may not delete yourself".into()));
        }
        self.access.identity().user_delete(target.id).await?;
        self.access.forget_credentials();
        self.audit(c, "user.delete", name, json!({})).await;
        Ok(())
    }

    async fn hash(&self, password: &str) -> Result<String> {
        let pw = password.as_bytes().to_vec();
        let params = self.access.config().password_params;
        let hashed = self.access.hash(move || hash_password(&pw, &params)).await;
        hashed
            .ok_or_else(|| ManageError::Store(MetaError::Backend("hashing failed".into())))?
            .map_err(|e| ManageError::Store(MetaError::Backend(format!("hashing: {e}"))))
    }

    // --- organisations ---------------------------------------------------------------

    pub async fn orgs_list(
        &self,
        c: &Caller,
        last: Option<&str>,
        n: u32,
    ) -> Result<Page<OrgRecord>> {
        self.user(c)?;
        let read = page_request(last, n)?;
        let orgs = self.access.identity().orgs_list(last, read).await?;
        Ok(page_of(orgs, n, |o| o.name.clone()))
    }

    pub async fn org_get(&self, c: &Caller, name: &str) -> Result<OrgRecord> {
        self.user(c)?;
        check_name("organisation", name)?;
        self.access
            .identity()
            .org_get(name)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("organisation {name}")))
    }

    /// Creates an organisation (system administrators), claiming the repositories its
    /// namespace holds without an owner if `claim_namespace`.
    pub async fn org_create(
        &self,
        c: &Caller,
        name: &str,
        full_name: &str,
        settings: OrgSettings,
        claim_namespace: bool,
    ) -> Result<OrgRecord> {
        check_name("organisation", name)?;
        check_text("full_name", full_name)?;
        self.require_admin(c, "create organisations")?;
        let rec = self
            .access
            .identity()
            .org_create(name, full_name, &settings, claim_namespace)
            .await?;
        self.audit(c, "org.create", name, org_detail(&rec.settings))
            .await;
        if claim_namespace {
            self.audit_claim(c, name, "organisation").await;
        }
        Ok(rec)
    }

    /// Changes an organisation's settings (owners).
    pub async fn org_update(
        &self,
        c: &Caller,
        name: &str,
        members_can_create: Option<bool>,
        default_visibility: Option<Visibility>,
    ) -> Result<OrgRecord> {
        let cur = self
            .require_owner(c, name, "change the organisation's settings")
            .await?;
        let settings = OrgSettings {
            members_can_create: members_can_create.unwrap_or(cur.settings.members_can_create),
            default_visibility: default_visibility.unwrap_or(cur.settings.default_visibility),
        };
        let rec = self.access.identity().org_update(name, &settings).await?;
        self.audit(c, "org.settings", name, org_detail(&rec.settings))
            .await;
        Ok(rec)
    }

    /// Deletes an organisation with its teams, memberships and grants; its repositories
    /// stay (system administrators).
    pub async fn org_delete(&self, c: &Caller, name: &str) -> Result<()> {
        self.require_admin(c, "delete organisations")?;
        self.org_get(c, name).await?;
        self.access.identity().org_delete(name).await?;
        self.audit(c, "org.delete", name, json!({})).await;
        Ok(())
    }

    pub async fn org_members(&self, c: &Caller, org: &str) -> Result<Vec<Member>> {
        self.org_get(c, org).await?;
        Ok(self.access.identity().org_members(org).await?)
    }

    /// Adds a member or sets their owner flag (owners).
    pub async fn org_member_set(
        &self,
        c: &Caller,
        org: &str,
        user: &str,
        owner: bool,
    ) -> Result<()> {
        self.require_owner(c, org, "manage members").await?;
        let u = self.find_user(user).await?;
        self.access
            .identity()
            .org_member_set(org, u.id, owner)
            .await?;
        self.audit(
            c,
            "org.member.set",
            &format!("{org}/{user}"),
            json!({ "owner": owner }),
        )
        .await;
        Ok(())
    }

    /// Removes a member from the organisation and its teams (owners).
    pub async fn org_member_remove(&self, c: &Caller, org: &str, user: &str) -> Result<()> {
        self.require_owner(c, org, "manage members").await?;
        let u = self.find_user(user).await?;
        if !self.access.identity().org_member_remove(org, u.id).await? {
            return Err(ManageError::NotFound(format!("member {user} of {org}")));
        }
        self.audit(c, "org.member.remove", &format!("{org}/{user}"), json!({}))
            .await;
        Ok(())
    }

    // --- teams -----------------------------------------------------------------------

    pub async fn teams_list(&self, c: &Caller, org: &str) -> Result<Vec<TeamRecord>> {
        self.org_get(c, org).await?;
        Ok(self.access.identity().teams_list(org).await?)
    }

    pub async fn team_get(&self, c: &Caller, org: &str, team: &str) -> Result<TeamRecord> {
        self.org_get(c, org).await?;
        check_name("team", team)?;
        self.access
            .identity()
            .team_get(org, team)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("team {org}/{team}")))
    }

    /// Creates a team, optionally mapped to a directory group (owners).
    pub async fn team_create(
        &self,
        c: &Caller,
        org: &str,
        team: &str,
        group: Option<&str>,
    ) -> Result<TeamRecord> {
        check_name("team", team)?;
        if let Some(g) = group {
            check_text("directory_group", g)?;
        }
        self.require_owner(c, org, "manage teams").await?;
        let rec = self.access.identity().team_create(org, team, group).await?;
        self.audit(
            c,
            "team.create",
            &format!("{org}/{team}"),
            json!({ "directory_group": group }),
        )
        .await;
        Ok(rec)
    }

    /// Maps a team to a directory group, or clears the mapping (owners).
    pub async fn team_set_group(
        &self,
        c: &Caller,
        org: &str,
        team: &str,
        group: Option<&str>,
    ) -> Result<TeamRecord> {
        if let Some(g) = group {
            check_text("directory_group", g)?;
        }
        self.require_team_owner(c, org, team, "manage teams")
            .await?;
        self.access
            .identity()
            .team_set_directory_group(org, team, group)
            .await?;
        self.audit(
            c,
            "team.directory_group",
            &format!("{org}/{team}"),
            json!({ "directory_group": group }),
        )
        .await;
        self.team_get(c, org, team).await
    }

    /// Deletes a team with its memberships and grants (owners).
    pub async fn team_delete(&self, c: &Caller, org: &str, team: &str) -> Result<()> {
        self.require_team_owner(c, org, team, "manage teams")
            .await?;
        self.access.identity().team_delete(org, team).await?;
        self.audit(c, "team.delete", &format!("{org}/{team}"), json!({}))
            .await;
        Ok(())
    }

    pub async fn team_members(&self, c: &Caller, org: &str, team: &str) -> Result<Vec<Member>> {
        self.team_get(c, org, team).await?;
        Ok(self.access.identity().team_members(org, team).await?)
    }

    /// Adds a user to a team (and to the organisation) (owners).
    pub async fn team_member_add(
        &self,
        c: &Caller,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<()> {
        self.require_team_owner(c, org, team, "manage teams")
            .await?;
        let u = self.find_user(user).await?;
        self.access
            .identity()
            .team_member_add(org, team, u.id)
            .await?;
        self.audit(
            c,
            "team.member.add",
            &format!("{org}/{team}/{user}"),
            json!({}),
        )
        .await;
        Ok(())
    }

    pub async fn team_member_remove(
        &self,
        c: &Caller,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<()> {
        self.require_team_owner(c, org, team, "manage teams")
            .await?;
        let u = self.find_user(user).await?;
        if !self
            .access
            .identity()
            .team_member_remove(org, team, u.id)
            .await?
        {
            return Err(ManageError::NotFound(format!(
                "member {user} of {org}/{team}"
            )));
        }
        self.audit(
            c,
            "team.member.remove",
            &format!("{org}/{team}/{user}"),
            json!({}),
        )
        .await;
        Ok(())
    }

    // --- grants ----------------------------------------------------------------------

    /// Every grant of an organisation's teams (owners and system administrators).
    pub async fn org_grants(&self, c: &Caller, org: &str) -> Result<Vec<Grant>> {
        self.require_owner(c, org, "list the organisation's grants")
            .await?;
        Ok(self.access.identity().grants_of_org(org).await?)
    }

    /// Gives a team a role on its organisation's whole namespace (owners).
    pub async fn namespace_grant_set(
        &self,
        c: &Caller,
        org: &str,
        team: &str,
        role: Role,
    ) -> Result<()> {
        self.require_team_owner(c, org, team, "change grants")
            .await?;
        self.access
            .identity()
            .grant_namespace_set(org, team, role)
            .await?;
        self.audit(
            c,
            "grant.set",
            org,
            json!({ "team": team, "role": role.as_str() }),
        )
        .await;
        Ok(())
    }

    pub async fn namespace_grant_remove(&self, c: &Caller, org: &str, team: &str) -> Result<()> {
        self.require_team_owner(c, org, team, "change grants")
            .await?;
        if !self
            .access
            .identity()
            .grant_namespace_remove(org, team)
            .await?
        {
            return Err(ManageError::NotFound(format!(
                "namespace grant of {org}/{team}"
            )));
        }
        self.audit(c, "grant.remove", org, json!({ "team": team }))
            .await;
        Ok(())
    }

    /// Grants on one repository (repository admins).
    pub async fn repo_grants(&self, c: &Caller, repo: &RepoName) -> Result<Vec<Grant>> {
        self.repo_check(c, repo, Permission::Admin).await?;
        Ok(self.access.identity().grants_on_repo(repo).await?)
    }

    /// Gives a team of the repository's organisation a role on it (repository admins).
    pub async fn repo_grant_set(
        &self,
        c: &Caller,
        repo: &RepoName,
        team: &str,
        role: Role,
    ) -> Result<()> {
        check_name("team", team)?;
        self.repo_check(c, repo, Permission::Admin).await?;
        self.access
            .identity()
            .grant_repo_set(repo.namespace(), team, repo, role)
            .await?;
        self.audit(
            c,
            "grant.set",
            repo.as_str(),
            json!({ "team": team, "role": role.as_str() }),
        )
        .await;
        Ok(())
    }

    pub async fn repo_grant_remove(&self, c: &Caller, repo: &RepoName, team: &str) -> Result<()> {
        check_name("team", team)?;
        self.repo_check(c, repo, Permission::Admin).await?;
        if !self
            .access
            .identity()
            .grant_repo_remove(repo.namespace(), team, repo)
            .await?
        {
            return Err(ManageError::NotFound(format!(
                "grant of team {team} on {repo}"
            )));
        }
        self.audit(c, "grant.remove", repo.as_str(), json!({ "team": team }))
            .await;
        Ok(())
    }

    // --- repositories ----------------------------------------------------------------

    /// The access decision on an existing repository, as a management answer.
    async fn repo_check(
        &self,
        c: &Caller,
        repo: &RepoName,
        perm: Permission,
    ) -> Result<RepoSettings> {
        let verdict = self.access.authorize(c, repo, perm).await?;
        let settings = match verdict {
            Verdict::Allowed | Verdict::Denied => {
                self.access.identity().repo_settings(repo).await?
            }
            _ => None,
        };
        match (verdict, settings) {
            (Verdict::Allowed, Some(s)) => Ok(s),
            (Verdict::Denied, Some(_)) => Err(denied(&format!("{} on {repo}", perm.as_str()))),
            (Verdict::Challenge, _) if c.is_anonymous() || c.subject.active_user().is_none() => {
                Err(ManageError::Unauthenticated)
            }
            _ => Err(ManageError::RepoUnknown(repo.to_string())),
        }
    }

    pub async fn repo_get(&self, c: &Caller, repo: &RepoName) -> Result<RepoSettings> {
        self.repo_check(c, repo, Permission::Pull).await
    }

    /// Repositories the caller may pull, by name after `last`, optionally in one namespace.
    pub async fn repos_list(
        &self,
        c: &Caller,
        namespace: Option<&str>,
        last: Option<&str>,
        n: u32,
    ) -> Result<Page<RepoSettings>> {
        check_page(n)?;
        if let Some(ns) = namespace {
            repo_name(ns)?;
            if ns.contains('/') {
                return Err(ManageError::NameInvalid("a namespace has no '/'".into()));
            }
        }
        check_last(last)?;
        let (items, next) = self.access.visible_repos(c, namespace, last, n).await?;
        Ok(Page { items, next })
    }

    /// Creates an empty repository (whoever may create in its namespace by pushing).
    pub async fn repo_create(
        &self,
        c: &Caller,
        repo: &RepoName,
        visibility: Option<Visibility>,
    ) -> Result<RepoSettings> {
        self.user(c)?;
        match self.access.authorize(c, repo, Permission::Push).await? {
            Verdict::Allowed => {}
            Verdict::Challenge if c.subject.active_user().is_none() => {
                return Err(ManageError::Unauthenticated)
            }
            _ => {
                return Err(denied(&format!(
                    "you may not create repositories in namespace {}",
                    repo.namespace()
                )))
            }
        }
        let rec = self
            .access
            .identity()
            .repo_create(repo, c.account, visibility)
            .await
            .map_err(|e| match e {
                MetaError::Conflict(_) => ManageError::Conflict(format!("repository {repo}")),
                other => other.into(),
            })?;
        self.audit(
            c,
            "repo.create",
            repo.as_str(),
            json!({ "on": "api", "visibility": vis_str(rec.visibility) }),
        )
        .await;
        Ok(rec)
    }

    /// Makes a repository public or private (repository admins).
    pub async fn repo_set_visibility(
        &self,
        c: &Caller,
        repo: &RepoName,
        v: Visibility,
    ) -> Result<RepoSettings> {
        let cur = self.repo_check(c, repo, Permission::Admin).await?;
        if !self.access.identity().repo_set_visibility(repo, v).await? {
            return Err(ManageError::RepoUnknown(repo.to_string()));
        }
        if cur.visibility != v {
            self.audit(
                c,
                "repo.visibility",
                repo.as_str(),
                json!({ "visibility": vis_str(v) }),
            )
            .await;
        }
        Ok(RepoSettings {
            visibility: v,
            ..cur
        })
    }

    /// Deletes a repository with its manifests, tags and grants (whoever may delete in it).
    pub async fn repo_delete(&self, c: &Caller, repo: &RepoName) -> Result<()> {
        self.repo_check(c, repo, Permission::Delete).await?;
        if !self.access.identity().repo_delete(repo).await? {
            return Err(ManageError::RepoUnknown(repo.to_string()));
        }
        self.audit(c, "repo.delete", repo.as_str(), json!({})).await;
        Ok(())
    }

    /// A repository's trust data (whoever may pull it).
    pub async fn trust_status(
        &self,
        c: &Caller,
        trust: &crate::trust::Trust,
        repo: &RepoName,
    ) -> Result<crate::trust::TrustStatus> {
        self.repo_check(c, repo, Permission::Pull).await?;
        Ok(trust.status(repo).await?)
    }

    /// Whether `c` may `perm` the policy of `scope`: for a repository, as on the
    /// repository (pull to read, admin to set); for a namespace, any authenticated caller
    /// reads, owners (a user, of their own namespace) and system administrators set.
    async fn policy_scope(&self, c: &Caller, scope: &Scope, perm: Permission) -> Result<()> {
        match scope {
            Scope::Repository(repo) => self.repo_check(c, repo, perm).await.map(drop),
            Scope::Namespace(_) if c.is_anonymous() => Err(ManageError::Unauthenticated),
            Scope::Namespace(ns) => {
                if perm == Permission::Admin && !self.owns(c, ns) && c.name.as_deref() != Some(ns) {
                    self.full_user(c, "set a namespace's signature policy")?;
                    return Err(denied(&format!(
                        "only owners of {ns} and system administrators may set its signature \
                         policy"
                    )));
                }
                Ok(())
            }
        }
    }

    /// The signature policy set on `scope` itself; `NotFound` if none.
    pub async fn policy_get(
        &self,
        c: &Caller,
        policies: &Policies,
        scope: &Scope,
    ) -> Result<crate::policy::Policy> {
        self.policy_scope(c, scope, Permission::Pull).await?;
        let found = policies.get(scope).await.map_err(policy_error)?;
        found.ok_or_else(|| ManageError::NotFound(format!("a signature policy of {scope}")))
    }

    /// The signature policy that applies to `repo` and where it comes from (whoever may
    /// pull it).
    pub async fn policy_effective(
        &self,
        c: &Caller,
        policies: &Policies,
        repo: &RepoName,
    ) -> Result<crate::policy::Effective> {
        self.repo_check(c, repo, Permission::Pull).await?;
        let e = policies.effective(repo).await.map_err(policy_error)?;
        Ok(e.as_ref().clone())
    }

    /// Sets the signature policy of `scope`.
    pub async fn policy_set(
        &self,
        c: &Caller,
        policies: &Policies,
        scope: &Scope,
        policy: &crate::policy::Policy,
    ) -> Result<()> {
        self.policy_scope(c, scope, Permission::Admin).await?;
        policies.set(scope, policy).await.map_err(policy_error)?;
        let detail = json!({ "policy": policy });
        self.audit(c, "policy.set", &scope.to_string(), detail)
            .await;
        Ok(())
    }

    /// Removes the signature policy of `scope` (none is no error).
    pub async fn policy_delete(
        &self,
        c: &Caller,
        policies: &Policies,
        scope: &Scope,
    ) -> Result<()> {
        self.policy_scope(c, scope, Permission::Admin).await?;
        if policies.delete(scope).await.map_err(policy_error)? {
            self.audit(c, "policy.delete", &scope.to_string(), json!({}))
                .await;
        }
        Ok(())
    }

    /// A page of `repo`'s tags with their signatures and whether each satisfies the policy
    /// that applies (whoever may pull it).
    pub async fn signed_tags(
        &self,
        c: &Caller,
        policies: &Policies,
        repo: &RepoName,
        last: Option<&str>,
        n: u32,
    ) -> Result<crate::policy::SignedTags> {
        self.repo_check(c, repo, Permission::Pull).await?;
        policies
            .tag_status(repo, last, n)
            .await
            .map_err(|e| match e {
                crate::error::CoreError::NameUnknown => ManageError::RepoUnknown(repo.to_string()),
                other => policy_error(other),
            })
    }

    /// Whether `reference` of `repo` would be served to `user` now, and why (the user
    /// themselves, or a repository administrator); nothing is audited.
    pub async fn policy_dry_run(
        &self,
        c: &Caller,
        policies: &Policies,
        registry: &crate::Registry,
        repo: &RepoName,
        reference: &berth_oci::Reference,
        user: &str,
    ) -> Result<crate::policy::Decision> {
        if c.name.as_deref() != Some(user) {
            self.repo_check(c, repo, Permission::Admin).await?;
        } else {
            self.repo_check(c, repo, Permission::Pull).await?;
        }
        check_name("user", user)?;
        let Some(target) = self.access.caller_as(user).await? else {
            return Err(ManageError::NotFound(format!("user {user}")));
        };
        let rec = registry
            .manifest_get(repo, reference, &[])
            .await
            .map_err(|_| ManageError::NotFound(format!("manifest {repo}:{reference}")))?;
        if self
            .access
            .authorize(&target, repo, Permission::Pull)
            .await?
            != Verdict::Allowed
        {
            return Ok(crate::policy::Decision {
                outcome: crate::policy::Verdict::Deny,
                reason: format!("{user} may not pull {repo}"),
                policy: String::new(),
                missing: None,
            });
        }
        policies
            .decide(self.access, &target, repo, reference, &rec)
            .await
            .map_err(policy_error)
    }

    // --- registered signing keys -------------------------------------------------------

    /// The user whose registered keys `c` may manage: themselves, anyone for system
    /// administrators, a service account for the owners of its organisations.
    async fn key_owner(&self, c: &Caller, user: &str) -> Result<UserRecord> {
        self.full_user(c, "manage signing keys")?;
        let target = self.find_user(user).await?;
        if !self.may_act_for(c, &target).await? {
            return Err(denied("only the user, system administrators and (for service accounts) organisation owners may manage a user's signing keys"));
        }
        Ok(target)
    }

    /// The keys and certificates `user` registered to sign with.
    pub async fn signing_keys(
        &self,
        c: &Caller,
        registry: &crate::Registry,
        user: &str,
    ) -> Result<Vec<berth_meta::RegisteredKey>> {
        let target = self.key_owner(c, user).await?;
        registry.signing_keys(target.id).await.map_err(policy_error)
    }

    /// Registers a public key or certificate (PEM) for `user`.
    pub async fn signing_key_add(
        &self,
        c: &Caller,
        registry: &crate::Registry,
        user: &str,
        name: &str,
        pem: &str,
    ) -> Result<berth_meta::RegisteredKey> {
        let target = self.key_owner(c, user).await?;
        let key = registry
            .signing_key_add(target.id, name, pem)
            .await
            .map_err(|e| match e {
                crate::signatures::KeyError::Invalid(m) => ManageError::Invalid(m),
                crate::signatures::KeyError::Limit(m) => ManageError::State(m),
                crate::signatures::KeyError::Core(e) => policy_error(e),
            })?;
        let detail = json!({ "user": user, "key": key.id, "kind": key.kind, "name": key.name });
        self.audit(c, "key.add", user, detail).await;
        Ok(key)
    }

    /// Removes the key `id` of `user`.
    pub async fn signing_key_delete(
        &self,
        c: &Caller,
        registry: &crate::Registry,
        user: &str,
        id: &str,
    ) -> Result<()> {
        let target = self.key_owner(c, user).await?;
        if !registry
            .signing_key_delete(target.id, id)
            .await
            .map_err(policy_error)?
        {
            return Err(ManageError::NotFound(format!("key {id} of {user}")));
        }
        self.audit(c, "key.delete", user, json!({ "user": user, "key": id }))
            .await;
        Ok(())
    }

    /// Notary's changefeed of every repository, as `Trust::changes` pages it, keeping the
    /// changes of repositories `c` may pull (anonymous callers see public ones).
    pub async fn trust_changes(
        &self,
        c: &Caller,
        trust: &crate::trust::Trust,
        change_id: &str,
        records: &str,
    ) -> Result<Vec<berth_meta::TrustChange>> {
        let changes = trust.changes(None, change_id, records).await?;
        let mut visible: std::collections::HashMap<String, bool> = Default::default();
        let mut kept = Vec::with_capacity(changes.len());
        for change in changes {
            let allowed = match visible.get(&change.repo) {
                Some(v) => *v,
                None => {
                    let v = match RepoName::parse(&change.repo) {
                        Ok(r) => {
                            let verdict = self.access.authorize(c, &r, Permission::Pull).await?;
                            verdict == Verdict::Allowed
                        }
                        Err(_) => false,
                    };
                    visible.insert(change.repo.clone(), v);
                    v
                }
            };
            if allowed {
                kept.push(change);
            }
        }
        Ok(kept)
    }

    /// Deletes a repository's trust data (whoever may delete in it): its tags are then
    /// unsigned until signed again with a new root. Idempotent: a repository without trust
    /// data is left as it is (and nothing is audited).
    pub async fn trust_delete(
        &self,
        c: &Caller,
        trust: &crate::trust::Trust,
        repo: &RepoName,
    ) -> Result<()> {
        self.repo_check(c, repo, Permission::Delete).await?;
        if trust.delete(repo).await? {
            self.audit(c, "trust.delete", repo.as_str(), json!({}))
                .await;
        }
        Ok(())
    }

    // --- access tokens ---------------------------------------------------------------

    /// Whether `c` owns every organisation the service account `target` belongs to (at
    /// least one), and `target` is no system administrator: an owner acting for a service
    /// account must not gain what it holds elsewhere.
    async fn owns_org_of(&self, c: &Caller, target: &UserRecord) -> Result<bool> {
        if target.is_system_admin || !target.is_service_account {
            return Ok(false);
        }
        if c.subject.is_restricted() {
            return Ok(false);
        }
        let Some(s) = self
            .access
            .identity()
            .subject_for(UserKey::Id(target.id))
            .await?
        else {
            return Ok(false);
        };
        Ok(s.user
            .is_some_and(|u| !u.orgs.is_empty() && u.orgs.iter().all(|m| self.owns(c, &m.org))))
    }

    /// May `c` manage `target`'s tokens and signing keys?
    async fn may_act_for(&self, c: &Caller, target: &UserRecord) -> Result<bool> {
        let me = self.full_user(c, "manage access tokens")?;
        Ok(me.name == target.name
            || c.is_system_admin()
            || (target.is_service_account && self.owns_org_of(c, target).await?))
    }

    /// A user's tokens of one kind, newest first: access tokens, or the refresh tokens the
    /// token service issued to the user (each with the credential it derives from).
    pub async fn tokens_list(
        &self,
        c: &Caller,
        user: &str,
        kind: TokenKind,
    ) -> Result<Vec<TokenRecord>> {
        self.full_user(c, "manage access tokens")?;
        let target = self.find_user(user).await?;
        if !self.may_act_for(c, &target).await? {
            return Err(denied("only the user, system administrators and (for service accounts) organisation owners may manage a user's tokens"));
        }
        Ok(self.access.identity().tokens_list(target.id, kind).await?)
    }

    /// Creates an access token for oneself, or for a service account (system
    /// administrators and its organisations' owners). The secret is in the answer only.
    pub async fn token_create(
        &self,
        c: &Caller,
        user: &str,
        req: TokenRequest,
    ) -> Result<CreatedToken> {
        check_text("description", &req.description)?;
        if let Some(r) = &req.restriction {
            check_restriction(r)?;
        }
        let me = self.full_user(c, "create access tokens")?;
        let target = self.find_user(user).await?;
        let allowed = me.name == target.name
            || c.is_local_admin()
            || (target.is_service_account
                && (c.is_system_admin() || self.owns_org_of(c, &target).await?));
        if !allowed {
            return Err(denied("access tokens are created by their user, or for a service account by a system administrator or its organisation's owner"));
        }
        let expires_at = match req.expires_in {
            None => None,
            Some(0) => return Err(ManageError::Invalid("expires_in must be positive".into())),
            Some(s) if s > 10 * 365 * 86_400 => {
                return Err(ManageError::Invalid(
                    "expires_in is at most ten years".into(),
                ))
            }
            Some(s) => Some(now_ms() + (s as i64) * 1000),
        };
        Ok(self
            .access
            .create_access_token(c, target.id, &req.description, expires_at, req.restriction)
            .await?)
    }

    /// Revokes a token by its id alone, whoever it belongs to (system administrators, as
    /// `berth admin token revoke` does).
    pub async fn token_revoke_id(&self, c: &Caller, token_id: &str) -> Result<()> {
        self.require_admin(c, "revoke any user's tokens")?;
        let rec = match SecretId::parse(token_id) {
            Ok(id) => self.access.identity().token_get(&id).await?,
            Err(_) => None,
        };
        let Some(rec) = rec else {
            return Err(ManageError::NotFound(format!(
                "token {}",
                token_id.chars().take(40).collect::<String>()
            )));
        };
        let user = self
            .access
            .identity()
            .user_get(UserKey::Id(rec.user_id))
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("the owner of token {token_id}")))?;
        self.token_revoke(c, &user.name, token_id).await
    }

    /// Revokes one of a user's tokens, an access or a refresh token; revoking an access
    /// token also revokes the refresh tokens issued against it.
    pub async fn token_revoke(&self, c: &Caller, user: &str, token_id: &str) -> Result<()> {
        self.full_user(c, "manage access tokens")?;
        let target = self.find_user(user).await?;
        if !self.may_act_for(c, &target).await? {
            return Err(denied("only the user, system administrators and (for service accounts) organisation owners may manage a user's tokens"));
        }
        let not_found = || {
            ManageError::NotFound(format!(
                "token {}",
                token_id.chars().take(40).collect::<String>()
            ))
        };
        let id = SecretId::parse(token_id).map_err(|_| not_found())?;
        let rec = self
            .access
            .identity()
            .token_get(&id)
            .await?
            .ok_or_else(not_found)?;
        if rec.user_id != target.id {
            return Err(not_found());
        }
        self.access.identity().token_revoke(&id).await?;
        self.audit(
            c,
            "token.revoke",
            id.as_str(),
            json!({ "user": user, "kind": rec.kind.as_str() }),
        )
        .await;
        Ok(())
    }

    // --- audit -----------------------------------------------------------------------

    /// Audit events, newest first. System administrators read everything; everyone else
    /// only the events they caused.
    pub async fn audit_query(&self, c: &Caller, q: AuditQuery) -> Result<AuditPage> {
        let me = self.user(c)?;
        check_page(q.n)?;
        // Filters are compared literally (bound parameters): only their length matters.
        for (what, v) in [("action", &q.action), ("target_prefix", &q.target_prefix)] {
            if v.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
                return Err(ManageError::Invalid(format!(
                    "{what} is longer than {MAX_TEXT} characters"
                )));
            }
        }
        if q.since.is_some_and(|t| t < 0) || q.until.is_some_and(|t| t < 0) {
            return Err(ManageError::Invalid(
                "since and until are unix milliseconds, not negative".into(),
            ));
        }
        if q.before.is_some_and(|b| b < 1) {
            return Err(ManageError::Invalid(
                "before is an event id, at least 1".into(),
            ));
        }
        let id = self.access.identity();
        let actor = match q.actor.as_deref() {
            Some(a) => {
                check_name("user", a)?;
                match id.user_get(UserKey::Name(a)).await? {
                    Some(u) => Some(u.id),
                    // Nobody by that name caused anything that is still attributable.
                    None if c.is_system_admin() => {
                        return Ok(AuditPage {
                            items: vec![],
                            next: None,
                        })
                    }
                    None => {
                        return Err(denied(
                            "only system administrators read other users' events",
                        ))
                    }
                }
            }
            None => None,
        };
        let actor = if c.is_system_admin() {
            actor
        } else {
            let mine = c.account.or_else(|| me.id.parse().ok());
            if actor.is_some() && actor != mine {
                return Err(denied(
                    "only system administrators read other users' events",
                ));
            }
            Some(mine.ok_or(ManageError::Unauthenticated)?)
        };
        let filter = AuditFilter {
            actor,
            action: q.action,
            since: q.since,
            until: q.until,
            target_prefix: q.target_prefix,
        };
        let mut items = id.audit_query(&filter, q.before, q.n + 1).await?;
        let next = if items.len() > q.n as usize {
            items.truncate(q.n as usize);
            items.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage { items, next })
    }

    /// Names of accounts by id, for showing audit actors and token owners.
    pub async fn account_name(&self, id: AccountId) -> Option<String> {
        self.access
            .identity()
            .user_get(UserKey::Id(id))
            .await
            .ok()
            .flatten()
            .map(|u| u.name)
    }

    // --- directory -------------------------------------------------------------------

    /// The configured directory settings with the bind password redacted, or `None`
    /// (system administrators).
    pub async fn directory_settings(&self, c: &Caller) -> Result<Option<serde_json::Value>> {
        self.require_admin(c, "read the directory settings")?;
        let Some(d) = self.access.directory() else {
            return Ok(None);
        };
        let mut v = serde_json::to_value(d.config()).map_err(|e| {
            ManageError::Store(MetaError::Backend(format!("directory settings: {e}")))
        })?;
        if let serde_json::Value::Object(m) = &mut v {
            let set = !d.config().bind_password.is_empty();
            m.insert(
                "bind_password".into(),
                if set {
                    "<redacted>".into()
                } else {
                    serde_json::Value::Null
                },
            );
        }
        Ok(Some(v))
    }
}

impl Manage<'_> {
    /// Runs one directory sync now and returns its report; `None` when no directory is
    /// configured (system administrators). The run is recorded in the audit log with the
    /// caller as its actor, like every run.
    pub async fn directory_sync(&self, c: &Caller) -> Result<Option<SyncReport>> {
        self.require_admin(c, "run a directory sync")?;
        let Some(d) = self.access.directory() else {
            return Ok(None);
        };
        Ok(Some(
            run_sync(self.access.identity().as_ref(), d, Trigger::Api, c.account).await,
        ))
    }

    /// The last `n` sync runs, newest first (system administrators).
    pub async fn directory_sync_runs(&self, c: &Caller, n: u32) -> Result<Vec<SyncRun>> {
        self.require_admin(c, "read the directory sync runs")?;
        check_page(n)?;
        Ok(sync_runs(self.access.identity().as_ref(), n).await?)
    }
}

fn check_restriction(r: &Restriction) -> Result<()> {
    if r.entries.is_empty() || r.entries.len() > 100 {
        return Err(ManageError::Invalid(
            "a restriction has 1 to 100 entries".into(),
        ));
    }
    for e in &r.entries {
        match &e.target {
            rbac::RestrictionTarget::Repository(p) => {
                if p.is_empty() || p.chars().count() > 256 || p.chars().any(char::is_control) {
                    return Err(ManageError::Invalid(
                        "a repository pattern has 1 to 256 characters".into(),
                    ));
                }
            }
            // A namespace nobody owns matches repositories nobody can have: harmless.
            rbac::RestrictionTarget::Namespace(ns) => {
                if ns.is_empty() || ns.chars().count() > 256 || ns.chars().any(char::is_control) {
                    return Err(ManageError::Invalid(
                        "a namespace pattern has 1 to 256 characters".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A keyset page's request, `n` names after `last`, checked; what to read is one more, to
/// know whether a next page exists.
fn page_request(last: Option<&str>, n: u32) -> Result<u32> {
    check_page(n)?;
    check_last(last)?;
    Ok(n + 1)
}

/// The first `n` of `items` (read as [`page_request`] says) as a page; `key` names the
/// last, for the next page.
fn page_of<T>(mut items: Vec<T>, n: u32, key: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > n as usize {
        items.truncate(n as usize);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next }
}

fn vis_str(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

fn org_detail(s: &OrgSettings) -> serde_json::Value {
    json!({
        "members_can_create": s.members_can_create,
        "default_visibility": vis_str(s.default_visibility),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "acme", "a.b", "a-b_c", "x1", &"a".repeat(64)] {
            assert!(check_name("user", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a b",
            "-a",
            "a-",
            "a--b",
            "a/b",
            "'; drop table accounts; --",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name("user", bad).is_err(), "{bad}");
        }
    }
}
