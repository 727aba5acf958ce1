//! Operations endpoints and request observation: `/health`, `/nginx_status` (NGINX
//! stub_status text from Berth's own counters), Prometheus `/metrics`, and this replica's
//! `/api/v0/meta/cluster_status`. Garbage collection's metrics are recorded here
//! ([`record_gc`]) from each run's record.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_core::status::StoreHealth;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Instant;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several apps in one test process):
        // then this handle still renders whatever reaches it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often [`upkeep_job`] runs.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder's upkeep, a job of every process that serves: histogram samples are kept
/// in a growing list until they are folded into their buckets, which a scrape of
/// `/metrics` or this job does, so without it memory would grow with every request
/// between scrapes (and forever where nothing scrapes).
pub fn upkeep_job() -> berth_core::jobs::Job {
    berth_core::jobs::Job::new("metrics-upkeep", UPKEEP_EVERY, |_| async {
        prometheus().run_upkeep()
    })
}

/// The `route` label of a `/v2` request: its endpoint's name, which [`crate::v2::handle`]
/// parses from the path anyway and leaves in the response's extensions (and on the span).
#[derive(Debug, Clone, Copy)]
pub struct V2Route(pub &'static str);

/// The `route` label: the `/v2` endpoint's name (`None` here: [`V2Route`] tells it once
/// the response is made), the router's pattern for every other route
/// (`/api/v0/users/{user}`), `not_found` for a path no route matches. Every value comes
/// from the code, never from the request, so the number of series is bounded.
fn route_label(req: &Request) -> Option<std::borrow::Cow<'static, str>> {
    let path = req.uri().path();
    if path == "/v2" || path.starts_with("/v2/") {
        return None;
    }
    Some(match req.extensions().get::<MatchedPath>() {
        Some(m) => match m.as_str() {
            "/health" => "health".into(),
            "/nginx_status" => "nginx_status".into(),
            "/metrics" => "metrics".into(),
            "/api/v0/meta/cluster_status" => "cluster_status".into(),
            // A pattern of the router (a closed set): `/api/v0/orgs/{org}/teams`.
            pattern => pattern.to_owned().into(),
        },
        None => "not_found".into(),
    })
}

/// The `method` label: the methods some route serves, `other` for any other name (a
/// client may send any token as a method).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The `status` label: the code when it is one HTTP defines, `other` otherwise (a status
/// is 100-999 in hyper; only the registered ones name a series). Each label is made once.
fn status_label(s: StatusCode) -> &'static str {
    static LABELS: [OnceLock<&'static str>; 1000] = [const { OnceLock::new() }; 1000];
    match LABELS.get(usize::from(s.as_u16())) {
        Some(l) if s.canonical_reason().is_some() => {
            l.get_or_init(|| Box::leak(s.as_str().to_owned().into_boxed_str()))
        }
        _ => "other",
    }
}

fn content_length(h: &axum::http::HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Middleware: counts every request for `/nginx_status` and records Prometheus metrics.
pub async fn observe(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = crate::trace::request_id(req.headers());
    req.headers_mut()
        .insert(crate::trace::REQUEST_ID, id.clone());
    let route = route_label(&req);
    let span = crate::trace::span(&id, req.method(), route.as_deref());
    let method = method_label(req.method());
    let bytes_in = content_length(req.headers());
    st.counters.requests.fetch_add(1, Ordering::Relaxed);
    st.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    st.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    resp.headers_mut().insert(crate::trace::REQUEST_ID, id);
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "request done"
        )
    });
    let route = route
        .or_else(|| resp.extensions().get::<V2Route>().map(|r| r.0.into()))
        .unwrap_or("v2_invalid".into());
    let status = status_label(resp.status());
    let bytes_out = content_length(resp.headers());
    Series::record((route, method, status), |s| {
        s.requests.increment(1);
        s.duration.record(start.elapsed().as_secs_f64());
        s.bytes_in.increment(bytes_in);
        s.bytes_out.increment(bytes_out);
    });
    resp
}

