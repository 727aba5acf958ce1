//! Berth's HTTP surface.
//!
//! - [`auth`]: credentials, the Bearer challenge, each endpoint's access check, and the
//!   token endpoint of the Docker token protocol.
//! - [`endpoint`]: `/v2/...` paths parsed into the closed [`endpoint::Endpoint`] enum
//!   (repository names contain `/`, so the path is parsed here, not by a router).
//! - [`v2`]: the distribution API handlers, one per endpoint.
//! - [`error`]: the ONLY place a domain error becomes a status code and an OCI error body.
//! - [`api`]: `/api/v0`, the JSON management API and its OpenAPI document.
//! - [`gc_api`]: `/api/v0/gc/...`, garbage collection runs and schedule (system admins).
//! - [`ops`]: `/health`, `/nginx_status`, `/metrics`, `/api/v0/meta/cluster_status`.
//! - [`server`]: the listener (plain or rustls), connection counting, graceful shutdown.
//! - [`trace`]: the request id (`X-Request-Id`) and the span every request's log lines
//!   carry.
//!
//! This crate never names a database or an object store: it holds a
//! [`berth_core::Registry`] and the trait objects it was given.

pub mod api;
pub mod auth;
pub mod endpoint;
pub mod error;
pub mod gc_api;
pub mod ops;
pub mod server;
pub mod trace;
pub mod trust;
pub mod v2;

use axum::routing::get;
use axum::Router;
use berth_core::{Access, Registry};
use std::sync::Arc;
use std::time::Instant;

/// This replica, for health and cluster status: how it announces itself to the others
/// (id, address, version, heartbeat) and when it started.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    pub membership: Arc<berth_core::cluster::Membership>,
    pub started: Instant,
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Authentication, authorisation, tokens, audit.
    pub access: Arc<Access>,
    /// The token endpoint's public URL; `None`: derived from each request's `Host`.
    pub realm: Option<Arc<str>>,
    pub replica: Arc<ReplicaInfo>,
    pub counters: Arc<server::Counters>,
    /// Docker Content Trust (the Notary routes under `/v2/<gun>/_trust/`).
    pub trust: Arc<berth_core::trust::Trust>,
    /// Signature policies, applied to every manifest GET and HEAD.
    pub policies: Arc<berth_core::policy::Policies>,
}

/// The whole application: `/v2`, operations endpoints, and the middleware every request
/// passes (request id and span, [`trace`]; metrics).
pub fn router(state: AppState) -> Router {
    ops::prometheus();
    Router::new()
        .route("/health", get(ops::health))
        .route("/nginx_status", get(ops::nginx_status))
        .route("/metrics", get(ops::metrics))
        .route("/auth/token", get(auth::token).post(auth::token))
        .route("/v2", axum::routing::any(v2::handle))
        .route("/v2/", axum::routing::any(v2::handle))
        .route("/v2/{*rest}", axum::routing::any(v2::handle))
        .merge(api::routes().into_router())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::observe,
        ))
        .with_state(state)
}

#[cfg(test)]
mod boundary_tests;
