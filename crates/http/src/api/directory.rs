//! The company directory (LDAP / Active Directory): the configured settings, with the
//! bind password redacted.

use super::Who;
use crate::error::{codes, ApiError};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_core::manage::Manage;

/// The directory settings (system administrators). The bind password is `<redacted>`
/// when set, null otherwise.
#[utoipa::path(
    get, path = "/api/v0/directory/settings", tag = "directory",
    responses(
        (status = 200, description = "The settings as configured (see docs/configuration.md)", body = Object),
        (status = 403, description = "Not a system administrator (DENIED)", body = super::ErrorBody),
        (status = 404, description = "No directory is configured (NOT_FOUND)", body = super::ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn settings(
    State(st): State<AppState>,
    Who(c): Who,
) -> Result<Json<serde_json::Value>, ApiError> {
    match Manage::new(&st.access).directory_settings(&c).await? {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::coded(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "no directory is configured",
        )),
    }
}
