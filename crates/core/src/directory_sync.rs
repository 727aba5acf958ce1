//! The directory sync applied to Berth's accounts: read a directory snapshot, read Berth's
//! users and their mapped-team memberships from the [`IdentityStore`], let
//! [`berth_directory::sync::plan`] decide, and carry the plan out. Also the just-in-time
//! account of a directory user who logs in before any sync has seen them
//! ([`provision`]), decided by the same plan so that login and sync never disagree.
//!
//! Rules kept here (the plan's own invariants are tested in `berth-directory`):
//! - The directory is read before anything is changed: an unreachable directory, a refused
//!   service bind or an empty snapshot (see `SyncPolicy::allow_empty_directory`) fails the
//!   run and Berth stays exactly as it was, so users keep their access until a sync
//!   succeeds.
//! - Local accounts are never touched; only directory accounts and mapped teams are.
//! - A deactivated account loses every access and refresh token (`tokens_revoke_all`);
//!   its password logins stop at once because the account is inactive. An account that
//!   leaves its last team of an organisation also leaves the organisation (unless it owns
//!   it), since plain membership may allow creating repositories there.
//! - Every run is one `directory.sync` audit event whose detail is the [`SyncReport`]:
//!   that is the sync history ([`sync_runs`]).
//! - Each change is its own store transaction. A run that fails halfway (the store went
//!   away) leaves a prefix of the plan applied; plans are idempotent, so the next run
//!   finishes the job.
//! - A mapped team that does not exist is created when its organisation exists (with the
//!   group recorded on it); when the organisation is missing, its memberships are skipped
//!   and the run carries a warning. Likewise a mapping whose group matches no directory
//!   group leaves its team alone and the run carries the plan's warning.

use berth_directory::names::account_name_for;
use berth_directory::{
    plan, BerthUser, DirectoryClient, DirectoryError, DirectorySnapshot, Membership,
    Origin as PlanOrigin, SyncError, SyncPlan, SyncPolicy, TeamRef,
};
use berth_meta::identity::{
    AccountId, AuditFilter, NewAuditEvent, NewUser, Origin, UserKey, UserPatch, UserRecord,
};
use berth_meta::{IdentityStore, MetaError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The audit action of a sync run.
pub const SYNC_ACTION: &str = "directory.sync";
/// The audit action of a just-in-time account.
pub const PROVISION_ACTION: &str = "directory.provision";
/// The audit target of sync runs.
const SYNC_TARGET: &str = "directory";

/// Why a run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The scheduled task of `berth serve`.
    Schedule,
    /// `berth admin directory sync`.
    Command,
    /// The management API.
    Api,
}

/// How many changes a run made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncCounts {
    /// Accounts created.
    pub created: u64,
    /// Accounts deactivated.
    pub deactivated: u64,
    /// Accounts reactivated.
    pub reactivated: u64,
    /// Mapped-team memberships added.
    pub memberships_added: u64,
    /// Mapped-team memberships removed.
    pub memberships_removed: u64,
    /// Access and refresh tokens revoked with the deactivated accounts.
    pub tokens_revoked: u64,
    /// Organisation memberships ended because the sync took the account's last team of
    /// that organisation (membership alone lets a user create repositories where
    /// `members_can_create` is set).
    pub org_memberships_removed: u64,
    /// Mapped teams created in existing organisations.
    pub teams_created: u64,
    /// Directory users left alone because a local account has their name.
    pub conflicts: u64,
    /// Directory accounts whose e-mail or display name changed in the directory.
    pub profiles_updated: u64,
    /// Directory accounts that learned their entry's immutable id.
    pub ids_adopted: u64,
}

