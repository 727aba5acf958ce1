//! The http crate's integration tests, one test binary: every request goes through the real
//! router over the real core and real stores. The shared world (an organisation, public and
//! private repositories, a caller of every kind) is `berth-testkit`'s, given [`app`].

mod api;
mod api_v0;
mod auth_attacks;
mod trust;
mod v2_matrix;

use berth_core::{Access, Registry};
use berth_http::{router, server::Counters, AppState, ReplicaInfo};
use std::sync::Arc;
use std::time::Instant;

/// The router `berth serve` puts over a registry and its access service (no token realm).
pub fn app(registry: Arc<Registry>, access: Arc<Access>) -> axum::Router {
    let trust = berth_core::trust::Trust::new(
        registry.meta().clone(),
        berth_core::Kek::generate(),
        vec!["registry.test".into()],
    );
    let policies =
        berth_core::policy::Policies::new(registry.meta().clone(), access.identity().clone());
    router(AppState {
        registry,
        access,
        realm: None,
        replica: Arc::new(ReplicaInfo {
            membership: Arc::new(berth_core::cluster::Membership {
                id: "test".into(),
                address: "registry.test".into(),
                version: "0".into(),
                started_at: 0,
                heartbeat: std::time::Duration::from_secs(5),
                missed: 3,
                expected: 1,
            }),
            started: Instant::now(),
        }),
        counters: Arc::new(Counters::default()),
        trust: Arc::new(trust),
        policies: Arc::new(policies),
    })
}
