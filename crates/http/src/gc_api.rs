//! `/api/v0/gc/...`: garbage collection for system administrators: run it now (in the
//! background, or waiting for the outcome), list the last runs (and whether one is
//! running, and who holds it), read and set the schedule (a cron expression stored in the
//! metadata store, so every replica follows it; it overrides the configuration file's).
//!
//! - `POST /api/v0/gc/runs` body (every field optional) `{"dry_run": bool, "mode":
//!   "online"|"read-only", "grace": "1h", "verify_storage": bool, "max_duration": "30m",
//!   "upload_max_age": "24h", "pace": 0.5, "wait": bool}` (`pace`: the share of wall time
//!   an online run works, in (0, 1]; the configured `gc.pace` when absent): 202 `{"started": true}`, or with `wait` 200 and the run record; 409
//!   `CONFLICT` when a run holds the lease.
//! - `GET /api/v0/gc/runs?n=20`: `{"running", "holder", "since", "read_only_since", "runs"}`.
//! - `GET /api/v0/gc/schedule`: `{"schedule", "source": "api"|"config"|null, "next_run"}`.
//! - `PUT /api/v0/gc/schedule` body `{"schedule": "0 3 * * *" | null}` (null: back to the
//!   configuration's): 200 with the same body as GET.

use crate::auth::SystemAdmin as Admin;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_core::gc::{self, rfc3339, GcError, GcMode, GcOptions};
use berth_core::jobs::Jobs;
use berth_core::manage::ManageError;
use serde::Deserialize;
use std::sync::OnceLock;
use std::time::Duration;

/// What `berth serve` configured: the options of on-demand runs and the configuration's
/// schedule.
struct Configured {
    options: GcOptions,
    schedule: Option<String>,
    /// Where background runs go, so that shutdown cancels and waits for them.
    jobs: Jobs,
}

static CONFIGURED: OnceLock<Configured> = OnceLock::new();

/// Sets the options of on-demand runs (grace, mode, limits, this replica as holder) and
/// the configuration file's schedule; once per process (later calls are ignored). Without
/// it, runs use [`GcOptions::default`] and background runs are plain tasks.
pub fn configure(options: GcOptions, schedule: Option<String>, jobs: Jobs) {
    let _ = CONFIGURED.set(Configured {
        options,
        schedule,
        jobs,
    });
}

fn configured() -> (GcOptions, Option<String>) {
    match CONFIGURED.get() {
        Some(c) => (c.options.clone(), c.schedule.clone()),
        None => (GcOptions::default(), None),
    }
}

/// The GC routes, merged into the application router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v0/gc/runs", get(list_runs).post(start_run))
        .route("/api/v0/gc/schedule", get(get_schedule).put(put_schedule))
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ManageError::Invalid(msg.into()).into()
}

/// A JSON object body, or an empty body as `{}`.
async fn body<T: serde::de::DeserializeOwned + Default>(req: Request) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|e| invalid(format!("reading the body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid body: {e}")))
}

