//! The one place where errors become HTTP: a status code, an OCI error code, a message a
//! person can act on, and the headers some errors carry. Errors nobody expected are logged
//! here once and answered with 500 and no internal detail.

use crate::endpoint::PathError;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::rbac::Permission;
use berth_core::manage::ManageError;
use berth_core::trust::TrustError;
use berth_core::{AccessError, CoreError, Verdict};
use berth_oci::{ErrorCode, NameError, RepoName};

/// An error on its way to the wire.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The wire code: an [`ErrorCode`] on `/v2`; on `/api/v0` also the management codes
    /// of [`ManageError`].
    pub code: &'static str,
    pub message: String,
    /// The error's `detail` (Notary's typed validation errors); `null` when `None`.
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    // Private: every status is chosen in this module, by the conversions and the named
    // constructors below.
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::coded(status, code.as_str(), message)
    }
    /// An error with a code outside the distribution spec's (management API only).
    fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: vec![],
        }
    }
    pub fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// 401 `UNAUTHORIZED`: credentials missing, malformed or refused (the caller adds the
    /// challenge header).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// The answer to a `/v2` request the access decision refused, for an authenticated
    /// caller (an anonymous one gets a challenge instead). A refused write (push, delete)
    /// is 403 `DENIED` whether or not the repository exists and whether or not the caller
    /// may see it, so the answer tells nothing about the repository; a refused read of a
    /// repository the caller may not see is 404 `NAME_UNKNOWN`, exactly as a missing one.
    pub fn refused(verdict: Verdict, perm: Permission, repo: &RepoName) -> ApiError {
        match (verdict, perm) {
            (Verdict::Invisible, Permission::Pull) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown,
                format!("repository {repo} not known to registry"),
            ),
            _ => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Denied,
                format!(
                    "requested access to the resource is denied: {} on {repo}",
                    perm.as_str()
                ),
            ),
        }
    }

    /// 400 `UNSUPPORTED`: a request that is malformed in a way no other code names (a
    /// token request, a page size).
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
    }

    /// 405 `UNSUPPORTED`: a known path with a method it does not take; `allow` lists the
    /// ones it takes (the `Allow` header RFC 9110 requires).
    pub fn method_not_allowed(allow: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        )
        .with_header(header::ALLOW, allow.to_string())
    }

    /// 400 `DIGEST_INVALID`: a digest parameter that is missing or malformed.
    pub fn digest_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, message)
    }

    /// 400 `SIZE_INVALID`: a `Content-Length` that is not a number.
    pub fn content_length_invalid() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::SizeInvalid,
            "invalid Content-Length",
        )
    }

    /// 416 `BLOB_UPLOAD_INVALID`: a `Content-Range` of an upload chunk that cannot be read.
    pub fn content_range_invalid() -> ApiError {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            "invalid Content-Range: expected <start>-<end>",
        )
    }

    /// 404 `NOT_FOUND` (management API): directory settings or syncs asked of a registry
    /// with no directory configured.
    pub fn no_directory() -> ApiError {
        ApiError::coded(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "no directory is configured",
        )
    }

    /// 416 `SIZE_INVALID`: a `Range` header of a blob read that cannot be read.
    pub fn range_invalid() -> ApiError {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::SizeInvalid,
            "invalid Range header",
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        use CoreError as E;
        use ErrorCode as C;
        let msg = e.to_string();
        match e {
            E::NameUnknown => ApiError::new(StatusCode::NOT_FOUND, C::NameUnknown, msg),
            E::NameInvalid(_) => ApiError::new(StatusCode::BAD_REQUEST, C::NameInvalid, msg),
            E::BlobUnknown => ApiError::new(StatusCode::NOT_FOUND, C::BlobUnknown, msg),
            E::UploadUnknown => ApiError::new(StatusCode::NOT_FOUND, C::BlobUploadUnknown, msg),
            E::BodyFailed(_) => ApiError::new(StatusCode::BAD_REQUEST, C::BlobUploadInvalid, msg),
            E::DigestMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, C::DigestInvalid, msg)
            }
            E::ManifestUnknown | E::ManifestNotAcceptable(_) => {
                ApiError::new(StatusCode::NOT_FOUND, C::ManifestUnknown, msg)
            }
            E::ManifestInvalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, C::ManifestInvalid, msg)
            }
            E::ManifestBlobUnknown(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, C::ManifestBlobUnknown, msg)
            }
            E::ManifestTooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, C::SizeInvalid, msg)
            }
            E::SizeInvalid(_) => ApiError::new(StatusCode::BAD_REQUEST, C::SizeInvalid, msg),
            E::RangeInvalid { offset } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, C::BlobUploadInvalid, msg)
                    .with_header(header::RANGE, upload_range(offset))
            }
            E::RangeNotSatisfiable { size } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, C::SizeInvalid, msg)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            E::Unsupported(_) => ApiError::new(StatusCode::BAD_REQUEST, C::Unsupported, msg),
            E::ReadOnly(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, C::Unavailable, msg)
                .with_header(header::RETRY_AFTER, "60".into()),
            E::Collecting(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, C::Unavailable, msg)
                .with_header(header::RETRY_AFTER, "5".into()),
            // The distribution spec's closed code list has DENIED for this; the docker
            // engine prints "denied: <message>".
            E::PolicyDenied(_) => ApiError::new(StatusCode::FORBIDDEN, C::Denied, msg),
            E::Meta(_) | E::Blob(_) => {
                tracing::error!(error = %msg, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    C::Unknown,
                    "internal server error; the registry logged the cause",
                )
            }
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        use ErrorCode as C;
        let msg = e.to_string();
        match e {
            AccessError::Unauthorized(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, C::Unauthorized, msg)
            }
            AccessError::RateLimited { retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, C::TooManyRequests, msg)
                    .with_header(header::RETRY_AFTER, retry_after.to_string())
            }
            AccessError::BadRequest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, C::Unsupported, msg)
            }
            AccessError::Store(m) => ApiError::from(CoreError::Meta(m)),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> ApiError {
        use ErrorCode as C;
        match e {
            PathError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, C::Unsupported, "no such endpoint")
            }
            PathError::MethodNotAllowed => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                C::Unsupported,
                "method not allowed on this endpoint",
            ),
            PathError::Name(n) => ApiError::new(
                StatusCode::BAD_REQUEST,
                C::NameInvalid,
                format!("invalid repository name: {n}"),
            ),
            PathError::Digest(d) => {
                ApiError::new(StatusCode::BAD_REQUEST, C::DigestInvalid, d.to_string())
            }
            PathError::Reference { method, error } => match (method, error) {
                (_, NameError::Digest(d)) => {
                    ApiError::new(StatusCode::BAD_REQUEST, C::DigestInvalid, d.to_string())
                }
                (Method::PUT, e) => {
                    ApiError::new(StatusCode::BAD_REQUEST, C::ManifestInvalid, e.to_string())
                }
                // No manifest can exist under a malformed tag.
                (_, e) => ApiError::new(StatusCode::NOT_FOUND, C::ManifestUnknown, e.to_string()),
            },
        }
    }
}

