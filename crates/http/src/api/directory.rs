//! The company directory (LDAP / Active Directory): the configured settings, with the
//! bind password redacted, and directory sync runs (run one now, list the last ones).

use super::{time, Answer, Api, ApiQuery, NoDirectory, NotAdmin};
use crate::error::ApiError;
use axum::Json;
use berth_core::directory_sync::{SyncReport, Trigger};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

super::operations! {
    tag = "directory", routes;

    /// The directory settings (system administrators). The bind password is `<redacted>`
    /// when set, null otherwise.
    get "/api/v0/directory/settings";
    responses(
        (status = 200, description = "The settings as configured (see docs/configuration.md)", body = Object),
        NotAdmin, NoDirectory,
    );
    fn settings(api: Api) -> Json<serde_json::Value> {
        configured(api.m().directory_settings(&api.c).await?)
    }

    /// Run a directory sync now (system administrators). The run is also recorded (audit
    /// action `directory.sync`); a failed run (`ok: false`) changed nothing or, if it failed
    /// while applying, a prefix of the plan.
    post "/api/v0/directory/sync-runs";
    responses(
        (status = 200, description = "The run's report", body = SyncReportOut),
        NotAdmin, NoDirectory,
    );
    fn sync_run(api: Api) -> Json<SyncReportOut> {
        configured(api.m().directory_sync(&api.c).await?)
    }

    /// The last directory sync runs, newest first (system administrators).
    get "/api/v0/directory/sync-runs", params(RunsQuery);
    responses((status = 200, description = "Runs, newest first", body = Vec<SyncRunOut>), NotAdmin);
    fn sync_runs(api: Api, ApiQuery(q): ApiQuery<RunsQuery>) -> Json<Vec<SyncRunOut>> {
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

/// `200 OK` with the wire view of `v`, or 404 when no directory is configured (`None`).
fn configured<V, T: Into<V>>(v: Option<T>) -> Answer<Json<V>> {
    v.map(|v| Json(v.into())).ok_or_else(ApiError::no_directory)
}
