//! Request tracing: every request gets an id, kept from the caller's `X-Request-Id` when
//! it is a sane token and generated otherwise, returned in the response's `X-Request-Id`,
//! and recorded on a span around the request, so that every log line the request causes
//! carries it. Done in `ops::observe`, the one middleware every request passes, rather than
//! as a stack of layers: each layer costs every request a boxed future and more.

use axum::http::{HeaderMap, HeaderValue, Method};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// The id of a request: the caller's when it sent exactly one and [`acceptable_id`]
/// keeps it, a fresh one otherwise.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(v), None) if acceptable_id(v) => v.clone(),
        _ => fresh_id(),
    }
}

/// A fresh id, laid out as a random (version 4) UUID: a random half drawn once per
/// process and a counter, so that no request pays for a system call or a lock.
fn fresh_id() -> HeaderValue {
    static PROCESS: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let mut half = [0u8; 8];
        half.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        half
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(process);
    bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The span of a request: its id, method and route (the router's pattern, a closed set;
/// the `/v2` path, whose repository names are the caller's, stays out of the span). A
/// `/v2` request's route, its endpoint's name, is recorded once the path is parsed
/// ([`record_route`]). At the default level the span is disabled and costs nothing.
pub fn span(id: &HeaderValue, method: &Method, route: Option<&str>) -> tracing::Span {
    let id = id.to_str().unwrap_or("-");
    match route {
        Some(route) => tracing::info_span!("request", id = %id, method = %method, route = %route),
        None => {
            tracing::info_span!("request", id = %id, method = %method, route = tracing::field::Empty)
        }
    }
}

/// Records a `/v2` request's route on its span.
pub fn record_route(route: &'static str) {
    tracing::Span::current().record("route", route);
}
