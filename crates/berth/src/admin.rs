//! `berth admin`: what an operator needs before the API is reachable — users, password
//! resets, organisations and teams — and the first-start administrator.
//!
//! Passwords are never taken from the command line (they would land in shell history and
//! `ps`): only from a file or standard input. They are stored as argon2id hashes.

use anyhow::{bail, Context};
use berth_auth::password::{hash_password, PasswordParams};
use berth_meta::identity::{NewUser, OrgSettings, Origin, UserKey, UserPatch};
use berth_meta::IdentityStore;
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
    /// Teams inside organisations.
    #[command(subcommand)]
    Team(TeamCmd),
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
    // An account name is a repository namespace: one component of a repository name.
    if berth_oci::RepoName::parse(name).is_err() || name.contains('/') {
        bail!("{name:?} is not a valid account name: lowercase letters, digits and single separators (., _, -)");
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
            };
            let rec = store.user_create(&user).await?;
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
            store.org_create(&name, "", &settings).await?;
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
    }
    Ok(())
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
    };
    match store.user_create(&user).await {
        Ok(_) => {}
        // Another replica created it first.
        Err(berth_meta::MetaError::Conflict(_)) => return Ok(()),
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