/// The request metrics of one route, method and status.
struct Series {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

type SeriesKey = (std::borrow::Cow<'static, str>, &'static str, &'static str);

thread_local! {
    /// The handles, looked up once per thread and series: a lookup builds and hashes the
    /// key, which every request would otherwise pay four times. The labels come from
    /// closed sets, so this stays small.
    static SERIES: std::cell::RefCell<std::collections::HashMap<SeriesKey, Series>> =
        Default::default();
}

impl Series {
    fn record(key: SeriesKey, f: impl FnOnce(&Series)) {
        SERIES.with(|m| {
            let mut m = m.borrow_mut();
            let s = m.entry(key).or_insert_with_key(|(route, method, status)| Series {
                requests: metrics::counter!("berth_http_requests_total", "route" => route.clone(), "method" => *method, "status" => *status),
                duration: metrics::histogram!("berth_http_request_duration_seconds", "route" => route.clone()),
                bytes_in: metrics::counter!("berth_http_request_bytes_total", "route" => route.clone()),
                bytes_out: metrics::counter!("berth_http_response_bytes_total", "route" => route.clone()),
            });
            f(s)
        })
    }
}

/// `/health`: 200 when both stores answer, 503 naming the failing component otherwise.
pub async fn health(State(st): State<AppState>) -> Response {
    let (meta, blobs) = st.registry.stores_health().await;
    let comp = |h: &StoreHealth| match &h.error {
        None => serde_json::json!({ "kind": h.kind, "healthy": true }),
        Some(e) => serde_json::json!({ "kind": h.kind, "healthy": false, "error": e }),
    };
    let ok = meta.healthy() && blobs.healthy();
    let mut failing = vec![];
    if !meta.healthy() {
        failing.push("metadata");
    }
    if !blobs.healthy() {
        failing.push("blobs");
    }
    let mut body = serde_json::json!({
        "healthy": ok,
        "failing": failing,
        "components": {
            "metadata": comp(&meta),
            "blobs": comp(&blobs),
        }
    });
    // The directory is listed, and named in `failing`, but does not make the replica 503:
    // pulls, tokens and cached directory logins still work, and every replica shares the
    // same directory, so a load balancer would take them all out at once.
    if let Some(dir) = directory_status(&st) {
        if dir["healthy"] == false {
            body["failing"]
                .as_array_mut()
                .expect("failing is an array")
                .push("directory".into());
        }
        body["components"]["directory"] = dir;
    }
    // Trust is listed the same way: a replica whose key-encryption key opens no key
    // still serves everything else.
    let trust = trust_status(&st, meta.healthy()).await;
    if trust["healthy"] == false && meta.healthy() {
        body["failing"]
            .as_array_mut()
            .expect("failing is an array")
            .push("trust".into());
    }
    body["components"]["trust"] = trust;
    crate::error::health_response(ok, body)
}

/// The trust service on this replica (`Trust::check`); when the metadata store fails,
/// that is the cause, said once (under `metadata`).
async fn trust_status(st: &AppState, meta_healthy: bool) -> serde_json::Value {
    let error = if meta_healthy {
        st.trust.check().await.err()
    } else {
        Some("the metadata store, which holds the trust data, is failing".to_string())
    };
    serde_json::json!({ "kind": "notary", "healthy": error.is_none(), "error": error })
}

/// The directory's status from its last contact (logins, syncs, the periodic check of
/// `berth serve`); `None` without a configured directory.
fn directory_status(st: &AppState) -> Option<serde_json::Value> {
    let status = st.access.directory()?.status();
    Some(serde_json::json!({
        "kind": "ldap",
        "healthy": status.healthy,
        "error": status.error,
        "checked_at": status.checked_at,
    }))
}

/// `/nginx_status`: NGINX's stub_status format.
pub async fn nginx_status(State(st): State<AppState>) -> Response {
    let c = &st.counters;
    let active = c.active.load(Ordering::Relaxed);
    let accepts = c.accepts.load(Ordering::Relaxed);
    let requests = c.requests.load(Ordering::Relaxed);
    let writing = c.in_flight.load(Ordering::Relaxed);
    let waiting = active.saturating_sub(writing);
    let text = format!(
        "Active connections: {active} \nserver accepts handled requests\n {accepts} {accepts} {requests} \nReading: 0 Writing: {writing} Waiting: {waiting} \n"
    );
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// `/metrics`: Prometheus text exposition.
pub async fn metrics(State(st): State<AppState>) -> Response {
    metrics::gauge!("berth_connections_active")
        .set(st.counters.active.load(Ordering::Relaxed) as f64);
    if let Ok(n) = st.registry.open_uploads().await {
        metrics::gauge!("berth_upload_sessions_open").set(n as f64);
    }
    if let Ok(holder) = st.registry.gc_holder().await {
        let running = holder.is_some();
        metrics::gauge!("berth_gc_running").set(if running { 1.0 } else { 0.0 });
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

/// Counts a finished GC run (this process ran it): `berth_gc_runs_total` by status and
/// mode, what it deleted and the bytes it reclaimed, and its duration.
pub fn record_gc(run: &berth_meta::GcRun) {
    // The record's strings, mapped onto the values GC writes (a record is data: it could
    // hold anything).
    let status = match run.status.as_str() {
        "running" => "running",
        "finished" => "finished",
        "stopped" => "stopped",
        "failed" => "failed",
        "interrupted" => "interrupted",
        _ => "other",
    };
    let mode = match run.mode.as_str() {
        "online" => "online",
        "read-only" => "read-only",
        _ => "other",
    };
    metrics::counter!("berth_gc_runs_total", "status" => status, "mode" => mode).increment(1);
    if run.dry_run {
        return;
    }
    metrics::counter!("berth_gc_reclaimed_bytes_total")
        .increment(run.blob_bytes + run.orphan_bytes);
    metrics::counter!("berth_gc_blobs_deleted_total")
        .increment(run.blobs_deleted + run.orphans_deleted);
    metrics::counter!("berth_gc_manifests_deleted_total").increment(run.manifests_deleted);
    metrics::counter!("berth_gc_uploads_purged_total").increment(run.uploads_purged);
    if let Some(end) = run.finished_at {
        metrics::gauge!("berth_gc_last_run_duration").set((end - run.started_at) as f64 / 1000.0);
        metrics::gauge!("berth_gc_last_run_timestamp").set(end as f64 / 1000.0);
    }
}

/// Whether GC runs (the lease), who holds it, the read-only flag and the last run.
async fn gc_status(st: &AppState) -> serde_json::Value {
    let (state, runs) = tokio::join!(st.registry.gc_state(), st.registry.gc_last_runs(1));
    let mut v = match state {
        Ok(s) => serde_json::to_value(s).unwrap_or_default(),
        Err(_) => serde_json::json!({
            "running": false, "holder": null, "since": null, "read_only_since": null,
        }),
    };
    v["last_run"] = runs
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or_default();
    v
}

/// `/api/v0/meta/cluster_status`: every replica registered in the metadata store (this one
/// first, with the stores' health and latency as it measures them), the current issues,
/// the job leases and garbage collection; for system administrators (it names store
/// endpoints and their errors).
#[utoipa::path(
    get, path = "/api/v0/meta/cluster_status", tag = "meta",
    responses(
        (status = 200, description = "`{replicas: [{id, address, version, started_at, last_heartbeat, healthy, read_only, leases}], healthy_replicas, expected_replicas, issues: [{critical, description}], this_replica, leases, gc}`; the first replica (this one) also has `uptime_seconds`, `stores: {metadata, blobs: {kind, healthy, error, latency_ms}}`, `trust` and `directory`", body = Object),
        (status = 403, description = "Not a system administrator (DENIED)", body = crate::api::ErrorBody),
    )
)]
pub async fn cluster_status(
    State(st): State<AppState>,
    _admin: crate::auth::SystemAdmin,
) -> Response {
    let (meta, blobs) = st.registry.stores_health().await;
    let gc = gc_status(&st).await;
    let r = &st.replica;
    let store = |h: &StoreHealth| {
        serde_json::json!({
            "kind": h.kind, "healthy": h.healthy(), "error": h.error,
            "latency_ms": h.latency.as_secs_f64() * 1000.0,
        })
    };
    // The replicas and leases are in the metadata store: when that fails, this replica
    // alone is listed, and the stores' entry says why.
    let leases = st.registry.job_leases().await.unwrap_or_default();
    let stores = [("metadata", &meta), ("blobs", &blobs)];
    let cluster = r.membership.view(&st.registry, &leases, &stores).await.ok();
    let mut body = match &cluster {
        Some(c) => serde_json::json!({
            "replicas": c.replicas,
            "healthy_replicas": c.healthy_replicas,
            "expected_replicas": c.expected_replicas,
            "issues": c.issues,
        }),
        None => serde_json::json!({
            "replicas": [{
                "id": r.membership.id,
                "address": r.membership.address,
                "version": r.membership.version,
                "healthy": false,
            }],
            "issues": [{
                "critical": true,
                "description": format!("the metadata store fails: {}", meta.error.clone().unwrap_or_default()),
            }],
        }),
    };
    body["this_replica"] = r.membership.id.clone().into();
    body["leases"] = serde_json::to_value(&leases).unwrap_or_default();
    body["gc"] = gc;
    let me = &mut body["replicas"][0];
    me["uptime_seconds"] = r.started.elapsed().as_secs().into();
    me["stores"] = serde_json::json!({ "metadata": store(&meta), "blobs": store(&blobs) });
    if let Some(dir) = directory_status(&st) {
        me["directory"] = dir;
    }
    body["replicas"][0]["trust"] = trust_status(&st, meta.healthy()).await;
    axum::Json(body).into_response()
}
