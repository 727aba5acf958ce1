//! Test support shared by the integration tests of several crates (a dev-dependency only,
//! never linked into a production library):
//!
//! - [`slapd`]: a throwaway OpenLDAP server per test, loaded with one of the two sample
//!   directories (plain OpenLDAP, Active-Directory-like).
//!
//! Services that live for the whole run (PostgreSQL, S3, the Docker engine, crane, the
//! reference registry and notary-server) are started by `cargo xtask peers`, not here.

pub mod slapd;

pub use slapd::{Directory, Slapd};
