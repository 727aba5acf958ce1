//! Request tracing: every request gets an id, kept from the caller's `X-Request-Id` when
//! it is a sane token and generated otherwise, returned in the response's `X-Request-Id`,
//! and recorded on a span around the request, so that every log line the request causes
//! carries it (tower-http's `request_id` and `trace` layers).

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use tower_http::request_id::{MakeRequestId, RequestId};

/// The header that carries the id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest id a caller may choose; a longer one is replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a caller's id is kept: 1 to [`MAX_REQUEST_ID`] characters among ASCII letters,
/// digits and `-_.:`. Anything else (control characters, spaces, quotes, a page of text)
/// is replaced, so an id can neither forge a log line nor grow a log without bound.
pub fn acceptable_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=MAX_REQUEST_ID).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// Middleware (first of the tracing layers): drops a caller's id that
/// [`acceptable_id`] refuses, so that one is generated in its place.
pub async fn screen_request_id(mut req: Request) -> Request {
    if let Some(v) = req.headers().get(REQUEST_ID) {
        if !acceptable_id(v) || req.headers().get_all(REQUEST_ID).iter().count() > 1 {
            req.headers_mut().remove(REQUEST_ID);
        }
    }
    req
}

/// Generates an id (a random UUID, hyphenated) for a request that brought none.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The span of a request: its id, method and route (the router's pattern, a closed set;
/// the `/v2` path, whose repository names are the caller's, stays out of the span).
pub fn span(req: &Request) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str())
        .unwrap_or("-");
    tracing::info_span!("request", id = %id, method = %req.method(), route = %route)
}
