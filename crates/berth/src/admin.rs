//! `berth admin`: what an operator needs before the API is reachable — users, password
//! resets, organisations, teams and their grants, repositories and their visibility,
//! access tokens — and the first-start administrator.
//!
//! Passwords are never taken from the command line (they would land in shell history and
//! `ps`): only from a file or standard input. They are stored as argon2id hashes. An access
//! token is printed once on standard output and only its SHA-256 is stored.
//!
//! Every command goes through `berth_core::manage`, as the `/api/v0` API does, acting as
//! the local administrator ([`Caller::local_admin`]: every right of a system administrator,
//! and tokens for any user): the same name and value checks, the same errors and the same
//! audit events (actor none, source `berth admin`). Only the first administrator, created
//! by `berth serve` before anything else exists, is written to the store directly.

use anyhow::{bail, Context};
use berth_auth::password::{hash_password, PasswordParams};
use berth_auth::rbac::{Restriction, RestrictionEntry, RestrictionTarget, Role, Visibility};
use berth_auth::secret;
use berth_core::manage::{self, LocalUser, Manage, ManageError, TokenRequest, UserChange};
use berth_core::policy::{Policies, Scope};
use berth_core::{Access, Caller, Registry};
use berth_meta::identity::{
    NewUser, OrgSettings, Origin, TokenKind, TokenParent, TokenRecord, UserKey,
};
use berth_meta::IdentityStore;
use berth_oci::RepoName;
use clap::Subcommand;
use rand::RngCore;
use std::io::Read;
use std::path::PathBuf;

/// Name of the administrator created on first start.
pub const FIRST_ADMIN: &str = "admin";

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCmd),
    /// Teams inside organisations, and their roles on repositories.
    #[command(subcommand)]
    Team(TeamCmd),
    /// Repositories: creation before the first push, visibility.
    #[command(subcommand)]
    Repo(RepoCmd),
    /// Access tokens (used as passwords by clients and CI).
    #[command(subcommand)]
    Token(TokenCmd),
}

/// Where a password comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswordSource {
    /// Read the password from this file (its first line).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from standard input (its first line).
    #[arg(long)]
    pub password_stdin: bool,
}