fn duration(text: &str, what: &str) -> Result<Duration, ApiError> {
    berth_core::time::parse_duration(text).map_err(|e| invalid(format!("{what}: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RunBody {
    dry_run: bool,
    mode: Option<String>,
    grace: Option<String>,
    verify_storage: bool,
    max_duration: Option<String>,
    upload_max_age: Option<String>,
    pace: Option<f64>,
    wait: bool,
}

async fn start_run(
    _: Admin,
    State(st): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let b: RunBody = body(req).await?;
    let (mut opts, _) = configured();
    if let Some(m) = &b.mode {
        opts.mode = m.parse::<GcMode>().map_err(invalid)?;
    }
    if let Some(g) = &b.grace {
        opts.grace = duration(g, "grace")?;
    }
    if let Some(m) = &b.max_duration {
        opts.max_duration = Some(duration(m, "max_duration")?);
    }
    if let Some(a) = &b.upload_max_age {
        opts.upload_max_age = duration(a, "upload_max_age")?;
    }
    if let Some(p) = b.pace {
        opts.pace = gc::check_pace(p).map_err(|e| invalid(format!("pace: {e}")))?;
    }
    opts.dry_run = b.dry_run;
    opts.verify_storage = b.verify_storage;
    opts.started_by = "api".into();
    if opts.holder.is_empty() || opts.holder == GcOptions::default().holder {
        opts.holder = st.replica.id.clone();
    }
    let meta = st.registry.meta().clone();
    let blobs = st.registry.blobs().clone();
    if let Some(l) = meta
        .lease(gc::LEASE)
        .await
        .map_err(ManageError::from)?
        .filter(|l| l.expires_at > gc::now_ms())
    {
        return Err(busy(&l.holder));
    }
    if b.wait {
        return match gc::run(meta, blobs, &opts).await {
            Ok(outcome) => {
                crate::ops::record_gc(&outcome.run);
                Ok(axum::Json(outcome.run).into_response())
            }
            Err(GcError::Busy(h)) => Err(busy(&h)),
            Err(e) => Err(invalid(e.to_string())),
        };
    }
    let jobs = CONFIGURED.get().map(|c| c.jobs.clone());
    if let Some(jobs) = &jobs {
        opts.cancel = jobs.token();
    }
    let run = async move {
        match gc::run(meta, blobs, &opts).await {
            Ok(outcome) => crate::ops::record_gc(&outcome.run),
            Err(e) => tracing::warn!(error = %e, "on-demand GC did not run"),
        }
    };
    match jobs {
        Some(jobs) => jobs.spawn(run),
        None => drop(tokio::spawn(run)),
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "started": true })),
    )
        .into_response())
}

fn busy(holder: &str) -> ApiError {
    ManageError::Conflict(format!("a garbage collection run (held by {holder})")).into()
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    n: Option<u32>,
}

async fn list_runs(
    _: Admin,
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let meta = st.registry.meta();
    let runs = meta
        .gc_runs(q.n.unwrap_or(20).clamp(1, 1000))
        .await
        .map_err(ManageError::from)?;
    let lease = meta.lease(gc::LEASE).await.map_err(ManageError::from)?;
    let settings = meta.gc_settings().await.map_err(ManageError::from)?;
    let running = lease.filter(|l| l.expires_at > gc::now_ms());
    Ok(axum::Json(serde_json::json!({
        "running": running.is_some(),
        "holder": running.as_ref().map(|l| l.holder.clone()),
        "since": running.as_ref().map(|l| rfc3339(l.acquired_at)),
        "read_only_since": settings.read_only_since.map(rfc3339),
        "runs": runs,
    }))
    .into_response())
}

async fn schedule_view(st: &AppState) -> Result<Response, ApiError> {
    let settings = st
        .registry
        .meta()
        .gc_settings()
        .await
        .map_err(ManageError::from)?;
    let (_, from_config) = configured();
    let (schedule, source) = match (settings.schedule, from_config) {
        (Some(s), _) => (Some(s), Some("api")),
        (None, Some(c)) => (Some(c), Some("config")),
        (None, None) => (None, None),
    };
    let next = schedule
        .as_deref()
        .and_then(|s| gc::next_fire(s, gc::now_ms()).ok().flatten())
        .map(rfc3339);
    Ok(axum::Json(serde_json::json!({
        "schedule": schedule,
        "source": source,
        "next_run": next,
    }))
    .into_response())
}

async fn get_schedule(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    schedule_view(&st).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    schedule: Option<String>,
}

async fn put_schedule(
    _: Admin,
    State(st): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let b: ScheduleBody = body(req).await?;
    let schedule = b.schedule.filter(|s| !s.trim().is_empty());
    if let Some(s) = &schedule {
        gc::parse_schedule(s).map_err(|e| invalid(e.to_string()))?;
    }
    st.registry
        .meta()
        .gc_set_schedule(schedule.as_deref())
        .await
        .map_err(ManageError::from)?;
    schedule_view(&st).await
}
