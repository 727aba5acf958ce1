//! `berth admin`: what an operator needs before the API is reachable — users, password
//! resets, organisations, teams and their grants, repositories and their visibility,
//! access tokens — and the first-start administrator.
//!
//! Passwords are never taken from the command line (they would land in shell history and
//! `ps`): only from a file or standard input. They are stored as argon2id hashes. An access
//! token is printed once on standard output and only its SHA-256 is stored. Changes to
//! grants, repositories and tokens are appended to the audit log (actor none, source
//! `berth admin`), as the same changes through the API are.

use anyhow::{bail, Context};
use berth_auth::password::{hash_password, PasswordParams};
use berth_auth::rbac::{Restriction, RestrictionEntry, RestrictionTarget, Role, Visibility};
use berth_auth::secret::{self, SecretId};
use berth_meta::identity::{
    NewAuditEvent, NewToken, NewUser, OrgSettings, Origin, TokenKind, TokenParent, UserKey,
    UserPatch,
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

fn repo_name(name: &str) -> anyhow::Result<RepoName> {
    RepoName::parse(name).map_err(|e| anyhow::anyhow!("{name:?} is not a repository name: {e}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Appends an audit event for a change made here; a failed write is reported, not fatal
/// (the change itself is already committed).
async fn audit(store: &dyn IdentityStore, action: &str, target: &str, detail: serde_json::Value) {
    let event = NewAuditEvent {
        at: now_ms(),
        actor: None,
        source: Some("berth admin".into()),
        action: action.into(),
        target: target.into(),
        detail,
    };
    if let Err(e) = store.audit_append(&event).await {
        eprintln!("berth: warning: the audit event {action} on {target} was not written: {e}");
    }
}

async fn user_id(store: &dyn IdentityStore, name: &str) -> anyhow::Result<i64> {
    Ok(store
        .user_get(UserKey::Name(name))
        .await?
        .with_context(|| format!("no user {name:?}"))?
        .id)
}

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
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(pw)
}

fn hash(pw: &str) -> anyhow::Result<String> {
    hash_password(pw.as_bytes(), &PasswordParams::default())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    // The same rule as the API and the metadata store.
    if !berth_oci::is_valid_account_name(name) {
        bail!("{name:?} is not a valid account name: 1 to 64 lowercase letters and digits, separated by single '.', '_' or '-'");
    }
    Ok(())
}

/// Runs an admin command against the identity store.
pub async fn run(store: &dyn IdentityStore, cmd: AdminCmd) -> anyhow::Result<()> {
    match cmd {
        AdminCmd::User(UserCmd::Create {
            name,
            password,
            admin,
            service_account,
            email,
            full_name,
            claim_namespace,
        }) => {
            check_name(&name)?;
            let pw = read_password(&password)?;
            let user = NewUser {
                name,
                full_name,
                email,
                password: Some(hash(&pw)?),
                origin: Origin::Local,
                active: true,
                is_system_admin: admin,
                is_service_account: service_account,
                claim_namespace,
            };
            let rec = store.user_create(&user).await?;
            if claim_namespace {
                let detail = serde_json::json!({ "account": "user" });
                audit(store, "namespace.claim", &rec.name, detail).await;
            }
            println!("created user {} (id {})", rec.name, rec.id);
        }
        AdminCmd::User(UserCmd::Password { name, password }) => {
            let pw = read_password(&password)?;
            let user = store
                .user_get(UserKey::Name(&name))
                .await?
                .with_context(|| format!("no user {name:?}"))?;
            let patch = UserPatch {
                password: Some(Some(hash(&pw)?)),
                active: Some(true),
                ..UserPatch::default()
            };
            store.user_update(user.id, &patch).await?;
            println!("password of {name} changed");
        }
        AdminCmd::User(UserCmd::List) => {
            let mut last: Option<String> = None;
            loop {
                let page = store.users_list(last.as_deref(), 500).await?;
                for u in &page {
                    let origin = match &u.origin {
                        Origin::Local => "local",
                        Origin::Directory { .. } => "directory",
                    };
                    println!(
                        "{}\t{}\t{}{}{}",
                        u.name,
                        origin,
                        if u.active { "active" } else { "inactive" },
                        if u.is_system_admin { "\tadmin" } else { "" },
                        if u.is_service_account {
                            "\tservice"
                        } else {
                            ""
                        }
                    );
                }
                match page.last() {
                    Some(u) if page.len() == 500 => last = Some(u.name.clone()),
                    _ => break,
                }
            }
        }
        AdminCmd::Org(OrgCmd::Create {
            name,
            members_can_create,
            public,
            claim_namespace,
        }) => {
            check_name(&name)?;
            let settings = OrgSettings {
                members_can_create,
                default_visibility: if public {
                    berth_auth::rbac::Visibility::Public
                } else {
                    berth_auth::rbac::Visibility::Private
                },
            };
            store
                .org_create(&name, "", &settings, claim_namespace)
                .await?;
            if claim_namespace {
                let detail = serde_json::json!({ "account": "organisation" });
                audit(store, "namespace.claim", &name, detail).await;
            }
            println!("created organisation {name}");
        }
        AdminCmd::Org(OrgCmd::List) => {
            let mut last: Option<String> = None;
            loop {
                let page = store.orgs_list(last.as_deref(), 500).await?;
                for o in &page {
                    println!("{}", o.name);
                }
                match page.last() {
                    Some(o) if page.len() == 500 => last = Some(o.name.clone()),
                    _ => break,
                }
            }
        }
        AdminCmd::Team(TeamCmd::Create { org, team }) => {
            check_name(&team)?;
            store.team_create(&org, &team, None).await?;
            println!("created team {org}/{team}");
        }
        AdminCmd::Team(TeamCmd::Add { org, team, user }) => {
            let u = store
                .user_get(UserKey::Name(&user))
                .await?
                .with_context(|| format!("no user {user:?}"))?;
            store.team_member_add(&org, &team, u.id).await?;
            println!("added {user} to {org}/{team}");
        }
        AdminCmd::Team(TeamCmd::List { org }) => {
            for t in store.teams_list(&org).await? {
                println!("{}", t.name);
            }
        }
        AdminCmd::Team(TeamCmd::Grant {
            org,
            team,
            target,
            role,
        }) => {
            let on = match &target.repo {
                Some(name) => {
                    store
                        .grant_repo_set(&org, &team, &repo_name(name)?, role)
                        .await?;
                    name.clone()
                }
                None => {
                    store.grant_namespace_set(&org, &team, role).await?;
                    format!("{org}/*")
                }
            };
            audit(
                store,
                "grant.change",
                &format!("{org}/{team}"),
                serde_json::json!({ "on": on, "role": role.as_str() }),
            )
            .await;
            println!("{org}/{team} has {} on {on}", role.as_str());
        }
        AdminCmd::Team(TeamCmd::Revoke { org, team, target }) => {
            let (removed, on) = match &target.repo {
                Some(name) => (
                    store
                        .grant_repo_remove(&org, &team, &repo_name(name)?)
                        .await?,
                    name.clone(),
                ),
                None => (
                    store.grant_namespace_remove(&org, &team).await?,
                    format!("{org}/*"),
                ),
            };
            if !removed {
                bail!("{org}/{team} has no role on {on}");
            }
            audit(
                store,
                "grant.change",
                &format!("{org}/{team}"),
                serde_json::json!({ "on": on, "role": null }),
            )
            .await;
            println!("{org}/{team} has no role on {on} any more");
        }
        AdminCmd::Repo(RepoCmd::Create {
            name,
            public,
            private,
        }) => {
            let repo = repo_name(&name)?;
            let visibility = match (public, private) {
                (true, _) => Some(Visibility::Public),
                (_, true) => Some(Visibility::Private),
                _ => None,
            };
            let rec = store.repo_create(&repo, None, visibility).await?;
            let vis = visibility_word(rec.visibility);
            audit(
                store,
                "repo.create",
                &name,
                serde_json::json!({ "visibility": vis }),
            )
            .await;
            println!("created repository {name} ({vis})");
        }
        AdminCmd::Repo(RepoCmd::Visibility { name, visibility }) => {
            let repo = repo_name(&name)?;
            let v = if visibility == "public" {
                Visibility::Public
            } else {
                Visibility::Private
            };
            if !store.repo_set_visibility(&repo, v).await? {
                bail!("no repository {name:?}");
            }
            audit(
                store,
                "repo.visibility",
                &name,
                serde_json::json!({ "visibility": visibility_word(v) }),
            )
            .await;
            println!("{name} is {}", visibility_word(v));
        }
        AdminCmd::Token(TokenCmd::Create {
            user,
            description,
            expires_in_days,
            scopes,
        }) => {
            let user_id = user_id(store, &user).await?;
            let expires_at = expires_in_days.map(|d| now_ms() + i64::from(d) * 86_400_000);
            let restriction = (!scopes.is_empty()).then_some(Restriction { entries: scopes });
            let s = secret::generate();
            store
                .token_create(&NewToken {
                    id: s.id.clone(),
                    kind: TokenKind::Access,
                    user_id,
                    description: description.clone(),
                    hash: s.hash,
                    expires_at,
                    restriction,
                    parent: None,
                })
                .await?;
            audit(
                store,
                "token.create",
                s.id.as_str(),
                serde_json::json!({ "user": user_id, "description": description }),
            )
            .await;
            eprintln!(
                "berth: created access token {} for {user}; it is shown once, below",
                s.id.as_str()
            );
            // The only place the secret is ever shown: standard output, for a script to take.
            println!("{}", s.token);
        }
        AdminCmd::Token(TokenCmd::List { user, kind }) => {
            let user_id = user_id(store, &user).await?;
            let kind = match kind.as_str() {
                "refresh" => TokenKind::Refresh,
                _ => TokenKind::Access,
            };
            for t in store.tokens_list(user_id, kind).await? {
                let state = if t.revoked {
                    "revoked"
                } else if t.usable_at(now_ms()) {
                    "active"
                } else {
                    "expired"
                };
                match &t.parent {
                    None => println!("{}\t{state}\t{}", t.id.as_str(), t.description),
                    Some(p) => {
                        let from = match p {
                            TokenParent::Password { .. } => "password".to_string(),
                            TokenParent::Token(id) => format!("token:{}", id.as_str()),
                        };
                        println!("{}\t{state}\t{}\t{from}", t.id.as_str(), t.description)
                    }
                }
            }
        }
        AdminCmd::Token(TokenCmd::Revoke { id }) => {
            // A whole token is accepted too: only its id part is used.
            let id = match secret::parse(&id) {
                Ok(p) => p.id,
                Err(_) => SecretId::parse(&id)
                    .map_err(|e| anyhow::anyhow!("{id:?} is not a token id: {e}"))?,
            };
            if !store.token_revoke(&id).await? {
                bail!("no token {}", id.as_str());
            }
            audit(store, "token.revoke", id.as_str(), serde_json::json!({})).await;
            println!("revoked token {}", id.as_str());
        }
    }
    Ok(())
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
        (None, Some(p)) => (
            read_password(&PasswordSource {
                password_file: Some(p.clone()),
                password_stdin: false,
            })?,
            false,
        ),
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
