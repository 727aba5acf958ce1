//! The binary's integration tests, one test binary (every extra one relinks the world):
//! the real `berth` on a free port, driven by real clients over both store pairs, through
//! `berth-testkit`'s end-to-end harness. Run one file's tests with a filter:
//! `cargo test -p berth --test it crash::`.

mod admin;
mod architecture;
mod crash;
mod e2e_auth;
mod e2e_crane;
mod e2e_docker;
mod e2e_oras;
mod e2e_podman;
mod e2e_restart;
mod e2e_skopeo;
mod gc;
mod health;
mod jobs;
mod ldap;
mod listener;
mod newcomer;
mod policy;
mod replicas;
mod schemathesis;
mod secrets;
mod signatures;
mod tls;
mod trust;
mod uploads;
