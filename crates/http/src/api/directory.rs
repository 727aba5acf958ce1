//! The company directory (LDAP / Active Directory): the configured settings, with the
//! bind password redacted, and directory sync runs (run one now, list the last ones).

use super::{time, Api, ApiQuery};
use crate::error::ApiError;
use axum::Json;
use berth_core::directory_sync::{SyncReport, Trigger};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The directory settings (system administrators). The bind password is `<redacted>`
/// when set, null otherwise.
#[utoipa::path(
    get, path = "/api/v0/directory/settings", tag = "directory",
    responses(
        (status = 200, description = "The settings as configured (see docs/configuration.md)", body = Object),
        (status = 403, description = "Not a system administrator (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No directory is configured (NOT_FOUND)", body = super::ErrorBody),
    )
)]
pub async fn settings(api: Api) -> Result<Json<serde_json::Value>, ApiError> {
    match api.m().directory_settings(&api.c).await? {
        Some(v) => Ok(Json(v)),
        None => Err(no_directory()),
    }
}

/// How many changes a sync run made.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncCountsOut {
    pub created: u64,
    pub deactivated: u64,
    pub reactivated: u64,
    pub memberships_added: u64,
    pub memberships_removed: u64,
    pub tokens_revoked: u64,
    pub teams_created: u64,
    pub conflicts: u64,
}

/// The outcome of one directory sync run.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncReportOut {
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// `schedule`, `command` or `api`.
    pub trigger: String,
    /// Whether the whole plan was read and applied.
    pub ok: bool,
    /// Why the run failed, when it did.
    #[schema(nullable)]
    pub error: Option<String>,
    /// The directory could not be reached (nothing was changed).
    pub unreachable: bool,
    pub counts: SyncCountsOut,
    /// Directory usernames that are local accounts in Berth (left alone).
    pub conflicts: Vec<String>,
    /// Changes that could not be made.
    pub warnings: Vec<String>,
}

/// A recorded sync run.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncRunOut {
    /// The audit event's id.
    pub id: i64,
    /// Who asked for it (null for the schedule and the command line).
    #[schema(nullable)]
    pub actor: Option<String>,
    pub report: SyncReportOut,
}

impl From<SyncReport> for SyncReportOut {
    fn from(r: SyncReport) -> SyncReportOut {
        SyncReportOut {
            started_at: time(r.started_at),
            finished_at: time(r.finished_at),
            trigger: match r.trigger {
                Trigger::Schedule => "schedule",
                Trigger::Command => "command",
                Trigger::Api => "api",
            }
            .into(),
            ok: r.ok,
            error: r.error,
            unreachable: r.unreachable,
            counts: SyncCountsOut {
                created: r.counts.created,
                deactivated: r.counts.deactivated,
                reactivated: r.counts.reactivated,
                memberships_added: r.counts.memberships_added,
                memberships_removed: r.counts.memberships_removed,
                tokens_revoked: r.counts.tokens_revoked,
                teams_created: r.counts.teams_created,
                conflicts: r.counts.conflicts,
            },
            conflicts: r.conflicts,
            warnings: r.warnings,
        }
    }
}

/// How many runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// At most this many, newest first (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub n: Option<u32>,
}

/// Run a directory sync now (system administrators). The run is also recorded (audit
/// action `directory.sync`); a failed run (`ok: false`) changed nothing or, if it failed
/// while applying, a prefix of the plan.
#[utoipa::path(
    post, path = "/api/v0/directory/sync-runs", tag = "directory",
    responses(
        (status = 200, description = "The run's report", body = SyncReportOut),
        (status = 403, description = "Not a system administrator (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No directory is configured (NOT_FOUND)", body = super::ErrorBody),
    )
)]
pub async fn sync_run(api: Api) -> Result<Json<SyncReportOut>, ApiError> {
    match api.m().directory_sync(&api.c).await? {
        Some(r) => Ok(Json(r.into())),
        None => Err(no_directory()),
    }
}

/// The last directory sync runs, newest first (system administrators).
#[utoipa::path(
    get, path = "/api/v0/directory/sync-runs", tag = "directory", params(RunsQuery),
    responses(
        (status = 200, description = "Runs, newest first", body = Vec<SyncRunOut>),
        (status = 403, description = "Not a system administrator (DENIED)", body = super::ErrorBody),
    )
)]
pub async fn sync_runs(
    api: Api,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Json<Vec<SyncRunOut>>, ApiError> {
    let m = api.m();
    let runs = m.directory_sync_runs(&api.c, q.n.unwrap_or(20)).await?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let actor = match r.actor {
            Some(id) => m.account_name(id).await,
            None => None,
        };
        out.push(SyncRunOut {
            id: r.id,
            actor,
            report: r.report.into(),
        });
    }
    Ok(Json(out))
}

fn no_directory() -> ApiError {
    ApiError::no_directory()
}