/// The outcome of one sync run: what the audit event's detail holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds.
    pub finished_at: i64,
    pub trigger: Trigger,
    /// Whether the whole plan was read and applied.
    pub ok: bool,
    /// Why the run failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Whether the directory could not be reached (nothing was changed).
    #[serde(default)]
    pub unreachable: bool,
    /// What was changed (up to the failure, for a run that failed while applying).
    #[serde(default)]
    pub counts: SyncCounts,
    /// Directory usernames that are local accounts in Berth.
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Changes that could not be made (a mapped team's organisation is missing, a name is
    /// taken by an organisation).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl SyncReport {
    fn started(trigger: Trigger) -> SyncReport {
        SyncReport {
            started_at: now_ms(),
            finished_at: 0,
            trigger,
            ok: false,
            error: None,
            unreachable: false,
            counts: SyncCounts::default(),
            conflicts: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// A recorded sync run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRun {
    /// The audit event's id (newest runs have the highest).
    pub id: i64,
    /// Who asked for it (`None` for the schedule and the command line).
    pub actor: Option<AccountId>,
    pub report: SyncReport,
}

/// What can stop a sync or a just-in-time account.
#[derive(Debug, thiserror::Error)]
pub enum DirectorySyncError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Plan(#[from] SyncError),
    #[error(transparent)]
    Store(#[from] MetaError),
}

use crate::time::now_ms;

/// One run at a time per process: the schedule, the command and the API may ask at once.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs one sync and records it as a `directory.sync` audit event (with `actor`, the user
/// who asked, if any). Never fails: a failure is a report with `ok: false`.
pub async fn run_sync(
    identity: &dyn IdentityStore,
    directory: &DirectoryClient,
    trigger: Trigger,
    actor: Option<AccountId>,
) -> SyncReport {
    let _one = RUNNING.lock().await;
    let mut report = SyncReport::started(trigger);
    match sync_once(identity, directory, &mut report).await {
        Ok(()) => report.ok = true,
        Err(e) => {
            report.unreachable =
                matches!(&e, DirectorySyncError::Directory(d) if d.is_unreachable());
            report.error = Some(e.to_string());
        }
    }
    report.finished_at = now_ms();
    if report.ok {
        tracing::info!(counts = ?report.counts, warnings = report.warnings.len(),
            "directory sync finished");
    } else {
        tracing::warn!(error = report.error.as_deref().unwrap_or_default(),
            counts = ?report.counts, "directory sync failed; access stays as it was");
    }
    let event = NewAuditEvent {
        at: report.finished_at,
        actor,
        source: None,
        action: SYNC_ACTION.into(),
        target: SYNC_TARGET.into(),
        detail: serde_json::to_value(&report).unwrap_or_default(),
    };
    if let Err(e) = identity.audit_append(&event).await {
        tracing::error!(error = %e, "could not record the directory sync run in the audit log");
    }
    report
}

/// The last `n` sync runs, newest first.
pub async fn sync_runs(identity: &dyn IdentityStore, n: u32) -> Result<Vec<SyncRun>, MetaError> {
    let filter = AuditFilter {
        action: Some(SYNC_ACTION.into()),
        ..AuditFilter::default()
    };
    let events = identity.audit_query(&filter, None, n).await?;
    Ok(events
        .into_iter()
        .filter_map(|e| {
            let report = serde_json::from_value(e.detail).ok()?;
            Some(SyncRun {
                id: e.id,
                actor: e.actor,
                report,
            })
        })
        .collect())
}

/// The name of the scheduled sync job (and of its lease).
pub const JOB: &str = "directory-sync";

/// The scheduled sync, an exclusive background job: one replica at a time runs
/// [`run_sync`], when it takes the lease and then every `interval`.
pub fn scheduled_job(
    identity: Arc<dyn IdentityStore>,
    directory: DirectoryClient,
    interval: Duration,
) -> crate::jobs::Job {
    crate::jobs::Job::new(JOB, interval, move |_| {
        let (identity, directory) = (identity.clone(), directory.clone());
        async move {
            run_sync(identity.as_ref(), &directory, Trigger::Schedule, None).await;
        }
    })
    .exclusive()
}

async fn sync_once(
    identity: &dyn IdentityStore,
    directory: &DirectoryClient,
    report: &mut SyncReport,
) -> Result<(), DirectorySyncError> {
    let policy = &directory.config().sync;
    // The directory first: if it cannot be read, nothing below runs.
    let snapshot = directory.snapshot().await?;
    let mut users = BTreeMap::new();
    let mut last: Option<String> = None;
    loop {
        let page = identity.users_list(last.as_deref(), 500).await?;
        let full = page.len() == 500;
        last = page.last().map(|u| u.name.clone());
        users.extend(page.into_iter().map(|u| (u.name.clone(), u)));
        if !full {
            break;
        }
    }
    let teams = mapped_teams(identity, policy, report).await?;
    let current = berth_users(&users, &teams.members);
    let plan = plan(&snapshot, policy, &current)?;
    let plan = without_teams(plan, &teams.missing);
    for w in &plan.warnings {
        tracing::warn!(warning = %w, "directory sync");
    }
    report.warnings.extend(plan.warnings.iter().cloned());
    report.conflicts = plan.conflicts.clone();
    report.counts.conflicts = plan.conflicts.len() as u64;
    apply(identity, &plan, &mut users, report).await
}

/// The mapped teams as Berth has them.
struct MappedTeams {
    /// Members (account names) of each mapped team that exists.
    members: BTreeMap<TeamRef, BTreeSet<String>>,
    /// Mapped teams whose organisation does not exist.
    missing: BTreeSet<TeamRef>,
}

/// Reads the members of every mapped team, creating the teams that are missing in an
/// existing organisation.
async fn mapped_teams(
    identity: &dyn IdentityStore,
    policy: &SyncPolicy,
    report: &mut SyncReport,
) -> Result<MappedTeams, MetaError> {
    let mut out = MappedTeams {
        members: BTreeMap::new(),
        missing: BTreeSet::new(),
    };
    for mapping in &policy.teams {
        let t = &mapping.team;
        if out.members.contains_key(t) || out.missing.contains(t) {
            continue;
        }
        if identity.team_get(t.org(), t.team()).await?.is_none() {
            if identity.org_get(t.org()).await?.is_none() {
                report.warnings.push(format!(
                    "organisation {} of mapped team {t} does not exist; its memberships are not managed",
                    t.org()
                ));
                out.missing.insert(t.clone());
                continue;
            }
            match identity
                .team_create(t.org(), t.team(), Some(&mapping.group))
                .await
            {
                Ok(_) => report.counts.teams_created += 1,
                // Created meanwhile (another replica's run).
                Err(MetaError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let members = identity.team_members(t.org(), t.team()).await?;
        out.members
            .insert(t.clone(), members.into_iter().map(|m| m.name).collect());
    }
    Ok(out)
}

/// Berth's accounts as the plan sees them, with their mapped-team memberships (the only
/// teams the plan compares).
fn berth_users(
    users: &BTreeMap<String, UserRecord>,
    members: &BTreeMap<TeamRef, BTreeSet<String>>,
) -> Vec<BerthUser> {
    users
        .values()
        .map(|u| BerthUser {
            username: u.name.clone(),
            origin: match u.origin {
                Origin::Local => PlanOrigin::Local,
                Origin::Directory { .. } => PlanOrigin::Directory,
            },
            directory_id: match &u.origin {
                Origin::Local => None,
                Origin::Directory { id, .. } => id.clone(),
            },
            active: u.active,
            teams: members
                .iter()
                .filter(|(_, names)| names.contains(&u.name))
                .map(|(t, _)| t.clone())
                .collect(),
            email: u.email.clone(),
            full_name: Some(u.full_name.clone()),
        })
        .collect()
}

/// Whether an account is a directory account that may stand for the directory entry with
/// immutable id `id`: it has no id yet, or that one (or the entry has none).
fn same_entry(origin: &Origin, id: Option<&str>) -> bool {
    match origin {
        Origin::Local => false,
        Origin::Directory { id: had, .. } => match (had.as_deref(), id) {
            (Some(had), Some(has)) => had == has,
            _ => true,
        },
    }
}

/// Drops the memberships of teams that cannot be managed.
fn without_teams(mut plan: SyncPlan, missing: &BTreeSet<TeamRef>) -> SyncPlan {
    plan.add_memberships.retain(|m| !missing.contains(&m.team));
    plan.remove_memberships
        .retain(|m| !missing.contains(&m.team));
    plan
}

/// Carries out a plan in its order: create, reactivate, deactivate (with the tokens),
/// add memberships, update profiles, remove memberships. `users` are Berth's accounts by name; created
/// accounts are added to it.
async fn apply(
    identity: &dyn IdentityStore,
    plan: &SyncPlan,
    users: &mut BTreeMap<String, UserRecord>,
    report: &mut SyncReport,
) -> Result<(), DirectorySyncError> {
    for n in &plan.create {
        let new = NewUser {
            name: n.username.clone(),
            full_name: n.full_name.clone().unwrap_or_default(),
            email: n.email.clone(),
            password: None,
            origin: Origin::Directory {
                dn: n.dn.clone(),
                id: n.id.clone(),
            },
            active: true,
            is_system_admin: false,
            is_service_account: false,
            claim_namespace: false,
        };
        match identity.user_create(&new).await {
            Ok(rec) => {
                report.counts.created += 1;
                users.insert(rec.name.clone(), rec);
            }
            Err(MetaError::Conflict(_)) => {
                // A login created it meanwhile, or an organisation has the name.
                match identity.user_get(UserKey::Name(&n.username)).await? {
                    Some(rec) if same_entry(&rec.origin, n.id.as_deref()) => {
                        users.insert(rec.name.clone(), rec);
                    }
                    _ => report.warnings.push(format!(
                        "directory user {} was not created: the name is taken",
                        n.username
                    )),
                }
            }
            Err(MetaError::Invalid(why)) => report.warnings.push(format!(
                "directory user {} was not created: {why}",
                n.username
            )),
            // The name's namespace holds repositories no account owns: a directory account
            // does not take them; a system administrator may claim the name.
            Err(e @ MetaError::NamespaceHeld(_)) => report.warnings.push(format!(
                "directory user {} was not created: {e}",
                n.username
            )),
            Err(e) => return Err(e.into()),
        }
    }
    let directory_account = |users: &BTreeMap<String, UserRecord>, name: &str| {
        users
            .get(&name.to_lowercase())
            .filter(|u| matches!(u.origin, Origin::Directory { .. }))
            .map(|u| u.id)
    };
    for name in &plan.reactivate {
        if let Some(id) = directory_account(users, name) {
            let patch = UserPatch {
                active: Some(true),
                ..UserPatch::default()
            };
            identity.user_update(id, &patch).await?;
            report.counts.reactivated += 1;
        }
    }
    for name in &plan.deactivate {
        if let Some(id) = directory_account(users, name) {
            let patch = UserPatch {
                active: Some(false),
                ..UserPatch::default()
            };
            // Tokens first: the deactivation itself also revokes the password's refresh
            // tokens, which the report counts here.
            report.counts.tokens_revoked += identity.tokens_revoke_all(id).await?;
            identity.user_update(id, &patch).await?;
            report.counts.deactivated += 1;
        }
    }
    for Membership { username, team } in &plan.add_memberships {
        if let Some(id) = directory_account(users, username) {
            identity
                .team_member_add(team.org(), team.team(), id)
                .await?;
            report.counts.memberships_added += 1;
        }
    }
    for a in &plan.adopt_ids {
        let Some(rec) = users.get(&a.username.to_lowercase()) else {
            continue;
        };
        let Origin::Directory { dn, id: None } = &rec.origin else {
            continue;
        };
        let patch = UserPatch {
            origin: Some(Origin::Directory {
                dn: dn.clone(),
                id: Some(a.id.clone()),
            }),
            ..UserPatch::default()
        };
        match identity.user_update(rec.id, &patch).await {
            Ok(_) => report.counts.ids_adopted += 1,
            // Another account already stands for that entry.
            Err(MetaError::Conflict(_)) => report.warnings.push(format!(
                "directory account {} did not adopt entry id {}: another account has it",
                a.username, a.id
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for p in &plan.update_profiles {
        if let Some(id) = directory_account(users, &p.username) {
            let patch = UserPatch {
                full_name: p.full_name.clone(),
                email: p.email.clone().map(Some),
                ..UserPatch::default()
            };
            identity.user_update(id, &patch).await?;
            report.counts.profiles_updated += 1;
        }
    }
    let mut left: BTreeSet<(AccountId, String)> = BTreeSet::new();
    for Membership { username, team } in &plan.remove_memberships {
        if let Some(id) = directory_account(users, username) {
            if identity
                .team_member_remove(team.org(), team.team(), id)
                .await?
            {
                report.counts.memberships_removed += 1;
                left.insert((id, team.org().to_string()));
            }
        }
    }
    // Joining a team made the account a member of its organisation; leaving the last one
    // ends that membership too (owners stay: ownership is given by hand).
    for (id, org) in left {
        let Some(subject) = identity.subject_for(UserKey::Id(id)).await? else {
            continue;
        };
        let Some(user) = subject.user else { continue };
        let owner = user.orgs.iter().any(|o| o.org == org && o.is_owner);
        let teams = user.teams.iter().any(|t| t.org == org);
        if !owner && !teams && identity.org_member_remove(&org, id).await? {
            report.counts.org_memberships_removed += 1;
        }
    }
    Ok(())
}

/// The part of a snapshot that concerns one user: that user, and the groups they are in
/// with only them as member. The plan of this snapshot against no account creates the
/// user exactly when a full sync would (eligibility depends only on the user's own entry
/// and groups), with the same teams.
pub fn snapshot_of_user(snapshot: &DirectorySnapshot, username: &str) -> DirectorySnapshot {
    let name = account_name_for(username).unwrap_or_default();
    DirectorySnapshot {
        users: snapshot
            .users
            .iter()
            .filter(|u| u.username == name)
            .cloned()
            .collect(),
        groups: snapshot
            .groups
            .iter()
            .filter(|g| g.members.contains(&name))
            .map(|g| berth_directory::DirectoryGroup {
                members: [name.clone()].into(),
                ..g.clone()
            })
            .collect(),
        warnings: vec![],
    }
}

/// Creates the account of a directory user who has just bound successfully but has no
/// account yet, when the sync policy makes them eligible, with their mapped teams.
/// `password` is the argon2id hash to cache for logins while the directory is
/// unreachable. `None`: not eligible (the login is refused). Reads only that user and
/// their groups from the directory. `login` is what the user logged in with (their
/// directory name, or a `login_attributes` value such as their e-mail); `account` is the
/// account name of the entry it bound as ([`account_name_for`] of its username).
pub async fn provision(
    identity: &dyn IdentityStore,
    directory: &DirectoryClient,
    login: &str,
    account: &str,
    password: Option<String>,
) -> Result<Option<UserRecord>, DirectorySyncError> {
    let snapshot = snapshot_of_user(&directory.user_snapshot(login).await?, account);
    // One user's part of the directory holds only their groups: the mappings of the others
    // match nothing here without being typos, so they are left out rather than warned of.
    let mut policy = directory.config().sync.clone();
    policy
        .teams
        .retain(|m| snapshot.groups.iter().any(|g| m.matches(g)));
    let policy = &policy;
    // Collects what `mapped_teams` and `apply` report; not recorded as a sync run.
    let mut report = SyncReport::started(Trigger::Api);
    let plan = plan(&snapshot, policy, &[])?;
    let Some(new) = plan.create.first() else {
        return Ok(None);
    };
    let teams = mapped_teams(identity, policy, &mut report).await?;
    let plan = without_teams(plan.clone(), &teams.missing);
    let rec = match identity
        .user_create(&NewUser {
            name: new.username.clone(),
            full_name: new.full_name.clone().unwrap_or_default(),
            email: new.email.clone(),
            password,
            origin: Origin::Directory {
                dn: new.dn.clone(),
                id: new.id.clone(),
            },
            active: true,
            is_system_admin: false,
            is_service_account: false,
            claim_namespace: false,
        })
        .await
    {
        Ok(rec) => rec,
        // Two first logins at once, or a sync: use the account if it is a directory one.
        Err(MetaError::Conflict(_)) => {
            match identity.user_get(UserKey::Name(&new.username)).await? {
                Some(rec) if same_entry(&rec.origin, new.id.as_deref()) => rec,
                _ => return Ok(None),
            }
        }
        // Repositories no account owns are in the name's namespace: refused like an
        // ineligible user until a system administrator claims the name.
        Err(e @ MetaError::NamespaceHeld(_)) => {
            tracing::warn!(user = %new.username, error = %e, "directory account not created");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let memberships = SyncPlan {
        add_memberships: plan.add_memberships,
        ..SyncPlan::default()
    };
    let mut users = BTreeMap::from([(rec.name.clone(), rec.clone())]);
    apply(identity, &memberships, &mut users, &mut report).await?;
    let event = NewAuditEvent {
        at: now_ms(),
        actor: Some(rec.id),
        source: None,
        action: PROVISION_ACTION.into(),
        target: rec.name.clone(),
        detail: serde_json::json!({
            "memberships_added": report.counts.memberships_added,
            "warnings": report.warnings,
        }),
    };
    if let Err(e) = identity.audit_append(&event).await {
        tracing::error!(error = %e, "could not record a just-in-time account in the audit log");
    }
    Ok(Some(rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_directory::{CreateUsers, DirectoryGroup, DirectoryUser, GroupMapping};

    fn team(s: &str) -> TeamRef {
        TeamRef::parse(s).unwrap()
    }

    fn snapshot() -> DirectorySnapshot {
        let user = |n: &str, disabled| DirectoryUser {
            dn: format!("uid={n},ou=people"),
            username: n.into(),
            id: None,
            email: None,
            full_name: None,
            disabled,
        };
        let group = |n: &str, members: &[&str]| DirectoryGroup {
            dn: format!("cn={n},ou=groups"),
            name: n.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        DirectorySnapshot {
            users: vec![
                user("alice", false),
                user("bob", false),
                user("dave", false),
                user("eve", true),
            ],
            groups: vec![
                group("developers", &["alice", "bob", "eve"]),
                group("admins", &["alice"]),
                group("other", &["dave"]),
            ],
            warnings: vec![],
        }
    }

    fn policy(create_users: CreateUsers) -> SyncPolicy {
        SyncPolicy {
            create_users,
            teams: vec![
                GroupMapping {
                    group: "developers".into(),
                    team: team("acme/devs"),
                },
                GroupMapping {
                    group: "admins".into(),
                    team: team("acme/admins"),
                },
            ],
            allow_empty_directory: false,
        }
    }

    /// Just-in-time creation agrees with a full sync from an empty Berth, user by user,
    /// under both policies.
    #[test]
    fn one_user_snapshot_plans_like_the_full_one() {
        for create_users in [CreateUsers::MappedGroups, CreateUsers::All] {
            let p = policy(create_users);
            let full = plan(&snapshot(), &p, &[]).unwrap();
            for name in ["alice", "bob", "dave", "eve", "nobody", "ALICE"] {
                let one = plan(&snapshot_of_user(&snapshot(), name), &p, &[]).unwrap();
                let lower = name.to_lowercase();
                let mut want_create = full.create.clone();
                want_create.retain(|n| n.username == lower);
                let mut want_add = full.add_memberships.clone();
                want_add.retain(|m| m.username == lower);
                assert_eq!(one.create, want_create, "{create_users:?} {name}");
                assert_eq!(one.add_memberships, want_add, "{create_users:?} {name}");
            }
        }
    }

    #[test]
    fn one_user_snapshot_keeps_only_that_user() {
        let s = snapshot_of_user(&snapshot(), "alice");
        assert_eq!(s.users.len(), 1);
        let groups: Vec<(&str, Vec<&str>)> = s
            .groups
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.members.iter().map(|m| m.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [("developers", vec!["alice"]), ("admins", vec!["alice"])]
        );
    }

    #[test]
    fn memberships_of_missing_teams_are_dropped() {
        let p = policy(CreateUsers::MappedGroups);
        let full = plan(&snapshot(), &p, &[]).unwrap();
        let missing = [team("acme/admins")].into();
        let kept = without_teams(full.clone(), &missing);
        assert_eq!(kept.create, full.create);
        assert!(kept
            .add_memberships
            .iter()
            .all(|m| m.team == team("acme/devs")));
        assert_eq!(kept.add_memberships.len(), 2);
    }

    #[test]
    fn berth_users_carry_mapped_memberships() {
        let rec = |id, name: &str, origin| UserRecord {
            id,
            name: name.into(),
            full_name: String::new(),
            email: None,
            password: None,
            origin,
            active: true,
            is_system_admin: false,
            is_service_account: false,
            created_at: 0,
            updated_at: 0,
            credential_epoch: 0,
        };
        let users = BTreeMap::from([
            (
                "alice".to_string(),
                rec(
                    1,
                    "alice",
                    Origin::Directory {
                        dn: "x".into(),
                        id: None,
                    },
                ),
            ),
            ("root".to_string(), rec(2, "root", Origin::Local)),
        ]);
        let members = BTreeMap::from([(team("acme/devs"), ["alice".to_string()].into())]);
        let got = berth_users(&users, &members);
        assert_eq!(got[0].origin, PlanOrigin::Directory);
        assert_eq!(got[0].teams, [team("acme/devs")].into());
        assert_eq!(got[1].origin, PlanOrigin::Local);
        assert!(got[1].teams.is_empty());
    }

    /// The audit detail is the report, and older or partial details still read.
    /// Issue 10: a directory account is created through the same check as every other
    /// account: a name whose namespace holds repositories no account owns (here left by a
    /// deleted user) is not created, the run reports it and goes on with the others.
    #[tokio::test]
    async fn directory_accounts_do_not_take_ownerless_namespaces() {
        use berth_meta::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let store = berth_meta::SqliteMetaStore::open(&dir.path().join("m.db"))
            .await
            .unwrap();
        let old = store
            .user_create(&NewUser {
                name: "carol".into(),
                full_name: String::new(),
                email: None,
                password: None,
                origin: Origin::Local,
                active: true,
                is_system_admin: false,
                is_service_account: false,
                claim_namespace: false,
            })
            .await
            .unwrap();
        let app = berth_oci::RepoName::parse("carol/app").unwrap();
        store
            .blob_link(&app, &berth_oci::Digest::sha256_of(b"x"), 1)
            .await
            .unwrap();
        assert!(store.user_delete(old.id).await.unwrap());
        let new = |n: &str| berth_directory::sync::NewUser {
            username: n.into(),
            dn: format!("uid={n},ou=people"),
            id: None,
            email: None,
            full_name: None,
        };
        let plan = SyncPlan {
            create: vec![new("carol"), new("dave")],
            ..SyncPlan::default()
        };
        let mut users = BTreeMap::new();
        let mut report = SyncReport::started(Trigger::Api);
        apply(&store, &plan, &mut users, &mut report).await.unwrap();
        assert_eq!(report.counts.created, 1);
        assert_eq!(users.keys().collect::<Vec<_>>(), ["dave"]);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("carol") && w.contains("claim")),
            "{:?}",
            report.warnings
        );
        assert_eq!(store.user_get(UserKey::Name("carol")).await.unwrap(), None);
        store.close().await;
    }

    /// A racing create falls back only to an account of the same directory entry.
    #[test]
    fn only_an_account_of_the_same_entry_stands_for_it() {
        let dir = |id: Option<&str>| Origin::Directory {
            dn: "uid=sam,ou=people".into(),
            id: id.map(str::to_string),
        };
        assert!(same_entry(&dir(Some("a")), Some("a")));
        assert!(!same_entry(&dir(Some("a")), Some("b")));
        assert!(same_entry(&dir(None), Some("b")));
        assert!(same_entry(&dir(Some("a")), None));
        assert!(!same_entry(&Origin::Local, Some("a")));
        assert!(!same_entry(&Origin::Local, None));
    }

    #[test]
    fn report_round_trips_through_the_audit_detail() {
        let r = SyncReport {
            started_at: 1,
            finished_at: 2,
            trigger: Trigger::Api,
            ok: false,
            error: Some("directory unreachable".into()),
            unreachable: true,
            counts: SyncCounts {
                created: 3,
                ..SyncCounts::default()
            },
            conflicts: vec!["root".into()],
            warnings: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["trigger"], "api");
        assert_eq!(v["counts"]["created"], 3);
        assert_eq!(serde_json::from_value::<SyncReport>(v).unwrap(), r);
        let minimal = serde_json::json!({
            "started_at": 1, "finished_at": 2, "trigger": "schedule", "ok": true
        });
        let m: SyncReport = serde_json::from_value(minimal).unwrap();
        assert!(m.ok && m.counts == SyncCounts::default());
    }
}
