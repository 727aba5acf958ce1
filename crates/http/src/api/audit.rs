//! The audit log: newest first, paged by event id, filtered by actor, action, time and
//! target prefix. System administrators read every event; everyone else only their own.

use super::{time, Api, ApiQuery};
use axum::Json;
use berth_core::manage::AuditQuery;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// Which events to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Events caused by this user (non-administrators: only themselves).
    #[param(max_length = 64, pattern = "^[a-z0-9]+([._-][a-z0-9]+)*$")]
    pub actor: Option<String>,
    /// Exact action, such as `repo.create`, `grant.set`, `org.member.set`, `login.failure`.
    #[param(max_length = 1024)]
    pub action: Option<String>,
    /// Unix milliseconds, inclusive.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Unix milliseconds, exclusive.
    #[param(minimum = 0)]
    pub until: Option<i64>,
    /// Targets starting with this, compared literally.
    #[param(max_length = 1024)]
    pub target_prefix: Option<String>,
    /// The `next` of the previous page: events with a smaller id.
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub n: Option<u32>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// The acting user's name, when known.
    #[schema(nullable)]
    pub actor: Option<String>,
    /// The caller's address.
    #[schema(nullable)]
    pub source: Option<String>,
    pub action: String,
    pub target: String,
    /// Further structured detail.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditOut>,
    /// Pass as `before` for the next page; null on the last page.
    #[schema(nullable)]
    pub next: Option<i64>,
}

super::operations! {
    tag = "audit", routes;

    /// Read the audit log (any authenticated caller: system administrators see every event,
    /// others only the events they caused).
    get "/api/v0/audit", params(AuditParams);
    responses(
        (status = 200, description = "Events, newest first", body = AuditPage),
        (status = 403, description = "A non-administrator asked for another user's events (DENIED)", body = super::ErrorBody),
    );
    fn query(api: Api, ApiQuery(p): ApiQuery<AuditParams>) -> Json<AuditPage> {
        let m = api.m();
        let page = m
            .audit_query(
                &api.c,
                AuditQuery {
                    actor: p.actor,
                    action: p.action.filter(|a| !a.is_empty()),
                    since: p.since,
                    until: p.until,
                    target_prefix: p.target_prefix.filter(|t| !t.is_empty()),
                    before: p.before,
                    n: p.n.unwrap_or(100),
                },
            )
            .await?;
        let mut names: HashMap<i64, Option<String>> = HashMap::new();
        let mut items = Vec::with_capacity(page.items.len());
        for e in page.items {
            let actor = match e.actor {
                Some(id) => match names.get(&id) {
                    Some(n) => n.clone(),
                    None => {
                        let n = m.account_name(id).await;
                        names.insert(id, n.clone());
                        n
                    }
                },
                None => None,
            };
            let actor = actor.or_else(|| {
                e.detail
                    .get("actor_name")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
            items.push(AuditOut {
                id: e.id,
                at: time(e.at),
                actor,
                source: e.source,
                action: e.action,
                target: e.target,
                detail: e.detail,
            });
        }
        Ok(Json(AuditPage {
            items,
            next: page.next,
        }))
    }
}
