//! Fuzzes the `/v2` request-path parser: any method and path must parse or be refused,
//! never panic, and an accepted path must round-trip its repository name.
#![no_main]
use axum::http::Method;
use berth_http::endpoint::Endpoint;
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 6] = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::PATCH, Method::DELETE];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(path) = std::str::from_utf8(rest) else { return };
    let method = &METHODS[m as usize % METHODS.len()];
    for p in [path.to_string(), format!("/v2/{path}")] {
        if let Ok(e) = Endpoint::parse(method, &p) {
            if let (_, Some(repo)) = e.access() {
                assert!(p.contains(repo.as_str()));
                assert!(!repo.as_str().contains(".."));
            }
        }
    }
});
