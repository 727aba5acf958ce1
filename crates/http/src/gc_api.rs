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

use crate::api::{ApiQuery, NotAdmin};
use crate::auth::SystemAdmin as Admin;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_core::gc::{self, rfc3339, GcError, GcMode, GcOptions};
use berth_core::jobs::Jobs;
use berth_core::manage::ManageError;
use berth_core::status::GcRunView;
use serde::Deserialize;
use std::sync::OnceLock;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

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

fn invalid(msg: impl Into<String>) -> ApiError {
    ManageError::Invalid(msg.into()).into()
}

/// A JSON object body, or (unless `required`) an empty body or `null` as `{}`.
async fn body<T: serde::de::DeserializeOwned + Default>(
    req: Request,
    required: bool,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|e| invalid(format!("reading the body: {e}")))?;
    let text = bytes.trim_ascii();
    if text.is_empty() || (!required && text == b"null") {
        return match required {
            true => Err(invalid("a JSON body is required")),
            false => Ok(T::default()),
        };
    }
    // An object only: serde would also read a struct from a JSON array.
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid body: {e}")))?;
    if !value.is_object() {
        return Err(invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| invalid(format!("invalid body: {e}")))
}

/// A duration as the document describes it (`^[0-9]{1,6}(ms|s|m|h|d)?$`): the API takes
/// one number and one unit, not the configuration file's longer forms.
fn duration(text: &str, what: &str) -> Result<Duration, ApiError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &text[digits..];
    if !(1..=6).contains(&digits) || !matches!(unit, "" | "ms" | "s" | "m" | "h" | "d") {
        return Err(invalid(format!(
            "{what}: {text:?} is not a duration such as 90s, 30m, 1h"
        )));
    }
    berth_core::time::parse_duration(text).map_err(|e| invalid(format!("{what}: {e}")))
}

/// A garbage collection run to start; every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunBody {
    dry_run: bool,
    /// `online` (default: the configuration's) or `read-only`.
    #[schema(pattern = "^(online|read-only|readonly)$")]
    mode: Option<String>,
    /// Only what is older than this is collected (`90s`, `30m`, `1h`, `2d`).
    #[schema(pattern = "^[0-9]{1,6}(ms|s|m|h|d)?$")]
    grace: Option<String>,
    verify_storage: bool,
    /// Stop after this long; the next run continues.
    #[schema(pattern = "^[0-9]{1,6}(ms|s|m|h|d)?$")]
    max_duration: Option<String>,
    /// Purge upload sessions idle for this long.
    #[schema(pattern = "^[0-9]{1,6}(ms|s|m|h|d)?$")]
    upload_max_age: Option<String>,
    /// The share of wall time an online run works.
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pace: Option<f64>,
    /// Answer when the run has finished, with its record.
    wait: bool,
}

crate::api::operations! {
    tag = "gc", routes;

    /// Start a garbage collection run now (system administrators).
    post "/api/v0/gc/runs", request_body(content = Option<RunBody>);
    responses(
        (status = 202, description = "Started in the background: {\"started\": true}", body = Object),
        (status = 200, description = "With `wait`: the finished run", body = Object),
        NotAdmin,
        (status = 409, description = "A run holds the lease (CONFLICT)", body = crate::api::ErrorBody),
    );
    fn start_run(_: Admin, State(st): State<AppState>, req: Request) -> Response {
        let b: RunBody = body(req, false).await?;
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
            opts.holder = st.replica.membership.id.clone();
        }
        let registry = st.registry.clone();
        if let Some(holder) = registry.gc_holder().await.map_err(ManageError::from)? {
            return Err(busy(&holder));
        }
        if b.wait {
            return match registry.gc_run(&opts).await {
                Ok(run) => {
                    crate::ops::record_gc(&run);
                    Ok(axum::Json(GcRunView::from(&run)).into_response())
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
            match registry.gc_run(&opts).await {
                Ok(run) => crate::ops::record_gc(&run),
                Err(e) => tracing::warn!(error = %e, "on-demand GC did not run"),
            }
        };
        match jobs {
            Some(jobs) => jobs.spawn(run),
            None => drop(tokio::spawn(run)),
        }
        Ok(crate::api::accepted(serde_json::json!({ "started": true })))
    }

    /// The last runs, newest first, and whether one runs now and who holds it (system
    /// administrators).
    get "/api/v0/gc/runs", params(ListQuery);
    responses(
        (status = 200, description = "`{running, holder, since, read_only_since, runs}`", body = Object),
        NotAdmin,
    );
    fn list_runs(
        _: Admin,
        State(st): State<AppState>,
        ApiQuery(q): ApiQuery<ListQuery>,
    ) -> Response {
        let n = q.n.unwrap_or(20);
        if !(1..=1000).contains(&n) {
            return Err(invalid("n must be 1 to 1000"));
        }
        let runs = st
            .registry
            .gc_last_runs(n)
            .await
            .map_err(ManageError::from)?;
        let state = st.registry.gc_state().await.map_err(ManageError::from)?;
        let mut v = serde_json::to_value(state).map_err(|e| invalid(e.to_string()))?;
        v["runs"] = serde_json::to_value(runs).map_err(|e| invalid(e.to_string()))?;
        Ok(axum::Json(v).into_response())
    }

    /// The schedule every replica follows (system administrators).
    get "/api/v0/gc/schedule";
    responses(
        (status = 200, description = "`{schedule, source: api|config|null, next_run}`", body = Object),
        NotAdmin,
    );
    fn get_schedule(_: Admin, State(st): State<AppState>) -> Response {
        schedule_view(&st).await
    }

    /// Set the schedule (system administrators); the answer is as `GET`'s.
    put "/api/v0/gc/schedule", request_body = ScheduleBody;
    responses(
        (status = 200, description = "`{schedule, source, next_run}`", body = Object),
        NotAdmin,
    );
    fn put_schedule(_: Admin, State(st): State<AppState>, req: Request) -> Response {
        let b: ScheduleBody = body(req, true).await?;
        let schedule = b.schedule.filter(|s| !s.is_empty());
        if let Some(s) = &schedule {
            gc::parse_schedule(s).map_err(|e| invalid(e.to_string()))?;
        }
        st.registry
            .gc_set_schedule(schedule.as_deref())
            .await
            .map_err(ManageError::from)?;
        schedule_view(&st).await
    }
}

fn busy(holder: &str) -> ApiError {
    ManageError::Conflict(format!("a garbage collection run (held by {holder})")).into()
}

/// How many runs to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Default 20, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    n: Option<u32>,
}

async fn schedule_view(st: &AppState) -> Result<Response, ApiError> {
    let from_api = st.registry.gc_schedule().await.map_err(ManageError::from)?;
    let (_, from_config) = configured();
    let (schedule, source) = match (from_api, from_config) {
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

/// A schedule to set.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// A cron expression (`0 3 * * *`: minute hour day-of-month month day-of-week; the
    /// pattern shows the plain form, and steps, ranges, lists and a leading seconds field
    /// are accepted too: `*/30 * * * * *`); null or empty: back to the configuration
    /// file's.
    #[schema(
        nullable,
        pattern = "^$|^(\\*|[0-5]?[0-9]) (\\*|[01]?[0-9]|2[0-3]) (\\*|[1-9]|[12][0-9]|3[01]) (\\*|[1-9]|1[0-2]) (\\*|[0-7])$"
    )]
    schedule: Option<String>,
}