impl PasswordSource {
    fn given(&self) -> bool {
        self.password_file.is_some() || self.password_stdin
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Creates a local user.
    Create {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        /// A non-person account for CI (authenticates with access tokens).
        #[arg(long)]
        service_account: bool,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, default_value = "")]
        full_name: String,
        /// Take the repositories that the name's namespace holds without an owner
        /// (pushed where no account existed, or left by a deleted account); without it,
        /// such a name is refused.
        #[arg(long)]
        claim_namespace: bool,
    },
    /// Sets a user's password (and reactivates the account).
    Password {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Lists users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Creates an organisation.
    Create {
        name: String,
        /// Members may create repositories by pushing.
        #[arg(long)]
        members_can_create: bool,
        /// New repositories are public (default: private).
        #[arg(long)]
        public: bool,
        /// Take the repositories that the name's namespace holds without an owner
        /// (pushed where no account existed, or left by a deleted account); without it,
        /// such a name is refused.
        #[arg(long)]
        claim_namespace: bool,
    },
    /// Lists organisations.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TeamCmd {
    /// Creates a team in an organisation.
    Create { org: String, team: String },
    /// Adds a user to a team (and to its organisation).
    Add {
        org: String,
        team: String,
        user: String,
    },
    /// Lists an organisation's teams.
    List { org: String },
    /// Gives a team a role on one repository of its organisation or on the whole
    /// organisation namespace (replacing the role it had there).
    Grant {
        org: String,
        team: String,
        #[command(flatten)]
        target: GrantOn,
        /// read-only, read-write or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Takes a team's role on a repository or on the namespace away.
    Revoke {
        org: String,
        team: String,
        #[command(flatten)]
        target: GrantOn,
    },
}

/// What a team grant applies to: exactly one of the two.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct GrantOn {
    /// One repository (full name, inside the organisation's namespace).
    #[arg(long)]
    pub repo: Option<String>,
    /// Every repository of the organisation's namespace.
    #[arg(long)]
    pub namespace: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// Creates an empty repository (before its first push). Without --public or
    /// --private it takes its namespace's default visibility (private when none is set).
    Create {
        name: String,
        #[arg(long, conflicts_with = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
    },
    /// Sets a repository's visibility: public (anyone may pull) or private.
    Visibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Prints a repository's trust data as JSON: its current roles (version, expiry,
    /// signing keys) and its signed tags.
    Status { repo: String },
    /// Deletes a repository's trust data: its tags are unsigned until a new root is
    /// published (the docker CLI then initialises the repository again).
    Delete { repo: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Sets the signature policy of SCOPE, a namespace (`org`) or a repository
    /// (`org/repo`, which replaces its namespace's).
    Set {
        scope: String,
        #[arg(long, value_parser = ["off", "audit", "enforce"])]
        mode: String,
        /// Every signer must have signed (default: any one of them).
        #[arg(long)]
        all_of: bool,
        /// An accepted format (`dct`, `cosign`, `notation`), repeatable; none: all.
        #[arg(long = "format")]
        formats: Vec<String>,
        /// Required signers: `user:NAME`, `team:ORG/TEAM`, `key:ID`; none: any valid
        /// signature.
        signers: Vec<String>,
    },
    /// Prints the policy of SCOPE as JSON: a repository's applying policy and where it
    /// comes from; a namespace's own policy (`null`: none).
    Show { scope: String },
    /// Removes the policy of SCOPE.
    Delete { scope: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Registers a public key (PEM `PUBLIC KEY`, as `cosign generate-key-pair` writes
    /// cosign.pub) or a certificate (PEM `CERTIFICATE`: a Notation signing certificate or
    /// trust root) for USER, read from FILE (`-`: standard input); prints its id, which a
    /// policy names as `key:ID`.
    Add {
        user: String,
        file: PathBuf,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Lists USER's keys as JSON.
    List { user: String },
    /// Removes USER's key ID: the signatures it verified stop counting.
    Delete { user: String, id: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Creates an access token for a user and prints it once on standard output (only its
    /// hash is stored). Use it as the password of `docker login` and other clients.
    Create {
        user: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Expire after this many days (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        expires_in_days: Option<u32>,
        /// Restrict the token to at most ROLE on repositories matching PATTERN (`*` matches
        /// any run of characters, `/` included: `acme/*`, `acme/app-*`). Repeatable; without
        /// any, the token carries all of the user's rights.
        #[arg(long = "scope", value_name = "PATTERN=ROLE", value_parser = parse_scope)]
        scopes: Vec<RestrictionEntry>,
    },
    /// Lists a user's access tokens, or with `--kind refresh` the refresh tokens the token
    /// service issued to them (ids, never secrets; a refresh token with what it was issued
    /// against: `password`, or `token:ID` of the access token).
    List {
        user: String,
        #[arg(long, default_value = "access", value_parser = ["access", "refresh"])]
        kind: String,
    },
    /// Revokes an access token (and the refresh tokens issued against it) or a refresh
    /// token, by id (the hex part after `berth_`).
    Revoke { id: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: read-only, read-write or admin"))
}

fn parse_scope(s: &str) -> Result<RestrictionEntry, String> {
    let (pattern, role) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: expected PATTERN=ROLE, e.g. acme/*=read-only"))?;
    let valid = !pattern.is_empty()
        && pattern
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*".contains(&b));
    if !valid {
        return Err(format!(
            "{pattern:?} is not a repository pattern: lowercase letters, digits, separators and *"
        ));
    }
    Ok(RestrictionEntry {
        target: RestrictionTarget::Repository(pattern.to_string()),
        max_role: parse_role(role)?,
    })
}

/// Repositories a token pattern may name; the rest of the check is `core::manage`'s.
fn repo_name(name: &str) -> anyhow::Result<RepoName> {
    Ok(manage::repo_name(name)?)
}

use berth_core::time::now_ms;

/// The first line of the password file or of standard input (its length is checked where
/// the API's is, in `core::manage`, after the name: a taken name is the answer first).
fn read_password(src: &PasswordSource) -> anyhow::Result<String> {
    let text = match (&src.password_file, src.password_stdin) {
        (Some(p), _) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            s
        }
        (None, false) => bail!("give the password with --password-file FILE or --password-stdin"),
    };
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn hash(pw: &str) -> anyhow::Result<String> {
    hash_password(pw.as_bytes(), &PasswordParams::default())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Runs an admin command through `core::manage` as the local administrator
/// ([`Caller::local_admin`]): the API's validation, rules, errors and audit events (actor
/// none, source `berth admin`).
pub async fn run(access: &Access, cmd: AdminCmd) -> anyhow::Result<()> {
    let m = Manage::new(access);
    let c = Caller::local_admin();
    match cmd {
        AdminCmd::User(cmd) => user(&m, &c, cmd).await,
        AdminCmd::Org(cmd) => org(&m, &c, cmd).await,
        AdminCmd::Team(cmd) => team(&m, &c, cmd).await,
        AdminCmd::Repo(cmd) => repo(&m, &c, cmd).await,
        AdminCmd::Token(cmd) => token(&m, &c, cmd).await,
    }
}

/// Runs a trust command through `core::manage` as the local administrator.
pub async fn run_trust(
    access: &Access,
    trust: &berth_core::trust::Trust,
    cmd: TrustCmd,
) -> anyhow::Result<()> {
    let (m, c) = (Manage::new(access), Caller::local_admin());
    match cmd {
        TrustCmd::Status { repo } => {
            let status = m.trust_status(&c, trust, &repo_name(&repo)?).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        TrustCmd::Delete { repo } => {
            m.trust_delete(&c, trust, &repo_name(&repo)?).await?;
            println!("deleted the trust data of {repo}");
        }
    }
    Ok(())
}

/// Runs a signature policy command through `core::manage` as the local administrator.
pub async fn run_policy(
    access: &Access,
    policies: &Policies,
    cmd: PolicyCmd,
) -> anyhow::Result<()> {
    let m = Manage::new(access);
    let c = Caller::local_admin();
    match cmd {
        PolicyCmd::Set {
            scope,
            mode,
            all_of,
            formats,
            signers,
        } => {
            let policy = berth_core::policy::Policy::parse(&mode, &formats, all_of, &signers)?;
            m.policy_set(&c, policies, &Scope::parse(&scope)?, &policy)
                .await?;
            println!("set the signature policy of {scope}");
        }
        PolicyCmd::Show { scope } => match Scope::parse(&scope)? {
            Scope::Repository(repo) => {
                let effective = m.policy_effective(&c, policies, &repo).await?;
                println!("{}", serde_json::to_string_pretty(&effective)?);
            }
            namespace => match m.policy_get(&c, policies, &namespace).await {
                Ok(policy) => println!("{}", serde_json::to_string_pretty(&policy)?),
                Err(ManageError::NotFound(_)) => println!("null"),
                Err(e) => return Err(e.into()),
            },
        },
        PolicyCmd::Delete { scope } => {
            m.policy_delete(&c, policies, &Scope::parse(&scope)?)
                .await?;
            println!("removed the signature policy of {scope}");
        }
    }
    Ok(())
}

/// Runs a registered-key command through `core::manage` as the local administrator.
pub async fn run_key(access: &Access, registry: &Registry, cmd: KeyCmd) -> anyhow::Result<()> {
    let m = Manage::new(access);
    let c = Caller::local_admin();
    match cmd {
        KeyCmd::Add { user, file, name } => {
            let mut pem = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().take(64 * 1024).read_to_string(&mut pem)?;
            } else {
                pem = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
            }
            let key = m.signing_key_add(&c, registry, &user, &name, &pem).await?;
            println!("{}", key.id);
        }
        KeyCmd::List { user } => {
            let keys: Vec<serde_json::Value> = m
                .signing_keys(&c, registry, &user)
                .await?
                .into_iter()
                .map(|k| {
                    serde_json::json!({
                        "id": k.id, "kind": k.kind, "name": k.name, "pem": k.pem,
                        "created_at": berth_core::time::rfc3339_ms(k.created_at),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        KeyCmd::Delete { user, id } => {
            m.signing_key_delete(&c, registry, &user, &id).await?;
            println!("removed key {id} of {user}");
        }
    }
    Ok(())
}

async fn user(m: &Manage<'_>, c: &Caller, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Create {
            name,
            password,
            admin,
            service_account,
            email,
            full_name,
            claim_namespace,
        } => {
            let rec = if service_account {
                if admin || email.is_some() || password.given() {
                    bail!("a service account has no password, e-mail address nor administrator flag; it authenticates with access tokens (berth admin token create)");
                }
                m.service_account_create(c, &name, &full_name, None, claim_namespace)
                    .await?
            } else {
                let new = LocalUser {
                    password: read_password(&password)?,
                    name,
                    full_name,
                    email,
                    is_system_admin: admin,
                    claim_namespace,
                };
                m.user_create(c, new).await?
            };
            println!("created user {} (id {})", rec.name, rec.id);
        }
        UserCmd::Password { name, password } => {
            let pw = read_password(&password)?;
            m.user_set_password(c, &name, None, &pw).await?;
            if !m.user_get(c, &name).await?.active {
                let change = UserChange {
                    active: Some(true),
                    ..UserChange::default()
                };
                m.user_update(c, &name, change).await?;
            }
            println!("password of {name} changed");
        }
        UserCmd::List => {
            let page =
                |last: Option<String>| async move { m.users_list(c, last.as_deref(), 500).await };
            print_every(page, |u| {
                let origin = match &u.origin {
                    Origin::Local => "local",
                    Origin::Directory { .. } => "directory",
                };
                let active = if u.active { "active" } else { "inactive" };
                let admin = if u.is_system_admin { "\tadmin" } else { "" };
                let service = if u.is_service_account {
                    "\tservice"
                } else {
                    ""
                };
                format!("{}\t{origin}\t{active}{admin}{service}", u.name)
            })
            .await?;
        }
    }
    Ok(())
}

async fn org(m: &Manage<'_>, c: &Caller, cmd: OrgCmd) -> anyhow::Result<()> {
    match cmd {
        OrgCmd::Create {
            name,
            members_can_create,
            public,
            claim_namespace,
        } => {
            let settings = OrgSettings {
                members_can_create,
                default_visibility: if public {
                    Visibility::Public
                } else {
                    Visibility::Private
                },
            };
            m.org_create(c, &name, "", settings, claim_namespace)
                .await?;
            println!("created organisation {name}");
        }
        OrgCmd::List => {
            let page =
                |last: Option<String>| async move { m.orgs_list(c, last.as_deref(), 500).await };
            print_every(page, |o| o.name.clone()).await?;
        }
    }
    Ok(())
}

/// Prints a line for every item of a keyset-paged listing, reading it page by page
/// (`page(last)` is the page after `last`).
async fn print_every<T, F>(
    mut page: impl FnMut(Option<String>) -> F,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<manage::Page<T>, ManageError>>,
{
    let mut last = None;
    loop {
        let p = page(last.take()).await?;
        for item in &p.items {
            println!("{}", line(item));
        }
        match p.next {
            Some(n) => last = Some(n),
            None => return Ok(()),
        }
    }
}

async fn team(m: &Manage<'_>, c: &Caller, cmd: TeamCmd) -> anyhow::Result<()> {
    match cmd {
        TeamCmd::Create { org, team } => {
            m.team_create(c, &org, &team, None).await?;
            println!("created team {org}/{team}");
        }
        TeamCmd::Add { org, team, user } => {
            m.team_member_add(c, &org, &team, &user).await?;
            println!("added {user} to {org}/{team}");
        }
        TeamCmd::List { org } => {
            for t in m.teams_list(c, &org).await? {
                println!("{}", t.name);
            }
        }
        TeamCmd::Grant {
            org,
            team,
            target,
            role,
        } => {
            let on = match &target.repo {
                Some(name) => {
                    let repo = grant_repo(&org, name)?;
                    m.repo_grant_set(c, &repo, &team, role).await?;
                    name.clone()
                }
                None => {
                    m.namespace_grant_set(c, &org, &team, role).await?;
                    format!("{org}/*")
                }
            };
            println!("{org}/{team} has {} on {on}", role.as_str());
        }
        TeamCmd::Revoke { org, team, target } => {
            let (removed, on) = match &target.repo {
                Some(name) => {
                    let repo = grant_repo(&org, name)?;
                    (m.repo_grant_remove(c, &repo, &team).await, name.clone())
                }
                None => (
                    m.namespace_grant_remove(c, &org, &team).await,
                    format!("{org}/*"),
                ),
            };
            match removed {
                Ok(()) => println!("{org}/{team} has no role on {on} any more"),
                Err(ManageError::NotFound(_)) => bail!("{org}/{team} has no role on {on}"),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// A repository of the organisation `org`, for a team grant.
fn grant_repo(org: &str, name: &str) -> anyhow::Result<RepoName> {
    let repo = repo_name(name)?;
    if repo.namespace() != org {
        bail!("{name} is not in the namespace of the organisation {org}");
    }
    Ok(repo)
}

async fn repo(m: &Manage<'_>, c: &Caller, cmd: RepoCmd) -> anyhow::Result<()> {
    match cmd {
        RepoCmd::Create {
            name,
            public,
            private,
        } => {
            let repo = repo_name(&name)?;
            let visibility = match (public, private) {
                (true, _) => Some(Visibility::Public),
                (_, true) => Some(Visibility::Private),
                _ => None,
            };
            let rec = m.repo_create(c, &repo, visibility).await?;
            println!(
                "created repository {name} ({})",
                visibility_word(rec.visibility)
            );
        }
        RepoCmd::Visibility { name, visibility } => {
            let v = if visibility == "public" {
                Visibility::Public
            } else {
                Visibility::Private
            };
            m.repo_set_visibility(c, &repo_name(&name)?, v).await?;
            println!("{name} is {}", visibility_word(v));
        }
    }
    Ok(())
}

async fn token(m: &Manage<'_>, c: &Caller, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            user,
            description,
            expires_in_days,
            scopes,
        } => {
            let req = TokenRequest {
                description,
                expires_in: expires_in_days.map(|d| u64::from(d) * 86_400),
                restriction: (!scopes.is_empty()).then_some(Restriction { entries: scopes }),
            };
            let created = m.token_create(c, &user, req).await?;
            eprintln!(
                "berth: created access token {} for {user}; it is shown once, below",
                created.record.id.as_str()
            );
            // The only place the secret is ever shown: standard output, for a script to take.
            println!("{}", created.token);
        }
        TokenCmd::List { user, kind } => {
            let kind = match kind.as_str() {
                "refresh" => TokenKind::Refresh,
                _ => TokenKind::Access,
            };
            for t in m.tokens_list(c, &user, kind).await? {
                println!("{}", token_line(&t, now_ms()));
            }
        }
        TokenCmd::Revoke { id } => {
            // A whole token is accepted too: only its id part is used.
            let id = match secret::parse(&id) {
                Ok(p) => p.id.as_str().to_string(),
                Err(_) => id,
            };
            m.token_revoke_id(c, &id).await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// One line of `token list`: id, state, expiry (RFC 3339 or `never`), scope (`all`: the
/// user's rights; else `PATTERN=ROLE` entries joined by `,`), description, and for a
/// refresh token what it was issued against.
fn token_line(t: &TokenRecord, now: i64) -> String {
    let state = if t.revoked {
        "revoked"
    } else if t.usable_at(now) {
        "active"
    } else {
        "expired"
    };
    let expires = t.expires_at.map_or("never".to_string(), manage::rfc3339_ms);
    let scope = match &t.restriction {
        None => "all".to_string(),
        Some(r) => r
            .entries
            .iter()
            .map(|e| {
                let on = match &e.target {
                    RestrictionTarget::Repository(p) => p.clone(),
                    RestrictionTarget::Namespace(ns) => format!("{ns}/*"),
                };
                format!("{on}={}", e.max_role.as_str())
            })
            .collect::<Vec<_>>()
            .join(","),
    };
    let mut line = format!(
        "{}\t{state}\t{expires}\t{scope}\t{}",
        t.id.as_str(),
        t.description
    );
    match &t.parent {
        None => {}
        Some(TokenParent::Password { .. }) => line.push_str("\tpassword"),
        Some(TokenParent::Token(id)) => line.push_str(&format!("\ttoken:{}", id.as_str())),
    }
    line
}

fn visibility_word(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

/// On first start (no user named `admin`), creates the administrator: with the password
/// from `BERTH_ADMIN_PASSWORD` or the given file, or else a random one printed once.
pub async fn ensure_first_admin(
    store: &dyn IdentityStore,
    password_file: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if store.user_get(UserKey::Name(FIRST_ADMIN)).await?.is_some() {
        return Ok(());
    }
    let (pw, generated) = match (
        std::env::var("BERTH_ADMIN_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty()),
        password_file,
    ) {
        (Some(pw), _) => (pw, false),
        (None, Some(p)) => {
            let pw = read_password(&PasswordSource {
                password_file: Some(p.clone()),
                password_stdin: false,
            })?;
            if pw.chars().count() < 8 {
                bail!("the password must have at least 8 characters");
            }
            (pw, false)
        }
        (None, None) => {
            let mut bytes = [0u8; 18];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            use base64::Engine as _;
            (
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                true,
            )
        }
    };
    let user = NewUser {
        name: FIRST_ADMIN.into(),
        full_name: "Administrator".into(),
        email: None,
        password: Some(hash(&pw)?),
        origin: Origin::Local,
        active: true,
        is_system_admin: true,
        is_service_account: false,
        claim_namespace: false,
    };
    match store.user_create(&user).await {
        Ok(_) => {}
        // Another replica created it first.
        Err(berth_meta::MetaError::Conflict(_)) => return Ok(()),
        // Repositories no account owns are in the namespace `admin` (the administrator
        // was deleted): a new account does not take them unless an operator says so.
        Err(e @ berth_meta::MetaError::NamespaceHeld(_)) => {
            tracing::warn!(
                error = %e,
                "the first administrator was not created; create one with `berth admin user \
                 create NAME --admin` (`--claim-namespace` to give it those repositories)"
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    if generated {
        // Printed once, on purpose and only here: there is no other way to learn it.
        eprintln!(
            "berth: created the administrator \"{FIRST_ADMIN}\" with the generated password: {pw}"
        );
        eprintln!(
            "berth: change it with `berth admin user password {FIRST_ADMIN} --password-stdin`"
        );
    } else {
        tracing::info!("created the administrator \"{FIRST_ADMIN}\" with the configured password");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// berth admin directory: the directory sync on demand and its history

#[derive(Debug, Subcommand)]
pub enum DirectoryCmd {
    /// Syncs accounts and mapped teams from the configured directory now; exits 1 when the
    /// run fails (nothing is changed when the directory cannot be read).
    Sync,
    /// Lists the last sync runs, newest first, one JSON object per line.
    Runs {
        /// How many runs.
        #[arg(long, short = 'n', default_value_t = 20)]
        n: u32,
    },
}

/// Runs a directory command; `directory` is the `[directory]` section, if any.
pub async fn run_directory(
    store: &dyn IdentityStore,
    directory: Option<&berth_directory::DirectoryConfig>,
    cmd: DirectoryCmd,
) -> anyhow::Result<()> {
    use berth_core::directory_sync::{run_sync, sync_runs, Trigger};
    match cmd {
        DirectoryCmd::Sync => {
            let config = directory.context("no [directory] section in the configuration")?;
            let client = berth_directory::DirectoryClient::new(config.clone())
                .context("setting up the directory client")?;
            let report = run_sync(store, &client, Trigger::Command, None).await;
            println!("{}", serde_json::to_string(&report)?);
            if !report.ok {
                bail!(
                    "directory sync failed: {}",
                    report.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
        DirectoryCmd::Runs { n } => {
            for run in sync_runs(store, n).await? {
                let mut v = serde_json::to_value(&run.report)?;
                v["id"] = run.id.into();
                println!("{v}");
            }
        }
    }
    Ok(())
}