/// Wire codes of the management API (`/api/v0`) besides the distribution spec's
/// `UNAUTHORIZED`, `DENIED`, `NAME_UNKNOWN`, `NAME_INVALID`, `UNAVAILABLE` and `UNKNOWN`.
pub mod codes {
    /// 404: a user, organisation, team, token or member that does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// 409: the name is taken, or the object's state does not allow the change.
    pub const CONFLICT: &str = "CONFLICT";
    /// 400: a request that cannot be carried out as given (a malformed body, query or
    /// value).
    pub const INVALID: &str = "INVALID";
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> ApiError {
        use ErrorCode as C;
        let msg = e.to_string();
        match e {
            ManageError::Unauthenticated => {
                ApiError::new(StatusCode::UNAUTHORIZED, C::Unauthorized, msg).with_header(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"berth\", charset=\"UTF-8\"".into(),
                )
            }
            ManageError::Denied(_) => ApiError::new(StatusCode::FORBIDDEN, C::Denied, msg),
            ManageError::RepoUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, C::NameUnknown, msg)
            }
            ManageError::NotFound(_) => {
                ApiError::coded(StatusCode::NOT_FOUND, codes::NOT_FOUND, msg)
            }
            ManageError::NameInvalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, C::NameInvalid, msg)
            }
            ManageError::Invalid(_) => {
                ApiError::coded(StatusCode::BAD_REQUEST, codes::INVALID, msg)
            }
            ManageError::Conflict(_) | ManageError::State(_) => {
                ApiError::coded(StatusCode::CONFLICT, codes::CONFLICT, msg)
            }
            ManageError::Access(a) => ApiError::from(a),
            ManageError::Store(m) => ApiError::from(CoreError::Meta(m)),
            ManageError::Trust(t) => ApiError::from(t),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> ApiError {
        ApiError::coded(StatusCode::BAD_REQUEST, codes::INVALID, e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::coded(StatusCode::BAD_REQUEST, codes::INVALID, e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError::coded(StatusCode::BAD_REQUEST, codes::INVALID, e.body_text())
    }
}

/// The `Range` header value of an upload at `offset` (Distribution's form: `0-0` when empty).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": self.detail }]
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

impl ApiError {
    /// 400 `MALFORMED_UPLOAD`: a trust update that is not a readable multipart form.
    pub fn trust_malformed_upload(message: impl Into<String>) -> ApiError {
        ApiError::coded(StatusCode::BAD_REQUEST, "MALFORMED_UPLOAD", message)
    }
}

/// Trust errors as Notary answers them, with its codes (group `notary.api.v1`): the client rebuilds a typed validation error from
/// `INVALID_UPDATE`'s detail, and tells 404 (no trust data) from 400 and anything else.
impl From<TrustError> for ApiError {
    fn from(e: TrustError) -> ApiError {
        use berth_core::trust::UpdateError as U;
        let msg = e.to_string();
        let bad = |code| ApiError::coded(StatusCode::BAD_REQUEST, code, msg.clone());
        match e {
            TrustError::NotFound => {
                ApiError::coded(StatusCode::NOT_FOUND, "METADATA_NOT_FOUND", msg)
            }
            TrustError::Version => bad("VERSION"),
            TrustError::InvalidParameters(_) => bad("INVALID_PARAMETERS"),
            TrustError::NoFilename => bad("NO_FILENAME"),
            TrustError::Update(U::InvalidRole(_)) => bad("INVALID_ROLE"),
            TrustError::Update(U::Malformed { .. }) => bad("MALFORMED_JSON"),
            TrustError::Update(u) => ApiError {
                detail: u.detail(),
                ..bad("INVALID_UPDATE")
            },
            TrustError::Key(_) | TrustError::Meta(_) => {
                tracing::error!(error = %msg, "trust service failed");
                ApiError::coded(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    "the trust service failed; see the registry's log",
                )
            }
        }
    }
}

/// `/health`'s answer: 200 when every store answers, else 503 (so a load balancer takes
/// the replica out), with `body` either way.
pub fn health_response(healthy: bool, body: serde_json::Value) -> Response {
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Anything outside the known routes.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::Unsupported,
        "no such endpoint",
    )
}
